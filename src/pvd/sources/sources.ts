// The one place PvD sources are wired: which sources run for a
// configuration, with which backends, and how each one's changes reach the
// registry. The App calls apply() at start and on every reload, views() for
// the API and status, and stop() at the end; nothing else starts a source.

import type { SecureContext } from 'node:tls';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import type { SocketAddress } from '../../config/address.js';
import type { Config } from '../../config/schema.js';
import { openRaReceiver } from '../../native/icmp6.js';
import type { PvdInputError } from '../input.js';
import type { PvdSource } from '../model.js';
import type { PvdRegistry } from '../registry.js';
import { normalizeDomain, type PvdSpec } from '../schema.js';
import { PvdDirectory } from './directory.js';
import { HostFeed, type LinkWatch } from './host.js';
import { PolledTool, runTool, type RunTool } from './host-tools.js';
import { LinkMonitor } from './netlink.js';
import { NetworkManagerBackend } from './networkmanager.js';
import { fetchPvdInfo, preparePvdInfo } from './pvd-info.js';
import { RaFeed } from './ra.js';
import { ResolvedBackend } from './resolved.js';
import type { LinkBackend, PvdFeed, SourceSink } from './source.js';
import { announceFrom, syncSource } from './sync.js';

export interface SourceSetDeps {
  registry: PvdRegistry;
  log: Logger;
  /** Closes the routing barrier until the returned release (RouteGate.hold). */
  hold: () => () => void;
  /** pvdns's own DNS listeners: a server that is one of them would loop. */
  ownListeners: () => SocketAddress[];
  /** Runs resolvectl and nmcli (tests feed recorded output through it). */
  runTool?: RunTool;
  /** The system bus's address (default: DBUS_SYSTEM_BUS_ADDRESS, else the well-known socket). */
  busAddress?: string;
  /** Which server of a PvD from a file is pvdns itself, if one is. */
  loopProblem: (spec: PvdSpec) => PvdInputError | null;
  /**
   * Resolves a name's addresses (A and AAAA) through one PvD only — its
   * cache and servers, never another's: how an RFC 8801 PvD's Additional
   * Information server is found (§4.1).
   */
  resolveIn: (pvdId: string, name: string) => Promise<string[]>;
  /**
   * The authorities an RFC 8801 PvD's Additional Information server is
   * verified with: the encrypted upstreams' (the system's, Node's and
   * tls.caFile's), made once per CA file.
   */
  tlsContext: () => SecureContext;
}

/** A source in use, as /v1/pvds and `pvdns status` show it. */
export interface SourceView {
  source: PvdSource;
  /** How: "resolved (D-Bus)", "resolvectl (polled every 10 s)", "resolv.conf (/etc/resolv.conf)". */
  via: string;
}

/** An IP literal in one spelling, for comparing addresses ("::ffff:…" and zones aside); the text itself if it is none. */
function canonicalAddress(text: string): string {
  try {
    return ipaddr.parse(text.split('%')[0]!).toString();
  } catch {
    return text;
  }
}

interface Running {
  feed: PvdFeed;
  /** The settings it was started with: a reload that changes them restarts it. */
  key: string;
}

export class SourceSet {
  private host: (Running & { feed: HostFeed }) | null = null;
  private readonly extra = new Map<PvdSource, Running>();
  /** The kernel's links (netlink), shared by the host's PvDs and Router Advertisements; null until needed or where unavailable. */
  private monitor: { watch: LinkWatch | null; stop(): void } | null = null;
  /**
   * apply, run and the apply* calls run one at a time, in the order they
   * were called: two reloads at once (SIGHUP twice) would each stop the
   * running host source, start their own, and leave the first of the two
   * running with nothing holding it, syncing its links over the other's.
   */
  private queue: Promise<unknown> = Promise.resolve();
  /** Counts stop() calls: work called for before a stop starts nothing, and stops what it started. */
  private epoch = 0;

  constructor(private readonly deps: SourceSetDeps) {}

  /** serial runs `fn` after the calls before it, unless stop() came between the call and its turn. */
  private serial(fn: (current: () => boolean) => Promise<void>): Promise<void> {
    const epoch = this.epoch;
    const current = (): boolean => epoch === this.epoch;
    const done = this.queue.then(() => (current() ? fn(current) : undefined));
    this.queue = done.catch(() => undefined);
    return done;
  }

  /**
   * links starts following the kernel's links over netlink, once: null
   * where it is not available (no addon, not Linux), which the log says.
   */
  private async links(current: () => boolean): Promise<LinkWatch | null> {
    if (this.monitor !== null) return this.monitor.watch;
    const m = new LinkMonitor();
    let ok = false;
    try {
      ok = await m.start();
    } catch (err) {
      this.deps.log.warn({ error: (err as Error).message }, 'cannot follow the links over netlink');
    }
    if (!current()) {
      m.stop();
      return null;
    }
    if (!ok) {
      this.deps.log.info("netlink is not available: a link's PvD follows what its backend reports, not the kernel's link state");
      m.stop();
      this.monitor = { watch: null, stop: () => undefined };
      return null;
    }
    const watch: LinkWatch = {
      byName: (ifname) => m.byName(ifname),
      subscribe: (fn) => {
        m.on('changed', fn);
        return () => m.off('changed', fn);
      },
    };
    const check = (): void => this.checkSourceAddresses(m);
    m.on('changed', check);
    this.deps.registry.on('changed', check);
    this.monitor = {
      watch,
      stop: () => {
        this.deps.registry.off('changed', check);
        m.stop();
      },
    };
    check();
    return watch;
  }

  /** Whether each PvD's sourceAddress is on one of the host's links (by PvD id), as last checked. */
  private readonly sourcePresent = new Map<string, boolean>();

  /**
   * checkSourceAddresses notices a PvD's sourceAddress leaving the host (a
   * VPN's tunnel address gone with its link): its upstream sockets cannot
   * bind there, so its queries fail. Logged once each way, and shown in the
   * PvD's view (sourceAddressPresent).
   */
  private checkSourceAddresses(m: LinkMonitor): void {
    const here = new Set<string>();
    for (const l of m.links().values()) for (const a of l.addresses) here.add(canonicalAddress(a.address));
    const seen = new Set<string>();
    for (const p of this.deps.registry.list()) {
      if (p.sourceAddress === null) continue;
      seen.add(p.id);
      const present = here.has(canonicalAddress(p.sourceAddress));
      const before = this.sourcePresent.get(p.id);
      if (before === present) continue;
      this.sourcePresent.set(p.id, present);
      if (!present) this.deps.log.warn({ pvd: p.id, sourceAddress: p.sourceAddress }, "the PvD's sourceAddress is on none of the host's links: its upstream queries cannot be sent from it");
      else if (before === false) this.deps.log.info({ pvd: p.id, sourceAddress: p.sourceAddress }, "the PvD's sourceAddress is back on a link");
    }
    for (const id of this.sourcePresent.keys()) if (!seen.has(id)) this.sourcePresent.delete(id);
  }

  /** sourceAddressPresent says whether a PvD's sourceAddress is on a link; null when unknown (no netlink, no sourceAddress). */
  sourceAddressPresent(pvdId: string): boolean | null {
    return this.sourcePresent.get(pvdId) ?? null;
  }

  /**
   * sink is how a feed of `kind` changes the registry: every change it makes
   * names the feed as its origin, and a PvD another source holds is left alone.
   */
  sink(kind: PvdSource, feed: () => PvdFeed | null): SourceSink {
    const { registry, log } = this.deps;
    const origin = (): string | null => feed()?.describe() ?? null;
    // What a router on the link advertises cannot take a zone the configuration, the host, a
    // file or the API gave another PvD: anyone on a café's Wi-Fi can send an RA whose PvD's
    // Additional Information (certified for its own PvD ID only) claims corp.example.com.
    const own = (spec: PvdSpec): PvdSpec => (kind === 'ra' ? this.withoutClaimedZones(spec) : spec);
    return {
      sync: (specs) => {
        const { conflicts } = syncSource(registry, kind, specs.map(own), origin());
        // The directory names the file and line of a conflict itself.
        if (kind !== 'file') for (const id of conflicts) log.warn({ pvd: id, source: kind }, 'pvd not announced: another source holds this identifier');
      },
      announce: (spec) => {
        if (announceFrom(registry, kind, own(spec), null, origin()) === 'conflict') log.warn({ pvd: spec.identifier, source: kind }, 'pvd not announced: another source holds this identifier');
      },
      withdraw: (identifier) => {
        if (registry.get(identifier)?.source === kind) registry.withdraw(identifier);
      },
      hold: this.deps.hold,
    };
  }

  /** Zones an RA PvD was refused, already logged ("pvd zone"). */
  private readonly refusedZones = new Set<string>();

  /** withoutClaimedZones drops from an RA PvD the zones that overlap one another source's PvD claims. */
  private withoutClaimedZones(spec: PvdSpec): PvdSpec {
    if (spec.dnsZones.length === 0) return spec;
    const id = normalizeDomain(spec.identifier);
    const claimed = this.deps.registry.list().filter((p) => p.source !== 'ra' && p.id !== id).flatMap((p) => p.dnsZones);
    const overlaps = (a: string, b: string): boolean => a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`) || b === '' || a === '';
    const kept = spec.dnsZones.filter((z) => {
      const zone = normalizeDomain(z);
      const taken = claimed.find((c) => overlaps(zone, c));
      if (taken === undefined) return true;
      const key = `${id} ${zone}`;
      if (this.refusedZones.size < 10_000 && !this.refusedZones.has(key)) {
        this.refusedZones.add(key);
        this.deps.log.warn({ pvd: id, zone, claimedBy: taken }, 'a Router Advertisement PvD may not claim a zone another source gave: zone ignored');
      }
      return false;
    });
    return kept.length === spec.dnsZones.length ? spec : { ...spec, dnsZones: kept };
  }

  /**
   * apply makes the running sources match `config`: the configured PvDs are
   * synced at once; the host's source starts, restarts (its settings
   * changed) or applies its links again (pvdns's listeners may have
   * changed). With `once`, the host's source reads the host and stops
   * (check-config, and the first step of start).
   */
  apply(config: Config, opts: { once?: boolean } = {}): Promise<void> {
    return this.serial(async (current) => {
      const { conflicts } = syncSource(this.deps.registry, 'config', config.pvds);
      for (const id of conflicts) this.deps.log.warn({ pvd: id }, 'pvd not announced: another source holds this identifier');
      // The kernel's links: the host's PvDs follow them, and every PvD's sourceAddress is checked against them.
      if (opts.once !== true) await this.links(current);
      await this.applyHost(config, opts.once === true, current);
    });
  }

  private async applyHost(config: Config, once: boolean, current: () => boolean): Promise<void> {
    const s = config.pvdSources;
    const key = JSON.stringify([s.host, s.hostBackend, s.hostPollIntervalS, s.resolvConf]);
    if (this.host !== null && this.host.key === key && !once) return this.host.feed.refresh();
    this.host?.feed.stop();
    this.host = null;
    if (!s.host) {
      syncSource(this.deps.registry, 'host', []);
      return;
    }
    const feed = new HostFeed({
      backends: this.backends(config),
      resolvConf: s.resolvConf,
      ownListeners: this.deps.ownListeners,
      // check-config reads the host once: no netlink socket for that.
      links: once ? null : await this.links(current),
      log: this.deps.log,
    });
    if (!current()) return;
    await feed.start(this.sink('host', () => feed));
    if (once || !current()) feed.stop();
    else this.host = { feed, key };
  }

  /** backends lists the ways of reading the host's links pvdSources.hostBackend allows, in the order they are tried. */
  private backends(config: Config): LinkBackend[] {
    const { hostBackend: choice, hostPollIntervalS: every } = config.pvdSources;
    const run = this.deps.runTool ?? runTool;
    const out: LinkBackend[] = [];
    const address = this.deps.busAddress;
    const log = this.deps.log;
    // Over D-Bus first: their events reach pvdns at once. systemd-resolved before NetworkManager, as
    // resolved holds what NetworkManager (or networkd, or a VPN script) gave it and more.
    if (choice === 'auto' || choice === 'resolved') out.push(new ResolvedBackend({ address, log }));
    if (choice === 'auto' || choice === 'networkmanager') out.push(new NetworkManagerBackend({ address, log }));
    if (choice === 'auto' || choice === 'resolvectl') out.push(new PolledTool('resolvectl', every, run));
    if (choice === 'auto' || choice === 'nmcli') out.push(new PolledTool('nmcli', every, run));
    return out;
  }

  /** applyDirectory follows pvdSources.directory (checked to be readable already), or stops following one. */
  applyDirectory(config: Config): Promise<void> {
    const dir = config.pvdSources.directory;
    return this.run('file', dir, () => new PvdDirectory(dir!, this.deps.registry, this.deps.log, this.deps.loopProblem));
  }

  /**
   * applyRouterAdvertisements follows RFC 8801 PvDs in Router
   * Advertisements (pvdSources.routerAdvertisements), fetching a PvD's
   * Additional Information through that PvD (§4.1) and verifying its server
   * with deps.tlsContext (the encrypted upstreams' trust, tls.caFile
   * included). Throws when the receiving socket cannot be opened
   * (CAP_NET_RAW).
   */
  applyRouterAdvertisements(config: Config): Promise<void> {
    const key = config.pvdSources.routerAdvertisements ? 'on' : null;
    // A PvD's first fetch holds its routing back: what it would pay for on first use (the modules,
    // the trust context, Node's request code) is readied now, and on a reload, which may bring a
    // new tls.caFile (applying to the next fetch: restarting the feed would withdraw every RA PvD
    // until its router next advertises, up to MaxRtrAdvInterval, 600 s).
    if (key !== null) void preparePvdInfo(this.deps.tlsContext);
    return this.serial((current) =>
      this.runNow(current, 'ra', key, () =>
        new RaFeed({
          receiver: openRaReceiver,
          log: this.deps.log,
          fetchInfo: (pvdId, via) =>
            fetchPvdInfo(pvdId, {
              lookup: (host) => this.deps.resolveIn(pvdId, host),
              localAddress: via.localAddress ?? undefined,
              secureContext: this.deps.tlsContext(),
              advertisedPrefixes: via.prefixes,
            }),
        }),
      ),
    );
  }

  /** run runs another source (the PvD directory, Router Advertisements) under this set, replacing the one of its kind. */
  run(kind: PvdSource, key: string | null, make: () => PvdFeed): Promise<void> {
    return this.serial((current) => this.runNow(current, kind, key, make));
  }

  private async runNow(current: () => boolean, kind: PvdSource, key: string | null, make: () => PvdFeed): Promise<void> {
    // key null: the configuration asks for no such source.
    const running = this.extra.get(kind);
    if (running && running.key === key) return;
    running?.feed.stop();
    this.extra.delete(kind);
    if (key === null) {
      syncSource(this.deps.registry, kind, []);
      return;
    }
    const feed = make();
    await feed.start(this.sink(kind, () => feed));
    if (current()) this.extra.set(kind, { feed, key });
    else feed.stop();
  }

  /** views says which sources are in use and how. */
  views(): SourceView[] {
    const out: SourceView[] = [];
    if (this.host !== null) out.push({ source: 'host', via: this.host.feed.describe() });
    for (const [source, r] of this.extra) out.push({ source, via: r.feed.describe() });
    return out;
  }

  /** stop stops every source; their PvDs stay in the registry, which stops with the App. */
  stop(): void {
    this.epoch++;
    this.host?.feed.stop();
    this.host = null;
    for (const r of this.extra.values()) r.feed.stop();
    this.extra.clear();
    this.monitor?.stop();
    this.monitor = null;
  }
}
