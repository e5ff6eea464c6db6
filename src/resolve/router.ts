// The router stage: picks the PvD a query is answered in. A claimed name
// goes only to the PvDs that claim it and unclaimed names to the default
// PvDs, in order; when one fails (SERVFAIL) the next of the same route is
// tried, so a name never reaches a PvD outside its route (RFC 7556 §5.2.1).
// The decision depends on the name alone, so the A and AAAA queries of one
// lookup land in the same PvD (RFC 8801 §3.4.4).

import { ANSWER_TRANSIENT, errorAnswer, type Answer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import type { Pvd } from '../pvd/model.js';
import type { Query } from './query.js';
import type { RouteTable } from './routes.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

const NO_DEFAULT = errorAnswer(RCODE.SERVFAIL, {
  code: EDE.NO_REACHABLE_AUTHORITY,
  text: 'no default PvD with DNS servers for names no PvD claims',
});

export class Router implements Stage {
  readonly name = 'router';

  constructor(
    private readonly routes: () => RouteTable,
    /**
     * Whether a default PvD may serve names nobody claims now: it has a
     * server that is not down, and it is not behind a captive portal.
     */
    private readonly eligible: (pvd: Pvd) => boolean = () => true,
  ) {}

  handle(q: Query, next: Next): Result {
    if (q.forced !== null) {
      q.pvd = q.forced;
      return next(q);
    }
    const route = q.route ?? (q.route = this.routes().match(q.nameKey));
    let pvds = route.pvds;
    if (pvds.length === 0) return NO_DEFAULT;
    // Names nobody claims skip default PvDs whose servers are all down or
    // that are captive, while another can serve them; with none, they stay
    // (a captive PvD must still reach its portal). A claimed name stays with
    // its claimants whatever their state.
    if (route.zone === null && pvds.length > 1 && !pvds.every(this.eligible)) {
      const working = pvds.filter(this.eligible);
      if (working.length > 0) pvds = working;
    }
    q.pvd = pvds[0]!;
    const r = next(q);
    return pvds.length === 1 ? r : this.failover(q, pvds, 0, r, next);
  }

  private failover(q: Query, pvds: readonly Pvd[], i: number, r: Result, next: Next): Result {
    const after = (a: Answer): Result => {
      // A shed query (upstream.maxInflight, a bound over all PvDs) would be shed by the next PvD too.
      if (a.rcode !== RCODE.SERVFAIL || a.flags & ANSWER_TRANSIENT || i + 1 >= pvds.length) return a;
      q.pvd = pvds[i + 1]!;
      q.server = null;
      return this.failover(q, pvds, i + 1, next(q), next);
    };
    return isPromise(r) ? r.then(after) : after(r);
  }
}
