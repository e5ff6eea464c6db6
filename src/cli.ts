#!/usr/bin/env -S node --max-semi-space-size=16 --min-semi-space-size=16 --no-memory-reducer
// The pvdns executable. It only prepares the process, then runs the command
// line (command.ts). Start-up to the first answer is measured by `npm run
// bench`; two things here make it short:
// - Node's compile cache is on before anything else is loaded (kept in the OS
//   temp dir or NODE_COMPILE_CACHE; when it cannot be written pvdns just
//   starts slower);
// - the build bundles command.ts and everything it imports into one file
//   (scripts/bundle.mjs), which loads about 100 ms faster than ~300 modules;
//   without it, the modules tsc wrote are loaded instead.
// The V8 flags in the first line fix the young generation at 16 MiB per
// semi-space (issue 19, measured by the bench's fixed-rate hit latency):
// V8 otherwise keeps it at its starting size on a server whose objects die
// young, and at 4 MiB a scavenge came every ~200 ms at 20,000 queries/s,
// each a 0.4-0.5 ms pause that delayed the queries behind it (a third of the
// answers slower than 0.25 ms lined up with one); at 16 MiB one comes every
// ~850 ms. The memory this holds under load is handed back once pvdns is
// quiet (src/server/reclaim.ts), so idle RSS and bytes per cached answer
// are not raised by it (the bench: 70.8 MiB idle, 568 bytes per answer).
// --no-memory-reducer: that reclaim is pvdns's own, run once quiet; V8's
// memory reducer, which GCs an idle heap on an 8 s timer, never came to rest
// in pvdns (measured: a timer every 8.1 s for as long as it idled, with or
// without the flags above, where a bare node's stopped) and woke an idle
// pvdns 7-8 times a minute for nothing.
// Where the first line is not used, run `node --max-semi-space-size=16
// --min-semi-space-size=16 --no-memory-reducer dist/cli.js` (the Dockerfile
// and the systemd unit do).

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
