// node:http and node:https, loaded through require. Imported as ES modules,
// Node's wrapper reads every export of node:http, and one of them loads
// undici (fetch) — about 40 ms of start-up for a client pvdns never uses.
// node:https (TLS) is loaded only when a captive-portal API is first read.

import { createRequire } from 'node:module';
import type httpModule from 'node:http';
import type httpsModule from 'node:https';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof httpModule;

let httpsLoaded: typeof httpsModule | null = null;

/** loadHttps loads node:https on first use. */
export function loadHttps(): typeof httpsModule {
  return (httpsLoaded ??= require('node:https') as typeof httpsModule);
}
