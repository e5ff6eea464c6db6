// The two prom-client files src/metrics/prom-client.ts loads; their types are the index's.
declare module 'prom-client/lib/registry.js' {
  const Registry: unknown;
  export default Registry;
}
declare module 'prom-client/lib/defaultMetrics.js' {
  const collectDefaultMetrics: unknown;
  export default collectDefaultMetrics;
}
