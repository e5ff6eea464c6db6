// UpstreamPool: one PvD's DNS servers and what is known of their health
// (health.ts). Queries go to the primary, which stays primary until it fails
// — no round-robin churn; on a failure the query is asked at once of the next
// candidate (by state, then smoothed RTT, then configured order), at most
// `attempts` servers per query, each for `timeoutMs`. Down servers are left
// out and tested in the background, one probe at a time with back-off, so a
// dead server costs the first query after its death one timeout and later
// queries nothing. When every server is down the answer is SERVFAIL at once,
// with an Extended DNS Error naming the PvD (RFC 8914).

import type { SocketAddress } from '../config/address.js';
import { errorAnswer, type Answer, type Ede } from '../dns/answer.js';
import { CLASS_IN, EDE, FLAG_CD, RCODE, TYPE, rcodeName } from '../dns/constants.js';
import { encodeQuery } from '../dns/query.js';
import { Buckets, LATENCY_BUCKETS } from '../metrics/collected.js';
import type { Exchange, ExchangeRequest, Transport } from './exchange.js';
import { ServerHealth, type ProbeTiming } from './health.js';
import { randomU16 } from './random.js';

export interface PoolOptions {
  timeoutMs: number;
  attempts: number;
  sourceAddress: string | null;
  probe: ProbeTiming;
  /** Told when a server's state changes (the API's upstream-changed event, a log line). */
  onServerState?: (pool: UpstreamPool, server: string, health: ServerHealth) => void;
}

/** UpstreamQuery is what the pool reads of a client's query (the pipeline's Query is one). */
export interface UpstreamQuery {
  readonly msg: Buffer;
  /** End of the question section in `msg`: the question is copied from offset 12 to here. */
  readonly qEnd: number;
  readonly nameKey: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly flags: number;
  readonly dnssecOk: boolean;
  /** Set by the pool to the server that answered. */
  server: string | null;
  /** Set by the pool to the RCODE of the last server that answered but could not resolve (REFUSED, SERVFAIL…). */
  failedRcode: number;
}

/** ServerStats counts one server's exchanges as plain numbers (read at scrape time). */
export class ServerStats {
  requests = 0;
  /** By reason: timeout, unreachable, network, closed, servfail, refused, formerr, notimp, mismatch, truncated. */
  readonly errors = new Map<string, number>();
  readonly rtt = new Buckets(LATENCY_BUCKETS);

  count(reason: string, n = 1): void {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + n);
  }
}

/** RCODEs that say "this server could not answer": the next server is asked. */
const SERVER_FAILURES = new Set<number>([RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP]);

/** ". NS", the question of probes: every recursive server answers it, even one that only refuses it. */
const PROBE_QUESTION = Buffer.from([0, TYPE.NS >> 8, TYPE.NS & 0xff, CLASS_IN >> 8, CLASS_IN & 0xff]);

export class UpstreamPool {
  readonly stats = new Map<string, ServerStats>();
  readonly health: ServerHealth[];
  /** Index of the server queries go to first. */
  private primary = 0;
  private readonly probes: Array<NodeJS.Timeout | null>;
  private closed = false;

  constructor(
    /** The PvD's id: the pvd label of the metrics. */
    readonly pvdId: string,
    /** The PvD's identifier as announced, for messages. */
    readonly pvdName: string,
    readonly servers: readonly SocketAddress[],
    readonly opts: PoolOptions,
    readonly transport: Transport,
    readonly clock: () => number = () => performance.now(),
  ) {
    for (const s of servers) this.stats.set(s.label, new ServerStats());
    this.health = servers.map(() => new ServerHealth(opts.probe));
    this.probes = servers.map(() => null);
  }

  /** resolve asks the servers until one answers; it never rejects. */
  resolve(q: UpstreamQuery): Promise<Answer> {
    return new Promise((done) => new Attempt(this, q, done).next());
  }

  /**
   * candidates lists the servers a query may try, in order: the primary,
   * then the others by state rank, smoothed RTT and configured order. Down
   * servers are left out; their probes test them.
   */
  candidates(): number[] {
    const now = this.clock();
    if (this.servers.length === 1) return this.health[0]!.usable ? [0] : [];
    const usable = this.servers.map((_, i) => i).filter((i) => this.health[i]!.usable);
    const rest = usable.filter((i) => i !== this.primary).sort((a, b) => this.compare(a, b, now));
    return this.health[this.primary]!.usable ? [this.primary, ...rest] : rest;
  }

  private compare(a: number, b: number, now: number): number {
    const ha = this.health[a]!;
    const hb = this.health[b]!;
    return ha.rank(now) - hb.rank(now) || (ha.srttMs ?? Infinity) - (hb.srttMs ?? Infinity) || a - b;
  }

  /** firstChoice is the server a query tries first: the primary while it may be asked, else -1. */
  get firstChoice(): number {
    return this.health[this.primary]!.usable ? this.primary : -1;
  }

  /** allDown says whether no server can be asked now (default routing skips such a PvD). */
  get allDown(): boolean {
    return this.health.every((h) => !h.usable);
  }

  /** record updates a server's health and metrics with the outcome of an exchange (or of a probe). */
  record(i: number, ex: Exchange, rttMs: number, probe = false): void {
    const label = this.servers[i]!.label;
    const stats = this.stats.get(label)!;
    const health = this.health[i]!;
    const now = this.clock();
    if (ex.ignored) stats.count('mismatch', ex.ignored);
    let changed: boolean;
    if (ex.ok) {
      stats.rtt.observe(rttMs / 1000);
      if (ex.truncated) stats.count('truncated');
      // Any answer, SERVFAIL included, says the server is there (positive feedback).
      if (SERVER_FAILURES.has(ex.answer.rcode)) stats.count(rcodeName(ex.answer.rcode).toLowerCase());
      changed = health.answered(rttMs, now);
    } else {
      stats.count(ex.reason);
      changed = health.failed(ex.reason === 'timeout' || ex.reason === 'closed' ? 'timeout' : 'unreachable', ex.detail, now, probe);
    }
    // One probe at a time: the next is arranged when a server goes down and after each failed probe.
    if (health.state === 'down' && (changed || probe)) this.scheduleProbe(i);
    if (!changed) return;
    // The primary stays until it fails; then the best usable server takes over.
    if (i === this.primary && (health.state === 'suspect' || health.state === 'down')) {
      const next = this.candidates().find((c) => c !== i);
      if (next !== undefined) this.primary = next;
    } else if (!this.health[this.primary]!.usable && health.usable) {
      this.primary = i;
    }
    this.opts.onServerState?.(this, label, health);
  }

  /** scheduleProbe arranges the next test of a down server, one at a time. */
  private scheduleProbe(i: number): void {
    if (this.closed) return;
    const existing = this.probes[i];
    if (existing) clearTimeout(existing);
    const delay = Math.max(0, this.health[i]!.nextProbeAt - this.clock());
    const timer = setTimeout(() => {
      this.probes[i] = null;
      this.probe(i);
    }, delay);
    timer.unref();
    this.probes[i] = timer;
  }

  /** probe asks a down server ". NS"; any answer brings it back. */
  private probe(i: number): void {
    if (this.closed || this.health[i]!.state !== 'down') return;
    const id = randomU16();
    const req: ExchangeRequest = {
      server: this.servers[i]!,
      message: encodeQuery(id, PROBE_QUESTION, false, false),
      expect: { id, nameKey: '\0', qtype: TYPE.NS, qclass: CLASS_IN },
      timeoutMs: this.opts.timeoutMs,
      sourceAddress: this.opts.sourceAddress,
    };
    const started = this.clock();
    this.stats.get(this.servers[i]!.label)!.requests++;
    this.transport.udp(req, (ex) => this.record(i, ex, this.clock() - started, true));
  }

  /** failureEde explains in one line why no server answered (RFC 8914). */
  failureEde(failures: readonly Failure[]): Ede {
    // Servers not asked because they are down count as failed, with what made them so.
    const asked = new Set(failures.map((f) => f.server));
    const down = this.servers
      .map((s, i) => ({ s, h: this.health[i]! }))
      .filter(({ s, h }) => !asked.has(s.label) && !h.usable)
      .map(({ s, h }): Failure => ({ server: s.label, kind: h.lastFailure ?? 'timeout', detail: `down${h.lastError ? `: ${h.lastError}` : ''}` }));
    const all = [...failures, ...down];
    const network = all.every((f) => f.kind === 'unreachable');
    const silent = all.every((f) => f.kind !== 'rcode');
    const count = all.length === this.servers.length ? 'all servers' : `${all.length} of ${this.servers.length} servers`;
    const what = all.map((f) => `${f.server} ${f.detail}`).join('; ');
    return {
      // 23 when nothing could be sent or nobody listens; 22 when servers were silent or could not resolve.
      code: network ? EDE.NETWORK_ERROR : EDE.NO_REACHABLE_AUTHORITY,
      text: `pvd ${this.pvdName}: ${count} ${silent ? 'unreachable' : 'failed'} (${what})`.slice(0, 400),
    };
  }

  /** close stops the probes (the PvD was withdrawn or its pool replaced). */
  close(): void {
    this.closed = true;
    for (const t of this.probes) if (t) clearTimeout(t);
  }
}

export interface Failure {
  server: string;
  kind: 'timeout' | 'unreachable' | 'rcode';
  detail: string;
}

/** Attempt is one query's walk through the pool's candidates, driven by transport callbacks. */
class Attempt {
  /** The servers asked so far, in order. */
  private readonly tried: number[] = [];
  /** The candidates, worked out only when the primary was not enough (the common case needs none). */
  private order: number[] | null = null;
  private readonly failures: Failure[] = [];
  private started = 0;
  private current = -1;
  private req: ExchangeRequest | null = null;
  private viaTcp = false;
  private readonly onExchange = (ex: Exchange): void => this.exchanged(ex);

  constructor(
    private readonly pool: UpstreamPool,
    private readonly q: UpstreamQuery,
    private readonly done: (a: Answer) => void,
  ) {}

  /** pick is the next server to ask, or -1 when the budget or the candidates are spent. */
  private pick(): number {
    const pool = this.pool;
    if (this.tried.length >= pool.opts.attempts) return -1;
    if (this.tried.length === 0 && pool.firstChoice >= 0) return pool.firstChoice;
    this.order ??= pool.candidates();
    return this.order.find((c) => !this.tried.includes(c)) ?? -1;
  }

  next(): void {
    const pool = this.pool;
    const server = this.pick();
    if (server < 0) {
      this.done(errorAnswer(RCODE.SERVFAIL, pool.failureEde(this.failures)));
      return;
    }
    this.tried.push(server);
    this.current = server;
    const q = this.q;
    const address = pool.servers[server]!;
    const id = randomU16();
    this.req = {
      server: address,
      message: encodeQuery(id, q.msg.subarray(12, q.qEnd), (q.flags & FLAG_CD) !== 0, q.dnssecOk),
      expect: { id, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass },
      timeoutMs: pool.opts.timeoutMs,
      sourceAddress: pool.opts.sourceAddress,
    };
    this.viaTcp = false;
    this.started = pool.clock();
    pool.stats.get(address.label)!.requests++;
    pool.transport.udp(this.req, this.onExchange);
  }

  private exchanged(ex: Exchange): void {
    const pool = this.pool;
    const server = pool.servers[this.current]!.label;
    if (ex.ok && ex.truncated && !this.viaTcp) {
      // RFC 7766 §5: the whole answer over TCP, from the same server.
      pool.record(this.current, ex, pool.clock() - this.started);
      this.viaTcp = true;
      this.started = pool.clock();
      pool.stats.get(server)!.requests++;
      pool.transport.tcp(this.req!, this.onExchange);
      return;
    }
    pool.record(this.current, ex, pool.clock() - this.started);
    if (!ex.ok) {
      this.failures.push({ server, kind: ex.reason === 'timeout' || ex.reason === 'closed' ? 'timeout' : 'unreachable', detail: ex.detail });
      this.next();
      return;
    }
    const a = ex.answer;
    if (!SERVER_FAILURES.has(a.rcode)) {
      this.q.server = server;
      this.done(a);
      return;
    }
    this.q.failedRcode = a.rcode;
    const ede = a.ede ? ` (EDE ${a.ede.code}${a.ede.text ? `: ${a.ede.text}` : ''})` : '';
    this.failures.push({ server, kind: 'rcode', detail: `answered ${rcodeName(a.rcode)}${ede}` });
    this.next();
  }
}
