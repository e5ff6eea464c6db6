// Local names: answered here, never sent to any PvD.
//   localhost and *.localhost → 127.0.0.1 / ::1, other types NODATA (RFC 6761 §6.3)
//   invalid and *.invalid     → NXDOMAIN (RFC 6761 §6.4)
//   RFC 6303 zones            → an empty zone: NXDOMAIN below the apex, SOA/NS at it
//                                (unless a PvD's prefixes own the space: the route table decides)
// The route table is consulted here once; the router reuses the decision.

import { AnswerBuilder, LOCAL_TTL, pointerTo, type Answer } from '../dns/answer.js';
import { RCODE, TYPE } from '../dns/constants.js';
import { encodeName, wireKey } from '../dns/name.js';
import type { Query } from './query.js';
import type { Route, RouteTable } from './routes.js';
import type { Next, Result, Stage } from './stage.js';

/** TTL of the empty zones' SOA and NS, as in RFC 6303 §3's example zone. */
const ZONE_TTL = 10800;
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
    // A query forced into one PvD asks it even for the RFC 6303 zones; localhost and invalid never leave the host.
    if (route.local === null || (q.forced !== null && route.local === 'empty')) return next(q);
    return localAnswer(q, route);
  }
}

/** localAnswer builds the answer for a name in a local zone. */
export function localAnswer(q: Query, route: Route): Answer {
  const zoneAt = q.nameKey.length - route.zoneKey.length;
  const apex = zoneAt === 0;
  const b = new AnswerBuilder();
  switch (route.local) {
    case 'localhost':
      if (q.qtype === TYPE.A || q.qtype === TYPE.ANY) b.add(0, 0, TYPE.A, LOCAL_TTL, LOOPBACK4);
      if (q.qtype === TYPE.AAAA || q.qtype === TYPE.ANY) b.add(0, 0, TYPE.AAAA, LOCAL_TTL, LOOPBACK6);
      break;
    case 'invalid':
      return withSoa(b, zoneAt).build(RCODE.NXDOMAIN, undefined, ZONE_TTL);
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

function withSoa(b: AnswerBuilder, zoneAt: number): AnswerBuilder {
  return b.add(1, zoneAt, TYPE.SOA, ZONE_TTL, soaRdata(zoneAt));
}

/** RFC 6303 §3: "@ SOA @ nobody.invalid. 1 3600 1200 604800 10800". */
function soaRdata(zoneAt: number): Buffer {
  const counters = Buffer.allocUnsafe(20);
  counters.writeUInt32BE(1, 0);
  counters.writeUInt32BE(3600, 4);
  counters.writeUInt32BE(1200, 8);
  counters.writeUInt32BE(604800, 12);
  counters.writeUInt32BE(ZONE_TTL, 16);
  return Buffer.concat([pointerTo(zoneAt), NOBODY_INVALID, counters]);
}
