// IdleReclaimer: memory is handed back once queries stop after RSS grew, at
// most once per interval, never while queries come, and an idle pvdns keeps
// no timer for it (issue 19).

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IdleReclaimer } from '../../src/server/reclaim.js';
import { reclaimMemory } from '../../src/native/memory.js';

const MiB = 2 ** 20;

function setup(startRss = 100 * MiB) {
  const state = { rss: startRss, reclaims: 0, can: true };
  const r = new IdleReclaimer({
    reclaim: () => {
      if (!state.can) return false;
      state.reclaims++;
      state.rss = 60 * MiB;
      return true;
    },
    rss: () => state.rss,
    now: () => Date.now(),
    quietMs: 2000,
    minGrowthBytes: 8 * MiB,
    minIntervalMs: 30_000,
  });
  return { r, state };
}

describe('IdleReclaimer', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('reclaims once queries have stopped for the quiet time, not while they come', () => {
    const { r, state } = setup();
    expect(r.armed).toBe(false);
    r.touch();
    expect(r.armed).toBe(true);
    // A query every second for 10 s: never quiet, never reclaimed.
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(1000);
      r.touch();
    }
    expect(state.reclaims).toBe(0);
    vi.advanceTimersByTime(4100);
    expect(state.reclaims).toBe(1);
    expect(r.reclaims).toBe(1);
    expect(r.reclaimedBytes).toBe(40 * MiB);
    // Idle now: no timer left.
    expect(r.armed).toBe(false);
  });

  it('leaves memory alone when RSS grew less than the threshold since the last reclaim', () => {
    const { r, state } = setup();
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(state.reclaims).toBe(1);
    // 60 → 65 MiB: below 8 MiB of growth.
    vi.advanceTimersByTime(60_000);
    state.rss = 65 * MiB;
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(state.reclaims).toBe(1);
    expect(r.armed).toBe(false);
    state.rss = 90 * MiB;
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(state.reclaims).toBe(2);
  });

  it('waits out the least interval between two reclaims, then reclaims if still quiet', () => {
    const { r, state } = setup();
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(state.reclaims).toBe(1);
    // The first (start-up's garbage) does not hold back the one after the first burst.
    state.rss = 120 * MiB;
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(state.reclaims).toBe(2); // at 4.2 s
    state.rss = 120 * MiB;
    r.touch();
    vi.advanceTimersByTime(2100); // 6.3 s: within 30 s of the second
    expect(state.reclaims).toBe(2);
    expect(r.armed).toBe(true);
    vi.advanceTimersByTime(25_000); // 31.3 s
    expect(state.reclaims).toBe(2);
    vi.advanceTimersByTime(3000); // 34.3 s: past 4.2 + 30
    expect(state.reclaims).toBe(3);
  });

  it('counts nothing when this process cannot reclaim', () => {
    const { r, state } = setup();
    state.can = false;
    r.touch();
    vi.advanceTimersByTime(2100);
    expect(r.reclaims).toBe(0);
    expect(r.armed).toBe(false);
  });

  it('stop drops the timer', () => {
    const { r } = setup();
    r.touch();
    r.stop();
    expect(r.armed).toBe(false);
  });
});

describe('reclaimMemory (the addon)', () => {
  it('hands back the memory of garbage the process made', () => {
    // Without the addon (a build without a compiler) there is nothing to test.
    if (!reclaimMemory()) return;
    let junk: unknown[] | null = [];
    for (let i = 0; i < 200_000; i++) junk.push({ i, s: `x${i}` });
    const grown = process.memoryUsage().heapTotal;
    junk = null;
    expect(junk).toBeNull();
    expect(reclaimMemory()).toBe(true);
    expect(process.memoryUsage().heapTotal).toBeLessThan(grown);
  });
});
