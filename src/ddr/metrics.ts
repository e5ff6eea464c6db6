// pvdns_ddr_discoveries_total{pvd,result}: Discovery of Designated Resolvers
// (RFC 9462) runs per PvD by outcome, read from the tracker at scrape time.

import type { Registry } from 'prom-client';
import { CollectedValue, type Sample } from '../metrics/collected.js';
import type { DdrTracker } from './tracker.js';

export function registerDdrMetrics(registry: Registry, tracker: () => DdrTracker): void {
  new CollectedValue(
    'pvdns_ddr_discoveries_total',
    'Discoveries of designated resolvers (RFC 9462) per PvD by result: verified, opportunistic (RFC 9462 §4.3), rejected (designations none of which could be used), none (no designation), error (the cleartext servers could not be asked).',
    'counter',
    function* (): Iterable<Sample> {
      for (const c of tracker().counts()) yield { labels: { pvd: c.pvd.id, result: c.result }, value: c.value };
    },
  ).register(registry);
}
