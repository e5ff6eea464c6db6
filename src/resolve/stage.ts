// The one contract every pipeline stage keeps: a function of the query and
// the next stage, returning the answer — synchronously when it can (a cache
// hit never waits for a promise), or as a promise.

import type { Answer } from '../dns/answer.js';
import type { Query } from './query.js';

export type Result = Answer | Promise<Answer>;

/** Next runs the rest of the pipeline. */
export type Next = (q: Query) => Result;

/** Stage is one step of the pipeline; it owns a query or passes it on. */
export interface Stage {
  readonly name: string;
  handle(q: Query, next: Next): Result;
}

/** chain composes stages in order in front of `last`, once, at start-up. */
export function chain(stages: readonly Stage[], last: Next): Next {
  let next = last;
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i]!;
    const after = next;
    next = (q) => stage.handle(q, after);
  }
  return next;
}

/** isPromise tells a pending result from an immediate one without allocating. */
export function isPromise(r: Result): r is Promise<Answer> {
  return typeof (r as Promise<Answer>).then === 'function';
}
