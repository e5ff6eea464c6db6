// The process metrics (prom-client's defaults: CPU, memory, heap, handles,
// file descriptors, GC, and the event loop's delay), registered so that an
// idle pvdns never wakes up for them.
//
// prom-client's own collectDefaultMetrics() starts perf_hooks'
// monitorEventLoopDelay with a 10 ms resolution when it is called: a libuv
// timer that fires 100 times a second for the life of the process, queries
// or not — measured, 25 of the 27 clock ticks an idle pvdns spent per minute
// (issue 19). Here every other default metric is prom-client's, unchanged;
// the event-loop delay series keep their names but the histogram behind them
// runs only while there is something to measure: it starts at a scrape that
// finds queries answered since the scrape before, and stops at a scrape that
// finds none, or when no scrape came for STALE_MS (a one-off `curl /metrics`
// must not leave it running). Nobody scraping, or nothing asked: no timer.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Metric, Registry } from 'prom-client';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import version from 'prom-client/lib/metrics/version.js';
import gc from 'prom-client/lib/metrics/gc.js';

/** prom-client's default metrics other than the event loop's (each registers its series on a registry). */
const DEFAULTS = [
  processCpuTotal,
  processStartTime,
  osMemoryHeap,
  processOpenFileDescriptors,
  processMaxFileDescriptors,
  processResources,
  processHandles,
  processRequests,
  heapSizeAndUsed,
  heapSpacesSizeAndUsed,
  version,
  gc,
] as ((registry: Registry, config: object) => void)[];

/** The histogram's sampling interval while it runs, as prom-client's default. */
const RESOLUTION_MS = 10;
/**
 * The histogram stops when no scrape came for this long: over two of
 * Prometheus's default 1-minute intervals, so a scraper that missed one
 * keeps it, and whoever scraped once and went away does not.
 */
export const STALE_MS = 150_000;

type IntervalHistogram = ReturnType<typeof monitorEventLoopDelay>;

/** The event-loop delay series: prom-client's names and meanings. */
const SUMMARY: [name: string, help: string, read: (h: IntervalHistogram) => number][] = [
  ['nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', (h) => h.min],
  ['nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', (h) => h.max],
  ['nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', (h) => h.mean],
  ['nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', (h) => h.stddev],
  ['nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', (h) => h.percentile(50)],
  ['nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', (h) => h.percentile(90)],
  ['nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', (h) => h.percentile(99)],
];

/**
 * LoopDelay is the event loop's delay histogram, run between scrapes that
 * see work. `answered` is any count that grows with every query answered.
 */
export class LoopDelay {
  private histogram: IntervalHistogram | null = null;
  private lastAnswered: number;
  /** The summary read at the last scrape (seconds), or null when the histogram had nothing. */
  private summary: number[] | null = null;
  /** Stops the histogram when no scrape follows (unref'd; exists only while the histogram runs). */
  private stale: NodeJS.Timeout | null = null;

  constructor(
    private readonly answered: () => number,
    private readonly staleMs = STALE_MS,
  ) {
    this.lastAnswered = answered();
  }

  /** running says whether the 100 Hz sampling timer exists now. */
  get running(): boolean {
    return this.histogram !== null;
  }

  /**
   * scrape reads and resets the histogram, then starts or stops it by
   * whether queries were answered since the scrape before.
   */
  scrape(): void {
    const h = this.histogram;
    this.summary = h !== null && h.count > 0 ? SUMMARY.map(([, , read]) => read(h) / 1e9) : null;
    h?.reset();
    const now = this.answered();
    const busy = now !== this.lastAnswered;
    this.lastAnswered = now;
    if (busy && h === null) {
      this.histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
      this.histogram.enable();
    } else if (!busy && h !== null) {
      this.stop();
    }
    if (this.histogram !== null) {
      if (this.stale !== null) clearTimeout(this.stale);
      this.stale = setTimeout(() => this.stop(), this.staleMs);
      this.stale.unref();
    }
  }

  /** stop ends the histogram (no scrape wants it, or shutdown). */
  stop(): void {
    this.histogram?.disable();
    this.histogram = null;
    if (this.stale !== null) clearTimeout(this.stale);
    this.stale = null;
  }

  /** register adds nodejs_eventloop_lag_seconds and the histogram's summary series to a registry. */
  register(registry: Registry): void {
    // nodejs_eventloop_lag_seconds: how long a callback queued now waits for its turn (prom-client's
    // meaning), measured at the scrape, so it needs no timer. The scrape reads the summary too.
    const lag = { name: 'nodejs_eventloop_lag_seconds', help: 'Lag of event loop in seconds.', type: 'gauge', aggregator: 'average' };
    registry.registerMetric({
      ...lag,
      get: () => {
        this.scrape();
        const start = process.hrtime.bigint();
        return new Promise((resolve) => setImmediate(() => resolve({ ...lag, values: [{ labels: {}, value: Number(process.hrtime.bigint() - start) / 1e9 }] })));
      },
    } as unknown as Metric<string>);
    SUMMARY.forEach(([name, summary], i) => {
      const help = `${summary} Sampled every ${RESOLUTION_MS} ms between two scrapes that saw queries answered; absent while pvdns is idle.`;
      registry.registerMetric({
        name,
        help,
        type: 'gauge',
        aggregator: 'average',
        get: () => ({ name, help, type: 'gauge', aggregator: 'average', values: this.summary === null ? [] : [{ labels: {}, value: this.summary[i]! }] }),
      } as unknown as Metric<string>);
    });
  }
}

/**
 * registerProcessMetrics registers prom-client's default process metrics and
 * the event-loop delay series on a registry, and returns the LoopDelay.
 */
export function registerProcessMetrics(registry: Registry, answered: () => number): LoopDelay {
  for (const register of DEFAULTS) register(registry, {});
  const loop = new LoopDelay(answered);
  loop.register(registry);
  return loop;
}
