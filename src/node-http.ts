// node:http, node:https, node:tls and node:http2, loaded through require, and
// the last three only on first use.
// - Imported as an ES module, node:http makes Node's wrapper read every
//   export, and one of them loads undici (fetch), zlib and worker_threads:
//   about 40 ms of start-up and 4 MiB of memory for a client pvdns never uses.
// - node:tls (with OpenSSL's TLS code) and node:http2 (with nghttp2) are
//   needed only by encrypted upstreams, DDR, captive-portal APIs and PvD
//   information: a pvdns with none of these never loads them, which keeps
//   about 9 MiB out of an idle process (issue 19; `npm run bench` reports
//   idle memory). Types come from `import type`, which loads nothing.

import { createRequire } from 'node:module';
import type httpModule from 'node:http';
import type httpsModule from 'node:https';
import type http2Module from 'node:http2';
import type tlsModule from 'node:tls';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof httpModule;

let httpsLoaded: typeof httpsModule | null = null;
let tlsLoaded: typeof tlsModule | null = null;
let http2Loaded: typeof http2Module | null = null;

/** loadHttps loads node:https on first use. */
export function loadHttps(): typeof httpsModule {
  return (httpsLoaded ??= require('node:https') as typeof httpsModule);
}

/** loadTls loads node:tls on first use. */
export function loadTls(): typeof tlsModule {
  return (tlsLoaded ??= require('node:tls') as typeof tlsModule);
}

/** loadHttp2 loads node:http2 on first use. */
export function loadHttp2(): typeof http2Module {
  return (http2Loaded ??= require('node:http2') as typeof http2Module);
}
