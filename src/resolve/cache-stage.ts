// The cache stage: answers from the PvD's own cache entries, or asks the
// rest of the pipeline and keeps what it may. It runs after the router (the
// key needs the PvD) and before coalescing (a hit never waits).
//
// Failures are remembered too (failure-cache.ts): a question that just failed
// in a PvD is answered SERVFAIL with EDE 13 for a while instead of asking dead
// servers again. With cache.serveStale, a failure is answered with the PvD's
// own expired answer instead, if it has one (RFC 8767) — never another PvD's.
// Answers marked captive (captive-stage.ts) are never kept.

import { ANSWER_CAPTIVE, ANSWER_TRANSIENT, type Answer } from '../dns/answer.js';
import { FLAG_CD, RCODE } from '../dns/constants.js';
import { answerKey, nxdomainKey, type AnswerCache } from '../cache/answer-cache.js';
import type { FailureCache } from '../cache/failure-cache.js';
import type { Pvd } from '../pvd/model.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

export class CacheStage implements Stage {
  readonly name = 'cache';

  constructor(
    private readonly cache: AnswerCache,
    private readonly failures: FailureCache,
    /** Whether a PvD is still attached: an answer that arrives after its PvD was withdrawn is not kept. */
    private readonly attached: (pvd: Pvd) => boolean,
  ) {}

  handle(q: Query, next: Next): Result {
    const pvd = q.pvd!;
    const tag = pvd.tag;
    const flags = (q.dnssecOk ? 1 : 0) | (q.flags & FLAG_CD ? 2 : 0);
    const key = (q.cacheKey = answerKey(tag, q.nameKey, q.qtype, q.qclass, flags));
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      q.cache = 'hit';
      return hit;
    }
    // On a miss the name may still be cached as NXDOMAIN for another type.
    const nxKey = nxdomainKey(tag, q.nameKey, q.qclass, flags);
    const nx = this.cache.nxdomains > 0 ? this.cache.get(nxKey) : undefined;
    if (nx !== undefined) {
      q.cache = 'hit';
      return nx;
    }
    const failed = this.failures.get(key);
    if (failed !== undefined) {
      q.cache = 'hit';
      return this.stale(key, nxKey, failed) ?? failed;
    }
    q.cache = 'miss';
    const r = next(q);
    const keep = (a: Answer): Answer => {
      if (a.rcode === RCODE.SERVFAIL) {
        if (this.attached(pvd) && !(a.flags & ANSWER_TRANSIENT)) this.failures.note(key, tag, a);
        return this.stale(key, nxKey, a) ?? a;
      }
      this.failures.forget(key);
      // A captive PvD's answers may be its portal's rewrites: passed on, never kept.
      this.cache.admit(key, nxKey, tag, a, this.attached(pvd) && !(a.flags & ANSWER_CAPTIVE));
      return a;
    };
    return isPromise(r) ? r.then(keep) : keep(r);
  }

  /** stale is the PvD's expired answer for the question, when serve-stale is on and it has one. */
  private stale(key: string, nxKey: string, failure: Answer): Answer | undefined {
    const why = `stale answer: ${failure.ede?.text ?? 'resolution failed'}`.slice(0, 400);
    return this.cache.stale(key, why) ?? this.cache.stale(nxKey, why);
  }
}
