// Every metric the Grafana dashboard and the Prometheus alert rules use must
// be one pvdns really exports: the names in docker/grafana/dashboards/*.json
// and docker/alerts.yml, checked against a live /metrics scrape of a running
// pvdns (`# TYPE` lines: a metric is there before it has a sample).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const DOCKER = join(import.meta.dirname, '..', '..', 'docker');

/** The pvdns_* metric names an expression text uses, histogram series folded into their metric. */
function metricNames(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/\bpvdns_[a-z0-9_]+/g)) names.add(m[0].replace(/_(bucket|sum|count)$/, ''));
  return [...names].sort();
}

describe('metric names of the dashboard and the alert rules', () => {
  let pvdns: Running;
  let exported: Set<string>;

  beforeAll(async () => {
    pvdns = await startPvdns({ pvds: [{ identifier: 'lan', dnsServers: ['127.0.0.132'], default: true }] });
    const text = await (await fetch(`${pvdns.http}/metrics`)).text();
    exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  });
  afterAll(() => pvdns.stop());

  const dashboards = readdirSync(join(DOCKER, 'grafana', 'dashboards')).filter((f) => f.endsWith('.json'));

  it.each(dashboards)('dashboard %s uses only exported metrics, and shows per-PvD, cache, upstream, DNS64 and captive panels', (file) => {
    const json = readFileSync(join(DOCKER, 'grafana', 'dashboards', file), 'utf8');
    const dash = JSON.parse(json) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    const used = metricNames(exprs);
    expect(used.filter((n) => !exported.has(n)), `not exported: ${used.filter((n) => !exported.has(n))}`).toEqual([]);
    for (const m of ['pvdns_queries_total', 'pvdns_cache_hits_total', 'pvdns_upstream_rtt_seconds', 'pvdns_upstream_up', 'pvdns_dns64_synthesized_total', 'pvdns_captive_portal']) {
      expect(used, m).toContain(m);
    }
  });

  it('the alert rules use only exported metrics, and cover an upstream down, a captive PvD, SERVFAILs and no ready PvD', () => {
    const rules = readFileSync(join(DOCKER, 'alerts.yml'), 'utf8');
    const used = metricNames(rules);
    expect(used.filter((n) => !exported.has(n))).toEqual([]);
    for (const m of ['pvdns_upstream_up', 'pvdns_captive_portal', 'pvdns_responses_total', 'pvdns_pvds']) expect(used).toContain(m);
  });
});
