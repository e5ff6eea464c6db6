// Upstream metrics, read from the pools' plain counters at scrape time.

import type { Registry } from 'prom-client';
import { CollectedHistogram, CollectedValue, type Buckets, type Labels, type Sample } from '../metrics/collected.js';
import type { UpstreamPool } from './pool.js';

/**
 * each yields every server of the live pools once per PvD: a PvD's
 * cleartext pool (captive portals) may list a server its main pool has too,
 * and a series must not appear twice; the main pool's comes first.
 */
function* each(pools: Iterable<UpstreamPool>): Iterable<[UpstreamPool, number]> {
  const seen = new Set<string>();
  for (const p of pools) {
    for (let i = 0; i < p.servers.length; i++) {
      const key = `${p.pvdId} ${p.servers[i]!.label}`;
      if (seen.has(key)) continue;
      seen.add(key);
      yield [p, i];
    }
  }
}

/** registerUpstreamMetrics exposes every live pool's counters. */
export function registerUpstreamMetrics(registry: Registry, pools: () => Iterable<UpstreamPool>): void {
  new CollectedValue('pvdns_upstream_requests_total', 'Queries sent to upstream servers, by the transport that carried them.', 'counter', function* (): Iterable<Sample> {
    // An opportunistic server's tries in the clear are counted apart: the encrypted share is what is left.
    for (const [p, i] of each(pools())) {
      const srv = p.servers[i]!;
      const s = p.statsOf[i]!;
      yield { labels: { pvd: p.pvdId, server: srv.label, transport: srv.transport }, value: s.requests - s.fallbackRequests };
      if (s.fallbackRequests > 0) yield { labels: { pvd: p.pvdId, server: srv.label, transport: 'udp' }, value: s.fallbackRequests };
    }
  }).register(registry);
  new CollectedValue('pvdns_upstream_tls_handshakes_total', 'TLS handshakes with DoT and DoH servers, by result (ok, resumed, failed).', 'counter', function* (): Iterable<Sample> {
    for (const [p, i] of each(pools())) {
      for (const [result, n] of p.statsOf[i]!.handshakes) yield { labels: { pvd: p.pvdId, server: p.servers[i]!.label, result }, value: n };
    }
  }).register(registry);
  new CollectedValue('pvdns_upstream_errors_total', 'Upstream exchanges that gave no usable answer, by reason.', 'counter', function* (): Iterable<Sample> {
    for (const [p, i] of each(pools())) {
      for (const [reason, n] of p.statsOf[i]!.errors) yield { labels: { pvd: p.pvdId, server: p.servers[i]!.label, reason }, value: n };
    }
  }).register(registry);
  new CollectedValue('pvdns_upstream_up', 'Whether a server may be asked (1), or is down and only probed (0).', 'gauge', function* (): Iterable<Sample> {
    for (const [p, i] of each(pools())) yield { labels: { pvd: p.pvdId, server: p.servers[i]!.label }, value: p.health[i]!.usable ? 1 : 0 };
  }).register(registry);
  new CollectedHistogram('pvdns_upstream_rtt_seconds', 'Time from sending a query upstream to its answer.', function* (): Iterable<[Labels, Buckets]> {
    for (const [p, i] of each(pools())) yield [{ pvd: p.pvdId, server: p.servers[i]!.label }, p.statsOf[i]!.rtt];
  }).register(registry);
}
