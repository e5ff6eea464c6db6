// DNS over HTTPS (RFC 8484) over HTTP/2, with node:http2. One multiplexed
// session per server (§5.2: HTTP/2 is the minimum version and its streams
// carry concurrent queries answered in any order), reused, closed after a
// while idle; a session that goes away is replaced by the next query, and
// the queries it left without an answer are sent once more on the new one
// (as tcp.ts does after RFC 7766 §6.2.4).
//
// Each query is a POST of `application/dns-message` (§4.1) with DNS ID 0 on
// the wire (§4.1: cache friendly; the stream, not the ID, pairs the answer
// with its query, which is still checked against the question), padded to a
// multiple of 128 octets (RFC 8467 §4.1). The TLS handshake authenticates the
// server by its name, or its address when it has none (RFC 8310 §8), against
// Trust's roots; TLS sessions are resumed. A server named by a host name is
// resolved through its own PvD's other servers (§10), the result kept by its
// TTL.
//
// HTTP statuses: a 5xx is the server's own trouble behind a working front, so
// it becomes a SERVFAIL answer naming the status and the pool asks the next
// server; any other non-200 (404, 415...) says the URL is wrong, so the
// server cannot be used as configured (reason 'http'). HTTP cache headers are
// ignored: the answer's TTLs rule, as for any answer.

import type http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { http, loadHttp2, loadTls } from '../node-http.js';
import { errorAnswer, parseResponse, type Expected } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import { padQuery } from '../dns/padding.js';
import { Channels } from './channels.js';
import { checkIdentity, tlsFailure } from './tls-failure.js';
import { networkFailure, type Exchange, type ExchangeDone, type ExchangeRequest } from './exchange.js';
import type { UpstreamServer } from './server.js';
import type { ServerStats } from './stats.js';
import type { Carrier } from './transports.js';
import type { Trust } from './trust.js';

/** A session with nothing outstanding for this long is closed. */
const IDLE_MS = 30_000;
/** The longest a TCP connect plus TLS handshake may take (less when the query's own timeout is shorter). */
const CONNECT_MS = 2_000;
/** Queries outstanding per server beyond this fail at once: memory stays bounded when a server stalls. */
export const MAX_OUTSTANDING = 1000;
/** A DNS message is at most 65535 octets (RFC 8484 §6): a longer body is no answer. */
const MAX_BODY = 65_535;
/** A looked-up address is kept for its TTL, within these bounds. */
const TTL_FLOOR_S = 5;
const TTL_CAP_S = 86_400;
const MEDIA_TYPE = 'application/dns-message';

type Failure = Exchange & { ok: false };

interface Pending {
  req: ExchangeRequest;
  /** The question the answer must repeat, with ID 0. */
  expect: Expected;
  done: ExchangeDone;
  /** The query as sent: ID 0, padded. */
  body: Buffer;
  timer: NodeJS.Timeout | null;
  retried: boolean;
  settled: boolean;
  /** The session it is queued or streaming on; null while it waits for a lookup. */
  session: Session | null;
  stream: http2.ClientHttp2Stream | null;
  /** The whole response arrived: nothing to cancel. */
  complete: boolean;
}

/**
 * handshakeFailure is tlsFailure (shared with DoT) for a certificate or TLS
 * protocol error, with DoH's own case — no HTTP/2 offered — and a socket
 * error for what is neither.
 */
export function handshakeFailure(err: NodeJS.ErrnoException & { reason?: string }, expected: string): Failure {
  const code = err.code ?? '';
  if (code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') return { ok: false, reason: 'tls', detail: 'https server did not offer HTTP/2' };
  if (code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || /CERT|SIGNATURE|ISSUER|CA$/.test(code)) return tlsFailure(err, expected);
  return networkFailure(err);
}

function addressText(host: string, family: 4 | 6, port: number): string {
  return family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** One HTTP/2 session (over one TLS connection) to one address of a server, and the queries on it. */
class Session {
  /** False once it is going away (GOAWAY, closed, failed): new queries go to a new session. */
  usable = true;
  private h2: http2.ClientHttp2Session | null = null;
  private readonly socket: tls.TLSSocket;
  /** The trust it was verified under: a session made under other trust takes no new queries. */
  readonly context: tls.SecureContext;
  /** Queries waiting for the handshake. */
  private readonly queue = new Set<Pending>();
  /** Queries sent and not answered. */
  private readonly streams = new Set<Pending>();
  private connectTimer: NodeJS.Timeout | null;
  private idle: NodeJS.Timeout | null = null;
  private tcpUp = false;
  private ended = false;
  /** Close once what was queued has been sent (the transport is closing). */
  private closing = false;
  readonly where: string;

  constructor(
    private readonly ch: HttpsChannel,
    readonly host: string,
    family: 4 | 6,
    timeoutMs: number,
  ) {
    const server = ch.server;
    this.where = addressText(host, family, server.port);
    // RFC 8310 §8: the name the certificate must cover; without one, the address itself (§8.2).
    const expected = server.authName ?? server.host;
    this.context = ch.trust.context();
    const options: tls.ConnectionOptions & { localAddress?: string } = {
      host,
      port: server.port,
      ALPNProtocols: ['h2'],
      secureContext: this.context,
      rejectUnauthorized: server.authenticate,
      checkServerIdentity: server.authenticate ? (_name, cert) => checkIdentity(expected, cert) : () => undefined,
    };
    // SNI carries the name; never an address (RFC 6066 §3).
    if (server.authName !== null && net.isIP(server.authName) === 0) options.servername = server.authName;
    if (ch.sourceAddress !== null) options.localAddress = ch.sourceAddress;
    // A ticket is offered only under the trust it was verified with: a resumed session skips the
    // certificate, so a CA taken out of tls.caFile must not live on in a ticket.
    if (ch.tlsSession !== null && ch.tlsSession.context === this.context) options.session = ch.tlsSession.session;
    this.socket = loadTls().connect(options);
    this.socket.once('connect', () => (this.tcpUp = true));
    this.socket.on('session', (s: Buffer) => (ch.tlsSession = { session: s, context: this.context }));
    this.socket.once('secureConnect', () => this.secured());
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.h2 !== null) return;
      // A reset once TCP is up: the server (or a middlebox) dropped the handshake.
      if (this.tcpUp && err.code === 'ECONNRESET') this.failConnect({ ok: false, reason: 'network', detail: `https connection to ${this.where} reset during the tls handshake` });
      else this.failConnect(handshakeFailure(err, expected));
    });
    this.socket.once('close', () => {
      if (this.h2 === null) this.failConnect({ ok: false, reason: 'network', detail: `https connection to ${this.where} closed during the tls handshake` });
    });
    this.connectTimer = setTimeout(
      () => this.failConnect({ ok: false, reason: 'network', detail: `https connect to ${this.where} timed out` }),
      Math.min(timeoutMs, CONNECT_MS),
    );
  }

  get connecting(): boolean {
    return this.h2 === null && !this.ended;
  }

  /** add sends a query now, or once the handshake is done. */
  add(p: Pending): void {
    p.session = this;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.h2 === null) this.queue.add(p);
    else this.start(p);
  }

  /** forget drops a settled query; its stream is cancelled unless its answer came whole. */
  forget(p: Pending): void {
    this.queue.delete(p);
    if (this.streams.delete(p) && !p.complete && p.stream && !p.stream.closed) p.stream.close(loadHttp2().constants.NGHTTP2_CANCEL);
    this.checkIdle();
  }

  /** drain stops new queries here; those in flight finish, then the session closes. */
  drain(): void {
    this.usable = false;
    if (this.h2 !== null) this.h2.close();
    else this.closing = true;
  }

  private secured(): void {
    if (this.ended) return;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.tcpUp = true;
    // A server without ALPN, or with HTTP/1.1 only (RFC 8484 §5.2: HTTP/2 is the minimum).
    if (this.socket.alpnProtocol !== 'h2') return this.failConnect({ ok: false, reason: 'tls', detail: 'https server did not offer HTTP/2' });
    const stats = this.ch.stats;
    if (stats) {
      stats.handshake(this.socket.isSessionReused() ? 'resumed' : 'ok');
      stats.authenticated = this.ch.server.authenticate;
    }
    const h2 = loadHttp2().connect(`https://${this.ch.authority}`, { createConnection: () => this.socket });
    this.h2 = h2;
    h2.on('error', () => {}); // the streams and 'close' carry the loss
    h2.on('goaway', () => this.retire());
    h2.once('close', () => this.closed());
    for (const p of this.queue) this.start(p);
    this.queue.clear();
    if (this.closing) h2.close();
    this.checkIdle();
  }

  /** failConnect fails every query waiting for a connection that will not come. */
  private failConnect(f: Failure): void {
    if (this.ended) return;
    this.ended = true;
    this.usable = false;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.socket.destroy();
    // The handshake was tried: TCP was up (refused or unreachable are no handshake).
    if (this.tcpUp) {
      this.ch.stats?.handshake('failed');
      this.ch.tlsSession = null;
    }
    if (this.ch.stats) this.ch.stats.encryptionError = f.detail;
    const waiting = [...this.queue];
    this.queue.clear();
    for (const p of waiting) {
      p.session = null;
      this.ch.settle(p, f);
    }
    this.ch.gone(this);
  }

  /** connectTimedOut is what a query waiting for this session's handshake fails with at its own deadline. */
  connectTimedOut(): Failure {
    return { ok: false, reason: 'network', detail: `https connect to ${this.where} timed out` };
  }

  private retire(): void {
    this.usable = false;
    this.ch.retired(this);
  }

  private start(p: Pending): void {
    const server = this.ch.server;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.h2!.request({
        ':method': 'POST',
        ':path': server.path ?? '/',
        ':authority': this.ch.authority,
        'content-type': MEDIA_TYPE,
        accept: MEDIA_TYPE,
        'content-length': p.body.length,
      });
    } catch {
      // The session is closing or out of stream IDs: the query goes to a new one (not a retry: it was never sent).
      this.retire();
      p.session = null;
      this.ch.dispatch(p);
      return;
    }
    p.stream = stream;
    this.streams.add(p);
    const chunks: Buffer[] = [];
    let size = 0;
    let ok = false;
    stream.on('response', (headers) => {
      const status = Number(headers[':status']);
      if (status >= 500) {
        // The server is alive but cannot answer now: a SERVFAIL, so the pool asks the next server.
        return this.ch.settle(p, { ok: true, truncated: false, answer: errorAnswer(RCODE.SERVFAIL, { code: EDE.NETWORK_ERROR, text: `https status ${status}` }) });
      }
      if (status !== 200) {
        const text = http.STATUS_CODES[status];
        return this.ch.settle(p, { ok: false, reason: 'http', detail: `https status ${status}${text ? ` ${text}` : ''}` });
      }
      const type = String(headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== MEDIA_TYPE) {
        return this.ch.settle(p, { ok: false, reason: 'http', detail: type === '' ? `https response has no content-type, not ${MEDIA_TYPE}` : `https response is ${type}, not ${MEDIA_TYPE}` });
      }
      if (Number(headers['content-length']) > MAX_BODY) return this.ch.settle(p, { ok: false, reason: 'http', detail: `https response over ${MAX_BODY} bytes` });
      ok = true;
    });
    stream.on('data', (chunk: Buffer) => {
      if (p.settled) return;
      size += chunk.length;
      if (size > MAX_BODY) return this.ch.settle(p, { ok: false, reason: 'http', detail: `https response over ${MAX_BODY} bytes` });
      chunks.push(chunk);
    });
    stream.on('end', () => {
      // A stream lost with its session ends too, with no response: 'close' sees to it.
      if (p.settled || !ok || stream.aborted || this.h2!.destroyed) return;
      p.complete = true;
      const msg = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const r = parseResponse(msg, p.expect);
      // One stream, one answer: a reply to another question is no answer to this one.
      this.ch.settle(p, r.ok ? r : { ok: false, reason: 'network', detail: `https response does not answer the query (${r.reason})`, ignored: 1 });
    });
    stream.on('error', () => {}); // 'close' decides
    stream.on('close', () => {
      if (!this.streams.delete(p) || p.settled) return this.checkIdle();
      const h2 = this.h2!;
      // The session went away (or refused the stream) before answering: ask once more elsewhere. A
      // stream reports its loss before its session does, so the session is retired first, or the
      // retry would go onto the dead session and be lost a second time.
      if (h2.destroyed || h2.closed) {
        this.usable = false;
        this.ch.retired(this);
        this.ch.orphan(p);
      } else if (stream.rstCode === loadHttp2().constants.NGHTTP2_REFUSED_STREAM) this.ch.orphan(p);
      else this.ch.settle(p, { ok: false, reason: 'network', detail: `https stream reset by the server (code ${stream.rstCode})` });
      this.checkIdle();
    });
    stream.end(p.body);
  }

  private closed(): void {
    this.ended = true;
    this.usable = false;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    // Streams normally report their own loss first; any left are orphans all the same.
    const left = [...this.streams];
    this.streams.clear();
    for (const p of left) if (!p.settled) this.ch.orphan(p);
    this.ch.gone(this);
  }

  private checkIdle(): void {
    if (this.h2 === null || this.ended || this.idle !== null) return;
    if (this.streams.size > 0 || this.queue.size > 0) return;
    this.idle = setTimeout(() => this.h2?.close(), IDLE_MS);
    this.idle.unref();
  }

  close(): void {
    this.drain();
  }
}

/** HttpsChannel is pvdns's session (one at a time) to one server, its looked-up address and its TLS session. */
class HttpsChannel {
  /** Queries given and not settled, waiting for a lookup included. */
  private outstanding = 0;
  /** The server's counters (the last request's: one object per server in its pool). */
  stats: ServerStats | null = null;
  /** The last TLS session ticket and the trust it was verified under, offered on the next connection (resumption). */
  tlsSession: { session: Buffer; context: tls.SecureContext } | null = null;
  readonly authority: string;
  private session: Session | null = null;
  private readonly sessions = new Set<Session>();
  private resolved: { host: string; family: 4 | 6; until: number } | null = null;
  /** Queries waiting for the lookup in flight; null when none is. */
  private waiting: Pending[] | null = null;

  constructor(
    readonly server: UpstreamServer,
    readonly sourceAddress: string | null,
    readonly trust: Trust,
    private readonly onIdle: (ch: HttpsChannel) => void,
  ) {
    const host = server.authName ?? (server.family === 6 ? `[${server.host}]` : server.host);
    this.authority = server.port === 443 ? host : `${host}:${server.port}`;
  }

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    if (req.stats) this.stats = req.stats;
    if (this.outstanding >= MAX_OUTSTANDING) {
      // Busy, not broken: the pool's own timer moves the query on, no health change, no fallback.
      return done({ ok: false, reason: 'timeout', detail: `https: ${MAX_OUTSTANDING} queries already outstanding to this server` });
    }
    // RFC 8484 §4.1: ID 0 on the wire; the stream pairs the answer with the query. The caller's
    // message and ID stay as they are: an opportunistic fallback sends them in the clear, where a
    // random ID matters (RFC 5452 §9.2).
    const wire = Buffer.from(req.message);
    wire.writeUInt16BE(0, 0);
    const expect = { ...req.expect, id: 0 };
    const p: Pending = { req, expect, done, body: padQuery(wire), timer: null, retried: false, settled: false, session: null, stream: null, complete: false };
    this.outstanding++;
    p.timer = setTimeout(() => {
      // Still waiting for the handshake: the connection is what failed (opportunistic fallback needs to know).
      const s = p.session;
      this.settle(p, s !== null && s.connecting ? s.connectTimedOut() : { ok: false, reason: 'timeout', detail: 'timeout (https)' });
    }, req.timeoutMs);
    this.dispatch(p);
  }

  /** dispatch finds the server's address (looking its name up if need be) and hands the query to a session. */
  dispatch(p: Pending): void {
    const name = this.server.hostName;
    if (name === null) return this.send(p, this.server.host, this.server.family);
    const r = this.resolved;
    if (r !== null && performance.now() < r.until) return this.send(p, r.host, r.family);
    if (this.waiting !== null) {
      this.waiting.push(p);
      return;
    }
    const lookup = p.req.lookup;
    if (lookup === null) {
      return this.settle(p, { ok: false, reason: 'network', detail: `cannot resolve ${name}: its pvd has no other server to ask` });
    }
    this.waiting = [p];
    let called = false;
    lookup(name, (res) => {
      if (called) return;
      called = true;
      const waiting = this.waiting ?? [];
      this.waiting = null;
      const first = res.ok ? res.addresses[0] : undefined;
      if (first === undefined) {
        const detail = `cannot resolve ${name}: ${res.ok ? 'no addresses' : res.detail}`;
        for (const w of waiting) this.settle(w, { ok: false, reason: 'network', detail });
        return;
      }
      const ttlS = Math.min(Math.max(res.ok ? res.ttlS : 0, TTL_FLOOR_S), TTL_CAP_S);
      this.resolved = { host: first.address, family: first.family, until: performance.now() + ttlS * 1000 };
      for (const w of waiting) if (!w.settled) this.send(w, first.address, first.family);
    });
  }

  private send(p: Pending, host: string, family: 4 | 6): void {
    let s = this.session;
    if (s === null || !s.usable || s.host !== host || s.context !== this.trust.context()) {
      // A new address (the name's TTL ran out and it moved), or new trust (tls.caFile reloaded):
      // the old session finishes what it has.
      if (s !== null && s.usable) s.drain();
      s = new Session(this, host, family, p.req.timeoutMs);
      this.session = s;
      this.sessions.add(s);
    }
    s.add(p);
  }

  settle(p: Pending, r: Exchange): void {
    if (p.settled) return;
    p.settled = true;
    if (p.timer) clearTimeout(p.timer);
    this.outstanding--;
    p.session?.forget(p);
    if (this.waiting !== null) {
      const i = this.waiting.indexOf(p);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    if (r.ok && this.stats) {
      this.stats.via = 'https';
      this.stats.encryptionError = null;
    }
    p.done(r);
    this.checkIdle();
  }

  /** orphan takes a query a session lost unanswered: sent once more, then failed. */
  orphan(p: Pending): void {
    p.session = null;
    p.stream = null;
    if (p.retried) return this.settle(p, { ok: false, reason: 'closed', detail: 'https connection closed without an answer' });
    p.retried = true;
    this.dispatch(p);
  }

  /** retired: a session that takes no more queries (GOAWAY); the next query opens a new one. */
  retired(s: Session): void {
    if (this.session === s) this.session = null;
  }

  gone(s: Session): void {
    this.sessions.delete(s);
    if (this.session === s) this.session = null;
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.outstanding === 0 && this.sessions.size === 0) this.onIdle(this);
  }

  close(): void {
    for (const s of this.sessions) s.close();
    this.session = null;
  }
}

/** HttpsTransport is the DoH carrier: one channel per server object, like TcpTransport. */
export class HttpsTransport implements Carrier {
  private readonly channels = new Channels<HttpsChannel>((server, source, onIdle) => new HttpsChannel(server, source, this.trust, onIdle));

  constructor(readonly trust: Trust) {}

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.channels.of(req).exchange(req, done);
  }

  /** close lets the queries in flight finish and closes every session after them. */
  close(): void {
    this.channels.close();
  }
}
