// DNS rebinding protection per PvD (rebindProtection, as dnsmasq's
// stop-dns-rebind, applied per PvD; MIF problem statement §4.1): an answer
// from a PvD that puts a private, loopback or link-local address on a name
// the PvD does not own, outside the address prefixes it announced, is
// refused — a web page's name must not turn into an address on the user's
// own network. It runs after coalescing and last on the way back, so it
// sees every upstream answer once, as the client would get it.

import { errorAnswer, type Answer } from '../dns/answer.js';
import { EDE, RCODE, TYPE } from '../dns/constants.js';
import ipaddr from 'ipaddr.js';
import { addressesOf, isSpecialAddress } from '../captive/evidence.js';
import type { Pvd } from '../pvd/model.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

export class RebindStage implements Stage {
  readonly name = 'rebind';
  private readonly ranges = new WeakMap<Pvd, Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>>();

  constructor(
    /** Whether the PvD claims the name (a zone of its own): its private addresses are its own business there. */
    private readonly owns: (pvd: Pvd, nameKey: string) => boolean,
    /** Refused answers per PvD id, for pvdns_rebind_blocked_total. */
    private readonly blocked: Map<string, number>,
  ) {}

  handle(q: Query, next: Next): Result {
    const pvd = q.pvd!;
    if (!pvd.rebindProtection || (q.qtype !== TYPE.A && q.qtype !== TYPE.AAAA && q.qtype !== TYPE.ANY)) return next(q);
    const r = next(q);
    return isPromise(r) ? r.then((a) => this.check(q, pvd, a)) : this.check(q, pvd, r);
  }

  private check(q: Query, pvd: Pvd, a: Answer): Answer {
    if (a.rcode !== RCODE.NOERROR || a.an === 0) return a;
    const inside = this.inside(pvd);
    const rebound = addressesOf(a).find((x) => isSpecialAddress(x) && !inside(x));
    if (rebound === undefined || this.owns(pvd, q.nameKey)) return a;
    this.blocked.set(pvd.id, (this.blocked.get(pvd.id) ?? 0) + 1);
    return errorAnswer(RCODE.REFUSED, { code: EDE.BLOCKED, text: `pvd ${pvd.identifier}: ${rebound} for a name it does not own (DNS rebinding protection)` });
  }

  /** inside says whether an address lies in one of the PvD's announced prefixes. */
  private inside(pvd: Pvd): (address: string) => boolean {
    let ranges = this.ranges.get(pvd);
    if (ranges === undefined) this.ranges.set(pvd, (ranges = pvd.prefixes.map((p) => ipaddr.parseCIDR(p))));
    const list = ranges;
    return (address) => {
      const addr = ipaddr.process(address);
      return list.some(([net, len]) => net.kind() === addr.kind() && addr.match([net, len] as never));
    };
  }
}
