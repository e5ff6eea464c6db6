// Build step after tsc: bundles dist/command.js and everything it imports
// (pvdns's modules and its dependencies) into dist/pvdns.bundle.js, which
// dist/cli.js loads when it is there. One file starts ~100 ms faster than the
// ~300 modules it replaces (`npm run bench` reports start-up). Node built-ins
// and the native addon stay outside. Without esbuild (an install without dev
// dependencies) there is no bundle and pvdns loads the modules: slower to
// start, otherwise the same.
//
// The bundle's text stays in V8's heap for the life of the process (V8 keeps
// a script's source to compile its functions lazily), so it is kept small:
// - whitespace and comments go (minifyWhitespace). Identifiers are kept, so
//   stack traces and class names read as in the source; the comments were
//   also what held non-ASCII characters (§, →), which made V8 keep the whole
//   text as UTF-16: 3.9 MiB of heap, now 1.1 MiB (issue 19);
// - zod's translated error messages (~300 KiB, 40 languages) are left out:
//   pvdns writes its own messages and never calls z.locales. English, zod's
//   default, is imported by zod itself and stays.

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
  minifyWhitespace: true,
  legalComments: 'none',
  charset: 'ascii',
  plugins: [{
    name: 'zod-english-only',
    setup(build) {
      build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
        /[\\/]zod[\\/]v4[\\/](classic|core|mini)$/.test(args.resolveDir) ? { path: 'zod-locales', namespace: 'pvdns-stub' } : undefined);
      build.onLoad({ filter: /.*/, namespace: 'pvdns-stub' }, () => ({
        contents: "export { default as en } from 'zod/v4/locales/en.js';",
        resolveDir: new URL('..', import.meta.url).pathname,
      }));
    },
  }],
  // CommonJS dependencies (pino, prom-client) call require(); in an ES module it has to be made.
  banner: { js: "import { createRequire as pvdnsCreateRequire } from 'node:module'; const require = pvdnsCreateRequire(import.meta.url);" },
});
