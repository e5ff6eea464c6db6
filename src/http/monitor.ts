// QueryMonitor: GET /v1/monitor, a live stream of the queries pvdns answers,
// as `resolvectl monitor` shows systemd-resolved's: per query the client,
// name, type, the route (the zone matched and its PvD, or the default order
// and why a PvD was passed over), the cache verdict, the server that
// answered, the RCODE with its extended error (RFC 8914) and the time taken.
//
// It must never slow the answers down. With no subscriber, a query costs one
// test of `active` (QueryHandler). With subscribers, a query only takes a
// place in a queue, and only when some subscriber takes it (its `sample`,
// then its `rate` of records per second); records are built and written
// on the next turn of the event loop (setImmediate), after the replies of
// this turn have gone out, each record serialized once for every subscriber.
// A subscriber over its rate loses records, and so does one that has fallen
// behind (half the hub's MAX_BUFFERED waiting for it): it is told how many
// once a second ("dropped"). One of which nothing more has gone out for
// STALL_MS while records wait does not read at all: it is cut off (and
// counted, as the hub counts every subscriber it drops). pvdns never holds
// more than MAX_BUFFERED for any.

import type http from 'node:http';
import type { Registry } from 'prom-client';
import type { Ede } from '../dns/answer.js';
import { rcodeName, typeName } from '../dns/constants.js';
import { keyToName } from '../dns/name.js';
import type { Pvd } from '../pvd/model.js';
import type { CacheVerdict, Query, Transport } from '../resolve/query.js';
import type { LocalKind } from '../resolve/routes.js';
import { CollectedValue } from '../metrics/collected.js';
import { MAX_BUFFERED, type EventHub } from './events.js';

/** Why a default PvD is passed over for names nobody claims (the router's `eligible`). */
export type SkipReason = 'down' | 'captive';

/** A subscriber's records per second unless it asks otherwise, and the most it may ask. */
export const DEFAULT_RATE = 1000;
export const MAX_RATE = 100_000;
/** How often a subscriber that lost records is told how many. */
const DROPPED_NOTICE_MS = 1000;
/**
 * Octets waiting for a subscriber beyond which its records are dropped
 * rather than queued: a reader slower than the queries (a busy terminal, a
 * loaded host) loses records, and is told so, before the hub's bound cuts it.
 */
const BEHIND = MAX_BUFFERED / 2;
/** How long records may wait for a subscriber with none going out before it is taken for one that does not read, and cut off. */
export const STALL_MS = 5000;
/** Queries waiting for their records within one turn of the event loop, at most. */
const MAX_PENDING = 20_000;
/** Fields per pending query in the flat queue: query, rcode, ede, seconds, subscriber mask. */
const STRIDE = 5;

/** What a subscriber asked for: the share of queries to see, and records per second at most. */
export interface MonitorOptions {
  /** 0 < sample ≤ 1: each query is seen with this probability. */
  sample: number;
  /** Records per second at most; beyond it records are dropped and counted. */
  rate: number;
}

/** The route a query took, as the monitor shows it. */
export interface MonitorRoute {
  /**
   * zone: a PvD claims the name (`zone`); default: nobody claims it, the
   * default PvDs in `order`; local: pvdns answers it itself (RFC 6761, RFC
   * 6303); forced: the client chose the PvD (the API's `pvd`); none: the
   * query was refused before it was routed.
   */
  kind: 'zone' | 'default' | 'local' | 'forced' | 'none';
  zone: string | null;
  local: LocalKind | null;
  /** The PvDs of the route, in the order they are asked. */
  order: string[];
  /** PvDs of the route passed over before the one that answered, and why (servfail: it was asked and failed). */
  skipped: Array<{ pvd: string; why: SkipReason | 'servfail' }>;
}

/** One query, as GET /v1/monitor sends it (event `query`). */
export interface MonitorRecord {
  /** When the query arrived (ISO 8601). */
  time: string;
  client: string;
  transport: Transport;
  name: string;
  type: string;
  route: MonitorRoute;
  /** The PvD that answered, null when pvdns did (a local name, a refusal). */
  pvd: string | null;
  cache: CacheVerdict;
  /** The upstream server that answered, "address:port". */
  server: string | null;
  rcode: string;
  ede: Ede | null;
  /** The RCODE an upstream answered before pvdns gave up on it (RFC 8914's "why" of a SERVFAIL), when one did. */
  upstreamRcode: string | null;
  /** Milliseconds from the query's arrival to its reply. */
  ms: number;
}

/** A subscriber's state: its options, its token bucket and what it lost. */
class Subscriber {
  private tokens: number;
  private last = performance.now();
  /** Records lost to the rate since the last notice. */
  dropped = 0;
  /** Records built for it in the current batch. */
  out = '';
  /** What the current batch may add, in characters (BEHIND less what waits already). */
  room = 0;
  /** Octets of its stream the kernel had taken at the last notify. */
  delivered = 0;
  /** Since when (performance.now()) records have waited for it and none went out; 0 when some did. */
  stalledSince = 0;
  private readonly burst: number;

  constructor(
    readonly res: http.ServerResponse,
    readonly opts: MonitorOptions,
  ) {
    // A tenth of a second's worth at once: a burst never makes one write of more than that.
    this.burst = Math.max(1, opts.rate / 10);
    this.tokens = this.burst;
  }

  /** admit decides whether the subscriber sees a query answered at `now` (performance.now() time). */
  admit(now: number): boolean {
    if (this.opts.sample < 1 && Math.random() >= this.opts.sample) return false;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.opts.rate) / 1000);
    this.last = now;
    if (this.tokens < 1) {
      this.dropped++;
      return false;
    }
    this.tokens--;
    return true;
  }
}

export class QueryMonitor {
  /** Whether anyone listens: the one thing a query reads when nobody does. */
  active = false;
  private subs: readonly Subscriber[] = [];
  /** Flat queue of the queries of this turn: STRIDE fields each, no object per query. */
  private pending: unknown[] = [];
  private scheduled = false;
  private notices: NodeJS.Timeout | null = null;
  /** Records not sent to a subscriber because it was over its rate (pvdns_monitor_records_dropped_total). */
  recordsDropped = 0;

  constructor(
    private readonly hub: EventHub,
    /** Why a default PvD is passed over now, null when it is not. */
    private readonly skipReason: (pvd: Pvd) => SkipReason | null,
  ) {}

  /** register adds pvdns_monitor_subscribers and pvdns_monitor_records_dropped_total to `registry`. */
  register(registry: Registry): void {
    new CollectedValue('pvdns_monitor_subscribers', 'GET /v1/monitor subscribers now.', 'gauge', () => [{ labels: {}, value: this.subs.length }]).register(registry);
    new CollectedValue('pvdns_monitor_records_dropped_total', 'GET /v1/monitor records not sent because their subscriber was over its rate.', 'counter', () => [
      { labels: {}, value: this.recordsDropped + this.subs.reduce((n, s) => n + s.dropped, 0) },
    ]).register(registry);
  }

  /** subscribe turns a response into a monitor stream; false when there are too many already. */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse, opts: MonitorOptions): boolean {
    const sub = new Subscriber(res, opts);
    // Queued queries name subscribers by their index: write them out before the list changes.
    this.flush();
    if (!this.hub.subscribe(req, res, [], 'monitor', () => this.leave(sub))) return false;
    this.subs = [...this.subs, sub];
    this.active = true;
    this.hub.send(res, this.hub.frame('monitor', { sample: opts.sample, rate: opts.rate }));
    if (this.notices === null) {
      this.notices = setInterval(() => this.notify(), DROPPED_NOTICE_MS);
      this.notices.unref();
    }
    return true;
  }

  /** Subscribers now. */
  get subscribers(): number {
    return this.subs.length;
  }

  /**
   * observe is called by QueryHandler for each query it answers, only while
   * `active`, before the reply is sent: it decides which subscribers see the
   * query and queues it, building nothing.
   */
  observe(q: Query, rcode: number, ede: Ede | null, seconds: number): void {
    const subs = this.subs;
    const now = q.startedAt + seconds * 1000;
    let mask = 0;
    for (let i = 0; i < subs.length; i++) if (subs[i]!.admit(now)) mask |= 1 << i;
    if (mask === 0) return;
    if (this.pending.length >= MAX_PENDING * STRIDE) {
      // More in one turn than any subscriber's rate admits: a burst after a stall; lost, and counted.
      for (let i = 0; i < subs.length; i++) if (mask & (1 << i)) subs[i]!.dropped++;
      return;
    }
    this.pending.push(q, rcode, ede, seconds, mask);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** flush builds the records of the queued queries and writes each subscriber's share in one write. */
  private flush(): void {
    this.scheduled = false;
    const p = this.pending;
    if (p.length === 0) return;
    this.pending = [];
    const subs = this.subs;
    for (const s of subs) s.room = BEHIND - s.res.writableLength;
    for (let i = 0; i < p.length; i += STRIDE) {
      let mask = p[i + 4] as number;
      // Not built at all for subscribers whose share of this batch is full already.
      for (let j = 0; j < subs.length; j++) {
        if ((mask & (1 << j)) === 0 || subs[j]!.out.length < subs[j]!.room) continue;
        subs[j]!.dropped++;
        mask &= ~(1 << j);
      }
      if (mask === 0) continue;
      const text = this.hub.frame('query', this.record(p[i] as Query, p[i + 1] as number, p[i + 2] as Ede | null, p[i + 3] as number));
      for (let j = 0; j < subs.length; j++) {
        if ((mask & (1 << j)) === 0) continue;
        const s = subs[j]!;
        if (s.out.length + text.length <= s.room) s.out += text;
        else s.dropped++;
      }
    }
    for (const s of subs) {
      if (s.out === '') continue;
      const out = s.out;
      s.out = '';
      this.hub.send(s.res, out);
    }
  }

  /**
   * notify runs once a second: it cuts off a subscriber that has taken
   * nothing for STALL_MS while records wait for it, and tells each other
   * that lost records how many.
   */
  private notify(): void {
    const now = performance.now();
    for (const s of this.subs) {
      // What the kernel has taken from us for it so far (bytesWritten counts what waits too).
      const socket = s.res.socket;
      const delivered = socket ? socket.bytesWritten - socket.writableLength : 0;
      if (s.res.writableLength === 0 || delivered !== s.delivered) s.stalledSince = 0;
      else if (s.stalledSince === 0) s.stalledSince = now;
      else if (now - s.stalledSince >= STALL_MS) {
        this.hub.cut(s.res);
        continue;
      }
      s.delivered = delivered;
      if (s.dropped === 0) continue;
      const n = s.dropped;
      this.recordsDropped += n;
      s.dropped = 0;
      this.hub.send(s.res, this.hub.frame('dropped', { dropped: n, rate: s.opts.rate }));
    }
  }

  private leave(sub: Subscriber): void {
    this.flush();
    this.recordsDropped += sub.dropped;
    sub.dropped = 0;
    this.subs = this.subs.filter((s) => s !== sub);
    this.active = this.subs.length > 0;
    if (!this.active && this.notices !== null) {
      clearInterval(this.notices);
      this.notices = null;
    }
  }

  /** record is what a subscriber is sent for one query. */
  record(q: Query, rcode: number, ede: Ede | null, seconds: number): MonitorRecord {
    return {
      time: new Date(performance.timeOrigin + q.startedAt).toISOString(),
      client: q.client,
      transport: q.transport,
      name: keyToName(q.nameKey) || '.',
      type: typeName(q.qtype),
      route: this.route(q),
      pvd: q.pvd?.id ?? null,
      cache: q.cache,
      server: q.server,
      rcode: rcodeName(rcode),
      ede,
      upstreamRcode: q.failedRcode >= 0 ? rcodeName(q.failedRcode) : null,
      ms: Math.round(seconds * 1e5) / 100,
    };
  }

  /** route reconstructs the router's decision from what it left on the query (router.ts). */
  private route(q: Query): MonitorRoute {
    const r = q.route;
    if (q.forced !== null) return { kind: 'forced', zone: r?.zone ?? null, local: null, order: [q.forced.id], skipped: [] };
    if (r === null) return { kind: 'none', zone: null, local: null, order: [], skipped: [] };
    if (r.local !== null) return { kind: 'local', zone: r.zone, local: r.local, order: [], skipped: [] };
    const order = r.pvds.map((p) => p.id);
    const skipped: MonitorRoute['skipped'] = [];
    const at = q.pvd === null ? -1 : r.pvds.indexOf(q.pvd);
    for (let i = 0; i < at; i++) {
      const p = r.pvds[i]!;
      // A default PvD that is down or captive was left out by the router; any other before the
      // one that answered was asked and failed. (Claimants of a zone are never left out.)
      skipped.push({ pvd: p.id, why: (r.zone === null ? this.skipReason(p) : null) ?? 'servfail' });
    }
    return { kind: r.zone === null ? 'default' : 'zone', zone: r.zone, local: null, order, skipped };
  }

  /** close forgets the queue; the hub ends the streams. */
  close(): void {
    this.pending = [];
    if (this.notices !== null) clearInterval(this.notices);
    this.notices = null;
  }
}

/**
 * monitorOptions reads GET /v1/monitor's query: `sample` (0 < R ≤ 1,
 * default 1) and `rate` (records per second, 1 to MAX_RATE, default
 * DEFAULT_RATE). A bad value is a one-line problem, thrown as an Error.
 */
export function monitorOptions(params: URLSearchParams): MonitorOptions {
  const sampleText = params.get('sample');
  const rateText = params.get('rate');
  const sample = sampleText === null ? 1 : Number(sampleText);
  if (sampleText !== null && (sampleText.trim() === '' || !(sample > 0 && sample <= 1))) throw new Error(`sample must be a number above 0 and at most 1 (got "${sampleText}")`);
  const rate = rateText === null ? DEFAULT_RATE : Number(rateText);
  if (rateText !== null && !(Number.isInteger(rate) && rate >= 1 && rate <= MAX_RATE)) throw new Error(`rate must be a whole number of records per second from 1 to ${MAX_RATE} (got "${rateText}")`);
  return { sample, rate };
}
