// Queries over TCP (RFC 7766), used when a UDP answer came back truncated.
// One connection per server is reused for pipelined queries (§6.2.1) with
// IDs unique on it; answers are matched by ID and question in whatever order
// they come (§7); a query outstanding when the server closes the connection
// is sent once more on a new one (§6.2.4); an idle connection is closed
// (§6.2.3).

import net from 'node:net';
import type { SocketAddress } from '../config/address.js';
import { parseResponse } from '../dns/answer.js';
import { networkFailure, type Exchange, type ExchangeDone, type ExchangeRequest } from './exchange.js';
import { Channels } from './channels.js';
import { randomU16 } from './random.js';

/** A connection with nothing outstanding for this long is closed. */
const IDLE_MS = 10_000;

interface Pending {
  req: ExchangeRequest;
  done: ExchangeDone;
  deadline: number;
  retried: boolean;
  ignored: number;
}

/** One connection to a server and the queries outstanding on it, by ID. */
class Connection {
  readonly pending = new Map<number, Pending>();
  private readonly socket: net.Socket;
  private buffered: Buffer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private idle: NodeJS.Timeout | null = null;
  private established = false;
  closed = false;

  constructor(
    server: SocketAddress,
    sourceAddress: string | null,
    private readonly onGone: (c: Connection, orphans: Pending[], established: boolean, err: NodeJS.ErrnoException | null) => void,
  ) {
    this.socket = net.connect({
      host: server.host,
      port: server.port,
      family: server.family,
      localAddress: sourceAddress ?? undefined,
      noDelay: true,
      lookup: (host, _opts, cb) => (cb as (e: null, a: string, f: number) => void)(null, host, server.family),
    });
    this.socket.on('connect', () => (this.established = true));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.end(err));
    this.socket.on('close', () => this.end(null));
  }

  /** send writes one framed query (RFC 7766 §8: length and message in one write), its ID unique here. */
  send(p: Pending): void {
    let id = p.req.expect.id;
    while (this.pending.has(id)) id = randomU16();
    p.req.expect.id = id;
    p.req.message.writeUInt16BE(id, 0);
    this.pending.set(id, p);
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.timer === null) this.arm(p.deadline);
    const framed = Buffer.allocUnsafe(2 + p.req.message.length);
    framed.writeUInt16BE(p.req.message.length, 0);
    p.req.message.copy(framed, 2);
    this.socket.write(framed);
  }

  private onData(chunk: Buffer): void {
    let buf = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + msg.length);
      const p = msg.length >= 2 ? this.pending.get(msg.readUInt16BE(0)) : undefined;
      if (p === undefined) continue;
      const r = parseResponse(msg, p.req.expect);
      if (r.ok) this.settle(p, p.ignored ? { ...r, ignored: p.ignored } : r);
      else p.ignored++;
    }
    this.buffered = buf.length > 0 ? buf : null;
  }

  private settle(p: Pending, r: Exchange): void {
    this.pending.delete(p.req.expect.id);
    p.done(r);
    if (this.pending.size === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.idle = setTimeout(() => this.socket.end(), IDLE_MS);
      this.idle.unref();
    }
  }

  private arm(deadline: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(0, deadline - performance.now()));
  }

  private expire(): void {
    this.timer = null;
    const now = performance.now();
    // Deadlines are not in send order here (a retried query keeps its own), so look at them all.
    let next = Infinity;
    for (const p of [...this.pending.values()]) {
      if (p.deadline <= now) this.settle(p, { ok: false, reason: 'timeout', detail: 'timeout (tcp)', ignored: p.ignored });
      else next = Math.min(next, p.deadline);
    }
    if (next !== Infinity && this.timer === null) this.arm(next);
  }

  private end(err: NodeJS.ErrnoException | null): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.idle) clearTimeout(this.idle);
    this.socket.destroy();
    const orphans = [...this.pending.values()];
    this.pending.clear();
    this.onGone(this, orphans, this.established, err);
  }

  close(): void {
    this.socket.end();
  }
}

/** TcpChannel is pvdns's one connection (at a time) to one server. */
class TcpChannel {
  private conn: Connection | null = null;

  constructor(
    private readonly server: SocketAddress,
    readonly sourceAddress: string | null,
    /** Called when its connection has gone and nothing is outstanding. */
    private readonly onIdle: (ch: TcpChannel) => void,
  ) {}

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.connection().send({ req, done, deadline: performance.now() + req.timeoutMs, retried: false, ignored: 0 });
  }

  private connection(): Connection {
    if (this.conn === null || this.conn.closed) {
      this.conn = new Connection(this.server, this.sourceAddress, (c, orphans, established, err) => this.gone(c, orphans, established, err));
    }
    return this.conn;
  }

  private gone(c: Connection, orphans: Pending[], established: boolean, err: NodeJS.ErrnoException | null): void {
    if (this.conn === c) this.conn = null;
    for (const p of orphans) {
      if (established && !p.retried && performance.now() < p.deadline) {
        // RFC 7766 §6.2.4: the server closed with this query outstanding; ask once more.
        p.retried = true;
        this.connection().send(p);
      } else {
        p.done(err ? networkFailure(err) : { ok: false, reason: 'closed', detail: 'tcp connection closed without an answer', ignored: p.ignored });
      }
    }
    if (this.conn === null) this.onIdle(this);
  }

  close(): void {
    this.conn?.close();
  }
}

/** TcpTransport keeps one channel per server object (Channels), like UdpTransport. */
export class TcpTransport {
  private readonly channels = new Channels<TcpChannel>((server, source, onIdle) => new TcpChannel(server, source, onIdle));

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.channels.of(req).exchange(req, done);
  }

  close(): void {
    this.channels.close();
  }
}
