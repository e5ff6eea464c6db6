// prom-client's registry and default metrics, imported from their own files:
// its index also loads the Pushgateway client, and with it node:https, TLS
// and zlib — about 25 ms of start-up for something pvdns never uses.
// (prom-client has no exports map, so these paths are reachable; the
// lockfile pins the version they were checked against.)

import type { collectDefaultMetrics as CollectDefaultMetrics, Registry as RegistryClass } from 'prom-client';
import registry from 'prom-client/lib/registry.js';
import defaultMetrics from 'prom-client/lib/defaultMetrics.js';

export const Registry = registry as typeof RegistryClass;
export type Registry = RegistryClass;
export const collectDefaultMetrics = defaultMetrics as typeof CollectDefaultMetrics;
