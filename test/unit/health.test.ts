// ServerHealth (src/upstream/health.ts), the per-server state machine on its
// own: untested → operational on an answer; a timeout makes a server
// suspect and DOWN_AFTER timeouts in a row make it down; a hard negative hint
// (ICMP unreachable) makes it down at once; a down server's probe gap
// doubles from the initial interval up to the maximum; an answer resets it
// all. Times are plain numbers passed in, so nothing sleeps.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { DOWN_AFTER, ServerHealth, SUSPECT_FADES_MS } from '../../src/upstream/health.js';

const TIMING = { initialMs: 100, maxMs: 800 };

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

  it('is suspect after one timeout and down after DOWN_AFTER timeouts in a row', () => {
    expect(DOWN_AFTER).toBe(2);
    const h = new ServerHealth(TIMING);
    h.answered(5, 0);
    expect(h.failed('timeout', 'timeout', 1000)).toBe(true);
    expect(h.state).toBe('suspect');
    expect(h.usable).toBe(true);
    expect(h.lastError).toBe('timeout');
    expect(h.nextProbeAt).toBe(Infinity); // suspect servers are not probed
    expect(h.failed('timeout', 'timeout', 1400)).toBe(true);
    expect(h.state).toBe('down');
    expect(h.usable).toBe(false);
    expect(h.nextProbeAt).toBe(1400 + TIMING.initialMs);
  });

  it('counts only consecutive timeouts: an answer in between starts over', () => {
    const h = new ServerHealth(TIMING);
    h.failed('timeout', 'timeout', 0);
    h.answered(10, 1);
    expect(h.state).toBe('operational');
    expect(h.lastError).toBeNull();
    h.failed('timeout', 'timeout', 2);
    expect(h.state).toBe('suspect');
  });

  it('goes down at once on a hard negative hint, from any state', () => {
    for (const before of ['untested', 'operational', 'suspect'] as const) {
      const h = new ServerHealth(TIMING);
      if (before === 'operational') h.answered(5, 0);
      if (before === 'suspect') h.failed('timeout', 'timeout', 0);
      expect(h.failed('unreachable', 'connection refused', 10)).toBe(true);
      expect(h.state, `from ${before}`).toBe('down');
      expect(h.lastError).toBe('connection refused');
      expect(h.lastFailure).toBe('unreachable');
      expect(h.nextProbeAt).toBe(10 + TIMING.initialMs);
    }
  });

  it('doubles the probe gap after every failed probe, up to the maximum', () => {
    const h = new ServerHealth(TIMING);
    h.failed('unreachable', 'connection refused', 0);
    const gaps: number[] = [h.backoffMs];
    let now = 0;
    for (let i = 0; i < 6; i++) {
      now = h.nextProbeAt + 50; // the probe is sent, and fails 50 ms later
      expect(h.failed('timeout', 'timeout', now, true)).toBe(false); // a failed probe: still down, no state change
      expect(h.nextProbeAt).toBe(now + h.backoffMs);
      gaps.push(h.backoffMs);
    }
    expect(gaps).toEqual([100, 200, 400, 800, 800, 800, 800]);
    expect(h.state).toBe('down');
  });

  it('does not double the gap for queries that were already on their way and fail after the server went down', () => {
    const h = new ServerHealth(TIMING);
    h.failed('timeout', 'timeout', 0);
    h.failed('timeout', 'timeout', 10); // down now: first probe due at 110
    for (let i = 0; i < 8; i++) expect(h.failed('timeout', 'timeout', 20 + i)).toBe(false);
    expect(h.backoffMs).toBe(100);
    expect(h.nextProbeAt).toBe(110);
  });

  it('comes back operational on a probe answer, with the back-off reset', () => {
    const h = new ServerHealth(TIMING);
    h.failed('unreachable', 'connection refused', 0);
    h.failed('unreachable', 'connection refused', 200, true);
    h.failed('unreachable', 'connection refused', 600, true);
    expect(h.backoffMs).toBe(400);
    expect(h.answered(3, 1000)).toBe(true);
    expect(h.state).toBe('operational');
    expect(h.usable).toBe(true);
    expect(h.nextProbeAt).toBe(Infinity);
    expect(h.lastError).toBeNull();
    expect(h.failures).toBe(0);
    // Down again later: the first probe comes after the initial gap again, not 800 ms.
    h.failed('unreachable', 'connection refused', 5000);
    expect(h.nextProbeAt).toBe(5000 + TIMING.initialMs);
  });

  it('ranks operational, untested, suspect, down; a suspect verdict fades to untested', () => {
    const op = new ServerHealth(TIMING);
    op.answered(1, 0);
    const untested = new ServerHealth(TIMING);
    const suspect = new ServerHealth(TIMING);
    suspect.failed('timeout', 'timeout', 0);
    const down = new ServerHealth(TIMING);
    down.failed('unreachable', 'connection refused', 0);
    const now = 1000;
    expect([op, untested, suspect, down].map((h) => h.rank(now))).toEqual([0, 1, 2, 3]);
    expect(suspect.rank(SUSPECT_FADES_MS - 1)).toBe(2);
    expect(suspect.rank(SUSPECT_FADES_MS + 1)).toBe(1);
    expect(down.rank(10 * SUSPECT_FADES_MS)).toBe(3); // down never fades: only a probe brings it back
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
    h.failed('timeout', 'timeout', 2);
    expect(new Date(h.since).toISOString()).toBe('2026-11-25T10:00:09.000Z');
  });
});
