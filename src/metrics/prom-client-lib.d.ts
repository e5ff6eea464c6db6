// The prom-client files src/metrics/prom-client.ts and process.ts load; the registry's type is the index's.
declare module 'prom-client/lib/registry.js' {
  const Registry: unknown;
  export default Registry;
}

declare module 'prom-client/lib/metrics/processCpuTotal.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processStartTime.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/osMemoryHeap.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processOpenFileDescriptors.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processMaxFileDescriptors.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processResources.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processHandles.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/processRequests.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/heapSizeAndUsed.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/version.js' {
  const register: unknown;
  export default register;
}
declare module 'prom-client/lib/metrics/gc.js' {
  const register: unknown;
  export default register;
}
