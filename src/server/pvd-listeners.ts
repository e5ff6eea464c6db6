// Each PvD's own DNS listener (`pvds[].listen`): every query that arrives
// there is resolved in that PvD only — no routing, no fallback to another
// PvD, that PvD's cache — so a container, a network namespace or an
// application pinned to one network points its resolv.conf there (the MIF
// API's "use this PvD", Android's per-app network, resolved's per-link
// lookups). Access control is access.allow's, as on `listen`.
//
// The listeners follow the PvDs: bound when a PvD with `listen` is
// announced, rebound when its addresses change, closed when it goes. A
// PvD from the configuration whose address cannot be bound fails start-up
// and reload, naming its key; one from the API, a file or the host is
// logged and shown in its view (`listen[].error`), and tried again at its
// next change.

import type { Logger } from 'pino';
import type { SocketAddress } from '../config/address.js';
import { ConfigError } from '../config/load.js';
import { errorAnswer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import type { Pvd } from '../pvd/model.js';
import type { ListenView } from '../pvd/view.js';
import type { Next } from '../resolve/stage.js';
import type { QueryHandler } from './handler.js';
import { bindPair, type ListenerPair } from './listener-pair.js';
import type { TcpOptions } from './tcp.js';

interface Bound {
  pvdId: string;
  pair: ListenerPair | null;
  error: string | null;
}

export interface PvdListenersDeps {
  /** A handler whose queries are all forced into the PvD `pvdId` names (see forcedPipeline). */
  handler: (pvdId: string) => QueryHandler;
  tcp: () => TcpOptions;
  log: Logger;
}

/**
 * forcedPipeline runs `pipeline` with every query forced into the PvD
 * `current()` returns: no routing, no fallback. A PvD that has gone (its
 * listener is being closed) answers REFUSED with an EDE.
 */
export function forcedPipeline(pvdId: string, current: () => Pvd | undefined, pipeline: () => Next): Next {
  return (q) => {
    const pvd = current();
    if (pvd === undefined) return errorAnswer(RCODE.REFUSED, { code: EDE.NOT_READY, text: `pvd ${pvdId} has been withdrawn: its listener is closing` });
    q.forced = pvd;
    return pipeline()(q);
  };
}

export class PvdListeners {
  /** By the address as configured, "pvd-id address". */
  private readonly bound = new Map<string, Bound>();
  /** Each PvD's handler, made once (reconfigured on reload by the owner). */
  readonly handlers = new Map<string, QueryHandler>();
  /** sync calls run one after another. */
  private syncing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: PvdListenersDeps) {}

  /**
   * sync binds and closes listeners until they match `pvds`' `listen`.
   * With `strict`, a PvD for which it returns a ConfigError maker fails the
   * whole call (the configuration's PvDs at start and reload); others are
   * logged and shown.
   */
  sync(pvds: readonly Pvd[], errorFor: (pvd: Pvd, index: number, problem: string) => ConfigError | null = () => null): Promise<void> {
    const run = this.syncing.then(() => this.syncNow(pvds, errorFor));
    this.syncing = run.catch(() => undefined);
    return run;
  }

  private async syncNow(pvds: readonly Pvd[], errorFor: (pvd: Pvd, index: number, problem: string) => ConfigError | null): Promise<void> {
    const wanted = new Map<string, { pvd: Pvd; addr: SocketAddress; index: number }>();
    for (const p of pvds) p.listen.forEach((addr, index) => wanted.set(`${p.id} ${addr.label}`, { pvd: p, addr, index }));
    // Close first: an address moving from one PvD to another must be free before it is bound again.
    for (const [key, b] of [...this.bound]) {
      if (wanted.has(key) && b.pair !== null) continue;
      this.bound.delete(key);
      if (b.pair !== null) await Promise.all([b.pair.udp.stop(), b.pair.tcp.stop()]);
    }
    for (const id of [...this.handlers.keys()]) if (!pvds.some((p) => p.id === id && p.listen.length > 0)) this.handlers.delete(id);
    let failure: ConfigError | null = null;
    for (const [key, w] of wanted) {
      if (this.bound.get(key)?.pair) continue;
      let handler = this.handlers.get(w.pvd.id);
      if (handler === undefined) this.handlers.set(w.pvd.id, (handler = this.deps.handler(w.pvd.id)));
      try {
        const pair = await bindPair(w.addr, handler, this.deps.tcp(), this.deps.log, (problem) => errorFor(w.pvd, w.index, problem) ?? new ConfigError(`pvd ${w.pvd.identifier}`, null, `listen[${w.index}]`, problem));
        this.bound.set(key, { pvdId: w.pvd.id, pair, error: null });
        this.deps.log.info({ pvd: w.pvd.id, listen: pair.udp.address.label }, 'pvd listener bound: queries there are resolved in this PvD only');
      } catch (err) {
        const problem = err instanceof ConfigError ? err.problem : (err as Error).message;
        this.bound.set(key, { pvdId: w.pvd.id, pair: null, error: problem });
        if (err instanceof ConfigError && errorFor(w.pvd, w.index, problem) !== null) failure ??= err;
        else this.deps.log.error({ pvd: w.pvd.id, listen: w.addr.label, problem }, 'pvd listener not bound');
      }
    }
    if (failure !== null) throw failure;
  }

  /** view is a PvD's listener addresses with where each is bound or why not. */
  view(pvd: Pvd): ListenView[] {
    return pvd.listen.map((a) => {
      const b = this.bound.get(`${pvd.id} ${a.label}`);
      return { address: a.label, bound: b?.pair?.udp.address.label ?? null, error: b?.error ?? null };
    });
  }

  /** addresses lists every bound PvD listener (pvdns's own: a server there would loop). */
  addresses(): SocketAddress[] {
    return [...this.bound.values()].flatMap((b) => (b.pair ? [b.pair.udp.address] : []));
  }

  /** pairs lists the bound listeners, for pausing and stopping with the others. */
  pairs(): ListenerPair[] {
    return [...this.bound.values()].flatMap((b) => (b.pair ? [b.pair] : []));
  }

  /** stop closes every PvD listener. */
  async stop(): Promise<void> {
    await this.syncing;
    const pairs = this.pairs();
    this.bound.clear();
    this.handlers.clear();
    await Promise.all(pairs.flatMap((p) => [p.udp.stop(), p.tcp.stop()]));
  }
}
