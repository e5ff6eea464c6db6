// ServerTransports: the one Transport the pools use, handing each try to the
// transport its server is spoken to with — UDP (then TCP after a truncated
// answer) for a cleartext server, a TLS connection for DoT, an HTTP/2
// connection for DoH — and keeping opportunistic encryption's state.
//
// Opportunistic (RFC 7858 §4.1, RFC 8310 §5): a server with a cleartext
// fallback is tried encrypted first. When its TLS or HTTP exchange fails
// (nobody on port 853, a handshake that fails or times out), that try is
// sent again in the clear at once and the server stays in the clear for
// RETRY_ENCRYPTION_MS; the first query after that tries encryption again, so
// a network that blocked TLS for a while is upgraded again by itself. A
// server with no fallback (strict) is never sent anything in the clear: its
// failure goes to the pool as a hard failure.

import type { Exchange, ExchangeDone, ExchangeRequest, Transport } from './exchange.js';
import type { UpstreamServer } from './server.js';

/** How long an opportunistic server whose encryption failed is spoken to in the clear before TLS is tried again. */
export const RETRY_ENCRYPTION_MS = 60_000;

/** One way of carrying queries: UDP, TCP, TLS or HTTPS. */
export interface Carrier {
  exchange(req: ExchangeRequest, done: ExchangeDone): void;
  close(): void;
}

export interface Carriers {
  udp: Carrier;
  tcp: Carrier;
  tls: Carrier;
  https: Carrier;
}

interface Fallen {
  /** performance.now() after which encryption is tried again. */
  until: number;
}

/** Failures of an encrypted exchange that say encryption cannot be had now (not a slow answer). */
function encryptionFailed(ex: Exchange): ex is Exchange & { ok: false } {
  return !ex.ok && ex.reason !== 'timeout';
}

export class ServerTransports implements Transport {
  private readonly fallen = new WeakMap<UpstreamServer, Fallen>();
  private readonly twins = new WeakMap<UpstreamServer, UpstreamServer>();

  constructor(
    private readonly carriers: Carriers,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  query(req: ExchangeRequest, done: ExchangeDone): void {
    const server = req.server;
    if (server.transport === 'udp') return this.carriers.udp.exchange(req, done);
    if (server.fallback !== null && this.inClear(server)) return this.clear(req, done, false);
    const carrier = server.transport === 'tls' ? this.carriers.tls : this.carriers.https;
    if (server.fallback === null) return carrier.exchange(req, done);
    carrier.exchange(req, (ex) => {
      if (!encryptionFailed(ex)) return done(ex);
      // Opportunistic: encryption cannot be had; this try goes in the clear now, and the next ones for a while.
      this.fallen.set(server, { until: this.clock() + RETRY_ENCRYPTION_MS });
      if (req.stats) {
        req.stats.downgrades++;
        req.stats.via = 'cleartext';
        req.stats.encryptionError = ex.detail;
      }
      this.clear(req, done, false);
    });
  }

  stream(server: UpstreamServer): boolean {
    // An opportunistic server in the clear is asked over UDP: a lost datagram is sent again.
    return server.transport !== 'udp' && !(server.fallback !== null && this.inClear(server));
  }

  tcp(req: ExchangeRequest, done: ExchangeDone): void {
    const server = req.server;
    if (server.transport === 'udp') return this.carriers.tcp.exchange(req, done);
    if (server.fallback !== null && this.inClear(server)) return this.clear(req, done, true);
    // An encrypted stream carries any size: ask again on it.
    (server.transport === 'tls' ? this.carriers.tls : this.carriers.https).exchange(req, done);
  }

  retryEncryption(server: UpstreamServer): void {
    this.fallen.delete(server);
  }

  /** inClear says whether an opportunistic server is spoken to in the clear now. */
  private inClear(server: UpstreamServer): boolean {
    const f = this.fallen.get(server);
    if (f === undefined) return false;
    if (this.clock() < f.until) return true;
    this.fallen.delete(server);
    return false;
  }

  /** clear sends a try to an opportunistic server's cleartext address. */
  private clear(req: ExchangeRequest, done: ExchangeDone, tcp: boolean): void {
    if (req.stats) {
      req.stats.fallbackRequests++;
      req.stats.via = 'cleartext';
    }
    const twin = this.twin(req.server);
    (tcp ? this.carriers.tcp : this.carriers.udp).exchange({ ...req, server: twin }, done);
  }

  /** twin is the cleartext server an opportunistic one falls back to: one object per server, so its sockets are kept. */
  private twin(server: UpstreamServer): UpstreamServer {
    let t = this.twins.get(server);
    if (t === undefined) {
      const f = server.fallback!;
      t = { ...f, transport: 'udp', authName: null, authenticate: false, path: null, hostName: null, fallback: null };
      this.twins.set(server, t);
    }
    return t;
  }

  close(): void {
    for (const c of Object.values(this.carriers)) c.close();
  }
}
