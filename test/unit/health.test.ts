// ServerHealth (src/upstream/health.ts), the per-server state machine on its
// own: untested → operational on an answer; an unanswered query makes a
// server suspect, and it is down only when it answered nothing to
// DOWN_AFTER_QUERIES queries sent over DOWN_AFTER_MS since its last answer;
// a hard negative hint (ICMP unreachable) makes it down at once; an answer
// brings it back from anything. The retransmission timeout follows RFC 6298
// (SRTT + 4·RTTVAR, floor and ceiling, doubled per unanswered try). A down
// server's probe gap doubles up to the maximum. Times are plain numbers
// passed in, so nothing sleeps.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { DOWN_AFTER_MS, DOWN_AFTER_QUERIES, INITIAL_RTO_MS, MIN_RTO_MS, ServerHealth, SUSPECT_FADES_MS } from '../../src/upstream/health.js';

const TIMING = { initialMs: 100, maxMs: 800 };

/** silence makes `n` queries, sent `gapMs` apart from `from`, go unanswered (each counted once). */
function silence(h: ServerHealth, n: number, from: number, gapMs: number): number {
  let t = from;
  for (let i = 0; i < n; i++, t += gapMs) h.unansweredTry(t, t + 100, true);
  return t;
}

describe('ServerHealth', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('starts untested and usable, with nothing known', () => {
    const h = new ServerHealth(TIMING);
    expect(h.state).toBe('untested');
    expect(h.usable).toBe(true);
    expect(h.srttMs).toBeNull();
    expect(h.lastError).toBeNull();
    expect(h.nextProbeAt).toBe(Infinity);
  });

  it('becomes operational on an answer and smooths the RTT with a 1/8 gain', () => {
    const h = new ServerHealth(TIMING);
    expect(h.answered(100, 0)).toBe(true);
    expect(h.state).toBe('operational');
    expect(h.srttMs).toBe(100);
    expect(h.answered(20, 1)).toBe(false); // no state change
    expect(h.srttMs).toBe(90); // 100 + (20 - 100) / 8
  });

  it('is suspect after one unanswered query, and not down on a few, however many tries they took', () => {
    const h = new ServerHealth(TIMING);
    h.answered(5, 0);
    expect(h.unansweredTry(10, 300, true)).toBe(true);
    expect(h.state).toBe('suspect');
    expect(h.usable).toBe(true);
    expect(h.lastError).toBe('timeout');
    expect(h.nextProbeAt).toBe(Infinity); // suspect servers are not probed
    // The same query's later tries do not count again.
    for (let t = 400; t < 5000; t += 200) h.unansweredTry(10, t + 100, false);
    expect(h.state).toBe('suspect');
    expect(h.unanswered).toBe(1);
  });

  it(`is down only after ${DOWN_AFTER_QUERIES} queries with no answer over ${DOWN_AFTER_MS} ms since its last answer`, () => {
    expect([DOWN_AFTER_QUERIES, DOWN_AFTER_MS]).toEqual([5, 2000]);
    const many = new ServerHealth(TIMING);
    many.answered(5, 0);
    silence(many, 20, 10, 50); // 20 queries within a second: a burst, not a dead server
    expect(many.state).toBe('suspect');
    const few = new ServerHealth(TIMING);
    few.answered(5, 0);
    silence(few, 4, 10, 1000); // four queries over three seconds
    expect(few.state).toBe('suspect');
    expect(few.unansweredTry(4010, 4110, true)).toBe(true); // the fifth, four seconds after the first
    expect(few.state).toBe('down');
    expect(few.usable).toBe(false);
    expect(few.nextProbeAt).toBe(4110 + TIMING.initialMs);
  });

  it('counts only queries sent since the last answer: an answer in between starts over', () => {
    const h = new ServerHealth(TIMING);
    h.answered(5, 0);
    silence(h, 4, 10, 1000);
    h.answered(5, 3500);
    expect(h.state).toBe('operational');
    expect(h.lastError).toBeNull();
    expect(h.unanswered).toBe(0);
    // A query sent before that answer that times out after it says nothing against the server.
    expect(h.unansweredTry(3400, 3600, true)).toBe(false);
    expect(h.unanswered).toBe(0);
    h.unansweredTry(3600, 3700, true);
    expect(h.state).toBe('suspect');
  });

  it("takes a query's silence for its name's business once the server has answered others since its first try", () => {
    const h = new ServerHealth(TIMING);
    h.answered(0.2, 0);
    // void.example first sent at 10; other names answered at 20, 40, ...; its later tries time out.
    for (let t = 20; t < 3000; t += 20) {
      h.answered(0.2, t);
      expect(h.unansweredTry(10, t + 1, false)).toBe(false);
    }
    expect(h.state).toBe('operational');
    expect(h.unanswered).toBe(0);
    expect(h.rto(1500)).toBe(MIN_RTO_MS); // no back-off either: the server answers
  });

  it('goes down at once on a hard negative hint, from any state', () => {
    for (const before of ['untested', 'operational', 'suspect'] as const) {
      const h = new ServerHealth(TIMING);
      if (before === 'operational') h.answered(5, 0);
      if (before === 'suspect') h.unansweredTry(0, 100, true);
      expect(h.unreachable('connection refused', 10)).toBe(true);
      expect(h.state, `from ${before}`).toBe('down');
      expect(h.lastError).toBe('connection refused');
      expect(h.lastFailure).toBe('unreachable');
      expect(h.nextProbeAt).toBe(10 + TIMING.initialMs);
    }
  });

  it('doubles the probe gap after every failed probe, up to the maximum; each probe waits its gap', () => {
    const h = new ServerHealth(TIMING);
    h.unreachable('connection refused', 0);
    const sent: number[] = [];
    for (let i = 0; i < 6; i++) {
      const at = h.nextProbeAt;
      sent.push(at);
      h.probeFailed('timeout', at, at + h.backoffMs); // no answer within its wait
    }
    expect(sent).toEqual([100, 200, 400, 800, 1600, 2400]);
    expect(h.state).toBe('down');
    // A probe that fails at once (ICMP) does not bring the next one forward.
    h.probeFailed('connection refused', 3000, 3001);
    expect(h.nextProbeAt).toBe(3800);
  });

  it('comes back operational on any answer, with the back-off reset', () => {
    const h = new ServerHealth(TIMING);
    h.unreachable('connection refused', 0);
    h.probeFailed('connection refused', 100, 101);
    h.probeFailed('connection refused', 300, 301);
    expect(h.backoffMs).toBe(400);
    expect(h.answered(3, 1000)).toBe(true);
    expect(h.state).toBe('operational');
    expect(h.usable).toBe(true);
    expect(h.nextProbeAt).toBe(Infinity);
    expect(h.lastError).toBeNull();
    expect(h.unanswered).toBe(0);
    // Down again later: the first probe comes after the initial gap again, not 800 ms.
    h.unreachable('connection refused', 5000);
    expect(h.nextProbeAt).toBe(5000 + TIMING.initialMs);
  });

  it('keeps an RFC 6298 retransmission timeout: floor, ceiling, doubling per try the silent server left unanswered, reset by an answer', () => {
    const h = new ServerHealth(TIMING);
    expect(h.rto(1500)).toBe(INITIAL_RTO_MS);
    expect(h.rto(200)).toBe(200); // never past the ceiling
    h.answered(100, 0); // SRTT 100, RTTVAR 50: RTO 300
    expect(h.rto(1500)).toBe(300);
    h.answered(100, 1); // RTTVAR 37.5: RTO 250
    expect(h.rto(1500)).toBe(250);
    const fast = new ServerHealth(TIMING);
    fast.answered(0.2, 0);
    expect(fast.rto(1500)).toBe(MIN_RTO_MS); // loopback: the floor
    fast.unansweredTry(1, 60, true);
    expect(fast.rto(1500)).toBe(2 * MIN_RTO_MS);
    fast.unansweredTry(1, 160, false);
    expect(fast.rto(1500)).toBe(4 * MIN_RTO_MS);
    for (let i = 0; i < 20; i++) fast.unansweredTry(1, 300 + i, false);
    expect(fast.rto(1500)).toBe(1500);
    fast.answered(0.2, 400);
    expect(fast.rto(1500)).toBe(MIN_RTO_MS);
  });

  it('ranks operational, untested, suspect, down; a suspect verdict fades to untested', () => {
    const op = new ServerHealth(TIMING);
    op.answered(1, 0);
    const untested = new ServerHealth(TIMING);
    const suspect = new ServerHealth(TIMING);
    suspect.unansweredTry(0, 0, true);
    const down = new ServerHealth(TIMING);
    down.unreachable('connection refused', 0);
    const now = 1000;
    expect([op, untested, suspect, down].map((h) => h.rank(now))).toEqual([0, 1, 2, 3]);
    expect(suspect.rank(SUSPECT_FADES_MS - 1)).toBe(2);
    expect(suspect.rank(SUSPECT_FADES_MS + 1)).toBe(1);
    expect(down.rank(10 * SUSPECT_FADES_MS)).toBe(3); // down never fades: an answer brings it back
  });

  it('stamps `since` on a state change only', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-11-25T10:00:00Z') });
    const h = new ServerHealth(TIMING);
    vi.setSystemTime(new Date('2026-11-25T10:00:05Z'));
    h.answered(1, 0);
    expect(new Date(h.since).toISOString()).toBe('2026-11-25T10:00:05.000Z');
    vi.setSystemTime(new Date('2026-11-25T10:00:09Z'));
    h.answered(1, 1);
    expect(new Date(h.since).toISOString()).toBe('2026-11-25T10:00:05.000Z');
    h.unansweredTry(2, 3, true);
    expect(new Date(h.since).toISOString()).toBe('2026-11-25T10:00:09.000Z');
  });
});
