// The TCP listener (RFC 7766): two-octet length framing that may arrive split
// over any number of segments (§8), pipelined queries answered concurrently
// and each as soon as it is ready, out of order (§6.2.1.1, §7), an idle
// timeout that only a complete message resets (§6.2.3), and caps on
// connections and on queries in flight per connection.

import net from 'node:net';
import type { Logger } from 'pino';
import { socketAddress, type SocketAddress } from '../config/address.js';
import { PENDING, type QueryHandler, type ReplySink } from './handler.js';

export interface TcpOptions {
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries in flight on one connection before pvdns stops reading it. */
  maxPipelined: number;
}

export class TcpListener {
  private server: net.Server | null = null;
  private readonly connections = new Set<Connection>();
  private accepting = true;

  constructor(
    private readonly addr: SocketAddress,
    private readonly handler: QueryHandler,
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
      const c = new Connection(socket, this.handler, this.opts, () => this.connections.delete(c));
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

  get openConnections(): number {
    return this.connections.size;
  }
}

/** One client connection and its framing state. */
class Connection implements ReplySink {
  private buffered: Buffer | null = null;
  private inflight = 0;
  /** True while handle() runs: a reply then is synchronous, not a PENDING one. */
  private dispatching = false;
  private closed = false;
  private reading = true;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly socket: net.Socket,
    private readonly handler: QueryHandler,
    private readonly opts: TcpOptions,
    private readonly onClose: () => void,
  ) {
    const client = socket.remoteAddress ?? '';
    socket.on('data', (chunk: Buffer) => this.onData(chunk, client));
    socket.on('error', () => this.close(true));
    socket.on('close', () => this.close(true));
    socket.on('end', () => {
      // The client is done sending; answer what it asked, then close (RFC 7766 §6.2.4).
      this.reading = false;
      if (this.inflight === 0) this.close();
    });
    this.armIdle();
  }

  private onData(chunk: Buffer, client: string): void {
    let buf = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      const msg = buf.subarray(2, 2 + len);
      buf = buf.subarray(2 + len);
      this.armIdle();
      this.dispatch(msg, client);
    }
    this.buffered = buf.length > 0 ? buf : null;
  }

  private dispatch(msg: Buffer, client: string): void {
    // An unreadable message is DROPPED without a reply; the framing is intact, so read on.
    this.dispatching = true;
    const r = this.handler.handle(msg, client, 0, 'tcp', this);
    this.dispatching = false;
    if (r === PENDING && ++this.inflight >= this.opts.maxPipelined) this.socket.pause();
  }

  /** reply is the ReplySink side: answers arrive here, at once or later, in any order. */
  reply(out: Buffer): void {
    this.write(out);
    if (!this.dispatching) this.settled();
  }

  /** settled accounts for an answer that was PENDING. */
  private settled(): void {
    this.inflight--;
    if (this.inflight < this.opts.maxPipelined && this.reading) this.socket.resume();
    if (!this.reading && this.inflight === 0) this.close();
  }

  /** write sends one framed reply in a single write (RFC 7766 §8). */
  private write(out: Buffer): void {
    if (this.closed) return; // RFC 7766 §6.2.4: nothing after the client has gone
    const framed = Buffer.allocUnsafe(2 + out.length);
    framed.writeUInt16BE(out.length, 0);
    out.copy(framed, 2);
    this.socket.write(framed);
    this.armIdle();
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
    this.reading = false;
    this.socket.pause();
    if (this.inflight === 0) this.close();
  }

  /** close ends the connection after what was written has gone out; `broken` drops it at once. */
  close(broken = false): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (broken) this.socket.destroy();
    else this.socket.end();
    this.onClose();
  }
}
