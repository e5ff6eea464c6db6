// UpstreamPool: one PvD's DNS servers. A query tries them in configured
// order, at most `attempts` of them, each for `timeoutMs`; a truncated UDP
// answer is asked again over TCP from the same server (RFC 7766 §5). When
// none answers, the answer is SERVFAIL with an Extended DNS Error naming the
// PvD and each server's failure (RFC 8914). Health state and server
// selection (issue 5) will replace the fixed order here.

import type { SocketAddress } from '../config/address.js';
import { errorAnswer, type Answer, type Ede } from '../dns/answer.js';
import { EDE, FLAG_CD, RCODE, rcodeName } from '../dns/constants.js';
import { encodeQuery } from '../dns/query.js';
import { Buckets, LATENCY_BUCKETS } from '../metrics/collected.js';
import type { Exchange, ExchangeRequest, FailureReason, Transport } from './exchange.js';
import { randomU16 } from './random.js';

export interface PoolOptions {
  timeoutMs: number;
  attempts: number;
  sourceAddress: string | null;
  /** Told when a server's state changes (the API's upstream-changed event). */
  onServerState?: (pool: UpstreamPool, server: string, stats: ServerStats) => void;
}

/**
 * What is known of a server so far: untested until it is asked, operational
 * after an answer, suspect after a failure (the words of the multi6 failure
 * detection draft; the full state machine with back-off is issue 5's).
 */
export type ServerState = 'untested' | 'operational' | 'suspect';

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
}

export interface Failure {
  server: string;
  reason: FailureReason;
  detail: string;
}

/** ServerStats counts one server's exchanges as plain numbers (read at scrape time). */
export class ServerStats {
  requests = 0;
  readonly errors = new Map<FailureReason, number>();
  readonly rtt = new Buckets(LATENCY_BUCKETS);
  state: ServerState = 'untested';
  /** Epoch milliseconds of the last state change. */
  since = Date.now();
  /** Smoothed round-trip time in milliseconds (RFC 6298's 1/8 gain), null before the first answer. */
  srttMs: number | null = null;
  lastError: string | null = null;

  /** answered records an answer; true when the state changed. */
  answered(rttMs: number): boolean {
    this.rtt.observe(rttMs / 1000);
    this.srttMs = this.srttMs === null ? rttMs : this.srttMs + (rttMs - this.srttMs) / 8;
    return this.moveTo('operational');
  }

  /** fail records a failure; true when the state changed. */
  fail(reason: FailureReason, detail: string): boolean {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + 1);
    this.lastError = detail;
    return this.moveTo('suspect');
  }

  private moveTo(state: ServerState): boolean {
    if (this.state === state) return false;
    this.state = state;
    this.since = Date.now();
    return true;
  }
}

/** RCODEs that say "this server could not answer": the next server is asked. */
const SERVER_FAILURES = new Set<number>([RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP]);

export class UpstreamPool {
  readonly stats = new Map<string, ServerStats>();

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
  }

  /** resolve asks the servers in turn until one answers; it never rejects. */
  resolve(q: UpstreamQuery): Promise<Answer> {
    return new Promise((done) => new Attempt(this, q, done).next());
  }

  /** failureEde explains in one line why no server answered (RFC 8914). */
  failureEde(failures: readonly Failure[]): Ede {
    const network = failures.every((f) => f.reason === 'network' || f.reason === 'refused');
    const silent = failures.every((f) => f.reason !== 'rcode');
    const all = failures.length === this.servers.length ? 'all servers' : `${failures.length} of ${this.servers.length} servers`;
    const what = failures.map((f) => `${f.server} ${f.detail}`).join('; ');
    return {
      // 23 when nothing could be sent or nobody listens; 22 when servers were silent or could not resolve.
      code: network ? EDE.NETWORK_ERROR : EDE.NO_REACHABLE_AUTHORITY,
      text: `pvd ${this.pvdName}: ${all} ${silent ? 'unreachable' : 'failed'} (${what})`.slice(0, 400),
    };
  }
}

/** Attempt is one query's walk through the pool's servers, driven by transport callbacks. */
class Attempt {
  private i = 0;
  private failures: Failure[] = [];
  private started = 0;
  private req: ExchangeRequest | null = null;
  private viaTcp = false;
  private readonly onExchange = (ex: Exchange): void => this.exchanged(ex);

  constructor(
    private readonly pool: UpstreamPool,
    private readonly q: UpstreamQuery,
    private readonly done: (a: Answer) => void,
  ) {}

  next(): void {
    const pool = this.pool;
    if (this.i >= Math.min(pool.opts.attempts, pool.servers.length)) {
      this.done(errorAnswer(RCODE.SERVFAIL, pool.failureEde(this.failures)));
      return;
    }
    const q = this.q;
    const server = pool.servers[this.i]!;
    const id = randomU16();
    this.req = {
      server,
      message: encodeQuery(id, q.msg.subarray(12, q.qEnd), (q.flags & FLAG_CD) !== 0, q.dnssecOk),
      expect: { id, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass },
      timeoutMs: pool.opts.timeoutMs,
      sourceAddress: pool.opts.sourceAddress,
    };
    this.viaTcp = false;
    this.started = pool.clock();
    pool.stats.get(server.label)!.requests++;
    pool.transport.udp(this.req, this.onExchange);
  }

  private exchanged(ex: Exchange): void {
    const pool = this.pool;
    const server = this.req!.server;
    const stats = pool.stats.get(server.label)!;
    if (ex.ok && ex.truncated && !this.viaTcp) {
      this.viaTcp = true;
      stats.requests++;
      pool.transport.tcp(this.req!, this.onExchange);
      return;
    }
    this.i++;
    if (!ex.ok) {
      this.failed(server.label, stats, ex.reason, ex.detail);
      return;
    }
    const a = ex.answer;
    if (!SERVER_FAILURES.has(a.rcode)) {
      if (stats.answered(pool.clock() - this.started)) pool.opts.onServerState?.(pool, server.label, stats);
      this.q.server = server.label;
      this.done(a);
      return;
    }
    const ede = a.ede ? ` (EDE ${a.ede.code}${a.ede.text ? `: ${a.ede.text}` : ''})` : '';
    this.failed(server.label, stats, 'rcode', `answered ${rcodeName(a.rcode)}${ede}`);
  }

  private failed(server: string, stats: ServerStats, reason: FailureReason, detail: string): void {
    if (stats.fail(reason, detail)) this.pool.opts.onServerState?.(this.pool, server, stats);
    this.failures.push({ server, reason, detail });
    this.next();
  }
}
