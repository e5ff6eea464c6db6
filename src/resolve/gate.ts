// RouteGate: a barrier in front of the router. A PvD source that has heard
// of a change but not yet read it (a D-Bus call it sees, a file event) holds
// the gate; queries that reach it meanwhile wait, and are routed by the new
// route table once the source has applied it. Without it, a query for a
// zone a VPN is just announcing could go to another network in the
// milliseconds the source needs to read the change (a leak of a private
// name).
//
// The gate never costs more than MAX_HOLD_MS at a time: once it has been
// closed that long without a break (holds that overlap, a source that never
// releases, someone making changes without pause), it opens, every hold then
// open is void, and for COOLDOWN_MS new holds are refused — a flood of
// changes costs queries at most MAX_HOLD_MS in every COOLDOWN_MS.

import type { Query } from './query.js';
import type { Next, Result, Stage } from './stage.js';

/** The longest the gate stays closed at a time. */
export const MAX_HOLD_MS = 100;
/** After the gate was forced open, how long holds are refused. */
export const COOLDOWN_MS = 1000;

export class RouteGate implements Stage {
  readonly name = 'gate';
  private holds = 0;
  /** Bumped when the gate is forced open: releases of holds taken before are void. */
  private generation = 0;
  private waiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  private refuseUntil = 0;
  /** Queries that waited at the gate; times it was forced open. */
  waited = 0;
  forced = 0;

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
    if (this.now() < this.refuseUntil) return noop;
    const generation = this.generation;
    if (this.holds++ === 0) {
      this.timer = setTimeout(() => this.force(), MAX_HOLD_MS);
      this.timer.unref();
    }
    let done = false;
    return () => {
      if (done || generation !== this.generation) return;
      done = true;
      if (--this.holds === 0) this.open();
    };
  }

  /** handle passes a query on at once while the gate is open; a query that meets it closed waits. */
  handle(q: Query, next: Next): Result {
    if (this.holds === 0) return next(q);
    return this.wait().then(() => next(q));
  }

  /** wait resolves when the gate opens. */
  wait(): Promise<void> {
    this.waited++;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** force opens a gate closed for MAX_HOLD_MS: the holds then open are void, and new ones refused a while. */
  private force(): void {
    this.timer = null;
    if (this.holds === 0) return;
    this.forced++;
    this.generation++;
    this.holds = 0;
    this.refuseUntil = this.now() + COOLDOWN_MS;
    this.open();
  }

  private open(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const noop = (): void => undefined;
