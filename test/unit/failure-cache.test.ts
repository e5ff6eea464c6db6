// FailureCache (src/cache/failure-cache.ts) with an injected clock: a failed
// question is answered SERVFAIL with EDE 13 for one second, the hold-down
// doubling while it keeps failing, never past MAX_HOLD_MS and never longer
// than the failure has been seen; one exchange (one answer object, however
// many queries waited on it) is one failure; a success clears it; entries
// are per PvD.

import { beforeEach, describe, expect, it } from 'vitest';
import { answerKey } from '../../src/cache/answer-cache.js';
import { FailureCache, FIRST_HOLD_MS, MAX_HOLD_MS } from '../../src/cache/failure-cache.js';
import { errorAnswer, type Answer } from '../../src/dns/answer.js';
import { EDE, RCODE } from '../../src/dns/constants.js';
import { wireKey } from '../../src/dns/name.js';

/** failed is a new SERVFAIL each time, as each upstream exchange brings its own. */
const failed = (): Answer => errorAnswer(RCODE.SERVFAIL, { code: EDE.NO_REACHABLE_AUTHORITY, text: 'pvd wifi: all servers unreachable (127.0.0.1:53 timeout)' });
const key = (tag: number, name = 'www.example'): string => answerKey(tag, wireKey(name), 1, 1, 0);

describe('FailureCache', () => {
  let now = 1_000_000;
  let fc: FailureCache;
  beforeEach(() => {
    now = 1_000_000;
    fc = new FailureCache(100, () => now);
  });

  it('answers a failed question SERVFAIL with EDE 13 for one second', () => {
    expect(FIRST_HOLD_MS).toBe(1000);
    expect(fc.get(key(1))).toBeUndefined();
    fc.note(key(1), 1, failed());
    const a = fc.get(key(1));
    expect(a?.rcode).toBe(RCODE.SERVFAIL);
    expect(a?.ede?.code).toBe(EDE.CACHED_ERROR);
    expect(a?.ede?.text).toBe('pvd wifi: all servers unreachable (127.0.0.1:53 timeout) [cached for 1 s]');
    now += 999;
    expect(fc.get(key(1))).toBeDefined();
    now += 1;
    expect(fc.get(key(1))).toBeUndefined();
  });

  it('doubles the hold-down while the question keeps failing, never past MAX_HOLD_MS nor longer than it has been failing', () => {
    const holds: number[] = [];
    for (let i = 0; i < 6; i++) {
      fc.note(key(1), 1, failed());
      let held = 0;
      // Find how long it is held, in whole seconds.
      while (fc.get(key(1)) !== undefined) {
        now += 1000;
        held += 1000;
      }
      holds.push(held / 1000);
    }
    // The second failure comes one second after the first: held one second, as long as it has been seen failing.
    expect(holds).toEqual([1, 1, 2, 2, 2, 2]);
    expect(MAX_HOLD_MS).toBe(2000);
  });

  it('counts one exchange once, however many queries waited on it', () => {
    const shared = failed();
    for (let i = 0; i < 10; i++) fc.note(key(1), 1, shared);
    expect(fc.get(key(1))?.ede?.text).toMatch(/\[cached for 1 s\]$/);
    now += 1000;
    expect(fc.get(key(1))).toBeUndefined();
    for (let i = 0; i < 10; i++) fc.note(key(1), 1, shared); // late waiters of the same exchange: nothing new
    expect(fc.get(key(1))).toBeUndefined();
  });

  it('starts over at one second after a success', () => {
    fc.note(key(1), 1, failed());
    now += 1000;
    fc.note(key(1), 1, failed());
    now += 1000;
    fc.note(key(1), 1, failed());
    expect(fc.get(key(1))?.ede?.text).toMatch(/\[cached for 2 s\]$/);
    now += 2000;
    fc.forget(key(1));
    fc.note(key(1), 1, failed());
    expect(fc.get(key(1))?.ede?.text).toMatch(/\[cached for 1 s\]$/);
    now += 1000;
    expect(fc.get(key(1))).toBeUndefined();
  });

  it('starts over at one second when the last failure is long past', () => {
    fc.note(key(1), 1, failed());
    now += 1000;
    fc.note(key(1), 1, failed());
    now += 1000;
    fc.note(key(1), 1, failed()); // 2 s
    now += 2000 + 60_000; // remembered no longer
    fc.note(key(1), 1, failed());
    expect(fc.get(key(1))?.ede?.text).toMatch(/\[cached for 1 s\]$/);
  });

  it('keeps failures per PvD: the same question in another PvD is not held', () => {
    fc.note(key(1), 1, failed());
    expect(fc.get(key(1))).toBeDefined();
    expect(fc.get(key(2))).toBeUndefined();
    fc.note(key(2), 2, failed());
    fc.note(key(1, 'mail.example'), 1, failed());
    fc.dropPvd(1);
    expect(fc.get(key(1))).toBeUndefined();
    expect(fc.get(key(1, 'mail.example'))).toBeUndefined();
    expect(fc.get(key(2))).toBeDefined();
    fc.clear();
    expect(fc.get(key(2))).toBeUndefined();
  });

  it('says why when the failure had no EDE, and keeps the text within 400 characters', () => {
    fc.note(key(1), 1, errorAnswer(RCODE.SERVFAIL));
    expect(fc.get(key(1))?.ede?.text).toBe('resolution failed [cached for 1 s]');
    fc.note(key(2), 2, errorAnswer(RCODE.SERVFAIL, { code: 22, text: 'x'.repeat(500) }));
    expect(fc.get(key(2))?.ede?.text.length).toBe(400);
  });
});
