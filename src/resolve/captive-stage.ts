// The captive-portal stage: keeps a captive PvD's answers out of the cache.
// It runs after coalescing, so it sees each upstream answer once, before the
// cache keeps it. An answer from a PvD that is captive, or one holding an
// address known to be its portal's, is marked ANSWER_CAPTIVE: the cache
// stage does not keep it and the API reports `captive: true`. Every A and
// AAAA answer is shown to the detector, which may probe on what it sees.

import { ANSWER_CAPTIVE, type Answer } from '../dns/answer.js';
import { RCODE, TYPE } from '../dns/constants.js';
import type { CaptiveTracker } from '../captive/tracker.js';
import type { Pvd } from '../pvd/model.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

export class CaptiveStage implements Stage {
  readonly name = 'captive';

  constructor(
    private readonly captive: CaptiveTracker,
    /** Whether the PvD claims the name (a zone of its own): its private addresses are its own business there. */
    private readonly owns: (pvd: Pvd, nameKey: string) => boolean,
  ) {}

  handle(q: Query, next: Next): Result {
    const pvd = q.pvd!;
    // The state as the query leaves: an answer whose query left while the PvD was
    // captive, or across a change of state, is not trusted after it (a portal's
    // answer arriving just after the login must not be cached).
    const captive = this.captive.isCaptive(pvd);
    const epoch = this.captive.epoch(pvd);
    const r = next(q);
    return isPromise(r) ? r.then((a) => this.inspect(q, a, captive, epoch)) : this.inspect(q, r, captive, epoch);
  }

  private inspect(q: Query, a: Answer, wasCaptive: boolean, epoch: number): Answer {
    const pvd = q.pvd!;
    let rewritten = false;
    if ((q.qtype === TYPE.A || q.qtype === TYPE.AAAA) && a.rcode === RCODE.NOERROR && a.an > 0 && this.captive.watching(pvd)) {
      // A name the query was routed to the PvD by is one of its own; only a forced query needs the route table.
      const owned = q.route !== null ? q.route.zone !== null : this.owns(pvd, q.nameKey);
      rewritten = this.captive.noteAnswer(pvd, q.nameKey, a, owned);
    }
    if (rewritten || wasCaptive || this.captive.isCaptive(pvd) || this.captive.epoch(pvd) !== epoch) a.flags |= ANSWER_CAPTIVE;
    return a;
  }
}
