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
    // One then() both forgets the question and passes the answer on.
    const forget = (): void => {
      if (this.inflight.get(key) === shared) this.inflight.delete(key);
    };
    const shared: Promise<Answer> = r.then(
      (a) => (forget(), a),
      (err: unknown) => {
        forget();
        throw err;
      },
    );
    this.inflight.set(key, shared);
    return shared;
  }

  /** size is the number of distinct questions in flight. */
  get size(): number {
    return this.inflight.size;
  }
}
