// The UDP listener: one socket per `listen` address. Replies go back from
// the same socket to the client's address and port.

import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { socketAddress, type SocketAddress } from '../config/address.js';
import { literalLookup } from '../upstream/udp.js';
import type { QueryHandler, ReplySink } from './handler.js';

/** Receive buffer asked of the kernel (capped by net.core.rmem_max): bursts queue instead of dropping. */
const RECV_BUFFER = 4 * 1024 * 1024;

export class UdpListener {
  private socket: dgram.Socket | null = null;
  private accepting = true;

  constructor(
    private readonly addr: SocketAddress,
    private readonly handler: QueryHandler,
    private readonly log: Logger,
  ) {}

  /** start binds the socket; rejects with the bind error (e.g. EADDRINUSE, EACCES). */
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

  /** address is the bound address (the real port when configured as 0). */
  get address(): SocketAddress {
    const a = this.socket!.address();
    return socketAddress(a.address, a.port);
  }

  get label(): string {
    return `udp ${this.addr.label}`;
  }

  /** pause stops taking new queries; replies to queries in flight still go out. */
  pause(): void {
    this.accepting = false;
  }

  /** stop closes the socket; replies still being computed are dropped. */
  stop(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    if (s === null) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}
