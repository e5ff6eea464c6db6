// pvdns_pvds (PvDs attached now) and pvdns_pvd_changes_total{kind,source}
// (announcements, updates and withdrawals, from config, host, api or file).

import type { Registry } from 'prom-client';
import { CollectedValue, type Sample } from '../metrics/collected.js';
import type { PvdRegistry } from './registry.js';

export function registerPvdMetrics(registry: Registry, pvds: PvdRegistry): void {
  const changes = new Map<string, { kind: string; source: string; n: number }>();
  const count = (kind: string, source: string): void => {
    const key = `${kind}/${source}`;
    const c = changes.get(key);
    if (c) c.n++;
    else changes.set(key, { kind, source, n: 1 });
  };
  pvds.on('announced', (p) => count('announced', p.source));
  pvds.on('updated', (p) => count('updated', p.source));
  pvds.on('withdrawn', (p, reason) => count(reason === 'expired' ? 'expired' : 'withdrawn', p.source));
  new CollectedValue('pvdns_pvds', 'PvDs currently attached.', 'gauge', () => [{ labels: {}, value: pvds.size }]).register(registry);
  new CollectedValue('pvdns_pvd_changes_total', 'PvDs announced, updated, withdrawn and expired, by source.', 'counter', function* (): Iterable<Sample> {
    for (const c of changes.values()) yield { labels: { kind: c.kind, source: c.source }, value: c.n };
  }).register(registry);
}
