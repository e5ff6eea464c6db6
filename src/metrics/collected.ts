// Metrics read at scrape time. The hot path counts in plain numbers and
// typed arrays; these adapters hand them to prom-client's registry when
// /metrics is asked for, so no query ever makes a labelled prom-client call.

import type { Metric, Registry } from 'prom-client';

export type Labels = Record<string, string>;

export interface Sample {
  labels: Labels;
  value: number;
}

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** Common shape prom-client's registry reads (the fields of Metric.get()). */
abstract class Collected {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}

  protected abstract values(): MetricValue[];

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }

  /** register adds the metric to a registry. */
  register(registry: Registry): this {
    registry.registerMetric(this as unknown as Metric<string>);
    return this;
  }
}

/** CollectedValue is a counter or gauge whose samples a function reads on demand. */
export class CollectedValue extends Collected {
  constructor(name: string, help: string, type: 'counter' | 'gauge', private readonly read: () => Iterable<Sample>) {
    super(name, help, type);
  }

  protected values(): MetricValue[] {
    return [...this.read()];
  }
}

/** Buckets accumulates observations of one histogram series as plain numbers. */
export class Buckets {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }
}

/** Seconds buckets from 50 µs (a cache hit) to 5 s (a slow upstream). */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** CollectedHistogram exposes Buckets series as a Prometheus histogram. */
export class CollectedHistogram extends Collected {
  constructor(name: string, help: string, private readonly read: () => Iterable<[Labels, Buckets]>) {
    super(name, help, 'histogram');
  }

  protected values(): MetricValue[] {
    const out: MetricValue[] = [];
    for (const [labels, b] of this.read()) {
      let cumulative = 0;
      b.bounds.forEach((le, i) => {
        cumulative += b.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: String(le) }, value: cumulative });
      });
      out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: b.count });
      out.push({ metricName: `${this.name}_sum`, labels, value: b.sum });
      out.push({ metricName: `${this.name}_count`, labels, value: b.count });
    }
    return out;
  }
}
