// The cache stage: answers from the PvD's own cache entries, or asks the
// rest of the pipeline and keeps what it may. It runs after the router (the
// key needs the PvD) and before coalescing (a hit never waits).

import type { Answer } from '../dns/answer.js';
import { FLAG_CD } from '../dns/constants.js';
import { answerKey, nxdomainKey, type AnswerCache } from '../cache/answer-cache.js';
import type { Pvd } from '../pvd/model.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

export class CacheStage implements Stage {
  readonly name = 'cache';

  constructor(
    private readonly cache: AnswerCache,
    /** Whether a PvD is still attached: an answer that arrives after its PvD was withdrawn is not kept. */
    private readonly attached: (pvd: Pvd) => boolean,
  ) {}

  handle(q: Query, next: Next): Result {
    const tag = q.pvd!.tag;
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
    q.cache = 'miss';
    const pvd = q.pvd!;
    const r = next(q);
    const keep = (a: Answer): Answer => {
      this.cache.admit(key, nxKey, tag, a, this.attached(pvd));
      return a;
    };
    return isPromise(r) ? r.then(keep) : keep(r);
  }
}
