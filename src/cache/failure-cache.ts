// FailureCache: questions whose resolution just failed in a PvD, answered
// SERVFAIL from here for a while instead of asking dead servers again
// (RFC 9520's failure caching; RFC 2308 §7: never longer than five minutes).
// The hold-down starts at one second and doubles while the same question
// keeps failing, up to five minutes.

import { LRUCache } from 'lru-cache';
import type { Answer } from '../dns/answer.js';
import { errorAnswer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';

/** RFC 9520: at least one second. */
export const FIRST_HOLD_MS = 1000;
/** RFC 2308 §7.1 / RFC 9520: never more than five minutes. */
export const MAX_HOLD_MS = 300_000;

interface Failure {
  pvdTag: number;
  until: number;
  holdMs: number;
  /** Until when a new failure counts as "again", doubling the hold-down. */
  rememberUntil: number;
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
    const holdMs = prev !== undefined && now < prev.rememberUntil ? Math.min(prev.holdMs * 2, MAX_HOLD_MS) : FIRST_HOLD_MS;
    const why = failed.ede?.text ?? 'resolution failed';
    this.lru.set(key, {
      pvdTag,
      until: now + holdMs,
      holdMs,
      rememberUntil: now + holdMs + MAX_HOLD_MS,
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
