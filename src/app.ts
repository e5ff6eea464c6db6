// The composition root: configuration in, a running pvdns out. The query
// pipeline's stages are declared here, once, in order, with the reason for
// each position; start, reload and stop live here too.

import { collectDefaultMetrics, Registry } from 'prom-client';
import { parseSocketAddress, type SocketAddress } from './config/address.js';
import { ConfigError } from './config/load.js';
import type { Config } from './config/schema.js';
import { AnswerCache } from './cache/answer-cache.js';
import { registerCacheMetrics } from './cache/metrics.js';
import { HttpServer, type Readiness } from './http/server.js';
import { createLogger, type Logger } from './log.js';
import { describePvd } from './pvd/model.js';
import { registerPvdMetrics } from './pvd/metrics.js';
import { PvdRegistry } from './pvd/registry.js';
import { pvdSpecSchema, type PvdSpec } from './pvd/schema.js';
import { isOwnListener } from './pvd/sources/loop.js';
import { readResolvConf, SYSTEM_PVD } from './pvd/sources/resolvconf.js';
import { syncSource } from './pvd/sources/sync.js';
import { CacheStage } from './resolve/cache-stage.js';
import { Coalesce } from './resolve/coalesce.js';
import { Forwarder } from './resolve/forward.js';
import { LocalNames } from './resolve/local.js';
import { Router } from './resolve/router.js';
import { RouteTable } from './resolve/routes.js';
import { chain, type Next, type Stage } from './resolve/stage.js';
import { AccessList } from './server/access.js';
import { QueryHandler } from './server/handler.js';
import { QueryStats } from './server/metrics.js';
import { TcpListener } from './server/tcp.js';
import { udpBackend } from './native/udp.js';
import { createUdpListener, type UdpListener } from './server/udp.js';
import type { Transport } from './upstream/exchange.js';
import { registerUpstreamMetrics } from './upstream/metrics.js';
import { tcpExchange } from './upstream/tcp.js';
import { UdpTransport } from './upstream/udp.js';

export interface AppOptions {
  /** The file the configuration came from, for messages and reloads; null for an in-memory one. */
  configFile: string | null;
  log?: Logger;
  /** Replaces the UDP/TCP upstream transport (tests script upstreams with it). */
  transport?: Transport;
  /** Wall clock in epoch milliseconds for cache ages (tests move time without sleeping). */
  clock?: () => number;
}

/** The addresses pvdns actually listens on (ports resolved when configured as 0). */
export interface BoundAddresses {
  dns: SocketAddress[];
  http: SocketAddress | null;
}

/** socketTransport is the real one: pooled UDP sockets, TCP per exchange. */
function socketTransport(): Transport {
  const udp = new UdpTransport();
  return { udp: (req, done) => udp.exchange(req, done), tcp: tcpExchange, close: () => udp.close() };
}

export class App {
  readonly log: Logger;
  readonly pvds = new PvdRegistry();
  readonly metrics = new Registry();
  private readonly stats = new QueryStats();
  private routes: RouteTable;
  private cache: AnswerCache;
  private readonly forwarder: Forwarder;
  private readonly transport: Transport;
  private readonly handler: QueryHandler;
  private readonly udp: UdpListener[] = [];
  private readonly tcp: TcpListener[] = [];
  private http: HttpServer | null = null;
  private listening = false;

  constructor(
    private config: Config,
    private readonly opts: AppOptions,
  ) {
    this.log = opts.log ?? createLogger(config.log.level);
    this.routes = new RouteTable([]);
    this.cache = new AnswerCache(config.cache, opts.clock);
    this.transport = opts.transport ?? socketTransport();
    this.forwarder = new Forwarder({ ...config.upstream }, this.transport);
    this.handler = new QueryHandler(this.pipeline(), new AccessList(config.access.allow), this.stats, this.log);

    this.pvds.on('changed', () => (this.routes = new RouteTable(this.pvds.list())));
    this.pvds.on('announced', (p) => this.log.info({ pvd: describePvd(p) }, 'pvd announced'));
    this.pvds.on('updated', (p) => this.log.info({ pvd: describePvd(p) }, 'pvd updated'));
    this.pvds.on('withdrawn', (p, reason) => {
      const dropped = this.cache.dropPvd(p.tag);
      this.forwarder.drop(p);
      this.stats.forget(p.id);
      this.log.info({ pvd: p.id, reason, cacheEntriesDropped: dropped }, 'pvd withdrawn');
    });

    collectDefaultMetrics({ register: this.metrics });
    this.stats.register(this.metrics);
    registerUpstreamMetrics(this.metrics, () => this.forwarder.livePools());
    registerCacheMetrics(this.metrics, () => this.cache, () => this.pvds.list());
    registerPvdMetrics(this.metrics, this.pvds);
  }

  /**
   * pipeline declares the stages a query passes, in order. Each stage owns a
   * query or hands it on; later stages see the answer on its way back.
   */
  private pipeline(): Next {
    const routes = (): RouteTable => this.routes;
    const stages: Stage[] = [
      // 1. Special-use and locally served names never leave the host (RFC
      //    6761, RFC 6303). It consults the route table, since a PvD may own
      //    a private reverse zone, and leaves the decision on the query.
      new LocalNames(routes),
      // 2. Choose the PvD; every stage after this works inside one PvD, and
      //    the router retries the next PvD of the same route on SERVFAIL.
      new Router(routes),
      // 3. The PvD's own cache: first, so a hit waits for nothing.
      new CacheStage(this.cache),
      // 4. Identical questions in flight in the PvD share one upstream exchange.
      new Coalesce(),
      // DNS64 (issue 6) and captive-portal inspection (issue 7) belong here:
      // after coalescing, they see upstream answers before the cache keeps them.
    ];
    return chain(stages, this.forwarder.resolve);
  }

  /** preview announces the PvDs without binding anything: what check-config shows. */
  async preview(): Promise<void> {
    const listenAddrs = this.listenAddresses();
    this.checkLoops(this.config, listenAddrs);
    this.applyPvds(this.config, await this.hostPvds(this.config, listenAddrs));
  }

  /** start announces the configured PvDs and binds every listener. */
  async start(): Promise<void> {
    await this.preview();
    const listenAddrs = this.listenAddresses();
    for (const addr of listenAddrs) await this.bindDns(addr);
    if (this.config.http.listen !== null) {
      const addr = parseSocketAddress(this.config.http.listen, 8053) as SocketAddress;
      const http = new HttpServer(addr, { registry: this.metrics, readiness: () => this.readiness(), log: this.log });
      await this.bind(`http ${addr.label}`, () => http.start());
      this.http = http;
    }
    this.listening = true;
    const bound = this.addresses();
    this.log.info(
      {
        listen: bound.dns.map((a) => a.label),
        http: bound.http?.label ?? null,
        udp: udpBackend,
        pvds: this.pvds.list().map(describePvd),
        config: this.opts.configFile,
      },
      'pvdns started',
    );
    for (const key of this.inactiveKeys()) this.log.warn({ key }, 'configuration key is accepted but not active in this version');
  }

  /**
   * bindDns binds UDP and TCP on one address. With port 0 the kernel picks
   * the UDP port and TCP takes the same one, retrying if it is taken.
   */
  private async bindDns(addr: SocketAddress): Promise<void> {
    for (let tries = 0; ; tries++) {
      const udp = createUdpListener(addr, this.handler, this.log);
      await this.bind(udp.label, () => udp.start());
      const tcpAddr = addr.port === 0 ? { ...addr, port: udp.address.port } : addr;
      const tcp = new TcpListener(tcpAddr, this.handler, { ...this.config.tcp }, this.log);
      try {
        await tcp.start();
      } catch (err) {
        await udp.stop();
        if (addr.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && tries < 20) continue;
        await this.bind(tcp.label, () => Promise.reject(err));
      }
      this.udp.push(udp);
      this.tcp.push(tcp);
      return;
    }
  }

  private async bind(label: string, start: () => Promise<void>): Promise<void> {
    try {
      await start();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      const hint = code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : code === 'EADDRINUSE' ? ' (another program listens there)' : '';
      await this.stop();
      throw new Error(`cannot listen on ${label}: ${code}${hint}`);
    }
  }

  private listenAddresses(): SocketAddress[] {
    return this.config.listen.map((l) => parseSocketAddress(l, 53) as SocketAddress);
  }

  /** A configured server that is pvdns itself would loop every query back in. */
  private checkLoops(config: Config, listenAddrs: SocketAddress[]): void {
    config.pvds.forEach((p, i) =>
      p.dnsServers.forEach((s, j) => {
        const addr = parseSocketAddress(s, 53) as SocketAddress;
        if (isOwnListener(addr, listenAddrs)) {
          throw new ConfigError(this.opts.configFile ?? '(config)', null, `pvds[${i}].dnsServers[${j}]`, `${addr.label} is pvdns's own listener: queries would loop`);
        }
      }),
    );
  }

  /** hostPvds reads the PvDs the host gives (the resolv.conf "system" PvD); it may fail, so it runs before anything changes. */
  private async hostPvds(config: Config, listenAddrs: SocketAddress[]): Promise<PvdSpec[]> {
    if (!config.pvdSources.host) return [];
    const file = config.pvdSources.resolvConf;
    const all = await readResolvConf(file);
    const servers = all.filter((s) => !isOwnListener(s, listenAddrs));
    for (const s of all) if (!servers.includes(s)) this.log.warn({ server: s.label, file }, 'skipping a resolv.conf nameserver that is pvdns itself (a loop)');
    if (servers.length === 0) this.log.warn({ file }, 'resolv.conf lists no usable nameserver: the system PvD has no servers');
    // RFC 7556 §2.2: the host's node-wide configuration is one implicit PvD.
    return [pvdSpecSchema.parse({ identifier: SYSTEM_PVD, dnsServers: servers.map((s) => s.label), default: true })];
  }

  /** applyPvds brings the registry in line with the configuration and the host. */
  private applyPvds(config: Config, host: PvdSpec[]): void {
    const { expired, conflicts } = syncSource(this.pvds, 'config', config.pvds);
    for (const id of expired) this.log.warn({ pvd: id }, 'pvd not announced: its expires time has passed');
    for (const id of conflicts) this.log.warn({ pvd: id }, 'pvd not announced: another source holds this identifier');
    syncSource(this.pvds, 'host', host);
  }

  private inactiveKeys(): string[] {
    const c = this.config;
    const keys: string[] = [];
    if (c.cache.serveStale) keys.push('cache.serveStale');
    if (c.http.token !== null) keys.push('http.token');
    if (c.pvdSources.directory !== null) keys.push('pvdSources.directory');
    c.pvds.forEach((p, i) => {
      if (p.dns64 !== 'auto' || p.dns64Synthesize) keys.push(`pvds[${i}].dns64`);
      if (p.captivePortal !== null) keys.push(`pvds[${i}].captivePortal`);
      if (p.rebindProtection) keys.push(`pvds[${i}].rebindProtection`);
    });
    return keys;
  }

  /** readiness: listeners bound and some PvD has a server to ask. */
  readiness(): Readiness {
    if (!this.listening) return { ready: false, reason: 'listeners not bound yet' };
    if (!this.pvds.list().some((p) => p.servers.length > 0)) return { ready: false, reason: 'no PvD has a DNS server' };
    return { ready: true };
  }

  /**
   * reload applies a new configuration without dropping queries: PvDs,
   * access, cache limits, timeouts and the log level change in place;
   * listener addresses need a restart and are reported.
   */
  async reload(next: Config): Promise<void> {
    // What can fail comes first, against the listeners that are bound now,
    // so a bad reload changes nothing.
    const listenAddrs = this.listenAddresses();
    this.checkLoops(next, listenAddrs);
    const host = await this.hostPvds(next, listenAddrs);
    const prev = this.config;
    const unchanged = (k: keyof Config): boolean => JSON.stringify(prev[k]) === JSON.stringify(next[k]);
    if (!unchanged('listen') || !unchanged('http')) this.log.warn('listen and http changes take effect at the next restart');
    // Listener addresses stay as bound until a restart.
    this.config = { ...next, listen: prev.listen, http: prev.http };
    this.log.level = next.log.level;
    if (!unchanged('cache')) {
      // A new cache starts empty: entries admitted under the old limits go.
      this.cache = new AnswerCache(next.cache, this.opts.clock);
    }
    this.forwarder.setOptions({ ...next.upstream });
    for (const t of this.tcp) t.setOptions({ ...next.tcp });
    this.applyPvds(next, host);
    this.handler.reconfigure(this.pipeline(), new AccessList(next.access.allow));
    this.log.info({ pvds: this.pvds.list().map((p) => p.id), config: this.opts.configFile }, 'configuration reloaded');
  }

  /** stop takes no new queries, lets queries in flight finish (bounded), then closes everything. */
  async stop(): Promise<void> {
    for (const l of [...this.udp, ...this.tcp]) l.pause();
    const limitMs = this.config.upstream.timeoutMs * this.config.upstream.attempts + 500;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.handler.drained(), new Promise<void>((r) => (timer = setTimeout(r, limitMs)))]);
    clearTimeout(timer);
    await Promise.all([...this.udp, ...this.tcp].map((l) => l.stop()));
    await this.http?.stop();
    this.transport.close?.();
    this.pvds.close();
    this.listening = false;
  }

  /** addresses reports what pvdns is bound to. */
  addresses(): BoundAddresses {
    return { dns: this.udp.map((u) => u.address), http: this.http?.address ?? null };
  }

  /** routeTable exposes the current routes (check-config, tests). */
  routeTable(): RouteTable {
    return this.routes;
  }
}
