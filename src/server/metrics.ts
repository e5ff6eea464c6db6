// Query metrics: counted per query in plain numbers, published to
// prom-client at scrape time (pvdns_queries_total, pvdns_responses_total,
// pvdns_cache_hits_total, pvdns_cache_misses_total,
// pvdns_dns64_synthesized_total, pvdns_request_duration_seconds), and the
// TCP connections the listeners dropped (pvdns_tcp_connections_dropped_total).

import type { Registry } from 'prom-client';
import { rcodeName, typeCode } from '../dns/constants.js';
import { Buckets, CollectedHistogram, CollectedValue, LATENCY_BUCKETS, type Labels, type Sample } from '../metrics/collected.js';
import type { CacheVerdict, Transport } from '../resolve/query.js';

/** Query types with their own label value; the rest are counted as "other" to keep labels bounded. */
const QTYPES = ['A', 'AAAA', 'PTR', 'CNAME', 'MX', 'TXT', 'SRV', 'NS', 'SOA', 'HTTPS', 'SVCB', 'DS', 'DNSKEY', 'ANY', 'CAA', 'NAPTR'];
const QTYPE_SLOT = new Uint8Array(65536);
QTYPES.forEach((t, i) => (QTYPE_SLOT[typeCode(t)!] = i + 1));
const QTYPE_LABELS = ['other', ...QTYPES];

/** RCODEs with their own label value. */
const RCODES = [0, 1, 2, 3, 4, 5, 16];
const RCODE_SLOT = new Uint8Array(4096);
RCODES.forEach((r, i) => (RCODE_SLOT[r] = i + 1));
const RCODE_LABELS = ['other', ...RCODES.map(rcodeName)];

const TRANSPORTS: readonly Transport[] = ['udp', 'tcp', 'api'];
const VERDICTS: readonly CacheVerdict[] = ['hit', 'miss', 'none'];

/** The pvd label of queries answered by pvdns itself, and of those no PvD saw. */
export const LOCAL_LABEL = '(local)';
export const NONE_LABEL = '(none)';

class PvdCounters {
  readonly queries = new Float64Array(QTYPE_LABELS.length * TRANSPORTS.length);
  readonly responses = new Float64Array(RCODE_LABELS.length);
  hits = 0;
  misses = 0;
  synthesized = 0;
}

/**
 * Why a TCP listener destroyed a connection: `slow`, the client did not read
 * its replies; `unclosed`, it did not close its side after pvdns closed it.
 */
export type TcpDropReason = 'slow' | 'unclosed';

export class QueryStats {
  private readonly byPvd = new Map<string, PvdCounters>();
  private readonly durations = TRANSPORTS.map(() => VERDICTS.map(() => new Buckets(LATENCY_BUCKETS)));
  /** Datagrams and messages that could not be read at all. */
  dropped = 0;
  /** TCP connections destroyed, by reason. */
  readonly tcpDropped: Record<TcpDropReason, number> = { slow: 0, unclosed: 0 };

  /** record counts one answered query. */
  record(pvd: string, qtype: number, transport: Transport, rcode: number, cache: CacheVerdict, seconds: number, synthesized = false): void {
    let c = this.byPvd.get(pvd);
    if (c === undefined) this.byPvd.set(pvd, (c = new PvdCounters()));
    const t = transport === 'udp' ? 0 : transport === 'tcp' ? 1 : 2;
    c.queries[QTYPE_SLOT[qtype]! * TRANSPORTS.length + t]!++;
    c.responses[RCODE_SLOT[rcode & 0xfff]!]!++;
    if (cache === 'hit') c.hits++;
    else if (cache === 'miss') c.misses++;
    if (synthesized) c.synthesized++;
    this.durations[t]![cache === 'hit' ? 0 : cache === 'miss' ? 1 : 2]!.observe(seconds);
  }

  /** answered is how many queries were answered since start (grows with every one; read at scrapes). */
  answered(): number {
    let n = 0;
    for (const byVerdict of this.durations) for (const b of byVerdict) n += b.count;
    return n;
  }

  /** forget drops a withdrawn PvD's series. */
  forget(pvd: string): void {
    this.byPvd.delete(pvd);
  }

  register(registry: Registry): void {
    const byPvd = this.byPvd;
    new CollectedValue('pvdns_queries_total', 'Queries received, by the PvD that answered them.', 'counter', function* (): Iterable<Sample> {
      for (const [pvd, c] of byPvd) {
        for (let i = 0; i < c.queries.length; i++) {
          const qtype = QTYPE_LABELS[Math.floor(i / TRANSPORTS.length)]!;
          if (c.queries[i]) yield { labels: { pvd, qtype, transport: TRANSPORTS[i % TRANSPORTS.length]! }, value: c.queries[i]! };
        }
      }
    }).register(registry);
    new CollectedValue('pvdns_responses_total', 'Responses sent, by PvD and RCODE.', 'counter', function* (): Iterable<Sample> {
      for (const [pvd, c] of byPvd) {
        for (let i = 0; i < c.responses.length; i++) {
          if (c.responses[i]) yield { labels: { pvd, rcode: RCODE_LABELS[i]! }, value: c.responses[i]! };
        }
      }
    }).register(registry);
    new CollectedValue('pvdns_cache_hits_total', 'Queries answered from the PvD\'s cache.', 'counter', function* (): Iterable<Sample> {
      for (const [pvd, c] of byPvd) if (c.hits || c.misses) yield { labels: { pvd }, value: c.hits };
    }).register(registry);
    new CollectedValue('pvdns_cache_misses_total', 'Queries the PvD\'s cache could not answer.', 'counter', function* (): Iterable<Sample> {
      for (const [pvd, c] of byPvd) if (c.hits || c.misses) yield { labels: { pvd }, value: c.misses };
    }).register(registry);
    new CollectedValue(
      'pvdns_dns64_synthesized_total',
      'Answers sent holding DNS64-synthesized records (AAAA inside the PvD\'s Pref64, PTR under it), by PvD.',
      'counter',
      function* (): Iterable<Sample> {
        for (const [pvd, c] of byPvd) if (c.synthesized) yield { labels: { pvd }, value: c.synthesized };
      },
    ).register(registry);
    const tcpDropped = this.tcpDropped;
    new CollectedValue(
      'pvdns_tcp_connections_dropped_total',
      'TCP client connections destroyed: slow (replies not read), unclosed (not closed by the client after pvdns closed it).',
      'counter',
      () => Object.entries(tcpDropped).map(([reason, value]) => ({ labels: { reason }, value })),
    ).register(registry);
    const durations = this.durations;
    new CollectedHistogram('pvdns_request_duration_seconds', 'Time from receiving a query to sending its reply.', function* (): Iterable<[Labels, Buckets]> {
      for (let t = 0; t < TRANSPORTS.length; t++) {
        for (let v = 0; v < VERDICTS.length; v++) yield [{ transport: TRANSPORTS[t]!, cache: VERDICTS[v]! }, durations[t]![v]!];
      }
    }).register(registry);
  }
}
