// Channels: the per-server bookkeeping the stream carriers (TCP, TLS, HTTPS)
// share. Each server object gets its own channel (a PvD's servers are its own
// objects, so PvDs never share connections, and a withdrawn PvD's channels
// are collected with it); a channel with connections open is kept in a set so
// close() can reach it, and leaves it when it goes idle.

import type { ExchangeRequest } from './exchange.js';
import type { UpstreamServer } from './server.js';

/** What a carrier's per-server channel offers the map. */
export interface Channel {
  readonly sourceAddress: string | null;
  close(): void;
}

export class Channels<C extends Channel> {
  private readonly byServer = new WeakMap<UpstreamServer, C>();
  private readonly open = new Set<C>();

  constructor(
    /** Makes the channel of a server; it calls `onIdle` when its connections have gone and nothing is outstanding. */
    private readonly make: (server: UpstreamServer, sourceAddress: string | null, onIdle: (ch: C) => void) => C,
  ) {}

  /** of is the channel a request goes to, made anew when the PvD's source address changed (the old one finishes what it has). */
  of(req: ExchangeRequest): C {
    let ch = this.byServer.get(req.server);
    if (ch === undefined || ch.sourceAddress !== req.sourceAddress) {
      ch?.close();
      ch = this.make(req.server, req.sourceAddress, (idle) => this.open.delete(idle));
      this.byServer.set(req.server, ch);
    }
    this.open.add(ch);
    return ch;
  }

  /** close lets the queries in flight finish and closes every channel after them. */
  close(): void {
    for (const ch of this.open) ch.close();
    this.open.clear();
  }
}
