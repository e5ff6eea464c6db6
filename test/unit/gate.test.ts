// RouteGate: while a source holds it, queries wait before they are routed;
// they go on when it is released, or when the hold's bound passes.

import { describe, expect, it } from 'vitest';
import type { Answer } from '../../src/dns/answer.js';
import { RouteGate } from '../../src/resolve/gate.js';
import type { Query } from '../../src/resolve/query.js';

const q = {} as Query;
const answer = {} as Answer;

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
    await new Promise((res) => setTimeout(res, 5));
    expect(routed).toBe(0);
    b();
    await expect(r).resolves.toBe(answer);
    expect(routed).toBe(1);
    expect(gate.closed).toBe(false);
  });

  it('opens by itself when a hold is never released (at most 100 ms)', async () => {
    const gate = new RouteGate();
    gate.hold(20);
    const started = performance.now();
    await gate.handle(q, () => answer);
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
    expect(gate.expired).toBe(1);
    gate.hold(10_000);
    const again = performance.now();
    await gate.handle(q, () => answer);
    expect(performance.now() - again).toBeLessThan(1000);
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
