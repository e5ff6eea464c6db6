// pvdns_pvds: how many PvDs are attached right now.

import type { Registry } from 'prom-client';
import { CollectedValue } from '../metrics/collected.js';
import type { PvdRegistry } from './registry.js';

export function registerPvdMetrics(registry: Registry, pvds: PvdRegistry): void {
  new CollectedValue('pvdns_pvds', 'PvDs currently attached.', 'gauge', () => [{ labels: {}, value: pvds.size }]).register(registry);
}
