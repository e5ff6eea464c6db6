// The Grafana dashboard works in any Grafana and for any pvdns a Prometheus
// scrapes: the data source is a variable (not the compose file's uid), every
// query is scoped to the chosen instances, and the panels a person running
// pvdns reaches for under load or attack are there. (metrics.test.ts checks
// that the metrics it names are exported; alerts.test.ts runs its queries on
// a real Prometheus.)

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const DASHBOARDS = join(import.meta.dirname, '..', '..', 'docker', 'grafana', 'dashboards');

interface Datasource {
  type: string;
  uid: string;
}
interface Dashboard {
  panels: Array<{ title: string; datasource: Datasource; targets: Array<{ expr: string; datasource: Datasource }> }>;
  templating: { list: Array<{ name: string; type: string; query: unknown; datasource?: Datasource; multi?: boolean; includeAll?: boolean }> };
}

/** The pvdns_* metric selectors of a PromQL expression: name and label matchers ('' without braces). */
function selectors(expr: string): Array<{ name: string; matchers: string }> {
  return [...expr.matchAll(/\b(pvdns_[a-z0-9_]+)(?:\{([^}]*)\})?/g)].map((m) => ({ name: m[1]!, matchers: m[2] ?? '' }));
}

describe.each(readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json')))('dashboard %s', (file) => {
  const dash = JSON.parse(readFileSync(join(DASHBOARDS, file), 'utf8')) as Dashboard;
  const VARIABLE: Datasource = { type: 'prometheus', uid: '${datasource}' };

  it('has a data source variable of type prometheus and an instance variable from pvdns_pvds, many or all', () => {
    const ds = dash.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const instance = dash.templating.list.find((v) => v.name === 'instance');
    expect(instance).toMatchObject({ type: 'query', datasource: VARIABLE, query: 'label_values(pvdns_pvds, instance)', multi: true, includeAll: true });
    // The instance variable is listed after the data source it queries.
    expect(dash.templating.list.indexOf(instance!)).toBeGreaterThan(dash.templating.list.indexOf(ds!));
  });

  it('uses the data source variable in every panel and target, and no fixed uid', () => {
    for (const p of dash.panels) {
      expect(p.datasource, p.title).toEqual(VARIABLE);
      for (const t of p.targets) expect(t.datasource, `${p.title}: ${t.expr}`).toEqual(VARIABLE);
    }
    expect(readFileSync(join(DASHBOARDS, file), 'utf8')).not.toMatch(/"uid": "prometheus"/);
  });

  it('scopes every metric of every query to the chosen instances', () => {
    for (const p of dash.panels) {
      for (const t of p.targets) {
        const sel = selectors(t.expr);
        expect(sel.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const s of sel) expect(s.matchers, `${p.title}: ${s.name} in ${t.expr}`).toMatch(/(^|, )instance=~"\$instance"(,|$)/);
      }
    }
  });

  it('has panels for shed, rate-limited and rebind-blocked queries and for background probes by PvD, kind and result', () => {
    const panelOf = (metric: string) => dash.panels.find((p) => p.targets.some((t) => selectors(t.expr).some((s) => s.name === metric)));
    for (const m of ['pvdns_queries_shed_total', 'pvdns_ratelimited_total', 'pvdns_rebind_blocked_total', 'pvdns_probes_total']) expect(panelOf(m), m).toBeDefined();
    expect(panelOf('pvdns_probes_total')!.targets.map((t) => t.expr).join('\n')).toMatch(/by \(pvd, kind, result\)/);
  });

  it('lays panels out without overlap on Grafana\'s 24-column grid, with unique ids', () => {
    const all = dash.panels as unknown as Array<{ id: number; title: string; gridPos: { x: number; y: number; w: number; h: number } }>;
    expect(new Set(all.map((p) => p.id)).size).toBe(all.length);
    for (const [i, p] of all.entries()) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (const q of all.slice(i + 1)) {
        const apart = p.gridPos.x + p.gridPos.w <= q.gridPos.x || q.gridPos.x + q.gridPos.w <= p.gridPos.x || p.gridPos.y + p.gridPos.h <= q.gridPos.y || q.gridPos.y + q.gridPos.h <= p.gridPos.y;
        expect(apart, `${p.title} overlaps ${q.title}`).toBe(true);
      }
    }
  });
});
