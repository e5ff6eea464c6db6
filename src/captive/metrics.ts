// pvdns_captive_portal{pvd} (1 while a PvD is captive) and
// pvdns_captive_rewrites_total{pvd} (rewritten answers seen), read from the
// tracker at scrape time.

import type { Registry } from 'prom-client';
import { CollectedValue, type Sample } from '../metrics/collected.js';
import type { CaptiveTracker } from './tracker.js';

export function registerCaptiveMetrics(registry: Registry, tracker: () => CaptiveTracker): void {
  new CollectedValue('pvdns_captive_portal', 'Whether a PvD is behind a captive portal (1) or not known to be (0).', 'gauge', function* (): Iterable<Sample> {
    for (const c of tracker().counts()) yield { labels: { pvd: c.pvd.id }, value: c.state === 'captive' ? 1 : 0 };
  }).register(registry);
  new CollectedValue('pvdns_captive_rewrites_total', 'Answers found rewritten in a PvD: probes answered wrongly, answers with its portal\'s address.', 'counter', function* (): Iterable<Sample> {
    for (const c of tracker().counts()) yield { labels: { pvd: c.pvd.id }, value: c.rewrites };
  }).register(registry);
}
