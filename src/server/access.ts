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
      // process() turns ::ffff:192.0.2.1 (a v4 client on a dual-stack socket) into 192.0.2.1.
      addr = ipaddr.process(address.split('%', 1)[0]!);
    } catch {
      return false;
    }
    return this.ranges.some(([net, len]) => net.kind() === addr.kind() && addr.match(net, len));
  }
}
