// UpstreamPool: one PvD's DNS servers and what is known of their health
// (health.ts). Queries go to the primary, which stays primary until it fails
// — no round-robin churn.
//
// A query has a time budget (`queryTimeoutMs`). Each try waits the server's
// adaptive retransmission timeout (RFC 6298 style, at most `timeoutMs`);
// when it passes, the query is sent again with a fresh ID and port — to the
// next candidate while there is one (at most `attempts` servers), else to
// the same server — and the earlier tries stay outstanding, so a late answer
// to any of them is taken. A lost packet on a lossy link costs one RTO, not
// the query. Tries of one query come further apart as it ages (never closer
// than its age / 8), so a name that is never answered costs a bounded number
// of packets.
//
// Down is not dark (draft-ietf-multi6-failure-detection; CoreDNS's forward
// does the same): when no server of the PvD may be asked as a matter of
// course, real queries still go to the down servers, one query at a time per
// server and the others queued behind it; the first answer brings the server
// back and releases the queue at once. While no query comes, a `. NS` probe
// tests a down server in the background, the gap doubling up to the maximum.
//
// A failed TCP retry (after a truncated answer) is about TCP: it ends that
// server's part in the query, never the server's UDP health.
//
// An encrypted server (DoT, DoH) is a stream: a try is never lost in
// transit, so when its RTO passes the query goes on to another server but is
// not sent to the same one again — the transport keeps the try outstanding
// and takes its late answer, and reconnects itself when the connection dies.
// A TLS or HTTP failure is a hard failure like an unreachable port. A DoH
// server named by a host name has it resolved through this pool's other
// servers only (lookupHost), never another PvD's.

import { errorAnswer, type Answer, type Ede } from '../dns/answer.js';
import { CLASS_IN, EDE, FLAG_CD, RCODE, TYPE, rcodeName } from '../dns/constants.js';
import { encodeName, lowerWire } from '../dns/name.js';
import { encodeQuery } from '../dns/query.js';
import { answerSections } from '../dns/records.js';
import type { Exchange, ExchangeRequest, HostLookup, HostLookupResult, Transport } from './exchange.js';
import { ServerHealth, type ProbeTiming, type ServerState } from './health.js';
import { randomU16 } from './random.js';
import type { UpstreamServer } from './server.js';
import { ServerStats } from './stats.js';

export { ServerStats } from './stats.js';

export interface PoolOptions {
  /** The longest one try waits for its answer before the query is sent again (the RTO's ceiling). */
  timeoutMs: number;
  /** Servers one query may try. */
  attempts: number;
  /** The time a query may take upstream in all, across its tries and servers; then SERVFAIL. */
  queryTimeoutMs: number;
  sourceAddress: string | null;
  probe: ProbeTiming;
  /**
   * The first this many servers are preferred (a PvD's designated encrypted
   * resolvers, before its own cleartext ones): when one of them may be asked
   * again, it takes back the primary from a server after them. 0: none.
   */
  preferred?: number;
  /** Counters to count into, by server label (shared by a PvD's pools, kept across pools made anew); absent: the pool's own. */
  stats?: Map<string, ServerStats>;
  /** Told when a server's state changes (the API's upstream-changed event, a log line). */
  onServerState?: (pool: UpstreamPool, server: string, health: ServerHealth, previous: ServerState) => void;
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
  /**
   * A question pvdns asks for itself in the background (a captive-portal
   * probe, Pref64 discovery): what its servers say moves their health like
   * any answer, and counts in their requests and RTTs (it is traffic to
   * them), but its failures are not counted as errors: they are no client's
   * (pvdns_probes_total counts them).
   */
  readonly background?: boolean;
}

/** RCODEs that say "this server could not answer": the next server is asked. */
const SERVER_FAILURES = new Set<number>([RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP]);

/** ". NS", the question of probes: every recursive server answers it, even one that only refuses it. */
const PROBE_QUESTION = Buffer.from([0, TYPE.NS >> 8, TYPE.NS & 0xff, CLASS_IN >> 8, CLASS_IN & 0xff]);

/**
 * A down server is probed while its pool is in use: for this long after the
 * pool's last client query. Then its probes pause until the next one (which
 * tries the server itself, one at a time, and resumes them), so a host
 * whose network is gone or unused does not wake up every couple of seconds
 * to send packets nobody is waiting for (issue 19).
 */
export const PROBE_WITHOUT_QUERIES_MS = 60_000;

/** An empty list shared by every Attempt until it needs one of its own. */
const NONE: number[] = [];

/** A query's tries come no closer than its age divided by this. */
const PACING_DIVISOR = 8;

export class UpstreamPool {
  /** Each server's counters by label: the forwarder's, shared by a PvD's pools and kept when they are made anew. */
  readonly stats: Map<string, ServerStats>;
  readonly health: ServerHealth[];
  /** Index of the server queries go to first. */
  private primary = 0;
  private readonly probes: Array<NodeJS.Timeout | null>;
  /** Each server's probe count: a probe's late outcome is told from the current one's. */
  private readonly probeSeq: number[];
  /** The query trying each down server now: one at a time, never a storm. */
  private readonly trial: Array<Attempt | null>;
  /** Queries waiting for their turn at a down server. */
  private readonly waiting: Attempt[][];
  private closed = false;
  /** performance.now() of the last client query (background questions are pvdns's own, not demand). */
  private lastQueryAt: number;
  /** Down servers whose probes pause for want of queries (PROBE_WITHOUT_QUERIES_MS), and how many. */
  private readonly paused: boolean[];
  private pausedCount = 0;

  constructor(
    /** The PvD's id: the pvd label of the metrics. */
    readonly pvdId: string,
    /** The PvD's identifier as announced, for messages. */
    readonly pvdName: string,
    readonly servers: readonly UpstreamServer[],
    readonly opts: PoolOptions,
    readonly transport: Transport,
    readonly clock: () => number = () => performance.now(),
  ) {
    this.stats = opts.stats ?? new Map();
    for (const s of servers) if (!this.stats.has(s.label)) this.stats.set(s.label, new ServerStats());
    this.health = servers.map(() => new ServerHealth(opts.probe));
    this.probes = servers.map(() => null);
    this.probeSeq = servers.map(() => 0);
    this.trial = servers.map(() => null);
    this.waiting = servers.map(() => []);
    this.paused = servers.map(() => false);
    this.lastQueryAt = clock();
    this.statsOf = servers.map((s) => this.stats.get(s.label)!);
    // A DoH server named by a host name needs the others to find it.
    this.lookup = servers.some((s) => s.hostName !== null) ? (name, done) => this.lookupHost(name, done) : null;
  }

  /** isStream says whether a try to `s` goes over a stream now (see Transport.stream). */
  isStream(s: UpstreamServer): boolean {
    return this.transport.stream ? this.transport.stream(s) : s.transport !== 'udp';
  }

  /** Each server's stats by index (the transports count into them). */
  readonly statsOf: ServerStats[];
  /** Given to the transports with every request: resolves DoH host names through this pool. */
  readonly lookup: HostLookup | null;

  /**
   * lookupHost asks this pool's servers that are not themselves named by a
   * host name for `name`'s A records, then AAAA if there are none (RFC 8484
   * §10: a DoH server's name is resolved in its own PvD, never elsewhere).
   */
  private lookupHost(name: string, done: (r: HostLookupResult) => void): void {
    const byName = this.servers.map((s, i) => (s.hostName !== null ? i : -1)).filter((i) => i >= 0);
    if (byName.length === this.servers.length) {
      return done({ ok: false, detail: `no server of pvd ${this.pvdName} but DoH ones named by host name, so ${name} cannot be resolved` });
    }
    const ask = (qtype: number, then: (r: HostLookupResult) => void): void => {
      const wire = encodeName(name);
      const question = Buffer.concat([wire, Buffer.from([qtype >> 8, qtype & 0xff, 0, CLASS_IN])]);
      const msg = encodeQuery(0, question, false, false);
      const q: UpstreamQuery = {
        msg,
        qEnd: 12 + question.length,
        nameKey: lowerWire(wire, 0, wire.length),
        qtype,
        qclass: CLASS_IN,
        flags: 0,
        dnssecOk: false,
        server: null,
        failedRcode: 0,
      };
      new Attempt(this, q, (a) => {
        if (a.rcode !== RCODE.NOERROR) return then({ ok: false, detail: `${name} ${qtype === TYPE.A ? 'A' : 'AAAA'}: ${rcodeName(a.rcode)}${a.ede ? ` (${a.ede.text})` : ''}` });
        const s = answerSections(msg.subarray(0, 12 + question.length), a);
        const addresses: Array<{ address: string; family: 4 | 6 }> = [];
        let ttlS = Infinity;
        for (const r of s?.answer ?? []) {
          if (r.type !== qtype) continue;
          if (r.type === TYPE.A && r.rdata.length === 4) addresses.push({ address: [...r.rdata].join('.'), family: 4 });
          else if (r.type === TYPE.AAAA && r.rdata.length === 16) {
            const words: string[] = [];
            for (let k = 0; k < 16; k += 2) words.push(r.rdata.readUInt16BE(k).toString(16));
            addresses.push({ address: words.join(':'), family: 6 });
          } else continue;
          ttlS = Math.min(ttlS, r.ttl);
        }
        then(addresses.length > 0 ? { ok: true, addresses, ttlS } : { ok: false, detail: `${name} has no ${qtype === TYPE.A ? 'A' : 'AAAA'} record` });
      }, byName).next();
    };
    ask(TYPE.A, (r) => (r.ok ? done(r) : ask(TYPE.AAAA, (r6) => done(r6.ok ? r6 : r))));
  }

  /** resolve asks the servers until one answers or the query's budget is spent; it never rejects. */
  resolve(q: UpstreamQuery): Promise<Answer> {
    if (q.background !== true) this.noteDemand();
    return new Promise((done) => new Attempt(this, q, done).next());
  }

  /**
   * candidates lists the servers a query may try as a matter of course, in
   * order: the primary, then the others by state rank, smoothed RTT and
   * configured order. Down servers are left out (see downServers).
   */
  candidates(): number[] {
    const now = this.clock();
    if (this.servers.length === 1) return this.health[0]!.usable ? [0] : [];
    const usable = this.servers.map((_, i) => i).filter((i) => this.health[i]!.usable);
    const rest = usable.filter((i) => i !== this.primary).sort((a, b) => this.compare(a, b, now));
    const order = this.health[this.primary]!.usable ? [this.primary, ...rest] : rest;
    // While the primary is a fallback, a preferred server that may be asked goes first: a
    // suspect designated resolver is asked until it answers or is down (then it is probed).
    const n = this.opts.preferred ?? 0;
    return n === 0 || this.primary < n ? order : [...order.filter((i) => i < n), ...order.filter((i) => i >= n)];
  }

  /** downServers lists the down servers, the primary first, then in configured order. */
  downServers(): number[] {
    const down = this.servers.map((_, i) => i).filter((i) => !this.health[i]!.usable);
    return down.includes(this.primary) ? [this.primary, ...down.filter((i) => i !== this.primary)] : down;
  }

  private compare(a: number, b: number, now: number): number {
    const ha = this.health[a]!;
    const hb = this.health[b]!;
    const n = this.opts.preferred ?? 0;
    return (a < n ? 0 : 1) - (b < n ? 0 : 1) || ha.rank(now) - hb.rank(now) || (ha.srttMs ?? Infinity) - (hb.srttMs ?? Infinity) || a - b;
  }

  /** firstChoice is the server a query tries first: the primary while it may be asked (a preferred one before a fallback primary), else -1. */
  get firstChoice(): number {
    const n = this.opts.preferred ?? 0;
    if (n > 0 && this.primary >= n) {
      for (let i = 0; i < n; i++) if (this.health[i]!.usable) return i;
    }
    return this.health[this.primary]!.usable ? this.primary : -1;
  }

  /**
   * preferredDown says whether the pool has preferred servers (designated
   * resolvers) and none of them may be asked now: its queries go to the
   * servers after them.
   */
  get preferredDown(): boolean {
    const n = this.opts.preferred ?? 0;
    return n > 0 && this.health.slice(0, n).every((h) => !h.usable);
  }

  /** allDown says whether no server is asked as a matter of course now (default routing skips such a PvD). */
  get allDown(): boolean {
    return this.health.every((h) => !h.usable);
  }

  // ---------------------------------------------------------- turns at a down server

  /** trialFree says whether `a` may try down server `i` now. */
  trialFree(i: number, a: Attempt): boolean {
    const t = this.trial[i];
    return t === null || t === a;
  }

  /** acquire gives `a` the turn at down server `i`, or queues it; true when it has the turn. */
  acquire(i: number, a: Attempt): boolean {
    if (this.trialFree(i, a)) {
      this.trial[i] = a;
      return true;
    }
    this.waiting[i]!.push(a);
    return false;
  }

  /** release ends `a`'s turn at server `i`: the next query waiting takes it, or all of them once the server is back. */
  release(i: number, a: Attempt): void {
    if (this.trial[i] !== a) return;
    this.trial[i] = null;
    if (this.health[i]!.usable) return this.wakeAll(i);
    // The next waiting query takes the turn; one that goes elsewhere (or gives up) passes it on.
    const queue = this.waiting[i]!;
    while (this.trial[i] === null && queue.length > 0) queue.shift()!.resume();
  }

  /** unwait takes a query that gives up out of server `i`'s queue. */
  unwait(i: number, a: Attempt): void {
    const q = this.waiting[i]!;
    const at = q.indexOf(a);
    if (at >= 0) q.splice(at, 1);
  }

  private wakeAll(i: number): void {
    const woken = this.waiting[i]!;
    if (woken.length === 0) return;
    this.waiting[i] = [];
    for (const a of woken) a.resume();
  }

  // ---------------------------------------------------------- evidence

  /**
   * answered records an answer from server `i` (rttMs null: no RTT sample,
   * as over TCP); `counted` false: a background question's, whose failures
   * are no client's errors (UpstreamQuery.background).
   */
  answered(i: number, ex: Exchange & { ok: true }, rttMs: number | null, counted = true): void {
    const stats = this.statsOf[i]!;
    if (rttMs !== null) stats.rtt.observe(rttMs / 1000);
    if (counted) {
      if (ex.ignored) stats.count('mismatch', ex.ignored);
      if (ex.truncated) stats.count('truncated');
      if (SERVER_FAILURES.has(ex.answer.rcode)) stats.count(rcodeName(ex.answer.rcode).toLowerCase());
    }
    const health = this.health[i]!;
    const previous = health.state;
    // Any answer, SERVFAIL included, says the server is there (positive feedback).
    this.changed(i, previous, health.answered(rttMs, this.clock()));
  }

  /**
   * unanswered records a try of server `i` that got no answer within its
   * RTO; the query was first sent to it at `firstSentAt`.
   */
  unanswered(i: number, firstSentAt: number, firstForQuery: boolean, counted = true): void {
    if (counted) this.statsOf[i]!.count('timeout');
    const health = this.health[i]!;
    const previous = health.state;
    this.changed(i, previous, health.unansweredTry(firstSentAt, this.clock(), firstForQuery));
  }

  /** failedHard records an exchange with server `i` that could not be made (ICMP unreachable, a socket error). */
  failedHard(i: number, ex: Exchange & { ok: false }, counted = true): void {
    const stats = this.statsOf[i]!;
    if (counted) {
      if (ex.ignored) stats.count('mismatch', ex.ignored);
      stats.count(ex.reason);
    }
    const health = this.health[i]!;
    const previous = health.state;
    this.changed(i, previous, health.unreachable(ex.detail, this.clock()));
  }

  /** failedTcp counts a failed TCP exchange; it says nothing of the server's UDP health. */
  failedTcp(i: number, ex: Exchange & { ok: false }, counted = true): void {
    if (!counted) return;
    const stats = this.statsOf[i]!;
    if (ex.ignored) stats.count('mismatch', ex.ignored);
    stats.count(ex.reason);
  }

  private changed(i: number, previous: ServerState, changed: boolean): void {
    if (!changed) return;
    const health = this.health[i]!;
    if (health.state === 'down') this.scheduleProbe(i);
    // The primary stays until it fails; then the best usable server takes over.
    if (i === this.primary && (health.state === 'suspect' || health.state === 'down')) {
      const next = this.candidates().find((c) => c !== i);
      if (next !== undefined) this.primary = next;
    } else if (!this.health[this.primary]!.usable && health.usable) {
      this.primary = i;
    } else if (health.usable && health.state !== 'suspect' && i < (this.opts.preferred ?? 0) && this.primary >= (this.opts.preferred ?? 0)) {
      // A designated resolver is back: queries leave the fallback for it at once.
      this.primary = i;
    }
    if (previous === 'down') {
      const t = this.probes[i];
      if (t) clearTimeout(t);
      this.probes[i] = null;
      this.unpause(i);
      // Queries waiting at any down server may now go to this one.
      for (let k = 0; k < this.servers.length; k++) this.wakeAll(k);
    }
    this.opts.onServerState?.(this, this.servers[i]!.label, health, previous);
  }

  // ---------------------------------------------------------- probes

  /** scheduleProbe arranges the next background test of a down server, one at a time. */
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

  /**
   * probe asks a down server ". NS" unless a query is trying it already, and
   * waits the current gap for the answer; any answer brings it back, none
   * sends the next probe with the gap doubled (up to the maximum), so a
   * server's return is seen within one gap.
   */
  private probe(i: number): void {
    const health = this.health[i]!;
    if (this.closed || health.state !== 'down') return;
    if (this.clock() - this.lastQueryAt > PROBE_WITHOUT_QUERIES_MS) {
      // Nobody has asked this pool anything for a while: no probe, no timer, until someone does.
      this.paused[i] = true;
      this.pausedCount++;
      return;
    }
    if (this.trial[i] !== null) {
      // A real query is testing it: that is the probe.
      health.nextProbeAt = this.clock() + health.backoffMs;
      this.scheduleProbe(i);
      return;
    }
    const label = this.servers[i]!.label;
    const id = randomU16();
    const req: ExchangeRequest = {
      server: this.servers[i]!,
      message: encodeQuery(id, PROBE_QUESTION, false, false),
      expect: { id, nameKey: '\0', qtype: TYPE.NS, qclass: CLASS_IN },
      // Every try the transport carries has the same timeout, so each socket's expire in send order.
      timeoutMs: this.opts.queryTimeoutMs,
      sourceAddress: this.opts.sourceAddress,
      stats: this.statsOf[i]!,
      lookup: this.lookup,
    };
    const started = this.clock();
    const seq = ++this.probeSeq[i]!;
    const gaveUp = (detail: string): void => {
      if (this.closed || this.probeSeq[i] !== seq || health.state !== 'down') return;
      this.probeSeq[i]!++;
      health.probeFailed(detail, started, this.clock());
      this.scheduleProbe(i);
    };
    const wait = setTimeout(() => {
      this.stats.get(label)!.count('timeout');
      gaveUp('timeout');
    }, health.backoffMs);
    wait.unref();
    this.stats.get(label)!.requests++;
    this.transport.query(req, (ex) => {
      if (this.closed) return;
      if (ex.ok) {
        clearTimeout(wait);
        this.answered(i, ex, this.clock() - started); // late or not, an answer is an answer
      } else if (ex.reason !== 'timeout' && this.probeSeq[i] === seq) {
        clearTimeout(wait);
        this.failedHard(i, ex);
        gaveUp(ex.detail);
      }
    });
  }

  /** failureEde explains in one line why no server answered (RFC 8914). */
  failureEde(failures: readonly Failure[]): Ede {
    // Servers not asked because they are down count as failed, with what made them so.
    const asked = new Set(failures.map((f) => f.server));
    const down = this.servers
      .map((s, i) => ({ s, h: this.health[i]! }))
      .filter(({ s, h }) => !asked.has(s.label) && !h.usable)
      .map(({ s, h }): Failure => ({ server: s.label, kind: h.lastFailure ?? 'timeout', detail: `down${h.lastError ? `: ${h.lastError}` : ''}` }));
    const order = (f: Failure): number => this.servers.findIndex((s) => s.label === f.server);
    const all = [...failures, ...down].sort((a, b) => order(a) - order(b));
    const network = all.length > 0 && all.every((f) => f.kind === 'unreachable');
    const silent = all.every((f) => f.kind !== 'rcode');
    const count = all.length === this.servers.length ? 'all servers' : `${all.length} of ${this.servers.length} servers`;
    const what = all.map((f) => `${f.server} ${f.detail}`).join('; ');
    return {
      // 23 when nothing could be sent or nobody listens; 22 when servers were silent or could not resolve.
      code: network ? EDE.NETWORK_ERROR : EDE.NO_REACHABLE_AUTHORITY,
      text: `pvd ${this.pvdName}: ${count} ${silent ? 'unreachable' : 'failed'} (${what})`.slice(0, 400),
    };
  }

  /**
   * noteDemand records a client query for this pool: one it answers, or one
   * default routing sent elsewhere because every server here is down (the
   * PvD is still wanted, and must be seen back). Paused probes resume.
   */
  noteDemand(): void {
    this.lastQueryAt = this.clock();
    if (this.pausedCount > 0) this.resumeProbes();
  }

  /** probesPaused says whether server i is down and unprobed for want of queries. */
  probesPaused(i: number): boolean {
    return this.paused[i]!;
  }

  /** resumeProbes probes the paused servers again, at once: a client query came. */
  private resumeProbes(): void {
    for (let i = 0; i < this.servers.length; i++) {
      if (!this.paused[i]) continue;
      this.unpause(i);
      // Its next probe is overdue; one that finds the query trying the server waits a gap (probe()).
      this.health[i]!.nextProbeAt = this.clock();
      this.scheduleProbe(i);
    }
  }

  private unpause(i: number): void {
    if (!this.paused[i]) return;
    this.paused[i] = false;
    this.pausedCount--;
  }

  /** close stops the probes (the PvD was withdrawn or its pool replaced); queries in flight finish. */
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

/**
 * Attempt is one query's way through the pool: its tries, its timer (the
 * next retransmission or the budget's end, whichever is first) and what
 * each server said, driven by transport callbacks.
 */
class Attempt {
  private readonly startedAt: number;
  private readonly deadline: number;
  private settled = false;
  private timer: NodeJS.Timeout | null = null;
  /** Distinct servers asked so far, in order, and when each was first asked. */
  private readonly asked: number[] = [];
  private readonly askedAt: number[] = [];
  /** Servers this query asks no more: they answered with a failure RCODE, or could not be reached. */
  private excluded: number[] = NONE;
  /** Servers whose silence this query has counted once already. */
  private silentAt: number[] = NONE;
  /** What each server asked said last, by label (made on the first failure: most queries have none). */
  private failures: Map<string, Failure> | null = null;
  /** The server of the latest try. */
  private current = -1;
  /** The down server whose turn this query holds, or waits for; -1 for none. */
  private holding = -1;
  private waitingFor = -1;
  /** A TCP exchange (after a truncated answer) is under way: no UDP retransmission meanwhile. */
  private viaTcp = false;
  /**
   * The timer only schedules the decision: timers run before the event loop
   * reads its sockets, so a loop that runs late would otherwise take an
   * answer already waiting in a socket for a lost one and send again.
   */
  private readonly onTimer = (): void => {
    this.timer = null;
    setImmediate(this.onTimeout);
  };
  private readonly onTimeout = (): void => this.timedOut();

  constructor(
    private readonly pool: UpstreamPool,
    private readonly q: UpstreamQuery,
    private readonly done: (a: Answer) => void,
    /** Servers this query may not ask (a DoH host name's lookup skips the servers named by one). */
    exclude: number[] = NONE,
  ) {
    this.excluded = exclude;
    this.startedAt = pool.clock();
    this.deadline = this.startedAt + pool.opts.queryTimeoutMs;
  }

  /** next sends the query's next try, queues it for a down server's turn, or gives up. */
  next(): void {
    // A TCP exchange under way decides this query; the budget's end stops it.
    if (this.settled || this.waitingFor >= 0 || this.viaTcp) return;
    if (this.pool.clock() >= this.deadline) return this.fail();
    const server = this.choose();
    if (server < 0) return this.fail();
    // A turn at another down server is given back before this one is taken.
    if (this.holding >= 0 && this.holding !== server) this.giveUpTurn();
    if (!this.pool.health[server]!.usable) {
      if (!this.pool.acquire(server, this)) {
        this.waitingFor = server;
        this.arm(this.deadline);
        return;
      }
      this.holding = server;
    }
    this.send(server);
  }

  /** resume is called when the query's turn at a down server has come, or the server is back. */
  resume(): void {
    this.waitingFor = -1;
    this.next();
  }

  /**
   * choose picks the server of the next try: a server not asked yet while
   * `attempts` allows, else the asked ones in turn; with none usable, a down
   * server (one query at a time each); -1 when none is left.
   */
  private choose(): number {
    const pool = this.pool;
    const excluded = this.excluded;
    if (this.asked.length === 0 && pool.firstChoice >= 0 && !excluded.includes(pool.firstChoice)) return pool.firstChoice;
    const usable = excluded.length === 0 ? pool.candidates() : pool.candidates().filter((i) => !excluded.includes(i));
    const canWiden = this.asked.length < pool.opts.attempts;
    if (canWiden) {
      const fresh = usable.find((i) => !this.asked.includes(i));
      if (fresh !== undefined) return fresh;
    }
    const again = usable.filter((i) => this.asked.includes(i));
    if (again.length > 0) return again[(again.indexOf(this.current) + 1) % again.length]!;
    const down = pool.downServers().filter((i) => !excluded.includes(i) && (canWiden || this.asked.includes(i)));
    return down.find((i) => pool.trialFree(i, this)) ?? down[0] ?? -1;
  }

  private send(server: number): void {
    const pool = this.pool;
    const q = this.q;
    const address = pool.servers[server]!;
    const now = pool.clock();
    const rto = Math.max(pool.health[server]!.rto(pool.opts.timeoutMs), (now - this.startedAt) / PACING_DIVISOR);
    const first = !this.asked.includes(server);
    if (first) {
      this.asked.push(server);
      this.askedAt.push(now);
    }
    this.current = server;
    this.arm(Math.min(now + rto, this.deadline));
    // A stream does not lose a try: the one outstanding still gets its answer (see the top).
    if (!first && pool.isStream(address)) return;
    const id = randomU16();
    const req: ExchangeRequest = {
      server: address,
      message: encodeQuery(id, q.msg.subarray(12, q.qEnd), (q.flags & FLAG_CD) !== 0, q.dnssecOk),
      expect: { id, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass },
      // The transport keeps the try outstanding for a whole budget: a late answer to it still counts.
      timeoutMs: pool.opts.queryTimeoutMs,
      sourceAddress: pool.opts.sourceAddress,
      stats: pool.statsOf[server]!,
      lookup: pool.lookup,
    };
    pool.statsOf[server]!.requests++;
    pool.transport.query(req, (ex) => this.exchanged(server, now, req, ex));
  }

  private arm(at: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(this.onTimer, Math.max(0, at - this.pool.clock()));
  }

  /** timedOut: the latest try got no answer within its RTO, or the budget is spent. */
  private timedOut(): void {
    if (this.settled || this.timer !== null) return; // answered meanwhile, or re-armed
    // Waiting for a turn, or for TCP, only the budget's end wakes the query.
    if (this.waitingFor >= 0 || this.viaTcp) return this.fail();
    const server = this.current;
    const first = !this.silentAt.includes(server);
    if (first) this.silentAt = [...this.silentAt, server];
    // A stream's one try is one unanswered query, however many RTOs it waits (it is not sent again).
    if (first || !this.pool.isStream(this.pool.servers[server]!)) this.pool.unanswered(server, this.askedAt[this.asked.indexOf(server)]!, first, this.q.background !== true);
    this.failed({ server: this.pool.servers[server]!.label, kind: 'timeout', detail: 'timeout' });
    if (this.pool.clock() >= this.deadline) return this.fail();
    this.giveUpTurn();
    this.next();
  }

  /** giveUpTurn passes this query's turn at a down server to the next one waiting (it queues again behind them). */
  private giveUpTurn(): void {
    if (this.holding < 0) return;
    const server = this.holding;
    this.holding = -1;
    this.pool.release(server, this);
  }

  private exchanged(server: number, sentAt: number, req: ExchangeRequest, ex: Exchange): void {
    const pool = this.pool;
    if (ex.ok) {
      pool.answered(server, ex, pool.clock() - sentAt, this.q.background !== true);
      if (this.settled) return;
      if (!ex.truncated) return this.answered(server, ex.answer);
      if (this.viaTcp) return;
      // RFC 7766 §5: the whole answer over TCP, from the same server, within what is left of the budget.
      this.viaTcp = true;
      this.arm(this.deadline);
      pool.statsOf[server]!.requests++;
      const tcpReq: ExchangeRequest = { ...req, timeoutMs: Math.max(1, this.deadline - pool.clock()) };
      pool.transport.tcp(tcpReq, (tex) => this.exchangedTcp(server, tex));
      return;
    }
    // The transport gives up on a try only when a whole budget has passed: this query's own timer has decided by then.
    if (ex.reason === 'timeout') return;
    pool.failedHard(server, ex, this.q.background !== true);
    if (this.settled) return;
    this.exclude(server, { server: pool.servers[server]!.label, kind: 'unreachable', detail: ex.detail });
    if (server === this.current && !this.viaTcp) this.next();
  }

  private exchangedTcp(server: number, ex: Exchange): void {
    const pool = this.pool;
    if (ex.ok) pool.answered(server, ex, null, this.q.background !== true);
    else pool.failedTcp(server, ex, this.q.background !== true);
    if (this.settled) return;
    this.viaTcp = false;
    if (ex.ok && !ex.truncated) return this.answered(server, ex.answer);
    // A TC answer over TCP holds no records pvdns could pass on: that server's TCP failed this query.
    const kind = ex.ok || ex.reason === 'timeout' || ex.reason === 'closed' ? 'timeout' : 'unreachable';
    this.exclude(server, { server: pool.servers[server]!.label, kind, detail: `tcp ${ex.ok ? 'answer truncated' : ex.detail}` });
    this.next();
  }

  private answered(server: number, a: Answer): void {
    const label = this.pool.servers[server]!.label;
    if (!SERVER_FAILURES.has(a.rcode)) {
      this.q.server = label;
      return this.finish(a);
    }
    // It answered but could not resolve: another server may.
    this.q.failedRcode = a.rcode;
    const ede = a.ede ? ` (EDE ${a.ede.code}${a.ede.text ? `: ${a.ede.text}` : ''})` : '';
    this.exclude(server, { server: label, kind: 'rcode', detail: `answered ${rcodeName(a.rcode)}${ede}` });
    this.next();
  }

  /** exclude stops asking `server` for this query. */
  private exclude(server: number, why: Failure): void {
    if (!this.excluded.includes(server)) this.excluded = [...this.excluded, server];
    this.failed(why);
    if (this.holding === server) this.giveUpTurn();
  }

  /** failed records what a server said last. */
  private failed(why: Failure): void {
    (this.failures ??= new Map()).set(why.server, why);
  }

  private fail(): void {
    const failures = (this.failures ??= new Map());
    // A server asked that said nothing by the end of the budget was silent too.
    for (const i of this.asked) {
      const label = this.pool.servers[i]!.label;
      if (!failures.has(label)) failures.set(label, { server: label, kind: 'timeout', detail: 'timeout' });
    }
    this.finish(errorAnswer(RCODE.SERVFAIL, this.pool.failureEde([...failures.values()])));
  }

  private finish(a: Answer): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.waitingFor >= 0) this.pool.unwait(this.waitingFor, this);
    this.waitingFor = -1;
    this.giveUpTurn();
    this.done(a);
  }
}

