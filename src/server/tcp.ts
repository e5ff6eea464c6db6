// The TCP listener (RFC 7766): two-octet length framing that may arrive split
// over any number of segments (§8), pipelined queries answered concurrently
// and each as soon as it is ready, out of order (§6.2.1.1, §7), an idle
// timeout that only a complete message resets (§6.2.3), and caps on
// connections and on queries in flight per connection.
//
// Back-pressure: a client that pipelines and does not read its replies must
// not make pvdns buffer without bound. A query counts toward maxPipelined
// until its reply has been handed to the kernel, and reading stops while a
// connection's unsent replies exceed MAX_UNSENT_BYTES (Unbound stops reading
// a stream while its replies are pending); one that stays over that long is
// dropped. A connection pvdns closes is destroyed soon after, whether or not
// the client closes its side, so its slot is free again; what arrives on it
// meanwhile is read and dropped, never answered.

import net from 'node:net';
import type { Logger } from 'pino';
import { socketAddress, type SocketAddress } from '../config/address.js';
import { PENDING, type QueryHandler, type ReplySink } from './handler.js';
import type { TcpDropReason } from './metrics.js';

export interface TcpOptions {
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries in flight (not answered, or answered and not yet sent) on one connection before pvdns stops reading it. */
  maxPipelined: number;
}

/** Reply octets waiting to be sent on one connection above which pvdns stops reading it. */
export const MAX_UNSENT_BYTES = 64 * 1024;
/** How long a connection may stay above MAX_UNSENT_BYTES (or its idle timeout, if shorter) before it is dropped. */
export const SLOW_GRACE_MS = 5000;
/** How long a connection pvdns has closed waits for the client to close its side before it is destroyed. */
export const CLOSE_GRACE_MS = 2000;

export class TcpListener {
  private server: net.Server | null = null;
  private readonly connections = new Set<Connection>();
  private accepting = true;

  constructor(
    private readonly addr: SocketAddress,
    readonly handler: QueryHandler,
    private opts: TcpOptions,
    private readonly log: Logger,
  ) {}

  start(): Promise<void> {
    // allowHalfOpen: a client may send its queries and shut its side; it still gets its answers.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true });
    server.maxConnections = this.opts.maxConnections;
    server.on('connection', (socket) => {
      if (!this.accepting) {
        socket.destroy();
        return;
      }
      const c = new Connection(socket, this, this.opts, () => this.connections.delete(c));
      this.connections.add(c);
    });
    server.on('drop', () => this.log.debug({ listener: this.label }, 'tcp connection refused: tcp.maxConnections reached'));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.addr.port, host: this.addr.host.split('%')[0], ipv6Only: this.addr.family === 6 }, () => {
        server.removeListener('error', reject);
        server.on('error', (err) => this.log.warn({ err, listener: this.label }, 'tcp listener error'));
        resolve();
      });
    });
  }

  get address(): SocketAddress {
    const a = this.server!.address() as net.AddressInfo;
    return socketAddress(a.address, a.port);
  }

  get label(): string {
    return `tcp ${this.addr.label}`;
  }

  /** setOptions applies new limits; open connections keep theirs. */
  setOptions(opts: TcpOptions): void {
    this.opts = opts;
    if (this.server) this.server.maxConnections = opts.maxConnections;
  }

  /** pause stops taking connections and queries; answers in flight still go out. */
  pause(): void {
    this.accepting = false;
    this.server?.close();
    for (const c of this.connections) c.stopReading();
  }

  /** stop closes the listener and every connection. */
  async stop(): Promise<void> {
    this.pause();
    for (const c of this.connections) c.close(true);
    this.connections.clear();
    this.server = null;
  }

  /** Connections open, including those pvdns is closing. */
  get openConnections(): number {
    return this.connections.size;
  }

  /** dropped counts and logs a connection destroyed for `reason`. */
  dropped(reason: TcpDropReason, client: string): void {
    this.handler.stats.tcpDropped[reason]++;
    this.log.debug({ listener: this.label, client, reason }, 'tcp connection dropped');
  }
}

/** One client connection and its framing state. */
class Connection implements ReplySink {
  private readonly client: string;
  /** Octets read and not yet dispatched: part of a message, or whole ones held back while stalled. */
  private buffered: Buffer | null = null;
  /** Queries whose answer has not come yet. */
  private inflight = 0;
  /** Replies given to the socket and not yet written to the kernel. */
  private unsent = 0;
  /** True while handle() runs: a reply then is synchronous, not a PENDING one. */
  private dispatching = false;
  private draining = false;
  /** Reading is paused for back-pressure (maxPipelined or MAX_UNSENT_BYTES). */
  private paused = false;
  /** More than MAX_UNSENT_BYTES are waiting to be sent. */
  private over = false;
  /** The client has closed its sending side (RFC 7766 §6.2.4). */
  private ended = false;
  /** The listener takes no more queries (shutdown). */
  private stopped = false;
  /** pvdns has ended its side: nothing more is dispatched or sent. */
  private closing = false;
  private closed = false;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Set while over MAX_UNSENT_BYTES, then while waiting for the client's side after pvdns closed. */
  private graceTimer: NodeJS.Timeout | null = null;
  /** The write callback: one function for every write, so Node batches their calls. */
  private readonly written = (): void => {
    this.unsent--;
    if (this.paused || this.over) this.flow();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly listener: TcpListener,
    private readonly opts: TcpOptions,
    private readonly onClose: () => void,
  ) {
    this.client = socket.remoteAddress ?? '';
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close(true));
    socket.on('close', () => this.close(true));
    socket.on('end', () => {
      // The client is done sending; answer what it asked, then close (RFC 7766 §6.2.4).
      this.ended = true;
      this.finishIfDone();
    });
    this.armIdle();
  }

  private onData(chunk: Buffer): void {
    if (this.closing || this.stopped) return; // dropped: nothing is answered on a connection being closed
    this.buffered = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.drain();
  }

  /** drain dispatches the whole messages buffered, until the connection is stalled. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    const buf = this.buffered!;
    let at = 0;
    while (buf.length - at >= 2 && !this.closing && !this.stopped) {
      const len = buf.readUInt16BE(at);
      if (buf.length - at < 2 + len) break;
      if (this.over || this.inflight + this.unsent >= this.opts.maxPipelined) break;
      const msg = buf.subarray(at + 2, at + 2 + len);
      at += 2 + len;
      this.armIdle();
      this.dispatch(msg);
    }
    this.draining = false;
    if (this.closing || this.closed || this.stopped) {
      this.buffered = null;
      return;
    }
    this.buffered = at === 0 ? buf : at < buf.length ? buf.subarray(at) : null;
    if (this.over || this.inflight + this.unsent >= this.opts.maxPipelined) this.pauseReading();
    if (this.ended) this.finishIfDone();
  }

  private dispatch(msg: Buffer): void {
    // An unreadable message is DROPPED without a reply; the framing is intact, so read on.
    this.dispatching = true;
    const r = this.listener.handler.handle(msg, this.client, 0, 'tcp', this);
    this.dispatching = false;
    if (r === PENDING) this.inflight++;
  }

  /** reply is the ReplySink side: answers arrive here, at once or later, in any order. */
  reply(out: Buffer): void {
    this.write(out);
    if (!this.dispatching) {
      this.inflight--;
      if (this.ended || this.stopped) this.finishIfDone();
    }
  }

  /** write sends one framed reply in a single write (RFC 7766 §8). */
  private write(out: Buffer): void {
    if (this.closing || this.closed) return; // RFC 7766 §6.2.4: nothing after the client has gone
    const framed = Buffer.allocUnsafe(2 + out.length);
    framed.writeUInt16BE(out.length, 0);
    out.copy(framed, 2);
    this.unsent++;
    if (!this.socket.write(framed, this.written) && !this.over && this.socket.writableLength > MAX_UNSENT_BYTES) this.overflowing();
    this.armIdle();
  }

  /** overflowing stops reading a client that does not read its replies, and gives it a grace to catch up. */
  private overflowing(): void {
    this.over = true;
    this.pauseReading();
    this.graceTimer = setTimeout(() => this.drop('slow'), Math.min(SLOW_GRACE_MS, this.opts.idleTimeoutMs));
    this.graceTimer.unref();
  }

  private pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  /** flow resumes reading once replies have gone out (a write callback, which also covers 'drain'). */
  private flow(): void {
    if (this.closing || this.closed) return;
    if (this.over && this.socket.writableLength <= MAX_UNSENT_BYTES) {
      this.over = false;
      clearTimeout(this.graceTimer!);
      this.graceTimer = null;
    }
    if (!this.paused || this.over || this.inflight + this.unsent >= this.opts.maxPipelined) return;
    this.paused = false;
    if (this.buffered !== null) this.drain(); // what was held back first; it may stall again
    if (!this.paused && !this.stopped && !this.closing) this.socket.resume();
  }

  /** finishIfDone closes a connection with nothing more to answer once the client or the listener is done. */
  private finishIfDone(): void {
    if (this.inflight > 0 || this.closing || this.draining) return;
    if (this.stopped || !this.hasMessage()) this.close();
  }

  private hasMessage(): boolean {
    const b = this.buffered;
    return b !== null && b.length >= 2 && b.length >= 2 + b.readUInt16BE(0);
  }

  private armIdle(): void {
    if (this.idleTimer !== null) this.idleTimer.refresh();
    else {
      this.idleTimer = setTimeout(() => this.onIdle(), this.opts.idleTimeoutMs);
      this.idleTimer.unref();
    }
  }

  private onIdle(): void {
    // A connection waiting for its answers is not idle.
    if (this.inflight > 0) this.armIdle();
    else this.close();
  }

  stopReading(): void {
    this.stopped = true;
    this.buffered = null;
    this.pauseReading();
    this.finishIfDone();
  }

  /**
   * close ends the connection after what was written has gone out, and
   * destroys it CLOSE_GRACE_MS later if the client has not closed its side
   * by then; `broken` destroys it at once.
   */
  close(broken = false): void {
    if (this.closed) return;
    if (broken) {
      this.closed = true;
      if (this.idleTimer !== null) clearTimeout(this.idleTimer);
      if (this.graceTimer !== null) clearTimeout(this.graceTimer);
      this.buffered = null;
      this.socket.destroy();
      this.onClose();
      return;
    }
    if (this.closing) return;
    this.closing = true;
    this.buffered = null;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (this.graceTimer !== null) clearTimeout(this.graceTimer);
    this.socket.end();
    // Read on, dropping what comes, to see the client's FIN as soon as it is sent.
    if (this.paused) this.socket.resume();
    this.graceTimer = setTimeout(() => this.drop(this.unsent > 0 ? 'slow' : 'unclosed'), CLOSE_GRACE_MS);
    this.graceTimer.unref();
  }

  /** drop resets the connection (the kernel discards what is queued for it) and counts it. */
  private drop(reason: TcpDropReason): void {
    this.listener.dropped(reason, this.client);
    this.socket.resetAndDestroy();
    this.close(true);
  }
}
