// RouteGate: a barrier in front of the router. A PvD source that has heard
// of a change but not yet read it (a D-Bus signal, a netlink message) holds
// the gate; queries that reach the router meanwhile wait, and are routed by
// the new route table once the source has applied it. Without it, a query
// for a zone a VPN is just announcing could go to another network in the
// milliseconds the source needs to read the change (a leak of a private
// name). A hold ends when released or after its bound, whichever is first,
// so a source that never answers delays queries by at most that bound.

import type { Query } from './query.js';
import type { Next, Result, Stage } from './stage.js';

/** The longest a hold may delay queries. */
export const MAX_HOLD_MS = 100;

export class RouteGate implements Stage {
  readonly name = 'gate';
  private holds = 0;
  private waiters: Array<() => void> = [];
  /** How many queries waited at the gate, and how many holds ran to their bound. */
  waited = 0;
  expired = 0;

  /** closed is true while some source holds the gate. */
  get closed(): boolean {
    return this.holds > 0;
  }

  /**
   * hold closes the gate until the returned function is called, or until
   * `maxMs` passes. Holds nest: the gate opens when the last one ends.
   */
  hold(maxMs = MAX_HOLD_MS): () => void {
    this.holds++;
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (--this.holds === 0) this.open();
    };
    const timer = setTimeout(() => {
      this.expired++;
      release();
    }, Math.min(maxMs, MAX_HOLD_MS));
    timer.unref();
    return release;
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

  private open(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
