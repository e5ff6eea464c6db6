// The last stage: send the query to the PvD's upstream pool. A PvD whose
// servers all fail gets SERVFAIL with an Extended DNS Error naming the PvD
// and why (RFC 8914) — never another PvD's servers.

import { errorAnswer, type Answer, type Ede } from '../dns/answer.js';
import { EDE, FLAG_CD, RCODE } from '../dns/constants.js';
import type { Pvd } from '../pvd/model.js';
import type { Transport } from '../upstream/exchange.js';
import { UpstreamPool, type Failure } from '../upstream/pool.js';
import type { Query } from './query.js';

export interface ForwardOptions {
  timeoutMs: number;
  attempts: number;
}

/** Forwarder owns one upstream pool per PvD and is the pipeline's terminal step. */
export class Forwarder {
  private readonly pools = new Map<number, { pvd: Pvd; pool: UpstreamPool }>();

  constructor(
    private readonly opts: ForwardOptions,
    private readonly transport: Transport,
  ) {}

  /** resolve is the pipeline's `last`: it asks the query's PvD. */
  readonly resolve = async (q: Query): Promise<Answer> => {
    const pvd = q.pvd!;
    if (pvd.servers.length === 0) {
      return errorAnswer(RCODE.SERVFAIL, { code: EDE.NO_REACHABLE_AUTHORITY, text: `pvd ${pvd.identifier}: no DNS servers` });
    }
    const outcome = await this.poolOf(pvd).resolve({
      question: q.question(),
      nameKey: q.nameKey,
      qtype: q.qtype,
      qclass: q.qclass,
      cd: (q.flags & FLAG_CD) !== 0,
      dnssecOk: q.dnssecOk,
    });
    if (outcome.ok) {
      q.server = outcome.server;
      return outcome.answer;
    }
    return errorAnswer(RCODE.SERVFAIL, failureEde(pvd, outcome.failures));
  };

  /** poolOf returns the PvD's pool, rebuilt when the PvD was updated. */
  private poolOf(pvd: Pvd): UpstreamPool {
    const entry = this.pools.get(pvd.tag);
    if (entry !== undefined && entry.pvd === pvd) return entry.pool;
    const pool = new UpstreamPool(
      pvd.id,
      pvd.servers,
      { ...this.opts, sourceAddress: pvd.sourceAddress },
      this.transport,
    );
    this.pools.set(pvd.tag, { pvd, pool });
    return pool;
  }

  /** drop forgets a withdrawn PvD's pool. */
  drop(pvd: Pvd): void {
    this.pools.delete(pvd.tag);
  }

  /** setOptions applies new timeouts to pools made from now on (a reload). */
  setOptions(opts: ForwardOptions): void {
    Object.assign(this.opts, opts);
    this.pools.clear();
  }

  /** livePools lists the pools, for metrics. */
  *livePools(): Iterable<UpstreamPool> {
    for (const e of this.pools.values()) yield e.pool;
  }
}

/** failureEde explains in one line why no server of a PvD answered. */
export function failureEde(pvd: Pvd, failures: readonly Failure[]): Ede {
  const network = failures.every((f) => f.reason === 'network' || f.reason === 'refused');
  const silent = failures.every((f) => f.reason !== 'rcode');
  const all = failures.length === pvd.servers.length ? 'all servers' : `${failures.length} of ${pvd.servers.length} servers`;
  const what = failures.map((f) => `${f.server} ${f.detail}`).join('; ');
  return {
    // 23 when nothing could be sent or nobody listens; 22 when servers were silent or could not resolve.
    code: network ? EDE.NETWORK_ERROR : EDE.NO_REACHABLE_AUTHORITY,
    text: `pvd ${pvd.identifier}: ${all} ${silent ? 'unreachable' : 'failed'} (${what})`.slice(0, 400),
  };
}
