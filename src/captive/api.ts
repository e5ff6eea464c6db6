// The RFC 8908 captive-portal API client: GET the API URI a network gives
// (RFC 8910, DHCP/RA option or an RFC 8801 PvD JSON) over HTTPS, with the
// certificate checked against its host name (§4.1), the host resolved
// through the PvD that gave the URI only (its portal may answer it with an
// address no other network knows), and the JSON read as §5 defines it.

import { loadHttps } from '../node-http.js';
import type { LookupAddress } from 'node:dns';

/** RFC 8910 §2: a network that says so has no captive portal. */
export const UNRESTRICTED = 'urn:ietf:params:capport:unrestricted';

/** RFC 8908 §5: the API's media type. */
const MEDIA_TYPE = 'application/captive+json';
/** The largest API document read. */
const MAX_BODY = 64 * 1024;

/** CaptiveApiState is an RFC 8908 §5 API document, as far as pvdns uses it. */
export interface CaptiveApiState {
  captive: boolean;
  /** https only (RFC 8908 §5: it MUST be TLS-protected); null when absent or not https. */
  userPortalUrl: string | null;
  venueInfoUrl: string | null;
  secondsRemaining: number | null;
  canExtendSession: boolean | null;
}

/** Resolves a host name through one PvD: its addresses, or a rejection saying why not. */
export type PvdLookup = (host: string) => Promise<string[]>;

/**
 * fetchCaptiveApi reads the API document at `uri`. It rejects with an Error
 * whose message says what went wrong: no address, a connection or TLS
 * failure (certificate not valid for the host: §4.1 forbids going on), an
 * HTTP status other than 200, a body that is not JSON or whose `captive` is
 * not a boolean (the caller then keeps the last valid state, §5).
 */
export function fetchCaptiveApi(uri: string, lookup: PvdLookup, opts: { localAddress: string | null; timeoutMs: number }): Promise<CaptiveApiState> {
  return new Promise((resolve, reject) => {
    const url = new URL(uri);
    if (url.protocol !== 'https:') return reject(new Error(`${uri}: the captive-portal API must be https (RFC 8908 §4.1)`));
    // Settled once, whichever comes first: the document, an error, the deadline, a connection closed mid-body.
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      reject(new Error(`${uri}: ${why}`));
    };
    const family = opts.localAddress === null ? 0 : opts.localAddress.includes(':') ? 6 : 4;
    const req = loadHttps().request(url, {
      method: 'GET',
      headers: { accept: MEDIA_TYPE },
      localAddress: opts.localAddress ?? undefined,
      agent: false,
      lookup: (host: string, options: { all?: boolean; family?: number | string }, done: (...args: never[]) => void) => {
        const cb = done as unknown as (err: Error | null, address: string | LookupAddress[], family?: number) => void;
        // Only addresses the socket can reach from its source address (or of the family asked for).
        const asked = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
        const want = family || asked || 0;
        lookup(host).then(
          (addresses) => {
            const all = addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })).filter((a) => want === 0 || a.family === want);
            if (all.length === 0) return cb(new Error(`${host} has no${want ? ` IPv${want}` : ''} address in this PvD`), '', 4);
            if (options.all) cb(null, all);
            else cb(null, all[0]!.address, all[0]!.family);
          },
          (err: Error) => cb(err, '', 4),
        );
      },
    });
    const deadline = setTimeout(() => fail(`no answer within ${opts.timeoutMs} ms`), opts.timeoutMs);
    deadline.unref();
    req.on('error', (err) => fail(err.message));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(`HTTP ${res.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) fail(`document over ${MAX_BODY} octets`);
        else chunks.push(c);
      });
      res.on('error', (err) => fail(err.message));
      res.on('aborted', () => fail('connection closed before the document was complete'));
      res.on('close', () => {
        if (!res.complete) fail('connection closed before the document was complete');
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        try {
          resolve(parseApiDocument(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(new Error(`${uri}: ${(err as Error).message}`));
        }
      });
    });
    req.end();
  });
}

/** parseApiDocument reads an RFC 8908 §5 document; unknown keys are ignored, as §5 requires. */
export function parseApiDocument(text: string): CaptiveApiState {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error('the document is not JSON');
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('the document is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (typeof d.captive !== 'boolean') throw new Error('"captive" is missing or not a boolean');
  const https = (v: unknown): string | null => (typeof v === 'string' && URL.canParse(v) && new URL(v).protocol === 'https:' ? v : null);
  const seconds = d['seconds-remaining'];
  const extend = d['can-extend-session'];
  return {
    captive: d.captive,
    userPortalUrl: https(d['user-portal-url']),
    venueInfoUrl: https(d['venue-info-url']),
    secondsRemaining: typeof seconds === 'number' && seconds >= 0 ? seconds : null,
    canExtendSession: typeof extend === 'boolean' ? extend : null,
  };
}
