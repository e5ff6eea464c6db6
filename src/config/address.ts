// Socket addresses and prefixes as they are written in configuration:
// "192.0.2.1", "192.0.2.1:53", "2001:db8::1", "[2001:db8::1]:53",
// "[fe80::1%eth0]:53"; prefixes in CIDR notation.

import ipaddr from 'ipaddr.js';

/** SocketAddress is a parsed IP literal with a port. */
export interface SocketAddress {
  host: string;
  port: number;
  family: 4 | 6;
  /** The canonical text form: "192.0.2.1:53" or "[2001:db8::1]:53". */
  label: string;
}

/**
 * parseSocketAddress reads an IP literal with an optional port, returning an
 * error message instead when it is not one. Host names are refused: a DNS
 * server or listener cannot be found by name without DNS.
 */
export function parseSocketAddress(text: string, defaultPort: number): SocketAddress | string {
  let host = text.trim();
  let port = defaultPort;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (/^[^:]+:\d+$/.test(host)) {
    const i = host.lastIndexOf(':');
    port = Number(host.slice(i + 1));
    host = host.slice(0, i);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `port out of range in "${text}"`;
  const [addr, zone] = host.split('%', 2) as [string, string | undefined];
  if (!ipaddr.isValid(addr)) return `"${text}" is not an IP address with an optional port`;
  const parsed = ipaddr.parse(addr);
  const family = parsed.kind() === 'ipv6' ? 6 : 4;
  if (family === 4 && !ipaddr.IPv4.isValidFourPartDecimal(addr)) return `"${text}" is not a dotted-quad IPv4 address`;
  const canonical = parsed.toString() + (zone ? `%${zone}` : '');
  return { host: canonical, port, family, label: family === 6 ? `[${canonical}]:${port}` : `${canonical}:${port}` };
}

/** parsePrefix reads a CIDR prefix, or returns an error message. */
export function parsePrefix(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | string {
  try {
    const t = text.trim();
    // The family by its colon: ipaddr.parseCIDR tries IPv6 first and throws on every IPv4 prefix,
    // which was a tenth of check-config's time with 16,000 PvDs.
    const [addr, len] = t.includes(':') ? ipaddr.IPv6.parseCIDR(t) : ipaddr.IPv4.parseCIDR(t);
    if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text.trim().split('/')[0]!)) {
      return `"${text}" is not a dotted-quad IPv4 prefix`;
    }
    return [addr, len];
  } catch {
    return `"${text}" is not a prefix in CIDR notation (address/length)`;
  }
}

/** isIpLiteral says whether `text` is a bare IPv4 or IPv6 address. */
export function isIpLiteral(text: string): boolean {
  return ipaddr.isValid(text.split('%', 1)[0]!);
}

/** socketAddress builds a SocketAddress from a bound socket's address and port. */
export function socketAddress(host: string, port: number): SocketAddress {
  const family = host.includes(':') ? 6 : 4;
  return { host, port, family, label: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

/** isWildcard says whether a listener's address is the wildcard of its family (0.0.0.0 or ::). */
export function isWildcard(a: SocketAddress): boolean {
  return a.host === '0.0.0.0' || a.host === '::';
}

/**
 * sharesPort says whether two listeners cannot both be bound on this host:
 * the same port (not 0, which the kernel picks) and family, and the same
 * address or a wildcard in either. Measured on Linux: pvdns binds without
 * SO_REUSEADDR on UDP, and Node's TCP listeners (SO_REUSEADDR) still may not
 * share a listening port with a wildcard; IPv6 listeners are IPv6-only, so
 * [::]:53 and 0.0.0.0:53 do not clash.
 */
export function sharesPort(a: SocketAddress, b: SocketAddress): boolean {
  return a.port !== 0 && a.port === b.port && a.family === b.family && (a.host === b.host || isWildcard(a) || isWildcard(b));
}
