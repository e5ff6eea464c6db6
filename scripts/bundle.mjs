// Build step after tsc: bundles dist/command.js and everything it imports
// (pvdns's modules and its dependencies) into dist/pvdns.bundle.js, which
// dist/cli.js loads when it is there. One file starts ~100 ms faster than the
// ~300 modules it replaces (`npm run bench` reports start-up). Node built-ins
// and the native addon stay outside. Without esbuild (an install without dev
// dependencies) there is no bundle and pvdns loads the modules: slower to
// start, otherwise the same.

import { rmSync } from 'node:fs';

const out = new URL('../dist/pvdns.bundle.js', import.meta.url);
rmSync(out, { force: true });
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.warn('pvdns: esbuild is not installed; no bundle (pvdns will load its modules one by one)');
  process.exit(0);
}
await esbuild.build({
  entryPoints: [new URL('../dist/command.js', import.meta.url).pathname],
  outfile: out.pathname,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  logLevel: 'warning',
  // CommonJS dependencies (pino, prom-client) call require(); in an ES module it has to be made.
  banner: { js: "import { createRequire as pvdnsCreateRequire } from 'node:module'; const require = pvdnsCreateRequire(import.meta.url);" },
});
