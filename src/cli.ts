#!/usr/bin/env -S node --max-semi-space-size=4
// The pvdns executable. It only prepares the process, then runs the command
// line (command.ts). Start-up to the first answer is measured by `npm run
// bench`; two things here make it short:
// - Node's compile cache is on before anything else is loaded (kept in the OS
//   temp dir or NODE_COMPILE_CACHE; when it cannot be written pvdns just
//   starts slower);
// - the build bundles command.ts and everything it imports into one file
//   (scripts/bundle.mjs), which loads about 100 ms faster than ~300 modules;
//   without it, the modules tsc wrote are loaded instead.
// The V8 flag in the first line caps the young generation at 4 MiB per
// semi-space: by default V8 grows it to 64 MiB under load, resident for the
// life of the process — more than 100,000 cached answers take (measured by
// the bench: ~1,800 bytes per cached answer by default, ~1,000 with 8 MiB,
// ~850 with 4 MiB, at the same speed). Where the
// first line is not used, run `node --max-semi-space-size=4 dist/cli.js`
// (the Dockerfile and the systemd unit do).

import module from 'node:module';
import { statSync } from 'node:fs';

// What ps, top, pidof and /proc/PID/comm show, for every command (serve included), rather than
// "node" and the path of this file: pidof pvdns and pkill -x pvdns find it (libuv sets the
// command line and the kernel's task name).
process.title = 'pvdns';
module.enableCompileCache?.();

/**
 * The bundle, if the build made it after tsc last wrote command.js: `tsc`
 * alone rewrites every module and leaves the bundle stale, so pvdns then runs
 * from the modules. (`tsc -w` rewrites only what changed: delete the bundle,
 * or run `npm run build`.)
 */
function freshBundle(): URL | null {
  const bundle = new URL('./pvdns.bundle.js', import.meta.url);
  try {
    return statSync(bundle).mtimeMs >= statSync(new URL('./command.js', import.meta.url)).mtimeMs ? bundle : null;
  } catch {
    return null;
  }
}

const bundle = freshBundle();
await (bundle !== null ? import(bundle.href) : import('./command.js'));
