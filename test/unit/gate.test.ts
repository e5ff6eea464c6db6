// RouteGate: while a source holds it, queries wait before they are routed;
// they go on when it is released, or when it has been closed 100 ms; a
// source that keeps holding gets no more holds for a while.

import { describe, expect, it } from 'vitest';
import type { Answer } from '../../src/dns/answer.js';
import { BUDGET_MS, MAX_HOLD_MS, RouteGate, WINDOW_MS } from '../../src/resolve/gate.js';
import type { Query } from '../../src/resolve/query.js';

const q = {} as Query;
const answer = {} as Answer;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('RouteGate', () => {
  it('passes queries on at once, without a promise, while open', () => {
    const gate = new RouteGate();
    expect(gate.handle(q, () => answer)).toBe(answer);
    expect(gate.waited).toBe(0);
  });

  it('holds queries until the last of nested holds is released', async () => {
    const gate = new RouteGate();
    const a = gate.hold();
    const b = gate.hold();
    let routed = 0;
    const r = gate.handle(q, () => (routed++, answer));
    expect(r).toBeInstanceOf(Promise);
    a();
    a(); // a second release of the same hold changes nothing
    await sleep(5);
    expect(routed).toBe(0);
    b();
    await expect(r).resolves.toBe(answer);
    expect(routed).toBe(1);
    expect(gate.closed).toBe(false);
  });

  it(`opens by itself ${MAX_HOLD_MS} ms after it closed, however the holds overlap; the holds then open are void`, async () => {
    const gate = new RouteGate();
    gate.hold(); // never released
    const started = performance.now();
    // A source that keeps holding: a new hold every 10 ms, each released 30 ms later.
    const flood = setInterval(() => {
      const release = gate.hold();
      setTimeout(release, 30);
    }, 10);
    await gate.handle(q, () => answer);
    clearInterval(flood);
    expect(performance.now() - started).toBeGreaterThanOrEqual(MAX_HOLD_MS - 5);
    expect(performance.now() - started).toBeLessThan(MAX_HOLD_MS + 400);
    expect(gate.forced).toBeGreaterThanOrEqual(1);
  });

  it(`refuses holds once ${BUDGET_MS} ms of a ${WINDOW_MS} ms window were spent closed, until the window ends`, () => {
    let now = 0;
    const gate = new RouteGate(() => now);
    for (const [from, to] of [
      [0, 100],
      [100, 200],
      [200, 260],
    ]) {
      now = from!;
      const release = gate.hold();
      expect(gate.closed).toBe(true);
      now = to!;
      release();
    }
    now = 270;
    const refused = gate.hold();
    expect(gate.closed).toBe(false);
    expect(gate.refused).toBe(1);
    refused();
    expect(gate.handle(q, () => answer)).toBe(answer);
    now = WINDOW_MS + 1;
    const later = gate.hold();
    expect(gate.closed).toBe(true);
    later();
    expect(gate.closed).toBe(false);
  });

  it('lets a query pinned to one PvD pass while closed: it is not routed (an RA PvD resolving its own information server)', () => {
    const gate = new RouteGate();
    const release = gate.hold();
    const pinned = { forced: {} } as Query;
    expect(gate.handle(pinned, () => answer)).toBe(answer);
    expect(gate.waited).toBe(0);
    expect(gate.handle(q, () => answer)).toBeInstanceOf(Promise);
    release();
  });
});
