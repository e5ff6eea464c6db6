// Queries over UDP. Each server gets a small set of connected sockets, each
// bound to a port drawn from the CSPRNG and retired after a few dozen
// queries or a second or two, whichever comes first. Connected, so the kernel
// drops datagrams from any other address or port and reports ICMP
// port-unreachable as ECONNREFUSED; every datagram that does arrive is still
// matched by ID and question (RFC 5452 §9.1), so a forged one is ignored and
// the real answer still accepted.
//
// The trade-off: a socket per query (Unbound's way) gives every query its own
// random port but costs four system calls and an epoll registration each,
// which halves a forwarder's throughput in Node. Short-lived shared sockets
// keep the port unpredictable (RFC 5452 §9.2) and too short-lived to be
// found by scanning (the SAD DNS side channel), at a fraction of the cost.
//
// The sockets are the batched addon's when it is present (src/native/udp.ts),
// node:dgram's otherwise; everything above the socket is shared.

import dgram from 'node:dgram';
import type { SocketAddress } from '../config/address.js';
import { errorAnswer, parseResponse, type Expected } from '../dns/answer.js';
import { RCODE } from '../dns/constants.js';
import { errnoError, META, newNativeSocket, rxArea, rxMeta, SLOT, udpBackend } from '../native/udp.js';
import { networkFailure, type Exchange, type ExchangeDone, type ExchangeRequest } from './exchange.js';
import { randomPort, randomU16 } from './random.js';

/** literalLookup resolves IP literals synchronously: dgram's default defers every call. */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}

/** Sockets in use per server at once; a query picks one at random. */
const SOCKETS_PER_SERVER = 8;
/** Queries one socket carries before it is retired. */
const USES_PER_SOCKET = 32;
/** Age after which a socket takes no new queries, in milliseconds. */
const SOCKET_LIFETIME_MS = 2000;
const BIND_TRIES = 8;

interface Pending {
  expect: Expected;
  resolve: ExchangeDone;
  /** performance.now() after which the query has timed out. */
  deadline: number;
  ignored: number;
}

/**
 * One connected socket and the queries waiting on it, by ID. Its queries
 * share one timeout, so they expire in the order they were sent: one timer
 * per socket, aimed at the oldest, instead of one per query.
 */
class Slot {
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly lifetime: NodeJS.Timeout;

  readonly socket: DatagramSocket;

  constructor(
    open: (onMessage: (msg: Buffer, truncated: boolean) => void, onError: (err: NodeJS.ErrnoException) => void) => DatagramSocket,
    private readonly onGone: (slot: Slot) => void,
  ) {
    this.socket = open(
      (msg, truncated) => this.onMessage(msg, truncated),
      (err) => this.onError(err),
    );
    // Retire on age even when no query comes along to notice.
    this.lifetime = setTimeout(() => this.retire(), SOCKET_LIFETIME_MS);
    this.lifetime.unref();
  }

  send(p: Pending, message: Buffer): void {
    this.pending.set(p.expect.id, p);
    if (this.timer === null) this.arm(p.deadline);
    this.socket.send(message);
  }

  private arm(deadline: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(0, deadline - performance.now()));
  }

  private expire(): void {
    this.timer = null;
    const now = performance.now();
    for (const p of this.pending.values()) {
      if (p.deadline > now) {
        this.arm(p.deadline);
        return;
      }
      this.settle(p, { ok: false, reason: 'timeout', detail: p.ignored ? `timeout (${p.ignored} mismatched replies ignored)` : 'timeout', ignored: p.ignored });
    }
  }

  private onMessage(msg: Buffer, truncated: boolean): void {
    if (msg.length < 12) return;
    const p = this.pending.get(msg.readUInt16BE(0));
    if (p === undefined) return;
    if (truncated) {
      // Larger than the receive slot: what arrived cannot be read, so ask again over TCP as for TC=1.
      this.settle(p, { ok: true, truncated: true, answer: OVERSIZED });
      return;
    }
    const r = parseResponse(msg, p.expect);
    if (r.ok) this.settle(p, p.ignored ? { ...r, ignored: p.ignored } : r);
    else p.ignored++;
  }

  /** An error on a connected socket concerns its one server: every query on it fails. */
  private onError(err: NodeJS.ErrnoException): void {
    const failure = networkFailure(err);
    for (const p of [...this.pending.values()]) this.settle(p, failure);
    this.retire();
  }

  private settle(p: Pending, r: Exchange): void {
    this.pending.delete(p.expect.id);
    p.resolve(r);
    if (this.pending.size === 0 && this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.retired && this.pending.size === 0) this.close();
  }

  retire(): void {
    if (this.retired) return;
    this.retired = true;
    clearTimeout(this.lifetime);
    this.onGone(this);
    if (this.pending.size === 0) this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket.close();
  }
}

/** UdpChannel is the set of sockets pvdns uses to talk to one server from one source address. */
export class UdpChannel {
  private readonly slots: Slot[] = [];

  constructor(
    private readonly server: SocketAddress,
    readonly sourceAddress: string | null,
    /** Called when the last socket retires. */
    private readonly onIdle: (ch: UdpChannel) => void = () => undefined,
  ) {}

  /** exchange sends the query, with an ID unique on its socket written into it, and calls back with the answer. */
  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    let slot: Slot;
    try {
      slot = this.pick();
    } catch (err) {
      done(networkFailure(err as NodeJS.ErrnoException));
      return;
    }
    let id = req.expect.id;
    while (slot.pending.has(id)) id = randomU16(); // IDs unique per socket, as RFC 7766 §6.2.1 asks of a connection
    req.expect.id = id;
    req.message.writeUInt16BE(id, 0);
    slot.send({ expect: req.expect, resolve: done, deadline: performance.now() + req.timeoutMs, ignored: 0 }, req.message);
    // Retire after sending: a retired socket closes as soon as nothing is pending on it.
    if (++slot.uses >= USES_PER_SOCKET) slot.retire();
  }

  /** pick returns a random live socket, opening one while there are fewer than the target. */
  private pick(): Slot {
    if (this.slots.length < SOCKETS_PER_SERVER) {
      const slot = this.open();
      this.slots.push(slot);
      return slot;
    }
    return this.slots[randomU16() % this.slots.length]!;
  }

  /** open binds a socket to a random port (a few tries: one may be taken) and connects it. */
  private open(): Slot {
    return new Slot(
      (onMessage, onError) => openSocket(this.server, this.sourceAddress, onMessage, onError),
      (s) => this.forget(s),
    );
  }

  private forget(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    if (this.slots.length === 0) this.onIdle(this);
  }

  /** close retires every socket; queries in flight still get their answer or timeout. */
  close(): void {
    for (const s of [...this.slots]) s.retire();
  }
}

/**
 * UdpTransport keeps one channel per server object: a PvD's servers are its
 * own objects, so PvDs never share sockets, and a withdrawn PvD's channels
 * are collected with it (their sockets retire by age).
 */
export class UdpTransport {
  private readonly channels = new WeakMap<SocketAddress, UdpChannel>();
  /** Channels with open sockets, so close() can reach them. */
  private readonly busy = new Set<UdpChannel>();

  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    let ch = this.channels.get(req.server);
    if (ch === undefined || ch.sourceAddress !== req.sourceAddress) {
      ch = new UdpChannel(req.server, req.sourceAddress, (idle) => this.busy.delete(idle));
      this.channels.set(req.server, ch);
    }
    this.busy.add(ch);
    ch.exchange(req, done);
  }

  close(): void {
    for (const ch of [...this.busy]) ch.close();
  }
}

/** Placeholder answer of an oversized datagram: never used, TC sends the query to TCP. */
const OVERSIZED = errorAnswer(RCODE.SERVFAIL);

/** DatagramSocket is what a Slot needs of a connected UDP socket, from either implementation. */
interface DatagramSocket {
  send(msg: Buffer): void;
  close(): void;
}

/**
 * openSocket binds a new socket to a port drawn from the CSPRNG (a few
 * tries: one may be taken; the last lets the kernel choose) and connects it
 * to the server. Throws the bind error when it cannot.
 */
function openSocket(
  server: SocketAddress,
  sourceAddress: string | null,
  onMessage: (msg: Buffer, truncated: boolean) => void,
  onError: (err: NodeJS.ErrnoException) => void,
): DatagramSocket {
  for (let tries = 0; ; tries++) {
    const spec: SocketSpec = { server, sourceAddress, port: tries < BIND_TRIES - 1 ? randomPort() : 0, onMessage, onError };
    try {
      return udpBackend === 'native' ? openNative(spec) : openDgram(spec);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries >= BIND_TRIES - 1) throw err;
    }
  }
}

/** What a connected upstream socket is made from. */
interface SocketSpec {
  server: SocketAddress;
  sourceAddress: string | null;
  /** The local port to bind; 0 lets the kernel choose. */
  port: number;
  onMessage: (msg: Buffer, truncated: boolean) => void;
  onError: (err: NodeJS.ErrnoException) => void;
}

function openDgram({ server, sourceAddress, port, onMessage, onError }: SocketSpec): DatagramSocket {
  const socket = dgram.createSocket({ type: server.family === 6 ? 'udp6' : 'udp4', lookup: literalLookup });
  let bindError: NodeJS.ErrnoException | null = null;
  socket.once('error', (err: NodeJS.ErrnoException) => (bindError = err));
  // With a synchronous lookup, bind() fails or succeeds before it returns.
  socket.bind({ port, address: sourceAddress ?? undefined, exclusive: true });
  if (bindError !== null) {
    socket.close();
    throw bindError;
  }
  socket.removeAllListeners('error');
  socket.on('message', (msg: Buffer) => onMessage(msg, false));
  socket.on('error', onError);
  socket.connect(server.port, server.host);
  return { send: (msg) => socket.send(msg), close: () => socket.close() };
}

function openNative({ server, sourceAddress, port, onMessage, onError }: SocketSpec): DatagramSocket {
  const socket = newNativeSocket(server.family);
  const fail = (result: number, syscall: string): never => {
    socket.close();
    throw errnoError(result, syscall);
  };
  const bound = socket.bind(sourceAddress ?? (server.family === 6 ? '::' : '0.0.0.0'), port, false);
  if (bound < 0) fail(bound, 'bind');
  const connected = socket.connect(server.host, server.port);
  if (connected < 0) fail(connected, 'connect');
  const started = socket.start(rxArea, rxMeta, SLOT, (n) => {
    if (n < 0) {
      onError(errnoError(n, 'recvmmsg'));
      return;
    }
    // Views into the shared area: parseResponse copies what it keeps before this returns.
    for (let i = 0; i < n; i++) onMessage(rxArea.subarray(i * SLOT, i * SLOT + rxMeta[i * META]!), rxMeta[i * META + 3] !== 0);
  });
  if (started < 0) fail(started, 'uv_poll_start');
  return {
    send: (msg) => {
      const r = socket.send(msg);
      if (r < 0) onError(errnoError(r, 'send'));
    },
    close: () => socket.close(),
  };
}
