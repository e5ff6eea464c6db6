// The last stage: send the query to its PvD's upstream pool. A PvD whose
// servers all fail gets SERVFAIL with an Extended DNS Error naming the PvD
// and why (RFC 8914) — never another PvD's servers.

import { ANSWER_TRANSIENT, errorAnswer, type Answer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import type { Pvd } from '../pvd/model.js';
import type { Transport } from '../upstream/exchange.js';
import { UpstreamPool, type PoolOptions } from '../upstream/pool.js';
import type { Query } from './query.js';
import type { Result } from './stage.js';

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

/** Forwarder owns one upstream pool per PvD and is the pipeline's terminal step. */
export class Forwarder {
  private readonly pools = new Map<number, { pvd: Pvd; pool: UpstreamPool }>();
  /** Upstream queries in flight now. */
  private inflight = 0;
  /** Queries answered SERVFAIL because maxInflight were in flight (pvdns_queries_shed_total). */
  shed = 0;
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
    if (pvd.servers.length === 0) {
      return errorAnswer(RCODE.SERVFAIL, { code: EDE.NO_REACHABLE_AUTHORITY, text: `pvd ${pvd.identifier}: no DNS servers` });
    }
    // A flood of misses must not grow without bound: past maxInflight, answer at once.
    if (this.inflight >= this.opts.maxInflight) {
      this.shed++;
      return this.shedAnswer();
    }
    this.inflight++;
    return this.poolOf(pvd).resolve(q).then(this.settled);
  };

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
    const o = this.opts;
    const opts: PoolOptions = {
      timeoutMs: o.timeoutMs,
      attempts: o.attempts,
      queryTimeoutMs: o.queryTimeoutMs,
      sourceAddress: pvd.sourceAddress,
      probe: { initialMs: o.probeIntervalMs, maxMs: o.probeMaxIntervalMs },
      onServerState: o.onServerState,
    };
    entry?.pool.close();
    const pool = new UpstreamPool(pvd.id, pvd.identifier, pvd.servers, opts, this.transport);
    this.pools.set(pvd.tag, { pvd, pool });
    return pool;
  }

  /** poolIfAny is the PvD's pool once it has been asked anything (for its servers' state). */
  poolIfAny(pvd: Pvd): UpstreamPool | undefined {
    const entry = this.pools.get(pvd.tag);
    return entry !== undefined && (entry.pvd === pvd || sameServers(entry.pvd, pvd)) ? entry.pool : undefined;
  }

  /**
   * usable says whether a PvD has a server that may be asked now; default
   * routing passes over a PvD whose servers are all down.
   */
  usable(pvd: Pvd): boolean {
    return !(this.poolIfAny(pvd)?.allDown ?? false);
  }

  /** drop forgets a withdrawn PvD's pool. */
  drop(pvd: Pvd): void {
    this.pools.get(pvd.tag)?.pool.close();
    this.pools.delete(pvd.tag);
  }

  /** setOptions applies new timeouts to pools made from now on (a reload). */
  setOptions(opts: ForwardOptions): void {
    Object.assign(this.opts, opts);
    for (const e of this.pools.values()) e.pool.close();
    this.pools.clear();
  }

  /** livePools lists the pools, for metrics. */
  *livePools(): Iterable<UpstreamPool> {
    for (const e of this.pools.values()) yield e.pool;
  }
}

function sameServers(a: Pvd, b: Pvd): boolean {
  return a.sourceAddress === b.sourceAddress && a.encryption === b.encryption && a.servers.map((s) => s.label).join() === b.servers.map((s) => s.label).join();
}
