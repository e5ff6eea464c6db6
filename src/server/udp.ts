// The UDP listener: one socket per `listen` address; replies go back from
// the same socket to the client's address and port. Two implementations
// with one behaviour: the batched addon (src/native/udp.ts) when present,
// node:dgram otherwise.

import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { socketAddress, type SocketAddress } from '../config/address.js';
import { BATCH, errnoError, META, newNativeSocket, peerAddress, rxArea, rxMeta, SLOT, udpBackend, type NativeUdpSocket } from '../native/udp.js';
import { literalLookup } from '../upstream/udp.js';
import type { QueryHandler, ReplySink } from './handler.js';

/** Receive buffer asked of the kernel (capped by net.core.rmem_max): bursts queue instead of dropping. */
const RECV_BUFFER = 4 * 1024 * 1024;

export interface UdpListener {
  /** start binds the socket; rejects with the bind error (e.g. EADDRINUSE, EACCES). */
  start(): Promise<void>;
  /** pause stops taking new queries; replies to queries in flight still go out. */
  pause(): void;
  /** stop closes the socket; replies still being computed are dropped. */
  stop(): Promise<void>;
  /** address is the bound address (the real port when configured as 0). */
  readonly address: SocketAddress;
  readonly label: string;
}

/** createUdpListener picks the implementation this process uses. */
export function createUdpListener(addr: SocketAddress, handler: QueryHandler, log: Logger): UdpListener {
  return udpBackend === 'native' ? new BatchedUdpListener(addr, handler, log) : new DgramUdpListener(addr, handler, log);
}

class DgramUdpListener implements UdpListener {
  private socket: dgram.Socket | null = null;
  private accepting = true;

  constructor(
    private readonly addr: SocketAddress,
    private readonly handler: QueryHandler,
    private readonly log: Logger,
  ) {}

  start(): Promise<void> {
    const socket = dgram.createSocket({
      type: this.addr.family === 6 ? 'udp6' : 'udp4',
      ipv6Only: this.addr.family === 6,
      lookup: literalLookup,
    });
    this.socket = socket;
    const handler = this.handler;
    const sink: ReplySink = {
      reply: (out, client, port) => {
        if (this.socket === socket) socket.send(out, port, client);
      },
    };
    socket.on('message', (msg, rinfo) => {
      if (this.accepting) handler.handle(msg, rinfo.address, rinfo.port, 'udp', sink);
    });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ port: this.addr.port, address: this.addr.host.split('%')[0] }, () => {
        socket.removeListener('error', reject);
        // A failed send to one client (e.g. ICMP unreachable) must not end the listener.
        socket.on('error', (err) => this.log.debug({ err, listener: this.label }, 'udp socket error'));
        try {
          socket.setRecvBufferSize(RECV_BUFFER);
          socket.setSendBufferSize(RECV_BUFFER);
        } catch {
          // the kernel keeps its default
        }
        resolve();
      });
    });
  }

  get address(): SocketAddress {
    const a = this.socket!.address();
    return socketAddress(a.address, a.port);
  }

  get label(): string {
    return `udp ${this.addr.label}`;
  }

  pause(): void {
    this.accepting = false;
  }

  stop(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    if (s === null) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}

/**
 * BatchedUdpListener reads up to BATCH queries per wake-up and sends the
 * replies it can give at once (cache hits, local names) in one sendmmsg;
 * replies that wait for an upstream go out one by one as they come.
 */
class BatchedUdpListener implements UdpListener, ReplySink {
  private socket: NativeUdpSocket | null = null;
  private accepting = true;
  private port = 0;
  /** Index of the datagram being handled inside a batch, or -1 outside one. */
  private current = -1;
  private readonly out: Buffer[] = [];
  private readonly outMeta = new Int32Array(BATCH * META);
  private outCount = 0;

  constructor(
    private readonly addr: SocketAddress,
    private readonly handler: QueryHandler,
    private readonly log: Logger,
  ) {}

  start(): Promise<void> {
    try {
      const s = newNativeSocket(this.addr.family);
      const bound = s.bind(this.addr.host, this.addr.port, this.addr.family === 6);
      if (bound < 0) {
        s.close();
        throw errnoError(bound, 'bind');
      }
      this.port = s.localPort();
      const started = s.start(rxArea, rxMeta, SLOT, (n) => this.onBatch(n));
      if (started < 0) {
        s.close();
        throw errnoError(started, 'uv_poll_start');
      }
      this.socket = s;
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private onBatch(n: number): void {
    if (n < 0) {
      this.log.debug({ err: errnoError(n, 'recvmmsg'), listener: this.label }, 'udp socket error');
      return;
    }
    if (!this.accepting) return;
    for (let i = 0; i < n; i++) {
      const m = i * META;
      if (rxMeta[m + 3]) continue; // larger than any query pvdns answers: unreadable, dropped
      const len = rxMeta[m]!;
      // A copy: the query may outlive this batch while it waits for an upstream.
      const msg = Buffer.allocUnsafe(len);
      rxArea.copy(msg, 0, i * SLOT, i * SLOT + len);
      this.current = i;
      this.handler.handle(msg, peerAddress(i), rxMeta[m + 1]!, 'udp', this);
    }
    this.current = -1;
    this.flush();
  }

  /** reply queues a reply given inside a batch for one sendmmsg, or sends a later one at once. */
  reply(out: Buffer, client: string, port: number): void {
    const s = this.socket;
    if (s === null) return;
    if (this.current < 0) {
      s.send(out, port, client);
      return;
    }
    // The client's address and port words, copied word by word: a subarray would be an object per reply.
    const from = this.current * META;
    const to = this.outCount * META;
    for (let k = 0; k < META; k++) this.outMeta[to + k] = rxMeta[from + k]!;
    this.out[this.outCount++] = out;
    if (this.outCount === BATCH) this.flush();
  }

  private flush(): void {
    if (this.outCount === 0 || this.socket === null) return;
    this.socket.sendBatch(this.out, this.outMeta, this.outCount);
    this.out.fill(EMPTY, 0, this.outCount);
    this.outCount = 0;
  }

  get address(): SocketAddress {
    return socketAddress(this.addr.host, this.port);
  }

  get label(): string {
    return `udp ${this.addr.label}`;
  }

  pause(): void {
    this.accepting = false;
  }

  stop(): Promise<void> {
    this.socket?.close();
    this.socket = null;
    return Promise.resolve();
  }
}

const EMPTY = Buffer.alloc(0);
