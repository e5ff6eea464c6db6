// Coalescing: N identical queries in flight in one PvD cause one upstream
// query (RFC 5452 §5: several outstanding identical queries make spoofing
// easier). Runs after the cache stage, whose key it shares.

import type { Answer } from '../dns/answer.js';
import type { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

export class Coalesce implements Stage {
  readonly name = 'coalesce';
  private readonly inflight = new Map<string, Promise<Answer>>();

  handle(q: Query, next: Next): Result {
    const key = q.cacheKey;
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    const r = next(q);
    if (!isPromise(r)) return r;
    this.inflight.set(key, r);
    const done = (): void => {
      if (this.inflight.get(key) === r) this.inflight.delete(key);
    };
    r.then(done, done);
    return r;
  }

  /** size is the number of distinct questions in flight. */
  get size(): number {
    return this.inflight.size;
  }
}
