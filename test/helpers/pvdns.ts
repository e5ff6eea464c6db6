// startPvdns: a real pvdns (the App, with real UDP/TCP/HTTP listeners) on
// loopback ports the kernel picks, configured as a test needs.

import { App } from '../../src/app.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { Server } from './client.js';

/** The API token every test pvdns has unless a test configures http itself: changes need one. */
export const TEST_TOKEN = 'test-token-0123456789abcdef';

export interface Running {
  app: App;
  dns: Server;
  http: string;
  stop(): Promise<void>;
}

/**
 * startPvdns runs pvdns with `config` on top of test defaults (listen on
 * 127.0.0.1:0, no host PvD, silent, a query budget of timeoutMs × attempts
 * unless upstream.queryTimeoutMs is given). PvDs get `dns64: off` and captive-portal
 * probes are off unless a test says otherwise, so fake upstreams see only
 * the queries a test sends: by default each PvD would also ask its servers
 * for ipv4only.arpa (RFC 7050) and for random names (captive probes).
 * Names under test. (RFC 6761 §6.2) go upstream like any other
 * (forwardTestNames: true), since tests name their fake zones so; a test of
 * pvdns's own answer sets forwardTestNames: false.
 */
export async function startPvdns(config: Record<string, unknown>, opts: { clock?: () => number; host?: string; log?: Logger } = {}): Promise<Running> {
  if (Array.isArray(config.pvds)) config = { ...config, pvds: config.pvds.map((p: Record<string, unknown>) => ({ dns64: 'off', ...p })) };
  // A test that does not say how long a query may take gets timeoutMs per server asked: quick failures.
  const upstream: Record<string, number> = { timeoutMs: 400, attempts: 3, ...(config.upstream as Record<string, number> | undefined) };
  upstream.queryTimeoutMs ??= upstream.timeoutMs! * upstream.attempts!;
  const cfg = configSchema.parse({
    listen: [opts.host?.includes(':') ? `[${opts.host}]:0` : `${opts.host ?? '127.0.0.1'}:0`],
    http: { listen: '127.0.0.1:0', token: TEST_TOKEN },
    log: { level: 'silent' },
    pvdSources: { host: false },
    captive: { probeIntervalS: 0 },
    forwardTestNames: true,
    ...config,
    upstream,
  });
  const app = new App(cfg, { configFile: null, log: opts.log ?? createLogger(process.env.PVDNS_TEST_LOG ?? 'silent'), clock: opts.clock });
  await app.start();
  const { dns, http } = app.addresses();
  return {
    app,
    dns: { host: dns[0]!.host, port: dns[0]!.port },
    http: `http://${http!.label}`,
    stop: () => app.stop(),
  };
}
