// prom-client's registry, imported from its own file (the default metrics are
// in process.ts):
// its index also loads the Pushgateway client, and with it node:https, TLS
// and zlib — about 25 ms of start-up for something pvdns never uses.
// (prom-client has no exports map, so these paths are reachable; the
// lockfile pins the version they were checked against.)

import type { Registry as RegistryClass } from 'prom-client';
import registry from 'prom-client/lib/registry.js';

export const Registry = registry as typeof RegistryClass;
export type Registry = RegistryClass;
