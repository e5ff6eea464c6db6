// Upstream servers as a PvD lists them, in the forms of DESIGN.md's
// "Encrypted DNS": a cleartext "ADDR[:PORT]"; DNS over TLS as
// "tls://ADDR[:PORT]#NAME" or systemd-resolved's "ADDR[:PORT]#NAME" (RFC
// 7858, port 853); DNS over HTTPS as "https://HOST[:PORT]/PATH[#NAME]" (RFC
// 8484). What a server becomes also depends on its PvD's `encryption`:
//
// - strict (the default when the PvD lists an encrypted server): nothing is
//   sent in the clear. A cleartext address listed beside encrypted ones is
//   asked over TLS on port 853 and its certificate must cover the address
//   (RFC 8310 §8.2: an IP address is a valid authentication domain).
// - opportunistic (RFC 7858 §4.1, RFC 8310 §5): TLS is tried first,
//   unauthenticated where no name is given, and the server's cleartext
//   address is used while TLS cannot be had.
// - off: never encrypted; a DoT server is asked in the clear on port 53 (or
//   the port resolved's "ADDR:PORT#NAME" gave), and DoH cannot be used.

import ipaddr from 'ipaddr.js';
import { domainProblem, normalizeDomain } from '../dns/domain.js';
import { parseSocketAddress, type SocketAddress } from '../config/address.js';

export type ServerTransport = 'udp' | 'tls' | 'https';
export type Encryption = 'strict' | 'opportunistic' | 'off';
export const ENCRYPTIONS = ['strict', 'opportunistic', 'off'] as const;

/** The port of DNS over TLS (RFC 7858 §3.1). */
export const DOT_PORT = 853;
/** The port of DNS over HTTPS unless the URL gives one. */
export const DOH_PORT = 443;

/**
 * UpstreamServer is one server as the pool and transports use it. It is a
 * SocketAddress (host, port, family: where packets go; label: its name in
 * metrics, the API and EDE texts) with how it is spoken to. Each PvD has its
 * own objects: transports key their sockets and connections by them.
 */
export interface UpstreamServer extends SocketAddress {
  readonly transport: ServerTransport;
  /**
   * The name the server's certificate must cover (RFC 8310's authentication
   * domain name; sent as SNI); null: the certificate must cover the address
   * itself (strict), or none is checked (opportunistic).
   */
  readonly authName: string | null;
  /** Whether the certificate is checked at all: false only for an opportunistic server with no name. */
  readonly authenticate: boolean;
  /** https: the URL's path, and query if any ("/dns-query"). */
  readonly path: string | null;
  /**
   * https: the URL's host when it is a name, not an address; `host` is then
   * that name and `family` 4 until the transport resolves it through the
   * same PvD's other servers (RFC 8484 §10: never another PvD's).
   */
  readonly hostName: string | null;
  /** opportunistic: the cleartext address used while encryption fails; null: never in the clear. */
  readonly fallback: SocketAddress | null;
}

/** isEncryptedForm says whether a server as written asks for encryption (tls://, https:// or ADDR#NAME). */
export function isEncryptedForm(text: string): boolean {
  const t = text.trim();
  return t.startsWith('tls://') || t.startsWith('https://') || t.includes('#');
}

/** defaultEncryption is a PvD's mode when it names none: strict when it lists an encrypted server, else off. */
export function defaultEncryption(servers: readonly string[]): Encryption {
  return servers.some(isEncryptedForm) ? 'strict' : 'off';
}

function cleartext(a: SocketAddress): UpstreamServer {
  return { ...a, transport: 'udp', authName: null, authenticate: false, path: null, hostName: null, fallback: null };
}

function address(host: string, port: number, family: 4 | 6): SocketAddress {
  return { host, port, family, label: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

function tls(a: SocketAddress, name: string | null, mode: Encryption, clear: SocketAddress): UpstreamServer {
  const label = `tls://${a.label}${name ? `#${name}` : ''}`;
  return {
    ...a,
    label,
    transport: 'tls',
    authName: name,
    // RFC 8310 §5: the opportunistic profile does not require authentication; with a name it is still tried.
    authenticate: mode === 'strict' || name !== null,
    path: null,
    hostName: null,
    fallback: mode === 'opportunistic' ? clear : null,
  };
}

/** nameProblem checks an authentication domain name. */
function nameProblem(name: string, text: string): string | null {
  const p = domainProblem(name);
  return p ? `the name after "#" in ${JSON.stringify(text)} ${p}` : null;
}

/**
 * parseServer reads one server as written, for a PvD in `mode`; an error
 * message instead when it is none of the forms. An https server with
 * `mode` off is an error: DoH has no cleartext form.
 */
export function parseServer(text: string, mode: Encryption): UpstreamServer | string {
  const t = text.trim();
  if (t.startsWith('https://')) return parseHttps(t, text, mode);
  if (t.startsWith('tls://')) {
    const [addr, name] = splitName(t.slice('tls://'.length));
    const a = parseSocketAddress(addr, DOT_PORT);
    if (typeof a === 'string') return `${JSON.stringify(text)}: ${a}`;
    if (name !== null) {
      const p = nameProblem(name, text);
      if (p) return p;
    }
    const clear = address(a.host, 53, a.family);
    if (mode === 'off') return cleartext(clear);
    return tls(a, name === null ? null : normalizeDomain(name), mode, clear);
  }
  const [addr, name] = splitName(t);
  if (name !== null) {
    // systemd-resolved's form: the port, when given, is the one it would use for this server (DoT or not).
    const a = parseSocketAddress(addr, DOT_PORT);
    if (typeof a === 'string') return a;
    const p = nameProblem(name, text);
    if (p) return p;
    const given = /\]:\d+$|^[^:\]]+:\d+$/.test(addr.trim());
    if (mode === 'off') return cleartext(given ? a : address(a.host, 53, a.family));
    // The cleartext fallback of an opportunistic server: its given port, unless that is DoT's own.
    return tls(a, normalizeDomain(name), mode, given && a.port !== DOT_PORT ? a : address(a.host, 53, a.family));
  }
  const a = parseSocketAddress(t, 53);
  if (typeof a === 'string') return a;
  if (mode === 'off') return cleartext(a);
  // Strict: over TLS, authenticated by the address; opportunistic: over TLS if it can, else as written.
  return tls(address(a.host, DOT_PORT, a.family), null, mode, a);
}

function splitName(t: string): [string, string | null] {
  const at = t.indexOf('#');
  return at < 0 ? [t, null] : [t.slice(0, at), t.slice(at + 1)];
}

function parseHttps(t: string, text: string, mode: Encryption): UpstreamServer | string {
  const quoted = JSON.stringify(text);
  if (mode === 'off') return `${quoted} is DNS over HTTPS, which has no cleartext form: the PvD's encryption is off`;
  const [rest, name] = splitName(t);
  let url: URL;
  try {
    url = new URL(rest);
  } catch {
    return `${quoted} is not a URL (https://HOST[:PORT]/PATH[#NAME])`;
  }
  if (url.username || url.password) return `${quoted} carries credentials, which DNS over HTTPS does not use`;
  if (url.pathname === '/' && !rest.replace(/^https:\/\/[^/]+/, '').startsWith('/')) {
    return `${quoted} has no path: write the server's URI template path, e.g. https://dns.example/dns-query`;
  }
  if (rest.includes('{')) {
    return `${quoted} is a URI template: write the path without "{?dns}" (pvdns uses POST)`;
  }
  const port = url.port === '' ? DOH_PORT : Number(url.port);
  let host = url.hostname;
  let family: 4 | 6 = 4;
  let hostName: string | null = null;
  if (host.startsWith('[')) {
    host = ipaddr.parse(host.slice(1, -1)).toString();
    family = 6;
  } else if (ipaddr.IPv4.isValidFourPartDecimal(host)) {
    host = ipaddr.parse(host).toString();
  } else {
    const p = domainProblem(host);
    if (p) return `the host of ${quoted} ${p}`;
    hostName = normalizeDomain(host);
    host = hostName;
  }
  if (name !== null) {
    const p = nameProblem(name, text);
    if (p) return p;
  }
  const authName = name !== null ? normalizeDomain(name) : hostName;
  const hostPart = family === 6 ? `[${host}]` : host;
  const path = url.pathname + url.search;
  const label = `https://${hostPart}${port === DOH_PORT ? '' : `:${port}`}${path}${name !== null ? `#${authName}` : ''}`;
  // Opportunistic: the server's cleartext port when its host is an address.
  const fallback = mode === 'opportunistic' && hostName === null ? address(host, 53, family) : null;
  return { host, port, family, label, transport: 'https', authName, authenticate: mode === 'strict' || authName !== null, path, hostName, fallback };
}

/** serverFormProblem says what is wrong with a server as written, or null (checked with each mode that could apply). */
export function serverFormProblem(text: string): string | null {
  const r = parseServer(text, 'strict');
  return typeof r === 'string' ? r : null;
}

/**
 * How a PvD's server was learned: written in the configuration, announced
 * through the API or a PvD file, read from the host (resolved,
 * NetworkManager, resolv.conf), from a Router Advertisement's RDNSS, by
 * Discovery of Designated Resolvers (RFC 9462), or announced by the network
 * as an encrypted resolver (DNR, RFC 9463).
 */
export type Learned = 'config' | 'api' | 'file' | 'host' | 'ra' | 'ddr' | 'dnr';

/**
 * cleartextOf is the address a server answers in the clear: the server
 * itself when it is cleartext, an opportunistic server's fallback, else the
 * encrypted server's address on port 53. Null for a DoH server named by a
 * host name (no address to ask before the name is resolved). What a captive
 * PvD's portal names are asked through, and what DDR asks (RFC 9462 §4).
 */
export function cleartextOf(s: UpstreamServer): UpstreamServer | null {
  if (s.transport === 'udp') return s;
  if (s.fallback !== null) return cleartext(s.fallback);
  if (s.hostName !== null) return null;
  return cleartext(address(s.host, 53, s.family));
}
