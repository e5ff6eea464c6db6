// Queries over TLS: DNS over TLS (RFC 7858), with the strict usage profile
// of RFC 8310 where the server is to be authenticated. Shaped like tcp.ts
// (RFC 7766): one connection per server is reused for pipelined queries
// (§6.2.1.1) with IDs unique on it — a second and more (MAX_CONNECTIONS) only
// while SPREAD_AT queries are outstanding on every open one (see below);
// answers are matched by ID and question in
// whatever order they come (§7); a query outstanding when an established
// connection is lost is sent once more on a new one (§6.2.4); an idle
// connection is closed (§6.2.3). What TLS adds:
//
// - Nothing is written before the handshake has completed and the
//   certificate has been checked: queries wait in memory, so a failed
//   handshake never shows a query to anybody (RFC 8310 §6.6: a strict
//   client must not send in the clear, and must not send to a server it
//   could not authenticate).
// - Authentication (RFC 8310 §8): the certificate must chain to a trusted
//   root (Trust: system, bundled and tls.caFile) and cover the
//   authentication domain name, or the server's address when the server
//   was given by address alone (§8.2). An opportunistic server with no name
//   is not authenticated (§5), but still encrypted.
// - The last session ticket of each server is offered on the next connection
//   (RFC 8446 §2.2 resumption: one round trip less, no certificate sent).
// - Queries are padded to a multiple of 128 octets (RFC 8467 §4.1).
// - Memory stays bounded against a server that never reads or never answers:
//   at most MAX_OUTSTANDING queries per connection, and at most one partial
//   message held from the server (a 16-bit length prefix bounds it at 64 KiB).

import net from 'node:net';
import type tls from 'node:tls';
import { loadTls } from '../node-http.js';
import { parseResponse } from '../dns/answer.js';
import { Channels } from './channels.js';
import { checkIdentity, tlsFailure } from './tls-failure.js';
import { padQuery } from '../dns/padding.js';
import { networkFailure, type Exchange, type ExchangeDone, type ExchangeRequest } from './exchange.js';
import { randomU16 } from './random.js';
import type { ServerStats } from './stats.js';
import type { UpstreamServer } from './server.js';
import type { Carrier } from './transports.js';
import type { Trust } from './trust.js';

/** A connection with nothing outstanding for this long is closed (as tcp.ts). */
export const IDLE_MS = 10_000;

/**
 * The longest a connection may take from the TCP SYN to a checked
 * certificate. TCP plus a TLS 1.3 handshake is two round trips (TLS 1.2:
 * three), so 2 s still connects over a satellite path (~600 ms RTT); and it
 * is also capped at two thirds of the query's budget, so an opportunistic
 * server that swallows port 853 leaves a third of the budget for the
 * cleartext retry transports.ts makes (3 s budget by default: 2 s here).
 */
export const CONNECT_TIMEOUT_MS = 2_000;

/** How long a connection pvdns ended waits for the server's close before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;

/** Queries one connection may have outstanding (sent or waiting for the handshake). */
export const MAX_OUTSTANDING = 1000;

/**
 * Outstanding queries on every open connection past which another is opened,
 * up to MAX_CONNECTIONS. RFC 7766 §6.2.2 recommends one connection per
 * server for regular queries, and at a host's usual load one is all pvdns
 * opens; but servers work on a bounded number of a connection's queries at
 * once (Unbound: 32 per stream) and hold the rest, so under a burst of
 * misses one connection caps the rate at 32 per round trip upstream.
 * Measured with the bench's DoT workload (`node bench/run.mjs --only dot`):
 * one connection gave 0.87–0.88 × the rate of Unbound, which spreads its own
 * forwarded queries over up to 10 (outgoing-num-tcp); up to 4 gave 0.82–1.40
 * × and up to 8 gave 1.00 × in runs whose noise is ±20 %.
 */
export const SPREAD_AT = 32;
export const MAX_CONNECTIONS = 8;

/**
 * ALPN of DNS over TLS ("dot", IANA's ALPN registry; RFC 9461 names it for
 * SVCB). Offered, never required: RFC 7858 predates it and most servers
 * negotiate none.
 */
const ALPN = ['dot'];

/** Options for tests and tuning; the defaults are the constants above. */
export interface TlsOptions {
  idleMs?: number;
  connectTimeoutMs?: number;
  maxOutstanding?: number;
}

interface Pending {
  req: ExchangeRequest;
  done: ExchangeDone;
  deadline: number;
  retried: boolean;
  ignored: number;
}

/** Why a connection ended: its orphans are retried only after `lost` on an established connection. */
type Ending = { kind: 'lost'; failure: Exchange & { ok: false } } | { kind: 'failed'; failure: Exchange & { ok: false } };

/** addressText is "192.0.2.1:853" or "[2001:db8::1]:853", for messages. */
function addressText(server: UpstreamServer): string {
  return server.family === 6 ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

/** A session ticket and the trust it was verified under: a new trust must verify afresh. */
interface Saved {
  session: Buffer;
  context: tls.SecureContext;
}

/** One TLS connection to a server and the queries outstanding on it, by ID. */
class Connection {
  readonly pending = new Map<number, Pending>();
  private readonly socket: tls.TLSSocket;
  /** Chunks of a message not yet whole, and their total length. */
  private chunks: Buffer[] = [];
  private held = 0;
  private timer: NodeJS.Timeout | null = null;
  private idle: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null;
  private connected = false;
  /** The handshake completed and the certificate was accepted: queries may be written. */
  private secure = false;
  /** close() was called: end once nothing is outstanding. */
  private draining = false;
  private stats: ServerStats | null;
  closed = false;
  /** The connection is being ended (idle, or closed when drained): new queries go to a new one. */
  ending = false;

  constructor(
    private readonly server: UpstreamServer,
    sourceAddress: string | null,
    /** The trust it is verified under: once tls.caFile changes, it takes no new queries. */
    readonly context: tls.SecureContext,
    saved: Saved | null,
    alpn: boolean,
    first: ExchangeRequest,
    private readonly opts: Required<TlsOptions>,
    private readonly onSession: (s: Saved | null) => void,
    private readonly onGone: (c: Connection, orphans: Pending[], ending: Ending) => void,
  ) {
    this.stats = first.stats;
    const name = server.authName;
    const expected = name ?? server.host;
    // tls.connect hands family and localAddress to the TCP connect (its types omit them); noDelay is set on connect.
    const options: tls.ConnectionOptions & Pick<net.TcpNetConnectOpts, 'family' | 'localAddress'> = {
      host: server.host,
      port: server.port,
      family: server.family,
      localAddress: sourceAddress ?? undefined,
      lookup: (host, _o, cb) => (cb as (e: null, a: string, f: number) => void)(null, host, server.family),
      // SNI carries a host name only (RFC 6066 §3): none when authenticating an address.
      servername: name !== null && net.isIP(name) === 0 ? name : undefined,
      secureContext: context,
      rejectUnauthorized: server.authenticate,
      // RFC 8310 §8: the name, or the address when the server was given by address alone.
      checkServerIdentity: server.authenticate ? (_host, cert) => checkIdentity(expected, cert) : () => undefined,
      ALPNProtocols: alpn ? ALPN : undefined,
      session: saved !== null && saved.context === context ? saved.session : undefined,
    };
    this.socket = loadTls().connect(options);
    const limit = Math.max(1, Math.min(opts.connectTimeoutMs, Math.floor((first.timeoutMs * 2) / 3)));
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      this.end({ kind: 'failed', failure: { ok: false, reason: 'network', detail: `tls connect to ${addressText(server)} timed out` } });
    }, limit);
    this.socket.on('connect', () => {
      this.connected = true;
      this.socket.setNoDelay(true);
    });
    this.socket.on('secureConnect', () => this.onSecure());
    this.socket.on('session', (session: Buffer) => this.onSession({ session, context }));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.onError(err, expected));
    this.socket.on('close', () =>
      this.end(
        this.secure
          ? { kind: 'lost', failure: { ok: false, reason: 'closed', detail: 'tls connection closed without an answer' } }
          : this.connected
            ? { kind: 'failed', failure: { ok: false, reason: 'tls', detail: 'tls handshake failed: connection closed by the server' } }
            : { kind: 'failed', failure: { ok: false, reason: 'network', detail: `tls connect to ${addressText(server)} failed` } },
      ),
    );
  }

  /** ready says whether the handshake is done (a second connection waits for the first's). */
  get ready(): boolean {
    return this.secure;
  }

  /** isFull says whether the connection takes no more queries (MAX_OUTSTANDING). */
  isFull(): boolean {
    return this.pending.size >= this.opts.maxOutstanding;
  }

  /** send takes a query, its ID made unique here; it is written now if the handshake is done, else when it is. */
  send(p: Pending): void {
    let id = p.req.expect.id;
    while (this.pending.has(id)) id = randomU16();
    p.req.expect.id = id;
    p.req.message.writeUInt16BE(id, 0);
    this.pending.set(id, p);
    if (p.req.stats !== null) this.stats = p.req.stats;
    if (!this.secure) return;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.timer === null) this.arm(p.deadline);
    this.write(p);
  }

  /**
   * write sends one padded, framed query in one write (RFC 7766 §8). The
   * queries of one turn of the event loop (a batch of client datagrams) are
   * corked into one TLS record and one system call: written one by one, each
   * cost a record and a syscall here and a read at the server.
   */
  private write(p: Pending): void {
    const msg = padQuery(p.req.message);
    const framed = Buffer.allocUnsafe(2 + msg.length);
    framed.writeUInt16BE(msg.length, 0);
    msg.copy(framed, 2);
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(framed);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  private onSecure(): void {
    if (this.closed) return;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.secure = true;
    if (this.stats) {
      this.stats.handshake(this.socket.isSessionReused() ? 'resumed' : 'ok');
      this.stats.via = 'tls';
      this.stats.authenticated = this.server.authenticate;
      this.stats.encryptionError = null;
    }
    // The queries that waited for the handshake, in the order they came.
    let next = Infinity;
    for (const p of this.pending.values()) {
      next = Math.min(next, p.deadline);
      this.write(p);
    }
    if (next !== Infinity) this.arm(next);
    else this.settled();
  }

  private onError(err: NodeJS.ErrnoException, expected: string): void {
    if (this.secure) {
      this.end({ kind: 'lost', failure: networkFailure(err) });
      return;
    }
    if (!this.connected) {
      this.end({ kind: 'failed', failure: networkFailure(err) });
      return;
    }
    // checkServerIdentity's error carries the certificate; Node's verification errors carry the code only.
    this.end({ kind: 'failed', failure: tlsFailure(err, expected) });
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.held += chunk.length;
    for (;;) {
      if (this.held < 2) return;
      if (this.chunks[0]!.length < 2) this.join();
      const need = 2 + this.chunks[0]!.readUInt16BE(0);
      // A whole message is at most 2 + 65535 octets: what is held without one stays under that.
      if (this.held < need) return;
      if (this.chunks[0]!.length < need) this.join();
      const head = this.chunks[0]!;
      const msg = head.subarray(2, need);
      if (head.length === need) this.chunks.shift();
      else this.chunks[0] = head.subarray(need);
      this.held -= need;
      this.receive(msg);
      if (this.closed) return;
    }
  }

  /** join makes the held chunks one (only when a message spans them, so a trickling server costs one copy per message). */
  private join(): void {
    this.chunks = [Buffer.concat(this.chunks, this.held)];
  }

  private receive(msg: Buffer): void {
    const p = msg.length >= 2 ? this.pending.get(msg.readUInt16BE(0)) : undefined;
    if (p === undefined) return;
    const r = parseResponse(msg, p.req.expect);
    if (r.ok) this.settle(p, p.ignored ? { ...r, ignored: p.ignored } : r);
    else p.ignored++;
  }

  private settle(p: Pending, r: Exchange): void {
    this.pending.delete(p.req.expect.id);
    p.done(r);
    if (this.pending.size === 0) this.settled();
  }

  /** settled: nothing is outstanding; close after IDLE_MS, or now when draining. */
  private settled(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.draining) {
      this.finish();
      return;
    }
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => this.finish(), this.opts.idleMs);
    this.idle.unref();
  }

  /** finish ends a connection with nothing outstanding (close_notify, then FIN). */
  private finish(): void {
    this.ending = true;
    this.socket.end();
    // A server that never answers close_notify with its own close would keep the socket forever.
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private arm(deadline: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(0, deadline - performance.now()));
  }

  private expire(): void {
    this.timer = null;
    const now = performance.now();
    let next = Infinity;
    for (const p of [...this.pending.values()]) {
      if (p.deadline <= now) this.settle(p, { ok: false, reason: 'timeout', detail: 'timeout (tls)', ignored: p.ignored });
      else next = Math.min(next, p.deadline);
    }
    if (next !== Infinity && this.timer === null) this.arm(next);
  }

  private end(ending: Ending): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.idle) clearTimeout(this.idle);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.socket.destroy();
    if (ending.kind === 'failed') {
      // A ticket from a server whose handshake now fails is not offered again.
      if (ending.failure.reason === 'tls') this.onSession(null);
      if (this.stats) {
        // A handshake began once TCP connected (a refused or unreachable server had none).
        if (this.connected) this.stats.handshake('failed');
        this.stats.encryptionError = ending.failure.detail;
      }
    }
    const orphans = [...this.pending.values()];
    this.pending.clear();
    this.chunks = [];
    this.onGone(this, orphans, ending);
  }

  /** close ends the connection once its outstanding queries are answered or time out. */
  close(): void {
    this.draining = true;
    // Still connecting: onSecure writes what waits, and ends once it is answered.
    if (this.secure && this.pending.size === 0) this.finish();
  }
}

/** TlsChannel is pvdns's TLS connections to one server (one, more under load: SPREAD_AT), and its session ticket. */
class TlsChannel {
  private conns: Connection[] = [];
  private saved: Saved | null = null;
  /** Cleared when the server refused our ALPN offer: offered no more to it. */
  private alpn = true;

  constructor(
    private readonly server: UpstreamServer,
    readonly sourceAddress: string | null,
    private readonly trust: Trust,
    private readonly opts: Required<TlsOptions>,
    /** Called when its connections have gone and nothing is outstanding. */
    private readonly onIdle: (ch: TlsChannel) => void,
  ) {}

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.send({ req, done, deadline: performance.now() + req.timeoutMs, retried: false, ignored: 0 });
  }

  private send(p: Pending): void {
    const conn = this.connection(p.req);
    if (conn.isFull()) {
      // Busy, not broken: the pool's own timer moves the query on, no health change, no fallback.
      p.done({ ok: false, reason: 'timeout', detail: 'too many queries outstanding' });
      return;
    }
    conn.send(p);
  }

  /**
   * connection picks the first open connection, in the order they were
   * opened, with fewer than SPREAD_AT queries outstanding; when every one has
   * that many, a new one is opened (one handshake at a time, at most
   * MAX_CONNECTIONS), else the least loaded takes it. Filling them in order,
   * not evenly, keeps a quiet period's queries on one connection, so the
   * others close when idle: spread thin, each connection's replies wait for
   * a delayed ACK (40 ms on Linux) whenever the server's Nagle holds one
   * behind another — measured with tcpdump against Unbound, whose DoT
   * sockets do not set TCP_NODELAY.
   */
  private connection(req: ExchangeRequest): Connection {
    let fewest: Connection | null = null;
    let handshaking = false;
    const context = this.trust.context();
    for (const c of this.conns) {
      if (c.closed || c.ending) continue;
      // Verified under trust since replaced (tls.caFile reloaded): it finishes what it has.
      if (c.context !== context) {
        c.close();
        continue;
      }
      if (c.pending.size < SPREAD_AT) return c;
      if (!c.ready) handshaking = true;
      if (fewest === null || c.pending.size < fewest.pending.size) fewest = c;
    }
    if (fewest !== null && (handshaking || this.live() >= MAX_CONNECTIONS)) return fewest;
    const conn = new Connection(
      this.server,
      this.sourceAddress,
      context,
      this.saved,
      this.alpn,
      req,
      this.opts,
      (s) => (this.saved = s),
      (c, orphans, ending) => this.gone(c, orphans, ending),
    );
    this.conns.push(conn);
    return conn;
  }

  private live(): number {
    let n = 0;
    for (const c of this.conns) if (!c.closed && !c.ending) n++;
    return n;
  }

  private gone(c: Connection, orphans: Pending[], ending: Ending): void {
    this.conns = this.conns.filter((x) => x !== c);
    const noAlpn = ending.kind === 'failed' && /no application protocol/i.test(ending.failure.detail) && this.alpn;
    if (noAlpn) this.alpn = false;
    for (const p of orphans) {
      if (!p.retried && performance.now() < p.deadline && (ending.kind === 'lost' || noAlpn)) {
        // RFC 7766 §6.2.4: the server closed with this query outstanding; ask once more.
        // (Or the server refused ALPN "dot": ask once more without offering it.)
        p.retried = true;
        this.send(p);
      } else {
        p.done(p.ignored ? { ...ending.failure, ignored: p.ignored } : ending.failure);
      }
    }
    if (this.conns.length === 0) this.onIdle(this);
  }

  close(): void {
    for (const c of this.conns) c.close();
  }
}

/** TlsTransport keeps one channel per server object (Channels), like TcpTransport. */
export class TlsTransport implements Carrier {
  private readonly channels = new Channels<TlsChannel>((server, source, onIdle) => new TlsChannel(server, source, this.trust, this.opts, onIdle));
  private readonly opts: Required<TlsOptions>;

  constructor(
    readonly trust: Trust,
    opts: TlsOptions = {},
  ) {
    this.opts = {
      idleMs: opts.idleMs ?? IDLE_MS,
      connectTimeoutMs: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      maxOutstanding: opts.maxOutstanding ?? MAX_OUTSTANDING,
    };
  }

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.channels.of(req).exchange(req, done);
  }

  close(): void {
    this.channels.close();
  }
}
