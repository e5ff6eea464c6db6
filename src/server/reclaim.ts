// Memory handed back when pvdns goes quiet after growing (issue 19).
//
// A flood grows the process by 60-90 MiB that neither V8 nor glibc hands
// back while it idles: V8 keeps the old-space pages it emptied and its young
// generation at full size, and the arenas its GC and compiler threads
// malloc from keep their free pages. The reclaimer watches for the end of a
// burst without a clock of its own: the first query after a quiet spell arms
// one timer; when it fires and no query came in the meantime, and RSS has
// grown by at least `minGrowthBytes` since the last reclaim, it asks for the
// reclaim (src/native/memory.ts: a full compacting GC and malloc_trim),
// which takes some milliseconds of the event loop: so only once quiet, at
// most once per `minIntervalMs` (start-up's garbage, reclaimed once, does not
// count), and never while queries come (a query re-arms the timer instead).
// An idle pvdns has no timer at all.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CollectedValue } from '../metrics/collected.js';

/** Told of every query; cheap enough for the hot path. */
export interface Activity {
  touch(): void;
}

/** The activity of a handler nobody watches. */
export const NO_ACTIVITY: Activity = { touch: () => undefined };

export interface ReclaimerOptions {
  /** Hands memory back; false when this process cannot. */
  reclaim: () => boolean;
  /** The process's resident set size, bytes. */
  rss: () => number;
  now?: () => number;
  /** How long without a query counts as quiet. */
  quietMs?: number;
  /** Growth of RSS since the last reclaim that is worth one. */
  minGrowthBytes?: number;
  /** The least time between two reclaims. */
  minIntervalMs?: number;
}

export const QUIET_MS = 2000;
export const MIN_GROWTH_BYTES = 8 * 2 ** 20;
export const MIN_INTERVAL_MS = 30_000;

export class IdleReclaimer implements Activity {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  /** RSS right after the last reclaim; 0 before the first, so start-up's garbage goes too. */
  private baseline = 0;
  private lastAt = -Infinity;
  private readonly now: () => number;
  private readonly quietMs: number;
  private readonly minGrowth: number;
  private readonly minInterval: number;
  /** Reclaims done, and the RSS they handed back (bytes), for pvdns_memory_reclaims_total. */
  reclaims = 0;
  reclaimedBytes = 0;
  /** Where a reclaim is noted (debug level). */
  log: Logger | null = null;

  constructor(private readonly opts: ReclaimerOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.quietMs = opts.quietMs ?? QUIET_MS;
    this.minGrowth = opts.minGrowthBytes ?? MIN_GROWTH_BYTES;
    this.minInterval = opts.minIntervalMs ?? MIN_INTERVAL_MS;
  }

  /** touch notes a query: it arms the quiet timer when none is armed. */
  touch(): void {
    if (this.timer !== null) this.busy = true;
    else this.arm(this.quietMs);
  }

  /** armed says whether the timer exists (an idle reclaimer has none). */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** stop drops the timer (shutdown). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    this.busy = false;
    this.timer = setTimeout(() => this.check(), ms);
    this.timer.unref();
  }

  private check(): void {
    this.timer = null;
    if (this.busy) {
      this.arm(this.quietMs);
      return;
    }
    const before = this.opts.rss();
    if (before < this.baseline + this.minGrowth) return;
    const wait = this.lastAt + this.minInterval - this.now();
    if (wait > 0) {
      this.arm(wait);
      return;
    }
    const started = this.now();
    if (!this.opts.reclaim()) return;
    const ended = this.now();
    // The first reclaim is start-up's garbage (App.start arms it): a one-off, so it does not hold
    // back the reclaim after the first burst of queries.
    if (this.reclaims > 0) this.lastAt = ended;
    const after = this.opts.rss();
    this.baseline = after;
    this.reclaims++;
    this.reclaimedBytes += Math.max(0, before - after);
    this.log?.debug({ rssBefore: before, rssAfter: after, ms: Math.round(ended - started) }, 'memory handed back after a quiet spell');
  }
}

/** registerReclaimMetrics adds pvdns_memory_reclaims_total and pvdns_memory_reclaimed_bytes_total. */
export function registerReclaimMetrics(registry: Registry, r: IdleReclaimer): void {
  new CollectedValue('pvdns_memory_reclaims_total', 'Times pvdns handed memory back (a compacting GC and malloc_trim) after a quiet spell that followed growth.', 'counter', () => [
    { labels: {}, value: r.reclaims },
  ]).register(registry);
  new CollectedValue('pvdns_memory_reclaimed_bytes_total', 'Resident memory those reclaims handed back, bytes.', 'counter', () => [{ labels: {}, value: r.reclaimedBytes }]).register(registry);
}
