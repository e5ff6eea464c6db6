// pvdns_cache_entries{pvd}: read from the cache's per-PvD counts at scrape time.

import type { Registry } from 'prom-client';
import { CollectedValue, type Sample } from '../metrics/collected.js';
import type { AnswerCache } from './answer-cache.js';

export function registerCacheMetrics(registry: Registry, cache: () => AnswerCache, pvds: () => Iterable<{ id: string; tag: number }>): void {
  new CollectedValue('pvdns_cache_entries', 'Answers cached, by the PvD that produced them.', 'gauge', function* (): Iterable<Sample> {
    const c = cache();
    for (const p of pvds()) yield { labels: { pvd: p.id }, value: c.entries(p.tag) };
  }).register(registry);
}
