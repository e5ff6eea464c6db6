// PvD Additional Information (RFC 8801 §4): the JSON object a PvD with the H
// flag serves at https://<PvD ID>/.well-known/pvd, fetched through that PvD
// and checked before anything in it is used. The PvD ID's name is resolved
// only by the caller's `lookup` (pvdns asks the PvD's own servers, §4.1: the
// name resolution MUST use the considered PvD), never the system resolver;
// the connection may leave from the PvD's address on its interface. The
// certificate must name the PvD ID (§4.1, Node's default host check on the
// PvD ID as the TLS server name). Every failure is one line; when and how
// often to fetch is ra.ts's business.

import type https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { SecureContext } from 'node:tls';
import { loadHttps } from '../../node-http.js';
import ipaddr from 'ipaddr.js';
import { parsePrefix } from '../../config/address.js';
import { domainProblem, normalizeDomain } from '../schema.js';

/** The media type of the object (RFC 8801 §8.5): servers MUST send it (§4.1). */
export const PVD_MEDIA_TYPE = 'application/pvd+json';
/** The most an object may be: it describes one network, and is read into memory. */
export const MAX_PVD_INFO_BYTES = 64 * 1024;
/** How long one fetch (lookup, redirects and all) may take. */
export const PVD_INFO_TIMEOUT_MS = 10_000;
/** Redirects followed (§4.1 MUST follow them; a loop must end). */
const MAX_REDIRECTS = 5;

/** PvD Additional Information that passed every check (§4.3). */
export interface PvdInfo {
  /** The PvD ID, lower case without the trailing dot. */
  identifier: string;
  /** The object's `expires`, as sent (RFC 3339). */
  expires: string;
  /** `expires` in ms since the epoch. */
  expiresAt: number;
  prefixes: string[];
  /** `dnsZones` (§4.3 Table 2), lower case without the trailing dot; empty when absent. */
  dnsZones: string[];
  /** `noInternet`; false when absent. */
  noInternet: boolean;
}

/** How to fetch one PvD's Additional Information. */
export interface FetchPvdInfoOptions {
  /** Resolves a host name through the PvD's own servers (§4.1), to IP addresses. */
  lookup: (host: string) => Promise<string[]>;
  /** The PvD's address on its interface, to connect from (§4.1: source address selection within the PvD). */
  localAddress?: string | null;
  /** The authorities the server's certificate must chain to (pvdns's Trust: the system's, Node's and tls.caFile's); Node's own by default. */
  secureContext?: SecureContext;
  /** The prefixes the RA advertised (its PIOs): each must lie inside one of the object's `prefixes` (§4.1, §4.3). */
  advertisedPrefixes?: readonly string[];
  timeoutMs?: number;
  maxBytes?: number;
  /** The HTTPS port; 443 but in tests. */
  port?: number;
  now?: () => number;
}

/**
 * fetchPvdInfo GETs https://<pvdId>/.well-known/pvd and validates it (see
 * the file header), resolving to the information or to one line saying why
 * there is none. It never rejects.
 */
export async function fetchPvdInfo(pvdId: string, opts: FetchPvdInfoOptions): Promise<PvdInfo | string> {
  const id = normalizeDomain(pvdId);
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? PVD_INFO_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    let url = new URL(`https://${id}/.well-known/pvd`);
    for (let hop = 0; ; hop++) {
      const r = await get(url, opts, controller.signal);
      if (controller.signal.aborted) return `${url.href}: no answer within ${timeoutMs} ms`;
      if (typeof r === 'string') return `${url.href}: ${r}`;
      if (r.status >= 300 && r.status <= 399) {
        if (hop >= MAX_REDIRECTS) return `${url.href}: more than ${MAX_REDIRECTS} redirects`;
        if (r.location === undefined) return `${url.href}: HTTP ${r.status} without a Location`;
        const next = URL.canParse(r.location, url.href) ? new URL(r.location, url) : null;
        if (next === null || next.protocol !== 'https:') return `${url.href}: HTTP ${r.status} to ${JSON.stringify(r.location)}, not an https URL`;
        url = next;
        continue;
      }
      if (r.status < 200 || r.status > 299) return `${url.href}: HTTP ${r.status}`;
      const type = (r.contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
      if (type !== PVD_MEDIA_TYPE) return `${url.href}: content type ${JSON.stringify(r.contentType ?? '')}, not ${PVD_MEDIA_TYPE} (RFC 8801 §4.1)`;
      let value: unknown;
      try {
        value = JSON.parse(r.body.toString('utf8'));
      } catch (err) {
        return `${url.href}: not JSON (${oneLine((err as Error).message)})`;
      }
      const info = readPvdInfo(value, id, now());
      if (typeof info === 'string') return `${url.href}: ${info}`;
      const outside = uncoveredPrefixes(opts.advertisedPrefixes ?? [], info.prefixes);
      if (outside.length > 0) return `${url.href}: the advertised prefix ${outside[0]} is inside none of its prefixes (RFC 8801 §4.3)`;
      return info;
    }
  } finally {
    clearTimeout(timer);
  }
}

interface Response {
  status: number;
  location?: string;
  contentType?: string;
  body: Buffer;
}

/**
 * preparePvdInfo readies what the first fetch would otherwise pay for while
 * it holds a PvD's routing back (the gate's hold ends at 100 ms, and a busy
 * machine stretches first uses most). From an RA's announce to the update
 * with its information, test/host/pvdns-ra.test.ts alone saw 60-70 ms for
 * the first PvD without this, 35-48 ms with it (40 and 60 in whole CI runs),
 * 10-30 ms for the next ones. On the next turn of the event loop it:
 * - loads node:https and node:tls (~20 ms);
 * - gets `context()`, the trust the fetches verify with (the caller's: pvdns
 *   builds it once per tls.caFile, parsing every root, tens of ms);
 * - once a process, makes one request through get() for a name under
 *   .invalid whose lookup fails at once (RFC 6761 §6.4: it never resolves),
 *   so that Node's request and TLS socket code is compiled (~30 ms). Nothing
 *   is sent and nothing is asked.
 * It resolves when that is done, and never rejects: a context that cannot be
 * made is the fetch's to report. A source that fetches calls it when it
 * starts and on every reload (a new tls.caFile is a new context); pvdns
 * without one never loads any of it (src/node-http.ts).
 */
export function preparePvdInfo(context: () => SecureContext): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(() => {
      let secureContext: SecureContext;
      try {
        loadHttps();
        secureContext = context();
      } catch {
        return resolve();
      }
      if (requestPrepared) return resolve();
      requestPrepared = true;
      const lookup = (): Promise<string[]> => Promise.reject(new Error('not looked up: preparing'));
      void get(new URL(`https://${PREPARE_HOST}/.well-known/pvd`), { lookup, secureContext }, new AbortController().signal).then(() => resolve());
    });
  });
}

/** The name preparePvdInfo's request is for: under .invalid (RFC 6761 §6.4), and never looked up. */
const PREPARE_HOST = 'pvdns-prepare.invalid';
let requestPrepared = false;

/** get makes one request, resolving the URL's host through opts.lookup only. */
function get(url: URL, opts: FetchPvdInfoOptions, signal: AbortSignal): Promise<Response | string> {
  const maxBytes = opts.maxBytes ?? MAX_PVD_INFO_BYTES;
  const host = url.hostname;
  const local = opts.localAddress ?? undefined;
  const family = local === undefined ? 0 : local.includes(':') ? 6 : 4;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Response | string): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    // net.connect asks with { all: true } when it may try several addresses (autoSelectFamily).
    const lookup: LookupFunction = (hostname, options, callback) => {
      opts.lookup(hostname).then(
        (found) => {
          const usable = found.filter((a) => ipaddr.isValid(a) && (family === 0 || (a.includes(':') ? 6 : 4) === family));
          if (usable.length === 0) {
            const err = Object.assign(new Error(`${hostname} has no ${family === 0 ? '' : `IPv${family} `}address through the PvD's servers`), { code: 'ENOTFOUND' });
            return callback(err, '', 0);
          }
          const all = usable.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
          if (options.all) (callback as unknown as (e: null, a: typeof all) => void)(null, all);
          else callback(null, all[0]!.address, all[0]!.family);
        },
        (err: unknown) => callback(Object.assign(new Error(`${hostname}: ${(err as Error)?.message ?? String(err)}`), { code: 'ENOTFOUND' }), '', 0),
      );
    };
    // tls.connect takes a secureContext; https passes it on, though its RequestOptions type does not say so.
    const options: https.RequestOptions & { secureContext?: SecureContext } = {
      host,
      port: url.port ? Number(url.port) : (opts.port ?? 443),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { accept: PVD_MEDIA_TYPE, host: url.port ? `${host}:${url.port}` : host },
      servername: host, // the certificate must name the PvD ID (§4.1)
      lookup,
      localAddress: local,
      family: family === 0 ? undefined : family,
      agent: false,
      secureContext: opts.secureContext,
      signal,
    };
    const req = loadHttps().request(options, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.destroy(); // §4.1: close the connection on an error; a redirect's body is not read
        done({ status, location: res.headers.location, contentType: res.headers['content-type'], body: Buffer.alloc(0) });
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.destroy();
        done(`the object is ${declared} octets; at most ${maxBytes} are read`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          res.destroy();
          done(`the object is over ${maxBytes} octets`);
        } else chunks.push(chunk);
      });
      res.on('end', () => done({ status, contentType: res.headers['content-type'], body: Buffer.concat(chunks) }));
      res.on('error', (err) => done(oneLine(err.message)));
    });
    req.on('error', (err) => done(signal.aborted ? 'timed out' : oneLine(err.message)));
    req.end();
  });
}

const RFC3339 = /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)$/;

/**
 * readPvdInfo validates a parsed object as the PvD Additional Information of
 * `pvdId` at time `now` (RFC 8801 §4.3): the three mandatory keys valid, the
 * identifier the PvD ID (case-insensitive, §3.4), `expires` in the future,
 * the optional dnsZones and noInternet of the right types. Unknown keys are
 * ignored (§4.3). Returns the information or why it must be ignored.
 */
export function readPvdInfo(value: unknown, pvdId: string, now: number): PvdInfo | string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const o = value as Record<string, unknown>;
  for (const key of ['identifier', 'expires', 'prefixes']) if (o[key] === undefined) return `no "${key}" (RFC 8801 §4.3: it is mandatory)`;
  if (typeof o.identifier !== 'string' || domainProblem(o.identifier) !== null) return `"identifier" ${JSON.stringify(o.identifier)} is not a domain name`;
  const identifier = normalizeDomain(o.identifier);
  if (identifier !== normalizeDomain(pvdId)) return `"identifier" ${JSON.stringify(o.identifier)} is not the PvD ID ${pvdId} (RFC 8801 §4.3)`;
  if (typeof o.expires !== 'string' || !RFC3339.test(o.expires) || Number.isNaN(Date.parse(o.expires))) {
    return `"expires" ${JSON.stringify(o.expires)} is not an RFC 3339 date-time`;
  }
  const expiresAt = Date.parse(o.expires);
  if (expiresAt <= now) return `"expires" ${o.expires} has passed (RFC 8801 §4.1)`;
  if (!Array.isArray(o.prefixes)) return '"prefixes" is not an array';
  for (const p of o.prefixes) {
    if (typeof p !== 'string' || typeof parsePrefix(p) === 'string') return `"prefixes" holds ${oneLine(JSON.stringify(p))}, not a prefix`;
  }
  let dnsZones: string[] = [];
  if (o.dnsZones !== undefined) {
    if (!Array.isArray(o.dnsZones)) return '"dnsZones" is not an array';
    for (const z of o.dnsZones) if (typeof z !== 'string' || domainProblem(z) !== null) return `"dnsZones" holds ${oneLine(JSON.stringify(z))}, not a domain name`;
    dnsZones = (o.dnsZones as string[]).map(normalizeDomain);
  }
  if (o.noInternet !== undefined && typeof o.noInternet !== 'boolean') return '"noInternet" is not true or false';
  return { identifier, expires: o.expires, expiresAt, prefixes: o.prefixes as string[], dnsZones, noInternet: o.noInternet === true };
}

/**
 * uncoveredPrefixes lists the advertised prefixes that lie inside none of
 * `covering` (RFC 8801 §4.1: each PIO's prefix must be covered, or the
 * information is a misconfiguration and MUST NOT be used).
 */
export function uncoveredPrefixes(advertised: readonly string[], covering: readonly string[]): string[] {
  const parsed = covering.map(parsePrefix).filter((c): c is [ipaddr.IPv4 | ipaddr.IPv6, number] => typeof c !== 'string');
  return advertised.filter((text) => {
    const a = parsePrefix(text);
    if (typeof a === 'string') return true;
    return !parsed.some(([addr, len]) => addr.kind() === a[0].kind() && len <= a[1] && a[0].match(addr, len));
  });
}

function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ').slice(0, 200);
}
