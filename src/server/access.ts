// Which clients pvdns serves (access.allow); the rest get REFUSED. The
// decision is memoised per client address: a busy client costs one Map
// lookup per query, not a walk over the prefixes.

import ipaddr from 'ipaddr.js';
import { parsePrefix } from '../config/address.js';

const MEMO_LIMIT = 10_000;

export class AccessList {
  private readonly ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  private readonly memo = new Map<string, boolean>();

  constructor(allow: readonly string[]) {
    this.ranges = allow.map((cidr) => {
      const r = parsePrefix(cidr);
      if (typeof r === 'string') throw new Error(r);
      return r;
    });
  }

  /** allows says whether a client address (as the socket reports it) may be served. */
  allows(address: string): boolean {
    const known = this.memo.get(address);
    if (known !== undefined) return known;
    const ok = this.check(address);
    if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
    this.memo.set(address, ok);
    return ok;
  }

  private check(address: string): boolean {
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = parseClient(address);
    } catch {
      return false;
    }
    return this.ranges.some(([net, len]) => net.kind() === addr.kind() && addr.match(net, len));
  }
}

/**
 * parseClient reads a socket's peer address. An IPv4-mapped address (a v4
 * client on a dual-stack socket) is that IPv4 client; any other IPv6 address,
 * the deprecated IPv4-compatible ::a.b.c.d included (RFC 4291 §2.5.5.1), is
 * an IPv6 client — ipaddr.js alone would take ::127.0.0.1 for loopback.
 */
function parseClient(text: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const plain = text.split('%', 1)[0]!;
  if (!plain.includes(':')) return ipaddr.IPv4.parse(plain);
  const hex = plain.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const v6 = ipaddr.IPv6.parse(hex);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}
