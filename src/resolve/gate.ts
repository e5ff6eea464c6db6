// RouteGate: a barrier in front of the router. A PvD source that has heard
// of a change but not yet read it (a D-Bus call it sees, a file event) holds
// the gate; queries that reach it meanwhile wait, and are routed by the new
// route table once the source has applied it. Without it, a query for a
// zone a VPN is just announcing could go to another network in the
// milliseconds the source needs to read the change (a leak of a private
// name).
//
// What it may cost queries is bounded twice: the gate stays closed at most
// MAX_HOLD_MS at a time (holds that overlap, a source that never releases:
// it opens, and the holds then open are void), and at most BUDGET_MS in
// every WINDOW_MS (someone making changes without pause): past that, holds
// are refused until the window ends. A read slowed by a busy machine uses
// some budget; it does not cost the next change its hold.

import type { Query } from './query.js';
import type { Next, Result, Stage } from './stage.js';

/** The longest the gate stays closed at a time. */
export const MAX_HOLD_MS = 100;
/** The most the gate may be closed in one WINDOW_MS. */
export const BUDGET_MS = 250;
export const WINDOW_MS = 1000;

export class RouteGate implements Stage {
  readonly name = 'gate';
  private holds = 0;
  /** Bumped when the gate is forced open: releases of holds taken before are void. */
  private generation = 0;
  private waiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the gate last closed; the current window's start and the time closed in it. */
  private closedAt = 0;
  private windowStart = -Infinity;
  private spent = 0;
  /** Queries that waited at the gate; times it was forced open; holds refused (budget spent). */
  waited = 0;
  forced = 0;
  refused = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** closed is true while some source holds the gate. */
  get closed(): boolean {
    return this.holds > 0;
  }

  /**
   * hold closes the gate until the returned function is called; holds nest,
   * and the gate opens when the last ends (or MAX_HOLD_MS after it closed).
   */
  hold(): () => void {
    const now = this.now();
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now;
      this.spent = 0;
    }
    if (this.spent >= BUDGET_MS) {
      this.refused++;
      return noop;
    }
    const generation = this.generation;
    if (this.holds++ === 0) {
      this.closedAt = now;
      this.timer = setTimeout(() => this.force(), Math.min(MAX_HOLD_MS, BUDGET_MS - this.spent));
      this.timer.unref();
    }
    let done = false;
    return () => {
      if (done || generation !== this.generation) return;
      done = true;
      if (--this.holds === 0) this.open();
    };
  }

  /**
   * handle passes a query on at once while the gate is open; a query that
   * meets it closed waits. A query pinned to one PvD (q.forced) is not
   * routed, so no change can misroute it: it passes. That is how a source
   * holding the gate reads what it is waiting for through a PvD (an RFC 8801
   * PvD's Additional Information server resolved through that PvD).
   */
  handle(q: Query, next: Next): Result {
    if (this.holds === 0 || q.forced) return next(q);
    return this.wait().then(() => next(q));
  }

  /** wait resolves when the gate opens. */
  wait(): Promise<void> {
    this.waited++;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** force opens a gate closed too long: the holds then open are void. */
  private force(): void {
    this.timer = null;
    if (this.holds === 0) return;
    this.forced++;
    this.generation++;
    this.holds = 0;
    this.open();
  }

  private open(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.spent += this.now() - this.closedAt;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const noop = (): void => undefined;
