// PvdRegistry: the PvDs the host is attached to right now. Sources announce
// and withdraw; the router, the cache and (later) the API subscribe to its
// events. Nothing here knows about queries. A source that changes many PvDs
// at once (a configuration of 16,000, a folder of files) does it in one
// batch: listeners that rebuild from list() hear 'changed' once, not once
// per PvD (which made start-up and check-config quadratic).

import { EventEmitter } from 'node:events';
import type { Pvd } from './model.js';

/** Why a PvD left. */
export type WithdrawReason = 'withdrawn' | 'expired' | 'replaced';

interface RegistryEvents {
  announced: [pvd: Pvd];
  updated: [pvd: Pvd, previous: Pvd];
  withdrawn: [pvd: Pvd, reason: WithdrawReason];
  /** Any of the above; listeners that rebuild from list() need only this. */
  changed: [];
}

/** Longest delay setTimeout takes (about 24.8 days); later expiries re-arm. */
const MAX_TIMER_MS = 0x7fffffff;

/** PvdRegistry holds the current PvDs by id and withdraws them when they expire (RFC 8801 §4.3). */
export class PvdRegistry extends EventEmitter<RegistryEvents> {
  private readonly byId = new Map<string, Pvd>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Open batch() calls; while above 0, events wait in `pending`. */
  private depth = 0;
  private pending: Array<() => void> = [];
  private changes = 0;

  constructor(private readonly now: () => number = Date.now) {
    super();
  }

  /** announce adds a PvD, or replaces the one with the same id. A PvD already expired is refused. */
  announce(pvd: Pvd): 'announced' | 'updated' | 'expired' {
    if (pvd.expiresAt !== null && pvd.expiresAt <= this.now()) return 'expired';
    const previous = this.byId.get(pvd.id);
    this.byId.set(pvd.id, pvd);
    this.changes++;
    this.armExpiry(pvd);
    this.notify(previous ? () => this.emit('updated', pvd, previous) : () => this.emit('announced', pvd));
    return previous ? 'updated' : 'announced';
  }

  /** withdraw removes a PvD; false when there was none with that id. */
  withdraw(id: string, reason: WithdrawReason = 'withdrawn'): boolean {
    const key = id.toLowerCase().replace(/\.$/, '');
    const pvd = this.byId.get(key);
    if (!pvd) return false;
    this.byId.delete(key);
    this.changes++;
    this.clearTimer(key);
    this.notify(() => this.emit('withdrawn', pvd, reason));
    return true;
  }

  /**
   * batch runs `fn`, which may announce and withdraw many PvDs, and tells
   * listeners afterwards: each announced, updated and withdrawn event in the
   * order the changes were made, then 'changed' once (as for one change:
   * the PvD's own event first, so what its listeners learn, e.g. a
   * configured Pref64, is in the routes 'changed' rebuilds). The registry
   * itself changes at once: get() and list() inside `fn` see it.
   */
  batch<T>(fn: () => T): T {
    this.depth++;
    try {
      return fn();
    } finally {
      if (--this.depth === 0) this.flush();
    }
  }

  private notify(event: () => void): void {
    if (this.depth > 0) {
      this.pending.push(event);
      return;
    }
    event();
    this.emit('changed');
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    for (const e of events) e();
    this.emit('changed');
  }

  get(id: string): Pvd | undefined {
    return this.byId.get(id.toLowerCase().replace(/\.$/, ''));
  }

  /** list returns the PvDs in declaration order. */
  list(): Pvd[] {
    return [...this.byId.values()].sort((a, b) => a.order - b.order);
  }

  /**
   * generation counts the changes made (each announce, update and withdrawal,
   * an expiry too): a source that noted it can tell, without listening,
   * whether the registry changed since (the PvD directory skips its work
   * when neither the folder nor the registry did).
   */
  get generation(): number {
    return this.changes;
  }

  get size(): number {
    return this.byId.size;
  }

  /** close stops the expiry timers. */
  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private armExpiry(pvd: Pvd): void {
    this.clearTimer(pvd.id);
    if (pvd.expiresAt === null) return;
    const delay = Math.min(Math.max(0, pvd.expiresAt - this.now()), MAX_TIMER_MS);
    const timer = setTimeout(() => {
      this.timers.delete(pvd.id);
      if (this.byId.get(pvd.id) !== pvd) return;
      if (pvd.expiresAt! <= this.now()) this.withdraw(pvd.id, 'expired');
      else this.armExpiry(pvd);
    }, delay);
    timer.unref();
    this.timers.set(pvd.id, timer);
  }

  private clearTimer(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }
}
