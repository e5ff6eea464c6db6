// What every HTTP request must show before pvdns looks at what it asks.
// pvdns's API decides where the host's names go, and it listens where every
// web page the user opens can send requests (127.0.0.1). Two browser attacks
// reach it from there, and both are closed here:
// - DNS rebinding: a page's own name re-pointed at 127.0.0.1 makes the browser
//   treat the API as that page's origin. Its requests carry the page's name in
//   Host, so only loopback names and addresses, the listen address and
//   `http.allowedHosts` are accepted (the defence the Fetch standard's
//   private-network work and every local daemon with an HTTP API use).
// - Cross-site requests (CSRF): a page may send "simple" requests anywhere
//   (text/plain bodies, no preflight). A foreign Origin (or Sec-Fetch-Site:
//   cross-site) is refused, and a body must be application/json, which a page
//   cannot send cross-origin without a CORS preflight pvdns never grants.

import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';

/** A refusal: the status and the one-line reason the client gets. */
export interface Refusal {
  status: number;
  error: string;
}

export interface GuardOptions {
  /** The address `http.listen` binds (an unspecified address accepts any IP literal as Host). */
  listenHost: string;
  /** `http.allowedHosts`, lower case, without a trailing dot. */
  allowedHosts: readonly string[];
}

/** RequestGuard checks Host, Origin, Sec-Fetch-Site and the body's media type of each request. */
export class RequestGuard {
  private readonly listen: ipaddr.IPv4 | ipaddr.IPv6 | null;
  private readonly anyAddress: boolean;
  private readonly names: Set<string>;

  constructor(opts: GuardOptions) {
    this.listen = parseIp(opts.listenHost);
    this.anyAddress = this.listen !== null && this.listen.range() === 'unspecified';
    this.names = new Set(opts.allowedHosts.map(normalizeHost));
  }

  /** check returns why a request is refused, or null when it may go on. */
  check(req: IncomingMessage): Refusal | null {
    const host = req.headers.host;
    // HTTP/1.1 requires Host and node refuses a request without it (400); an HTTP/1.0 client
    // that omits it is not a browser, which always sends one.
    if (host !== undefined && !this.hostAllowed(hostOf(host))) {
      return { status: 403, error: `Host "${host}" is not one pvdns answers to: use a loopback address or name, or list it in http.allowedHosts` };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.originAllowed(origin, host)) {
      return { status: 403, error: `cross-site requests are refused (Origin ${JSON.stringify(origin)})` };
    }
    // Sent by browsers alongside Origin; refused too where a browser leaves Origin out. (Node joins
    // a repeated header with commas.)
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site.toLowerCase().split(',').some((v) => v.trim() === 'cross-site')) {
      return { status: 403, error: 'cross-site requests are refused (Sec-Fetch-Site: cross-site)' };
    }
    if (hasBody(req) && !isJson(req.headers['content-type'])) {
      return { status: 415, error: `request bodies must be application/json (got ${req.headers['content-type'] ?? 'no content-type'})` };
    }
    return null;
  }

  /**
   * hostAllowed: a loopback name or address, an allowed name, or the listen
   * address — any IP literal when it is unspecified, unless `strict` (an
   * Origin: a page served from some IP literal is still another site).
   */
  hostAllowed(hostname: string, strict = false): boolean {
    const name = normalizeHost(hostname);
    // RFC 6761 §6.3: localhost and names under it are the loopback host, never a web page's name.
    if (name === 'localhost' || name.endsWith('.localhost')) return true;
    if (this.names.has(name)) return true;
    const ip = parseIp(name);
    if (ip === null) return false;
    // An IP literal cannot be rebound: the browser asked that very address.
    if (ip.range() === 'loopback' || (this.anyAddress && !strict)) return true;
    return this.listen !== null && ip.kind() === this.listen.kind() && ip.toString() === this.listen.toString();
  }

  /**
   * originAllowed: the request's own origin (its Host, already accepted), or
   * one naming a loopback or allowed host (a local tool); `null` origins are
   * refused.
   */
  private originAllowed(origin: string, host: string | undefined): boolean {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // "null" (sandboxed frames, file:) and garbage
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (host !== undefined && URL.canParse(`http://${host}`) && url.host === new URL(`http://${host}`).host) return true;
    return this.hostAllowed(url.hostname.replace(/^\[|\]$/g, ''), true);
  }
}

/** hostOf takes the name or address out of a Host header: "[::1]:8053" → "::1", "a.example:80" → "a.example". */
export function hostOf(header: string): string {
  const h = header.trim();
  const bracketed = /^\[([^\]]+)\](?::\d*)?$/.exec(h);
  if (bracketed) return bracketed[1]!;
  const colon = h.indexOf(':');
  // One colon: name:port. More: a bare IPv6 address, which a Host header may not carry unbracketed.
  if (colon >= 0 && h.indexOf(':', colon + 1) < 0) return h.slice(0, colon);
  return h;
}

function normalizeHost(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const plain = text.split('%', 1)[0]!;
  if (!ipaddr.isValid(plain)) return null;
  if (!plain.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(plain)) return null; // "127.1" is a name to a browser's eyes too
  const ip = ipaddr.parse(plain);
  return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address() : ip;
}

/** hasBody: the request says it carries octets (a length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

/** isJson: application/json, with at most a utf-8 charset (RFC 8259 §8.1: JSON is UTF-8). */
function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const [type, ...params] = contentType.split(';').map((p) => p.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => !p.startsWith('charset=') || /^charset="?utf-8"?$/.test(p));
}
