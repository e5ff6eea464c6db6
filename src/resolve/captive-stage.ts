// The captive-portal stage: keeps a captive PvD's answers out of the cache,
// and keeps a captive PvD with encrypted servers from leaking.
//
// It runs after coalescing, so it sees each upstream answer once, before the
// cache keeps it. An answer from a PvD that is captive, or one holding an
// address known to be its portal's, is marked ANSWER_CAPTIVE: the cache
// stage does not keep it and the API reports `captive: true`. Every A and
// AAAA answer is shown to the detector, which may probe on what it sees.
//
// A captive PvD whose queries go encrypted (DoT, DoH, designated resolvers)
// cannot reach its encrypted resolver until the user logs in. Its portal's
// own names (the RFC 8908 API's host and names under it) go to its
// cleartext servers, and only those, so the user can log in; with
// `encryption: strict` every other name is answered SERVFAIL with an EDE
// saying where to log in and nothing else leaves in the clear; with
// opportunistic encryption the other names go in the clear too, and the API
// says so (captiveCleartext). The probes that tell when the portal opens go
// in the clear by themselves (App.askPvd).

import { ANSWER_CAPTIVE, ANSWER_TRANSIENT, errorAnswer, type Answer } from '../dns/answer.js';
import { EDE, RCODE, TYPE } from '../dns/constants.js';
import type { CaptiveTracker } from '../captive/tracker.js';
import type { Pvd } from '../pvd/model.js';
import type { Encryption } from '../upstream/server.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

/** What the stage did with a captive PvD's queries, per PvD id (pvdns_captive_queries_total). */
export type CaptiveAction = 'portal' | 'cleartext' | 'refused';

export class CaptiveStage implements Stage {
  readonly name = 'captive';
  constructor(
    private readonly captive: CaptiveTracker,
    /** Whether the PvD claims the name (a zone of its own): its private addresses are its own business there. */
    private readonly owns: (pvd: Pvd, nameKey: string) => boolean,
    /** How the PvD's queries are protected now; null when they go in the clear anyway (see Forwarder.encrypted). */
    private readonly encryption: (pvd: Pvd) => Encryption | null = () => null,
    /** Queries of captive encrypted PvDs by what was done with them: PvD id → action → count (kept across reloads by the owner). */
    readonly actions = new Map<string, Map<CaptiveAction, number>>(),
  ) {}

  handle(q: Query, next: Next): Result {
    const pvd = q.pvd!;
    // The state as the query leaves: an answer whose query left while the PvD was
    // captive, or across a change of state, is not trusted after it (a portal's
    // answer arriving just after the login must not be cached).
    const captive = this.captive.isCaptive(pvd);
    if (captive && !q.clear) {
      const mode = this.encryption(pvd);
      if (mode !== null) {
        if (this.captive.portalName(pvd, q.nameKey)) this.count(pvd, 'portal');
        else if (mode === 'strict') return this.refuse(pvd);
        else this.count(pvd, 'cleartext');
        q.clear = true;
      }
    }
    const epoch = this.captive.epoch(pvd);
    const r = next(q);
    return isPromise(r) ? r.then((a) => this.inspect(q, a, captive, epoch)) : this.inspect(q, r, captive, epoch);
  }

  /** refuse answers a strict captive PvD's query: SERVFAIL naming the PvD and where to log in. */
  private refuse(pvd: Pvd): Answer {
    this.count(pvd, 'refused');
    const at = this.captive.loginAt(pvd);
    const text = `pvd ${pvd.identifier}: captive portal, ${at === null ? 'log in through the network\'s portal' : `log in at ${at}`} (encryption: strict sends nothing else in the clear)`;
    // Transient: not remembered as a failure, so the first query after the login is asked.
    return errorAnswer(RCODE.SERVFAIL, { code: EDE.NETWORK_ERROR, text }, ANSWER_TRANSIENT | ANSWER_CAPTIVE);
  }

  private count(pvd: Pvd, action: CaptiveAction): void {
    let m = this.actions.get(pvd.id);
    if (m === undefined) this.actions.set(pvd.id, (m = new Map()));
    m.set(action, (m.get(action) ?? 0) + 1);
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
