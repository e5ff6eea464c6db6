// Local names: answered here, never sent to any PvD.
//   localhost and *.localhost → 127.0.0.1 / ::1, other types NODATA (RFC 6761 §6.3)
//   invalid and *.invalid     → NXDOMAIN (RFC 6761 §6.4)
//   resolver.arpa and below   → NODATA, SOA/NS at the apex: pvdns designates no
//                                encrypted resolver of its own (RFC 9462 §4, §6.4)
//   RFC 6303 zones            → an empty zone: NXDOMAIN below the apex, SOA/NS at it
//                                (unless a PvD's prefixes own the space: the route table decides)
//   .local, 254.169.in-addr.arpa, [89ab].e.f.ip6.arpa
//                             → NXDOMAIN with EDE 21: multicast DNS's names (RFC 6762 §22.1
//                                item 4), unless a PvD lists the zone in its dnsZones
//   test and *.test           → NXDOMAIN with EDE 0 (RFC 6761 §6.2 item 4), unless a PvD
//                                claims it or forwardTestNames is set
//   home.arpa and below       → its local network's PvDs; with none, NXDOMAIN with EDE 22
//                                (RFC 8375 §4 item 4B), except DS at the apex (see below)
// The route table is consulted here once; the router reuses the decision.

import { AnswerBuilder, LOCAL_TTL, pointerTo, type Answer } from '../dns/answer.js';
import { EDE, RCODE, TYPE } from '../dns/constants.js';
import { encodeName, wireKey } from '../dns/name.js';
import type { Query } from './query.js';
import type { LocalKind, Route, RouteTable } from './routes.js';
import type { Next, Result, Stage } from './stage.js';

/** TTL of the empty zones' SOA and NS, as in RFC 6303 §3's example zone. */
const ZONE_TTL = 10800;
/**
 * TTL and negative TTL of home.arpa's NXDOMAIN: short, since a local
 * network's PvD may come (a Wi-Fi joined) at any time.
 */
const HOME_TTL = 60;
const NOBODY_INVALID = encodeName('nobody.invalid');
const LOCALHOST_WIRE = encodeName('localhost');
const LOOPBACK4 = Buffer.from([127, 0, 0, 1]);
const LOOPBACK6 = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** The reverse names of the loopback addresses answer PTR localhost, as /etc/hosts would. */
const LOOPBACK_PTR = new Set([wireKey('1.0.0.127.in-addr.arpa'), wireKey(`1.${'0.'.repeat(31)}ip6.arpa`)]);

/** LocalNames is the stage that answers local names. */
export class LocalNames implements Stage {
  readonly name = 'local';

  constructor(private readonly routes: () => RouteTable) {}

  handle(q: Query, next: Next): Result {
    const route = (q.route = this.routes().match(q.nameKey));
    // RFC 8375 §4 item 4B: "a query for a DS record with the DO bit set MUST return the correct
    // answer", the arpa zone's proof that home.arpa is an insecure delegation: asked as any name.
    if (route.special === 'home' && q.qtype === TYPE.DS && q.nameKey.length === route.zoneKey.length) {
      if (route.local !== null) q.route = this.routes().defaultRoute;
      return next(q);
    }
    if (q.forced !== null) {
      // A query forced into one PvD asks it even for the RFC 6303 zones; localhost, invalid and
      // resolver.arpa never leave the host, and special-use names go only to a PvD their route holds.
      if (route.local === 'empty' || (route.local === null && (route.special === null || route.pvds.includes(q.forced)))) return next(q);
      return localAnswer(q, route, route.local ?? route.special!);
    }
    if (route.local === null) return next(q);
    return localAnswer(q, route);
  }
}

/** localAnswer builds the answer for a name in a local zone, answered as `kind` (the route's own by default). */
export function localAnswer(q: Query, route: Route, kind: LocalKind = route.local!): Answer {
  const zoneAt = q.nameKey.length - route.zoneKey.length;
  const apex = zoneAt === 0;
  const b = new AnswerBuilder();
  switch (kind) {
    case 'localhost':
      if (q.qtype === TYPE.A || q.qtype === TYPE.ANY) b.add(0, 0, TYPE.A, LOCAL_TTL, LOOPBACK4);
      if (q.qtype === TYPE.AAAA || q.qtype === TYPE.ANY) b.add(0, 0, TYPE.AAAA, LOCAL_TTL, LOOPBACK6);
      break;
    case 'invalid':
      return withSoa(b, zoneAt).build(RCODE.NXDOMAIN, undefined, ZONE_TTL);
    case 'mdns':
      return withEde(withSoa(b, zoneAt).build(RCODE.NXDOMAIN, undefined, ZONE_TTL), EDE.NOT_SUPPORTED, `${route.zone} is multicast DNS's (RFC 6762), which pvdns does not do; no PvD lists it in dnsZones`);
    case 'test':
      return withEde(withSoa(b, zoneAt).build(RCODE.NXDOMAIN, undefined, ZONE_TTL), EDE.OTHER, 'test is for testing (RFC 6761 §6.2): no PvD claims it, and forwardTestNames is off');
    case 'home':
      return withEde(withSoa(b, zoneAt, HOME_TTL).build(RCODE.NXDOMAIN, undefined, HOME_TTL), EDE.NO_REACHABLE_AUTHORITY, `home.arpa is the home network's (RFC 8375): no PvD of a local network${q.forced === null ? '' : ` (${q.forced.identifier} is none)`} to ask`);
    case 'resolver':
      // RFC 9462 §6.4: NODATA for every name under resolver.arpa, _dns.resolver.arpa SVCB included
      // (§4: no designation); the zone is a locally served one (RFC 6303 §3), with SOA and NS at its apex.
      if (apex && (q.qtype === TYPE.SOA || q.qtype === TYPE.ANY)) b.add(0, 0, TYPE.SOA, ZONE_TTL, soaRdata(zoneAt));
      if (apex && (q.qtype === TYPE.NS || q.qtype === TYPE.ANY)) b.add(0, 0, TYPE.NS, ZONE_TTL, pointerTo(0));
      break;
    case 'empty': {
      const loopback = LOOPBACK_PTR.has(q.nameKey);
      if (!apex && !loopback) return withSoa(b, zoneAt).build(RCODE.NXDOMAIN, undefined, ZONE_TTL);
      if (loopback && (q.qtype === TYPE.PTR || q.qtype === TYPE.ANY)) b.add(0, 0, TYPE.PTR, LOCAL_TTL, LOCALHOST_WIRE);
      if (apex && (q.qtype === TYPE.SOA || q.qtype === TYPE.ANY)) b.add(0, 0, TYPE.SOA, ZONE_TTL, soaRdata(zoneAt));
      if (apex && (q.qtype === TYPE.NS || q.qtype === TYPE.ANY)) b.add(0, 0, TYPE.NS, ZONE_TTL, pointerTo(0));
      break;
    }
  }
  const answer = b.build(RCODE.NOERROR);
  if (answer.an > 0) return answer;
  // NODATA: the zone's SOA in the authority section (RFC 2308 §2.2).
  return withSoa(new AnswerBuilder(), zoneAt).build(RCODE.NOERROR, undefined, ZONE_TTL);
}

function withSoa(b: AnswerBuilder, zoneAt: number, ttl = ZONE_TTL): AnswerBuilder {
  return b.add(1, zoneAt, TYPE.SOA, ttl, soaRdata(zoneAt, ttl));
}

/** withEde says why (RFC 8914): the special-use names a user may not expect pvdns to answer itself. */
function withEde(a: Answer, code: number, text: string): Answer {
  a.ede = { code, text };
  return a;
}

/** RFC 6303 §3: "@ SOA @ nobody.invalid. 1 3600 1200 604800 10800" (`minimum` the last). */
function soaRdata(zoneAt: number, minimum = ZONE_TTL): Buffer {
  const counters = Buffer.allocUnsafe(20);
  counters.writeUInt32BE(1, 0);
  counters.writeUInt32BE(3600, 4);
  counters.writeUInt32BE(1200, 8);
  counters.writeUInt32BE(604800, 12);
  counters.writeUInt32BE(minimum, 16);
  return Buffer.concat([pointerTo(zoneAt), NOBODY_INVALID, counters]);
}
