// The last stage: send the query to its PvD's upstream pool. A PvD whose
// servers all fail gets SERVFAIL with an Extended DNS Error naming the PvD
// and why (RFC 8914) — never another PvD's servers.

import { ANSWER_TRANSIENT, errorAnswer, type Answer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import type { Pvd } from '../pvd/model.js';
import type { Transport } from '../upstream/exchange.js';
import type { UpstreamServer } from '../upstream/server.js';
import { UpstreamPool, type PoolOptions, type ServerStats } from '../upstream/pool.js';
import { probeResult, ProbeCounts, type ProbeKind } from './probes.js';
import type { Query } from './query.js';
import { isPromise, type Result } from './stage.js';

export interface ForwardOptions {
  timeoutMs: number;
  attempts: number;
  queryTimeoutMs: number;
  /** Upstream queries in flight at once, all PvDs together; more are answered SERVFAIL at once. */
  maxInflight: number;
  probeIntervalMs: number;
  probeMaxIntervalMs: number;
  onServerState?: PoolOptions['onServerState'];
}

/** One PvD's pool: its designated resolvers (DNR, then DDR's) first, then its own servers. */
interface PoolEntry {
  pvd: Pvd;
  pool: UpstreamPool;
  /** DDR's designated resolvers the pool was made with. */
  discovered: readonly UpstreamServer[];
}

/**
 * Forwarder owns one upstream pool per PvD and is the pipeline's terminal
 * step. A PvD with encrypted servers has a second pool, of its cleartext
 * servers (Pvd.clearServers), made when a query marked `clear` first needs
 * it: a captive portal's names and probes.
 */
export class Forwarder {
  private readonly pools = new Map<number, PoolEntry>();
  private readonly clearPools = new Map<number, { pvd: Pvd; pool: UpstreamPool }>();
  /**
   * Each PvD's servers' counters by label, shared by its pools and kept when
   * they are made anew (a DDR change, a portal opening): metrics never jump back.
   */
  private readonly stats = new Map<number, Map<string, ServerStats>>();
  /** DDR's designated resolvers per PvD tag (setDiscovered). */
  private readonly discovered = new Map<number, readonly UpstreamServer[]>();
  /** Upstream queries in flight now. */
  private inflight = 0;
  /** Queries answered SERVFAIL because maxInflight were in flight (pvdns_queries_shed_total). */
  shed = 0;
  /** How background probes ended, per PvD (pvdns_probes_total). */
  readonly probes = new ProbeCounts();
  private readonly settled = (a: Answer): Answer => {
    this.inflight--;
    return a;
  };

  constructor(
    private readonly opts: ForwardOptions,
    private readonly transport: Transport,
  ) {}

  /** resolve is the pipeline's `last`: it asks the query's PvD. */
  readonly resolve = (q: Query): Result => {
    const pvd = q.pvd!;
    const clear = q.clear && this.encrypted(pvd);
    if (clear ? pvd.clearServers.length === 0 : pvd.servers.length + pvd.designated.length === 0 && !this.discovered.has(pvd.tag)) {
      // (A PvD whose servers are all DoH by host name has no address to ask in the clear.)
      return errorAnswer(RCODE.SERVFAIL, { code: EDE.NO_REACHABLE_AUTHORITY, text: `pvd ${pvd.identifier}: no ${clear ? 'cleartext ' : ''}DNS servers` });
    }
    // A flood of misses must not grow without bound: past maxInflight, answer at once.
    if (this.inflight >= this.opts.maxInflight) {
      this.shed++;
      return this.shedAnswer();
    }
    this.inflight++;
    return (clear ? this.clearPoolOf(pvd) : this.poolOf(pvd)).resolve(q).then(this.settled);
  };

  /**
   * probe asks a question pvdns asks for itself in the background (a
   * captive-portal probe, Pref64 discovery) of the query's PvD, as resolve
   * does but marked background: its servers' error counters leave it out,
   * and how it ended is counted in `probes` instead. Never rejects.
   */
  async probe(q: Query, kind: ProbeKind): Promise<Answer> {
    q.background = true;
    const r = this.resolve(q);
    const a = await r;
    // A PvD withdrawn while its probe was out (its counters gone) is not counted again.
    if (!isPromise(r) || this.stats.has(q.pvd!.tag)) this.probes.count(q.pvd!.id, kind, probeResult(q, a, !isPromise(r)));
    return a;
  }

  /**
   * askServer asks one server of a PvD, outside its pools (their health is
   * left alone): DDR's `_dns.resolver.arpa` SVCB goes to each cleartext
   * server in turn, since what one designates is verified against its own
   * address (RFC 9462 §4.2). Never rejects.
   */
  async askServer(pvd: Pvd, server: UpstreamServer, q: Query): Promise<Answer> {
    // Its own counters and no state events: a throwaway pool's "untested → operational" is news to nobody.
    const pool = new UpstreamPool(pvd.id, pvd.identifier, [server], { ...this.poolOptions(pvd, 0), onServerState: undefined, stats: undefined }, this.transport);
    try {
      return await pool.resolve(q);
    } finally {
      pool.close();
    }
  }

  /** encrypted says whether a PvD's queries go encrypted as a rule, so its cleartext servers are a pool apart. */
  encrypted(pvd: Pvd): boolean {
    return pvd.encryption !== 'off' || pvd.designated.length > 0 || (this.discovered.get(pvd.tag)?.length ?? 0) > 0;
  }

  /**
   * encryptedDown says whether a PvD's encrypted servers are all down now
   * (its designated resolvers, or every server of an encrypted PvD): a sign
   * of a captive portal, so its probes go in the clear.
   */
  encryptedDown(pvd: Pvd): boolean {
    if (!this.encrypted(pvd)) return false;
    const pool = this.poolIfAny(pvd);
    return pool !== undefined && (pool.preferredDown || pool.allDown);
  }

  /** discoveredOf lists DDR's designated resolvers in use for a PvD. */
  discoveredOf(pvd: Pvd): readonly UpstreamServer[] {
    return this.discovered.get(pvd.tag) ?? NO_SERVERS;
  }

  /**
   * setDiscovered puts DDR's designated resolvers for a PvD in use (none:
   * back to its own servers). The PvD's pool is made anew with them first;
   * its servers start untested.
   */
  setDiscovered(pvd: Pvd, servers: readonly UpstreamServer[]): void {
    const before = this.discovered.get(pvd.tag) ?? NO_SERVERS;
    if (labels(before) === labels(servers)) return;
    if (servers.length === 0) this.discovered.delete(pvd.tag);
    else this.discovered.set(pvd.tag, servers);
    const entry = this.pools.get(pvd.tag);
    entry?.pool.close();
    this.pools.delete(pvd.tag);
  }

  /**
   * revalidate makes a PvD's encrypted servers be tried again now: after a
   * captive portal opened, servers that failed behind it are asked at the
   * next query instead of after their probe backoff, and opportunistic ones
   * speak TLS again at once (RETRY_ENCRYPTION_MS does not apply).
   */
  revalidate(pvd: Pvd): void {
    const entry = this.pools.get(pvd.tag);
    if (entry === undefined) return;
    for (const s of entry.pool.servers) this.transport.retryEncryption?.(s);
    entry.pool.close();
    this.pools.delete(pvd.tag);
  }

  private shedAnswer(): Answer {
    return errorAnswer(RCODE.SERVFAIL, { code: EDE.OTHER, text: `pvdns: ${this.opts.maxInflight} upstream queries in flight (upstream.maxInflight)` }, ANSWER_TRANSIENT);
  }

  /** poolOf returns the PvD's pool, rebuilt when the PvD was updated. */
  private poolOf(pvd: Pvd): UpstreamPool {
    const entry = this.pools.get(pvd.tag);
    if (entry !== undefined && entry.pvd === pvd) return entry.pool;
    // An update that leaves the servers alone keeps their pool, and with it their state.
    if (entry !== undefined && sameServers(entry.pvd, pvd)) {
      entry.pvd = pvd;
      return entry.pool;
    }
    entry?.pool.close();
    const discovered = this.discovered.get(pvd.tag) ?? NO_SERVERS;
    const preferred = [...pvd.designated, ...discovered];
    const pool = this.makePool(pvd, [...preferred, ...pvd.servers], preferred.length);
    this.pools.set(pvd.tag, { pvd, pool, discovered });
    // Servers the PvD no longer has take their counters with them.
    const stats = this.stats.get(pvd.tag)!;
    const kept = new Set([...pool.servers, ...pvd.clearServers].map((s) => s.label));
    for (const label of stats.keys()) if (!kept.has(label)) stats.delete(label);
    return pool;
  }

  /** clearPoolOf returns the pool of a PvD's cleartext servers, rebuilt when the PvD was updated. */
  private clearPoolOf(pvd: Pvd): UpstreamPool {
    const entry = this.clearPools.get(pvd.tag);
    if (entry !== undefined && (entry.pvd === pvd || sameServers(entry.pvd, pvd))) {
      entry.pvd = pvd;
      return entry.pool;
    }
    entry?.pool.close();
    const pool = this.makePool(pvd, pvd.clearServers, 0);
    this.clearPools.set(pvd.tag, { pvd, pool });
    return pool;
  }

  private makePool(pvd: Pvd, servers: readonly UpstreamServer[], preferred: number): UpstreamPool {
    return new UpstreamPool(pvd.id, pvd.identifier, servers, this.poolOptions(pvd, preferred), this.transport);
  }

  private poolOptions(pvd: Pvd, preferred: number): PoolOptions {
    let stats = this.stats.get(pvd.tag);
    if (stats === undefined) this.stats.set(pvd.tag, (stats = new Map()));
    const o = this.opts;
    return {
      timeoutMs: o.timeoutMs,
      attempts: o.attempts,
      queryTimeoutMs: o.queryTimeoutMs,
      sourceAddress: pvd.sourceAddress,
      probe: { initialMs: o.probeIntervalMs, maxMs: o.probeMaxIntervalMs },
      onServerState: o.onServerState,
      preferred,
      stats,
    };
  }

  /** poolIfAny is the PvD's pool once it has been asked anything (for its servers' state). */
  poolIfAny(pvd: Pvd): UpstreamPool | undefined {
    const entry = this.pools.get(pvd.tag);
    return entry !== undefined && (entry.pvd === pvd || sameServers(entry.pvd, pvd)) ? entry.pool : undefined;
  }

  /** clearPoolIfAny is the PvD's cleartext pool once a captive portal's name or a probe has used it. */
  clearPoolIfAny(pvd: Pvd): UpstreamPool | undefined {
    const entry = this.clearPools.get(pvd.tag);
    return entry !== undefined && (entry.pvd === pvd || sameServers(entry.pvd, pvd)) ? entry.pool : undefined;
  }

  /**
   * usable says whether a PvD has a server that may be asked now; default
   * routing passes over a PvD whose servers are all down.
   */
  usable(pvd: Pvd): boolean {
    return !(this.poolIfAny(pvd)?.allDown ?? false);
  }

  /**
   * routable is usable() as default routing asks it, for a query: a PvD
   * passed over because its servers are all down is still wanted, so the
   * query counts as demand for its pool and keeps its servers probed
   * (UpstreamPool.noteDemand), and the PvD is taken back once one answers.
   */
  routable(pvd: Pvd): boolean {
    const pool = this.poolIfAny(pvd);
    if (pool === undefined || !pool.allDown) return true;
    pool.noteDemand();
    return false;
  }

  /**
   * noneUsable says why no PvD of `pvds` has a server that may be asked now
   * (/readyz's reason): none has a server, or every one's servers are down,
   * named with their last errors; null when one may be asked. A server not
   * asked yet may be (a fresh pvdns is ready): down takes failures seen.
   * Asking is demand for the down pools (UpstreamPool.noteDemand).
   */
  noneUsable(pvds: readonly Pvd[]): string | null {
    const withServers = pvds.filter((p) => p.servers.length + p.designated.length > 0);
    if (withServers.length === 0) return 'no PvD has a DNS server';
    if (withServers.some((p) => this.usable(p))) return null;
    const down = withServers.map((p) => {
      const pool = this.poolIfAny(p)!;
      // A readiness check waits for a server to answer: demand, so their probes run (a
      // load balancer that sends no query to an unready pvdns must still see it come back).
      pool.noteDemand();
      return `${p.id}: ${pool.servers.map((s, i) => `${s.label}${pool.health[i]!.lastError ? ` (${pool.health[i]!.lastError})` : ''}`).join(', ')}`;
    });
    // One line, bounded: a host may have many PvDs.
    return `every DNS server is down: ${down.join('; ')}`.slice(0, 400);
  }

  /** drop forgets a withdrawn PvD's pool. */
  drop(pvd: Pvd): void {
    this.pools.get(pvd.tag)?.pool.close();
    this.pools.delete(pvd.tag);
    this.clearPools.get(pvd.tag)?.pool.close();
    this.clearPools.delete(pvd.tag);
    this.discovered.delete(pvd.tag);
    this.stats.delete(pvd.tag);
    this.probes.forget(pvd.id);
  }

  /** setOptions applies new timeouts to pools made from now on (a reload). */
  setOptions(opts: ForwardOptions): void {
    Object.assign(this.opts, opts);
    for (const e of [...this.pools.values(), ...this.clearPools.values()]) e.pool.close();
    this.pools.clear();
    this.clearPools.clear();
  }

  /** livePools lists the pools, for metrics. */
  *livePools(): Iterable<UpstreamPool> {
    for (const e of this.pools.values()) yield e.pool;
    for (const e of this.clearPools.values()) yield e.pool;
  }
}

const NO_SERVERS: readonly UpstreamServer[] = Object.freeze([]);

function labels(servers: readonly UpstreamServer[]): string {
  return servers.map((s) => s.label).join();
}

function sameServers(a: Pvd, b: Pvd): boolean {
  return (
    a.sourceAddress === b.sourceAddress &&
    a.encryption === b.encryption &&
    labels(a.servers) === labels(b.servers) &&
    labels(a.designated) === labels(b.designated)
  );
}
