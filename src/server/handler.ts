// QueryHandler: from a client's octets to the reply's octets, shared by the
// UDP and TCP listeners. It reads the query, applies access control, runs
// the pipeline and encodes the reply within the client's size; whatever
// happens inside, the client gets an answer and the process lives on.

import type { Logger } from 'pino';
import { NO_ACTIVITY, type Activity } from './reclaim.js';
import { ANSWER_SYNTHESIZED, errorAnswer, type Answer, type Ede } from '../dns/answer.js';
import { CLASS_IN, EDE, RCODE, TYPE, rcodeName, typeName } from '../dns/constants.js';
import { keyToName } from '../dns/name.js';
import { PARSE_DROP, PARSE_OK, parseQuery } from '../dns/query.js';
import { encodeError, encodeReply, TCP_LIMIT, udpLimit } from '../dns/reply.js';
import type { Pvd } from '../pvd/model.js';
import { Query, type Transport } from '../resolve/query.js';
import { isPromise, type Next } from '../resolve/stage.js';
import type { AccessList } from './access.js';
import type { RateLimiter } from './ratelimit.js';
import { LOCAL_LABEL, NONE_LABEL, type QueryStats } from './metrics.js';

/**
 * The client of a query pvdns asks for itself (an RFC 8801 PvD's
 * Additional Information server resolved through that PvD). No socket
 * reports it, so no remote client can be it; access.allow, which lists
 * remote clients, does not apply to it.
 */
export const SELF_CLIENT = '(pvdns)';

const NOT_ALLOWED = { code: EDE.PROHIBITED, text: 'client address not in access.allow' };
const RATE_LIMITED = { code: EDE.PROHIBITED, text: 'client over access.rateLimit' };
const CLASS_NOT_SERVED = { code: EDE.NOT_SUPPORTED, text: 'only class IN is served' };
const ZONE_TRANSFER = { code: EDE.NOT_SUPPORTED, text: 'zone transfers are not served by a resolver' };

/** ReplySink is how a listener sends a reply back to the client of a query. */
export interface ReplySink {
  reply(out: Buffer, client: string, port: number): void;
}

/**
 * QueryObserver sees every query answered (the query monitor,
 * src/http/monitor.ts). The handler reads `active` once per query and calls
 * nothing, builds nothing, while it is false; `observe` is called before the
 * reply is sent, so it must only take note, and do its work later.
 */
export interface QueryObserver {
  readonly active: boolean;
  observe(q: Query, rcode: number, ede: Ede | null, seconds: number): void;
}

/** The observer of a handler nobody watches. */
const UNWATCHED: QueryObserver = { active: false, observe: () => undefined };

/** What handle() did with a message: nothing to answer, answered at once, or answer to follow. */
export const DROPPED = 0;
export const ANSWERED = 1;
export const PENDING = 2;

export class QueryHandler {
  private inflight = 0;
  private idle: Array<() => void> = [];
  private debug: boolean;
  /** Who watches the queries answered: the query monitor, when it is wired in. */
  observer: QueryObserver = UNWATCHED;
  /** Told of every query: the reclaimer, which hands memory back once queries stop (src/server/reclaim.ts). */
  activity: Activity = NO_ACTIVITY;

  constructor(
    private pipeline: Next,
    private access: AccessList,
    /** The query counters, shared with the listeners (TCP counts the connections it drops there). */
    readonly stats: QueryStats,
    private readonly log: Logger,
    private limiter: RateLimiter | null = null,
  ) {
    this.debug = log.isLevelEnabled('debug');
  }

  /** reconfigure swaps the pipeline, access list and rate limit (a reload); queries in flight finish on the old ones. */
  reconfigure(pipeline: Next, access: AccessList, limiter: RateLimiter | null = this.limiter): void {
    this.pipeline = pipeline;
    this.access = access;
    this.limiter = limiter;
    this.debug = this.log.isLevelEnabled('debug');
  }

  /** Queries refused or dropped by the rate limit so far (pvdns_ratelimited_total). */
  get rateLimited(): number {
    return this.limiter?.limited ?? 0;
  }

  /**
   * handle answers one message from `client` (`port` is its source port,
   * handed back to the sink). The reply goes to `sink`, now or later; the
   * return value says which, so TCP can count queries in flight.
   */
  handle(msg: Buffer, client: string, port: number, transport: Transport, sink: ReplySink): number {
    this.activity.touch();
    const q = new Query(transport, client, performance.now());
    const status = parseQuery(msg, q);
    if (status === PARSE_DROP) {
      this.stats.dropped++;
      return DROPPED;
    }
    const limiter = this.limiter;
    const limited = limiter !== null && limiter.enabled && !limiter.allow(client);
    if (limited && limiter.opts.action === 'drop') {
      this.stats.dropped++;
      return DROPPED;
    }
    let out: Buffer;
    if (status !== PARSE_OK) out = this.refuse(q, status, null);
    else if (!this.access.allows(client)) out = this.refuse(q, RCODE.REFUSED, NOT_ALLOWED);
    else if (limited) out = this.refuse(q, RCODE.REFUSED, RATE_LIMITED);
    else if (q.qclass !== CLASS_IN) out = this.refuse(q, RCODE.REFUSED, CLASS_NOT_SERVED);
    else if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) out = this.refuse(q, RCODE.REFUSED, ZONE_TRANSFER);
    else {
      let r;
      try {
        r = this.pipeline(q);
      } catch (err) {
        r = this.internalError(q, err);
      }
      if (isPromise(r)) {
        this.inflight++;
        r.then(
          (a) => sink.reply(this.settle(q, a), client, port),
          (err: unknown) => sink.reply(this.settle(q, this.internalError(q, err)), client, port),
        );
        return PENDING;
      }
      out = this.reply(q, r);
    }
    sink.reply(out, client, port);
    return ANSWERED;
  }

  /**
   * translate answers a query for the HTTP API (the MIF API's Translate
   * Name): in exactly `forced` when given, otherwise routed as a DNS client's
   * would be. It is counted and logged like any query; access control
   * applies, but not to SELF_CLIENT, and zone transfers are refused as over
   * DNS. `msg` is a query pvdns built itself.
   */
  async translate(msg: Buffer, client: string, forced: Pvd | null): Promise<{ query: Query; answer: Answer; reply: Buffer }> {
    const q = new Query('api', client, performance.now());
    if (parseQuery(msg, q) !== PARSE_OK) throw new Error('translate: not a query');
    q.forced = forced;
    let a: Answer;
    if (client !== SELF_CLIENT && !this.access.allows(client)) a = errorAnswer(RCODE.REFUSED, NOT_ALLOWED);
    // As over DNS (handle): a zone transfer is refused here, never forwarded nor tried in another PvD.
    else if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) a = errorAnswer(RCODE.REFUSED, ZONE_TRANSFER);
    else {
      try {
        a = await this.pipeline(q);
      } catch (err) {
        a = this.internalError(q, err);
      }
    }
    return { query: q, answer: a, reply: this.reply(q, a) };
  }

  private settle(q: Query, a: Answer): Buffer {
    if (--this.inflight === 0) for (const wake of this.idle.splice(0)) wake();
    return this.reply(q, a);
  }

  private reply(q: Query, a: Answer): Buffer {
    const out = encodeReply(q, a, q.transport === 'udp' ? udpLimit(q) : TCP_LIMIT);
    const label = q.pvd !== null ? q.pvd.id : q.route?.local ? LOCAL_LABEL : NONE_LABEL;
    const seconds = (performance.now() - q.startedAt) / 1000;
    this.stats.record(label, q.qtype, q.transport, a.rcode, q.cache, seconds, (a.flags & ANSWER_SYNTHESIZED) !== 0);
    if (this.observer.active) this.observer.observe(q, a.rcode, a.ede, seconds);
    if (this.debug) {
      this.log.debug(
        {
          client: q.client,
          transport: q.transport,
          qname: keyToName(q.nameKey),
          type: typeName(q.qtype),
          pvd: label,
          cache: q.cache,
          server: q.server,
          rcode: rcodeName(a.rcode),
          ede: a.ede,
          ms: Math.round(seconds * 1e5) / 100,
        },
        'query',
      );
    }
    return out;
  }

  private refuse(q: Query, rcode: number, ede: { code: number; text: string } | null): Buffer {
    const out = encodeError(q, rcode, ede);
    const seconds = (performance.now() - q.startedAt) / 1000;
    this.stats.record(NONE_LABEL, q.qtype, q.transport, rcode, 'none', seconds);
    if (this.observer.active) this.observer.observe(q, rcode, ede, seconds);
    if (this.debug) this.log.debug({ client: q.client, transport: q.transport, rcode: rcodeName(rcode), ede }, 'query refused');
    return out;
  }

  private internalError(q: Query, err: unknown): Answer {
    this.log.error({ err, qname: keyToName(q.nameKey), type: typeName(q.qtype) }, 'query failed inside pvdns');
    return errorAnswer(RCODE.SERVFAIL, { code: EDE.OTHER, text: 'internal error in pvdns' });
  }

  /** drained resolves once no query is waiting for an answer. */
  drained(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  get pending(): number {
    return this.inflight;
  }
}
