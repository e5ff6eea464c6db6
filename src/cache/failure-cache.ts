// FailureCache: questions whose resolution just failed in a PvD, answered
// SERVFAIL from here for a moment instead of asking again at once (RFC 9520's
// failure caching: at least one second, §3.2).
//
// Kept short, because on a lossy network a failure is often bad luck, and a
// name that is fixed upstream should work again within seconds: the hold-down
// starts at one second and doubles while the same question keeps failing, up
// to MAX_HOLD_MS, and never longer than the failure has been seen (a question
// that failed once is held one second, not minutes). One upstream exchange
// is one failure: the queries that shared it (coalesced) all bring the same
// answer object, noted once. A PvD's failures are dropped when one of its
// servers answers again after being down (app.ts), since they were its
// silence.

import { LRUCache } from 'lru-cache';
import type { Answer } from '../dns/answer.js';
import { errorAnswer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';

/** RFC 9520 §3.2: at least one second. */
export const FIRST_HOLD_MS = 1000;
/** The longest hold-down: a fixed name works again within this (RFC 9520 allows up to five minutes). */
export const MAX_HOLD_MS = 2000;
/** A failure this long after the last one starts over at FIRST_HOLD_MS. */
const FORGET_AFTER_MS = 60_000;

interface Failure {
  pvdTag: number;
  until: number;
  holdMs: number;
  /** When this question was first seen failing, in its current run of failures. */
  firstAt: number;
  /** The SERVFAIL that was noted: the same one noted again is the same exchange. */
  source: Answer;
  answer: Answer;
}

export class FailureCache {
  private readonly lru: LRUCache<string, Failure>;

  constructor(maxEntries: number, private readonly now: () => number = Date.now) {
    this.lru = new LRUCache<string, Failure>({ max: Math.max(1, maxEntries) });
  }

  /** get returns the cached SERVFAIL (EDE 13) while the hold-down lasts. */
  get(key: string): Answer | undefined {
    const f = this.lru.get(key);
    return f !== undefined && this.now() < f.until ? f.answer : undefined;
  }

  /** note remembers a failed resolution; `failed` is the SERVFAIL it produced. */
  note(key: string, pvdTag: number, failed: Answer): void {
    const now = this.now();
    const prev = this.lru.get(key);
    if (prev !== undefined && prev.source === failed) return; // another waiter on the same exchange
    const again = prev !== undefined && now - prev.until < FORGET_AFTER_MS;
    const firstAt = again ? prev.firstAt : now;
    // Doubling while it keeps failing, but never longer than it has been seen failing.
    const holdMs = again ? Math.min(prev.holdMs * 2, MAX_HOLD_MS, Math.max(FIRST_HOLD_MS, now - firstAt)) : FIRST_HOLD_MS;
    const why = failed.ede?.text ?? 'resolution failed';
    this.lru.set(key, {
      pvdTag,
      until: now + holdMs,
      holdMs,
      firstAt,
      source: failed,
      answer: errorAnswer(RCODE.SERVFAIL, { code: EDE.CACHED_ERROR, text: `${why} [cached for ${holdMs / 1000} s]`.slice(0, 400) }),
    });
  }

  /** forget drops a question that resolved again. */
  forget(key: string): void {
    this.lru.delete(key);
  }

  dropPvd(pvdTag: number): void {
    const doomed: string[] = [];
    for (const [k, f] of this.lru.entries()) if (f.pvdTag === pvdTag) doomed.push(k);
    for (const k of doomed) this.lru.delete(k);
  }

  clear(): void {
    this.lru.clear();
  }
}
