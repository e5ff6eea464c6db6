// The composition root: configuration in, a running pvdns out. The query
// pipeline's stages are declared here, once, in order, with the reason for
// each position; start, reload and stop live here too.

import { readFile } from 'node:fs/promises';
import { Registry } from './metrics/prom-client.js';
import { registerProcessMetrics, type LoopDelay } from './metrics/process.js';
import { registerReclaimMetrics, type IdleReclaimer } from './server/reclaim.js';
import { parseSocketAddress, type SocketAddress } from './config/address.js';
import { checkAgainstHost, directoryProblem } from './config/check.js';
import { ConfigError, configErrorAt } from './config/load.js';
import { bind } from './server/bind.js';
import { bindPair, type ListenerPair } from './server/listener-pair.js';
import { forcedPipeline, PvdListeners } from './server/pvd-listeners.js';
import type { Config } from './config/schema.js';
import { AnswerCache, keyType } from './cache/answer-cache.js';
import { ANSWER_SYNTHESIZED, errorAnswer, type Answer } from './dns/answer.js';
import { RCODE, TYPE } from './dns/constants.js';
import { parseQuery } from './dns/query.js';
import { Pref64Tracker, type Dns64Info } from './dns64/tracker.js';
import { FailureCache } from './cache/failure-cache.js';
import { registerCaptiveMetrics } from './captive/metrics.js';
import { CaptiveTracker, type CaptiveState } from './captive/tracker.js';
import { registerDdrMetrics } from './ddr/metrics.js';
import { DdrTracker } from './ddr/tracker.js';
import { verifyDesignated } from './ddr/verify.js';
import { registerCacheMetrics } from './cache/metrics.js';
import { Api, type AnnounceOutcome, type ApiDeps } from './http/api.js';
import { reloadFile } from './http/reload.js';
import { EventHub } from './http/events.js';
import { QueryMonitor } from './http/monitor.js';
import { AuditLog } from './http/audit.js';
import { RequestGuard } from './http/guard.js';
import { HttpServer, type Readiness } from './http/server.js';
import { checkTokenFile, loadTokenFile, TokenError } from './http/token.js';
import { createLogger, type Logger } from './log.js';
import { CollectedValue, type Sample } from './metrics/collected.js';
import { changedKeys, describePvd, effectiveEncryption, type Pvd } from './pvd/model.js';
import { registerPvdMetrics } from './pvd/metrics.js';
import { PvdRegistry } from './pvd/registry.js';
import { PvdInputError } from './pvd/input.js';
import { normalizeDomain, type PvdSpec } from './pvd/schema.js';
import { serverLoops } from './config/own-listener.js';
import { defaultEncryption, parseServer, type Encryption, type Learned, type UpstreamServer } from './upstream/server.js';
import type { RunTool } from './pvd/sources/host-tools.js';
import { PvdDirectory, type DirectoryReport } from './pvd/sources/directory.js';
import { SourceSet } from './pvd/sources/sources.js';
import { announceFrom } from './pvd/sources/sync.js';
import { pvdView, type PvdView, type ServerView } from './pvd/view.js';
import { CacheStage } from './resolve/cache-stage.js';
import { CaptiveStage, type CaptiveAction } from './resolve/captive-stage.js';
import { CaptiveEncryption } from './resolve/captive-encryption.js';
import { CnameStage } from './resolve/cname-stage.js';
import { RebindStage } from './resolve/rebind-stage.js';
import { Coalesce } from './resolve/coalesce.js';
import { Dns64Stage } from './resolve/dns64-stage.js';
import { RouteGate } from './resolve/gate.js';
import { Forwarder } from './resolve/forward.js';
import type { ProbeKind } from './resolve/probes.js';
import { LocalNames } from './resolve/local.js';
import { Query } from './resolve/query.js';
import { Router } from './resolve/router.js';
import { RouteTable } from './resolve/routes.js';
import { chain, type Next, type Stage } from './resolve/stage.js';
import { translateQuery, translateResult } from './resolve/translate.js';
import { AccessList } from './server/access.js';
import { QueryHandler, SELF_CLIENT } from './server/handler.js';
import { QueryStats } from './server/metrics.js';
import { RateLimiter } from './server/ratelimit.js';
import { raReceiverProblem } from './native/icmp6.js';
import { udpBackend } from './native/udp.js';
import type { Transport } from './upstream/exchange.js';
import { registerUpstreamMetrics } from './upstream/metrics.js';
import type { UpstreamPool } from './upstream/pool.js';
import { TcpTransport } from './upstream/tcp.js';
import { HttpsTransport } from './upstream/https.js';
import { TlsTransport } from './upstream/tls.js';
import { ServerTransports } from './upstream/transports.js';
import { Trust } from './upstream/trust.js';
import { UdpTransport } from './upstream/udp.js';

export interface AppOptions {
  /** The file the configuration came from, for messages and reloads; null for an in-memory one. */
  configFile: string | null;
  log?: Logger;
  /** Replaces the UDP/TCP upstream transport (tests script upstreams with it). */
  transport?: Transport;
  /** Wall clock in epoch milliseconds for cache ages (tests move time without sleeping). */
  clock?: () => number;
  /** Runs the host's tools (resolvectl, nmcli); tests feed recorded outputs through it. */
  runTool?: RunTool;
  /** Hands memory back once queries stop (`pvdns serve` passes the process's; tests leave it out). */
  reclaimer?: IdleReclaimer;
}

/** The addresses pvdns actually listens on (ports resolved when configured as 0). */
export interface BoundAddresses {
  dns: SocketAddress[];
  http: SocketAddress | null;
}

/** Questions remembered as failing, across PvDs: failures are few, and each entry lives minutes at most. */
const FAILURE_ENTRIES = 10_000;

/**
 * socketTransport is the real one: pooled UDP sockets, one reused TCP
 * connection per server, one TLS connection per DoT server and one HTTP/2
 * connection per DoH server, verified against `trust`.
 */
function socketTransport(trust: Trust): Transport {
  return new ServerTransports({ udp: new UdpTransport(), tcp: new TcpTransport(), tls: new TlsTransport(trust), https: new HttpsTransport(trust) });
}

export class App {
  readonly log: Logger;
  readonly pvds = new PvdRegistry();
  readonly metrics = new Registry();
  private readonly stats = new QueryStats();
  /** The event loop's delay histogram behind the nodejs_eventloop_lag_* series: runs only while scrapes see queries. */
  private readonly loopDelay: LoopDelay;
  private routes: RouteTable;
  private cache: AnswerCache;
  private failures: FailureCache;
  private readonly forwarder: Forwarder;
  private readonly transport: Transport;
  /** The authorities encrypted upstreams are verified with: the system's and tls.caFile's. */
  private readonly trust = new Trust();
  private readonly handler: QueryHandler;
  /** Each PvD's own DNS listener (pvds[].listen): queries there are resolved in that PvD only. */
  private readonly pvdListeners: PvdListeners;
  /** The pipeline every listener runs (made anew on reload). */
  private pipelineNext: Next;
  private accessList: AccessList;
  private limiter: RateLimiter;
  /** The DNS listeners, UDP and TCP per configured address (label as configured). */
  private dns: ListenerPair[] = [];
  private http: HttpServer | null = null;
  /** Where PvDs come from besides the API: the config, the host, files, Router Advertisements. */
  private readonly sources: SourceSet;
  /** Held by a source reading a change it has heard of: queries wait before they are routed. */
  private readonly gate = new RouteGate();
  private listening = false;
  /** Server-Sent Events of GET /v1/events. */
  readonly events = new EventHub();
  /** GET /v1/monitor: the live query stream; a default PvD is passed over when down or captive (the router's rule). */
  readonly monitor = new QueryMonitor(this.events, (p) => (!this.forwarder.usable(p) ? 'down' : this.captive.isCaptive(p) ? 'captive' : null));
  /** Each PvD's NAT64 prefixes (DNS64). */
  private readonly dns64: Pref64Tracker;
  /** Whether each PvD is behind a captive portal. */
  private readonly captive: CaptiveTracker;
  /** What the captive stage did with captive encrypted PvDs' queries, per PvD id (pvdns_captive_queries_total). */
  private readonly captiveActions = new Map<string, Map<CaptiveAction, number>>();
  /** Re-validates a PvD's encrypted resolver when its captive portal opens. */
  private readonly captiveEncryption: CaptiveEncryption;
  /** Each PvD's designated resolvers found by DDR (RFC 9462). */
  private readonly ddr: DdrTracker;
  /** The API's bearer token (http.token, or the one read from http.tokenFile); null: the API takes no changes. */
  private apiToken: string | null = null;
  /** Who may use the HTTP listener beyond /healthz and /readyz (http.allow, else access.allow). */
  private httpClients: AccessList;
  /** Host and Origin checks of the HTTP listener, for its address and http.allowedHosts. */
  private httpGuard: RequestGuard | null = null;
  /** The audit trail of API changes and refused requests. */
  private readonly audit: AuditLog;
  /** Answers refused by DNS rebinding protection, per PvD id (pvdns_rebind_blocked_total). */
  private readonly rebindBlocked = new Map<string, number>();

  constructor(
    private config: Config,
    private readonly opts: AppOptions,
  ) {
    this.log = opts.log ?? createLogger(config.log.level);
    this.routes = new RouteTable([]);
    this.cache = new AnswerCache(config.cache, opts.clock);
    this.failures = new FailureCache(FAILURE_ENTRIES, opts.clock);
    this.transport = opts.transport ?? socketTransport(this.trust);
    this.forwarder = new Forwarder(
      {
        ...config.upstream,
        onServerState: (pool, server, health, previous) => {
          this.log.info({ pvd: pool.pvdId, server, state: health.state, previous, lastError: health.lastError }, 'upstream server state changed');
          const pvd = this.pvds.get(pool.pvdId);
          // A server that answers again clears the PvD's remembered failures: they were its silence (RFC 9520 §3).
          if (pvd && previous === 'down' && health.usable) this.failures.dropPvd(pvd.tag);
          if (!pvd) return;
          // Its encrypted servers all down: perhaps a portal that blocks them. Probe (in the clear) soon.
          if (health.state === 'down' && this.forwarder.encryptedDown(pvd)) this.captive.evidence(pvd);
          // Designated resolvers all down: the PvD's queries go to its own servers (in the clear unless strict).
          const at = pool.servers.findIndex((s) => s.label === server);
          if (health.state === 'down' && at >= 0 && at < (pool.opts.preferred ?? 0) && pool.preferredDown) {
            const why = `designated resolvers of pvd ${pvd.identifier} are down: queries go to its own servers${this.encryptionNow(pvd) === 'strict' ? '' : ', in the clear'}`;
            this.captiveEncryption.downgraded(pvd, 'designated-down');
            // The network may designate another resolver now (a DDR record that changed).
            if (pvd.ddr) this.ddr.recheck(pvd, 'its designated resolvers are down');
            this.log.warn({ pvd: pvd.id, server }, why);
            this.events.publish('upstream-changed', { ...this.view(pvd), change: { kind: 'encryption-downgraded', server, why } });
          } else {
            this.events.publish('upstream-changed', { ...this.view(pvd), change: { kind: 'server-state', server, why: `${server}: ${previous} → ${health.state}` } });
          }
        },
      },
      this.transport,
    );
    this.dns64 = new Pref64Tracker(
      (pvd, msg) => this.askPvd(pvd, msg, 'dns64'),
      (pvd, before, after) => this.pref64Changed(pvd, before, after),
      this.log,
    );
    this.ddr = new DdrTracker({
      askServer: (pvd, server, msg) => {
        return this.forwarder.askServer(pvd, server, selfQuery(pvd, msg, true));
      },
      verify: (pvd, candidate, unencrypted) => verifyDesignated(candidate, unencrypted, { trust: this.trust, sourceAddress: pvd.sourceAddress }),
      onChange: (pvd, designated, why) => {
        // The cache keeps its answers: they are the same network's, only carried differently.
        this.forwarder.setDiscovered(pvd, designated.map((d) => d.server));
        this.events.publish('upstream-changed', { ...this.view(pvd), change: { kind: 'ddr', server: designated[0]?.server.label ?? null, why } });
      },
      log: this.log,
    });
    this.captive = new CaptiveTracker(
      (pvd, msg) => this.askPvd(pvd, msg, 'captive', this.probeInClear(pvd)),
      (pvd, state, previous) => this.captiveChanged(pvd, state, previous),
      this.log,
      config.captive,
    );
    this.captiveEncryption = new CaptiveEncryption(
      this.forwarder,
      (pvd, msg) => this.askIn(pvd, msg),
      (pvd, why) => this.ddr.recheck(pvd, why),
      () => this.config.captive.canary.name,
    );
    this.httpClients = new AccessList(config.http.allow ?? config.access.allow);
    this.audit = new AuditLog(this.log);
    this.sources = new SourceSet({
      registry: this.pvds,
      log: this.log,
      hold: () => this.gate.hold(),
      ownListeners: () => [...this.listenAddresses(), ...this.addresses().dns, ...this.pvdListeners.addresses()],
      runTool: opts.runTool,
      loopProblem: (spec) => this.loopProblem(spec),
      resolveIn: (pvdId, name) => this.resolveIn(pvdId, name),
      tlsContext: () => this.trust.context(),
    });
    this.accessList = new AccessList(config.access.allow);
    this.limiter = new RateLimiter(config.access.rateLimit);
    this.pipelineNext = this.pipeline();
    this.handler = new QueryHandler(this.pipelineNext, this.accessList, this.stats, this.log, this.limiter);
    this.pvdListeners = new PvdListeners({
      handler: (id) => {
        const h = new QueryHandler(forcedPipeline(id, () => this.pvds.get(id), () => this.pipelineNext), this.accessList, this.stats, this.log, this.limiter);
        h.observer = this.monitor; // pvdns monitor sees the PvD listeners' queries too
        if (opts.reclaimer) h.activity = opts.reclaimer;
        return h;
      },
      tcp: () => this.config.tcp,
      log: this.log,
    });
    // A PvD's own listener follows it; a failure here is logged and shown in its view (start binds the configuration's strictly).
    this.pvds.on('changed', () => {
      if (this.listening) this.pvdListeners.sync(this.pvds.list()).catch((err: unknown) => this.log.error({ err }, 'pvd listeners not synced'));
    });

    // Routes first: by the time anyone hears of a change, names already route by it.
    this.pvds.on('changed', () => this.rebuildRoutes());
    this.pvds.on('announced', (p) => {
      this.dns64.track(p); // before the routes: a configured Pref64's reverse zone routes to its PvD
      this.captive.track(p); // probes at once
      this.ddr.track(p);
      this.log.info({ pvd: describePvd(p) }, 'pvd announced');
      this.events.publish('pvd-announced', this.view(p));
    });
    this.pvds.on('updated', (p, previous) => {
      const changed = changedKeys(previous, p);
      this.log.info({ pvd: describePvd(p), changed }, 'pvd updated');
      this.events.publish('pvd-updated', { ...this.view(p), changed });
      this.dns64.track(p); // rediscovers at once (RFC 7050 §3 on a change of network)
      this.captive.track(p); // probes again at once
      this.ddr.track(p); // discovers again at once when its cleartext servers, mode or source address changed
    });
    this.pvds.on('withdrawn', (p, reason) => {
      const last = this.view(p); // as it was, before its cache and pool go
      const dropped = this.cache.dropPvd(p.tag);
      this.failures.dropPvd(p.tag);
      this.forwarder.drop(p);
      this.dns64.untrack(p);
      this.captive.untrack(p);
      this.ddr.untrack(p);
      this.stats.forget(p.id);
      this.captiveActions.delete(p.id);
      this.captiveEncryption.downgrades.delete(p.id);
      this.log.info({ pvd: p.id, reason, cacheEntriesDropped: dropped }, 'pvd withdrawn');
      this.events.publish('pvd-withdrawn', { ...last, reason });
    });

    this.loopDelay = registerProcessMetrics(this.metrics, () => this.stats.answered());
    this.stats.register(this.metrics);
    registerUpstreamMetrics(this.metrics, () => this.forwarder.livePools());
    registerCacheMetrics(this.metrics, () => this.cache, () => this.pvds.list());
    registerPvdMetrics(this.metrics, this.pvds);
    registerCaptiveMetrics(this.metrics, () => this.captive);
    registerDdrMetrics(this.metrics, () => this.ddr);
    this.forwarder.probes.register(this.metrics);
    this.events.register(this.metrics, this.log);
    this.monitor.register(this.metrics);
    this.handler.observer = this.monitor;
    if (opts.reclaimer) {
      opts.reclaimer.log = this.log;
      this.handler.activity = opts.reclaimer;
      registerReclaimMetrics(this.metrics, opts.reclaimer);
    }
    new CollectedValue('pvdns_queries_shed_total', 'Queries answered SERVFAIL at once because upstream.maxInflight upstream queries were in flight.', 'counter', () => [
      { labels: {}, value: this.forwarder.shed },
    ]).register(this.metrics);
    new CollectedValue('pvdns_ratelimited_total', 'Queries refused or dropped by access.rateLimit.', 'counter', () => [{ labels: {}, value: this.handler.rateLimited }]).register(
      this.metrics,
    );
    const gate = this.gate;
    new CollectedValue(
      'pvdns_route_gate_total',
      'The routing gate a source holds while it reads a change: queries that waited at it, times it was forced open (closed 100 ms), holds refused (250 ms of a second spent).',
      'counter',
      () => [
        { labels: { event: 'waited' }, value: gate.waited },
        { labels: { event: 'forced' }, value: gate.forced },
        { labels: { event: 'refused' }, value: gate.refused },
      ],
    ).register(this.metrics);
    const forwarder = this.forwarder;
    const downgrades = this.captiveEncryption.downgrades;
    new CollectedValue(
      'pvdns_encryption_downgrades_total',
      "Times a PvD's queries left encryption: its designated resolvers all down (designated-down), captive with opportunistic encryption (captive), an opportunistic server falling back to the clear (fallback).",
      'counter',
      function* (): Iterable<Sample> {
        for (const [pvd, m] of downgrades) for (const [reason, n] of m) yield { labels: { pvd, reason }, value: n };
        const fallback = new Map<string, number>();
        for (const p of forwarder.livePools()) for (const st of p.statsOf) if (st.downgrades > 0) fallback.set(p.pvdId, (fallback.get(p.pvdId) ?? 0) + st.downgrades);
        for (const [pvd, n] of fallback) yield { labels: { pvd, reason: 'fallback' }, value: n };
      },
    ).register(this.metrics);
    const captiveActions = this.captiveActions;
    new CollectedValue(
      'pvdns_captive_queries_total',
      "Queries of a captive PvD with encrypted servers: its portal's names sent in the clear (portal), other names in the clear under opportunistic encryption (cleartext), refused under strict (refused).",
      'counter',
      function* (): Iterable<Sample> {
        for (const [pvd, m] of captiveActions) for (const [action, n] of m) yield { labels: { pvd, action }, value: n };
      },
    ).register(this.metrics);
    const blocked = this.rebindBlocked;
    new CollectedValue('pvdns_rebind_blocked_total', 'Answers refused by DNS rebinding protection: a private address for a name the PvD does not own.', 'counter', function* (): Iterable<Sample> {
      for (const [pvd, n] of blocked) yield { labels: { pvd }, value: n };
    }).register(this.metrics);
  }

  /**
   * pipeline declares the stages a query passes, in order. Each stage owns a
   * query or hands it on; later stages see the answer on its way back.
   */
  private pipeline(): Next {
    const routes = (): RouteTable => this.routes;
    const cache = new CacheStage(this.cache, this.failures, (p) => this.pvds.get(p.id)?.tag === p.tag);
    const coalesce = new Coalesce();
    /** Whether a PvD claims the name by one of its zones (rebinding and captive checks spare its own names). */
    const owns = (p: Pvd, nameKey: string): boolean => {
      const r = this.routes.match(nameKey);
      return r.zone !== null && r.pvds.includes(p);
    };
    const rebind = new RebindStage(owns, this.rebindBlocked);
    const captive = new CaptiveStage(this.captive, owns, (p) => this.encryptionNow(p), this.captiveActions);
    // The queries DNS64 asks for itself (A behind a AAAA, in-addr.arpa behind
    // a PTR) enter the same stages from the cache on, in the same PvD.
    let inPvd: Next = this.forwarder.resolve;
    const dns64 = new Dns64Stage((p) => this.dns64.info(p), () => inPvd);
    inPvd = chain([cache, coalesce, rebind, captive, dns64], this.forwarder.resolve);
    // A CNAME target another PvD claims is looked up from the top, as a client's query for it would be.
    let all: Next = this.forwarder.resolve;
    const cname = new CnameStage(routes, () => all);
    const stages: Stage[] = [
      // 0. A source that has heard of a change and is reading it holds the
      //    gate: queries wait (100 ms at most) and are routed by the new
      //    routes, so a zone being announced is never asked elsewhere.
      this.gate,
      // 1. Special-use and locally served names never leave the host (RFC
      //    6761, RFC 6303). It consults the route table, since a PvD may own
      //    a private reverse zone, and leaves the decision on the query.
      new LocalNames(routes),
      // 2. Choose the PvD; every stage after this works inside one PvD, and
      //    the router retries the next PvD of the same route on SERVFAIL.
      new Router(routes, (p) => this.forwarder.routable(p) && !this.captive.isCaptive(p)),
      // 3. A CNAME chain into a name another PvD claims is finished in that
      //    PvD: after the router (it knows the answering PvD), before the
      //    cache, so each PvD's cache keeps its own answers as they came and
      //    it sees DNS64's final answers; it looks only at answers marked
      //    ANSWER_CNAME, so a hit without a CNAME costs a flag test.
      cname,
      // 4. The PvD's own cache: first inside the PvD, so a hit waits for nothing.
      cache,
      // 5. Identical questions in flight in the PvD share one upstream exchange.
      coalesce,
      // 6. DNS rebinding protection (rebindProtection): last on the way back,
      //    so it judges the answer the client would get, before the cache.
      rebind,
      // 7. Captive-portal inspection: after coalescing, it sees each upstream
      //    answer once, and marks a captive PvD's answers before the cache
      //    would keep them; it sees DNS64's final answers on their way back.
      captive,
      // 8. DNS64: marks (or makes) synthesized AAAA before the cache keeps them.
      dns64,
    ];
    all = chain(stages, this.forwarder.resolve);
    return all;
  }

  /** view is a PvD with its live state: servers, cache size (GET /v1/pvds and the events). */
  view(p: Pvd): PvdView {
    const discovered = this.forwarder.discoveredOf(p);
    // The pool's order: the network's designated resolvers (DNR), DDR's, then the PvD's own.
    const servers = [...p.designated, ...discovered, ...p.servers];
    // A Router Advertisement's designated resolvers are DNR's (RFC 9463); written ones are their source's.
    const learned: Learned[] = [...p.designated.map((): Learned => (p.source === 'ra' ? 'dnr' : p.source)), ...discovered.map((): Learned => 'ddr'), ...p.learned];
    const encrypted = this.forwarder.encrypted(p);
    const mode = effectiveEncryption(p, discovered.length > 0);
    return pvdView(
      p,
      serverViews(servers, this.forwarder.poolIfAny(p), learned),
      this.captive.view(p),
      this.dns64.view(p),
      this.cache.entries(p.tag),
      this.ddr.view(p),
      this.sources.sourceAddressPresent(p.id),
      {
        encryption: mode,
        cleartextServers: encrypted ? serverViews(p.clearServers, this.forwarder.clearPoolIfAny(p), p.clearServers.map((): Learned => p.source)) : [],
        captiveCleartext: encrypted && mode === 'opportunistic' && this.captive.isCaptive(p),
      },
      this.pvdListeners.view(p),
    );
  }

  /**
   * askPvd asks one question of exactly this PvD's servers, past routing and
   * the cache (Pref64 discovery, captive-portal probes); with `clear`, of its
   * cleartext servers (Pvd.clearServers) when it has encrypted ones. It is a
   * background probe of `kind`: counted in pvdns_probes_total, never in the
   * servers' errors. When every server refused, the answer says REFUSED
   * rather than a client's SERVFAIL: to discovery that is a definite "not here".
   */
  private async askPvd(pvd: Pvd, msg: Buffer, kind: ProbeKind, clear = false): Promise<Answer> {
    const q = selfQuery(pvd, msg, clear);
    const a = await this.forwarder.probe(q, kind);
    return a.rcode === RCODE.SERVFAIL && q.failedRcode === RCODE.REFUSED ? errorAnswer(RCODE.REFUSED, a.ede) : a;
  }

  /**
   * pref64Changed follows a change of a PvD's NAT64 prefixes or of who
   * synthesizes: the PvD's AAAA answers and the PTR answers pvdns made leave
   * the cache, the trusted prefixes' reverse zones route to the PvD, and
   * subscribers hear of it.
   */
  private pref64Changed(pvd: Pvd, before: Dns64Info, after: Dns64Info): void {
    if (this.pvds.get(pvd.id)?.tag !== pvd.tag) return;
    const samePrefixes = before.prefixes.length === after.prefixes.length && before.prefixes.every((p, i) => p.text === after.prefixes[i]!.text);
    if (!samePrefixes || before.synthesize !== after.synthesize) {
      // Every AAAA answer goes (a NODATA kept before pvdns synthesized is as stale as a synthesized AAAA),
      // and the PTR answers pvdns synthesized.
      const dropped = this.cache.dropWhere(pvd.tag, (a, key) => keyType(key) === TYPE.AAAA || (a.flags & ANSWER_SYNTHESIZED) !== 0);
      if (dropped > 0) this.log.info({ pvd: pvd.id, cacheEntriesDropped: dropped }, 'AAAA answers dropped: pref64 or DNS64 synthesis changed');
    }
    if (before.reverseZones.join() !== after.reverseZones.join()) this.rebuildRoutes();
    this.events.publish('pref64-changed', { ...this.view(pvd), previousPref64: before.prefixes.map((p) => p.text) });
  }

  /**
   * captiveChanged follows a PvD into or out of captivity: its cache goes
   * either way (answers kept while the state was unknown may be the portal's;
   * answers from before a login are suspect, RFC 8908 guidance in
   * standards.md §5.2), its portal's names route to it, and subscribers hear.
   */
  private captiveChanged(pvd: Pvd, state: CaptiveState, previous: CaptiveState): void {
    if (this.pvds.get(pvd.id)?.tag !== pvd.tag) return;
    // (state === previous: the API named another portal; only its routes and the view change.)
    if (state !== previous && (state === 'captive' || previous === 'captive')) {
      const dropped = this.cache.dropPvd(pvd.tag);
      this.failures.dropPvd(pvd.tag);
      if (dropped > 0) this.log.info({ pvd: pvd.id, cacheEntriesDropped: dropped }, 'cache flushed: captive state changed');
    }
    this.rebuildRoutes();
    this.events.publish('captive-changed', this.view(pvd));
    if (state === 'captive' && previous !== 'captive' && this.encryptionNow(pvd) === 'opportunistic') this.captiveEncryption.downgraded(pvd, 'captive');
    if (previous === 'captive' && state === 'open') {
      if (this.forwarder.encrypted(pvd)) {
        void this.captiveEncryption.opened(pvd, performance.now()).then((r) => {
          const now = this.pvds.get(pvd.id);
          if (now?.tag !== pvd.tag) return;
          this.log.info({ pvd: pvd.id, server: r.server, ms: r.ms, ok: r.ok }, r.why);
          this.events.publish('upstream-changed', { ...this.view(now), change: { kind: 'encryption-restored', server: r.server, ok: r.ok, ms: r.ms, why: r.why } });
        });
      } else if (pvd.ddr) {
        // Its DDR designation lapsed behind the portal (the portal's DNS has no SVCB): look again now, not after the back-off.
        this.ddr.recheck(pvd, 'captive portal opened');
      }
    }
  }

  /**
   * encryptionNow is how a PvD's queries are protected now (strict or
   * opportunistic), null when they go in the clear anyway: what the captive
   * stage decides by.
   */
  private encryptionNow(p: Pvd): Encryption | null {
    if (!this.forwarder.encrypted(p)) return null;
    const mode = effectiveEncryption(p, this.forwarder.discoveredOf(p).length > 0);
    return mode === 'off' ? null : mode;
  }

  /**
   * probeInClear says whether a PvD's captive-portal probes and API lookups
   * go to its cleartext servers: a portal rewrites port 53 and blocks the
   * encrypted resolver, so only they can see it and tell when it opens.
   * They do while the PvD is captive or its encrypted servers are all down
   * (the evidence of a portal), and, unless it is strict, until it is known
   * to be open; otherwise through its encrypted resolver.
   */
  private probeInClear(pvd: Pvd): boolean {
    if (this.captive.isCaptive(pvd) || this.forwarder.encryptedDown(pvd)) return true;
    return this.captive.stateOf(pvd) !== 'open' && this.encryptionNow(pvd) !== 'strict';
  }

  /** askIn asks one question in exactly this PvD, as askPvd, saying which server answered (a captive probe: re-validation after a portal). */
  private async askIn(pvd: Pvd, msg: Buffer): Promise<{ answer: Answer; server: string | null }> {
    const q = selfQuery(pvd, msg, false);
    const answer = await this.forwarder.probe(q, 'captive');
    return { answer, server: q.server };
  }

  /**
   * rebuildRoutes routes by the PvDs and what was learned of them: Pref64
   * reverse zones, and a captive PvD's portal hosts — except a host in a
   * zone another PvD claims: what a network names cannot take that over.
   */
  private rebuildRoutes(): void {
    const pvds = this.pvds.list();
    const claimedElsewhere = (p: Pvd, host: string): boolean =>
      pvds.some((o) => o !== p && o.dnsZones.some((z) => host === z || host.endsWith(`.${z}`)));
    this.routes = new RouteTable(pvds, (p) => [...this.dns64.info(p).reverseZones, ...this.captive.hosts(p).filter((h) => !claimedElsewhere(p, h))], {
      forwardTestNames: this.config.forwardTestNames,
    });
  }

  /** apiDeps is what the control API may do with this pvdns. */
  private apiDeps(): ApiDeps {
    return {
      pvds: this.pvds,
      view: (p) => this.view(p),
      announce: (spec): AnnounceOutcome => {
        const loop = this.loopProblem(spec);
        if (loop) return { ok: false, status: 400, error: loop.message };
        const r = announceFrom(this.pvds, 'api', spec, null);
        const id = spec.identifier;
        if (r === 'conflict') return { ok: false, status: 409, error: `PvD "${id}" comes from ${this.pvds.get(id)!.source}; change it there` };
        if (r === 'expired') return { ok: false, status: 400, error: `expires: ${spec.expires} has passed` };
        return { ok: true, result: r, pvd: this.pvds.get(id)! };
      },
      withdraw: (id) => {
        const p = this.pvds.get(id);
        if (!p) return { ok: false, status: 404, error: `no PvD "${id}"` };
        if (p.source !== 'api') return { ok: false, status: 409, error: `PvD "${p.identifier}" comes from ${p.source}; remove it there` };
        this.pvds.withdraw(id);
        return { ok: true };
      },
      translate: async (name, type, pvd, client) => {
        const { query, answer, reply } = await this.handler.translate(translateQuery(name, type), client, pvd);
        return translateResult(name, query, answer, reply);
      },
      flush: (pvd) => {
        if (pvd) {
          this.failures.dropPvd(pvd.tag);
          return this.cache.dropPvd(pvd.tag);
        }
        const n = this.cache.size;
        this.cache.clear();
        this.failures.clear();
        return n;
      },
      // POST /v1/reload: what SIGHUP does (command.ts), answering what changed.
      reload: () => reloadFile(this.opts.configFile, () => ({ config: this.config, pvds: this.pvds.list() }), (next) => this.reload(next)),
      events: this.events,
      monitor: this.monitor,
      sources: () => this.sources.views(),
      token: () => this.apiToken,
      audit: this.audit,
    };
  }

  /**
   * preview checks the configuration against the host (checkAgainstHost:
   * loops, the PvD directory, resolv.conf, expired PvDs) and announces the
   * PvDs without binding anything: what check-config shows, and the first
   * step of start, so both give the same verdict. It throws a ConfigError
   * with every problem, and returns the warnings (logged as well).
   */
  async preview(): Promise<string[]> {
    await this.readApiToken(this.config, false);
    const listenAddrs = this.listenAddresses();
    const warnings = await this.check(this.config, listenAddrs);
    await this.sources.apply(this.config, { once: true });
    return warnings;
  }

  /** check runs checkAgainstHost and logs its warnings, one line each. */
  private async check(config: Config, listenAddrs: SocketAddress[]): Promise<string[]> {
    // A server at one of the PvDs' own listeners would loop as one at `listen` would.
    const pvdListen = config.pvds.flatMap((p) => p.listen.map((l) => parseSocketAddress(l, 53) as SocketAddress));
    const warnings = (await checkAgainstHost(config, [...listenAddrs, ...pvdListen], this.opts.configFile)).map((w) => w.message);
    for (const w of warnings) this.log.warn({ warning: w }, 'configuration warning');
    return warnings;
  }

  /**
   * previewFiles reads pvdSources.directory once, as the running directory
   * source does, and announces its PvDs: check-config's view of the folder
   * (null without one). Call after preview().
   */
  async previewFiles(): Promise<DirectoryReport | null> {
    const dir = this.config.pvdSources.directory;
    if (dir === null) return null;
    return new PvdDirectory(dir, this.pvds, this.log, (spec) => this.loopProblem(spec)).scan();
  }

  /** start announces the configured PvDs and binds every listener. */
  async start(): Promise<void> {
    await this.preview();
    this.apiToken = await this.readApiToken(this.config, true);
    // Encrypted upstreams are verified with tls.caFile from the first query on.
    this.trust.setExtra(await this.readCa(this.config));
    try {
      this.dns = await this.bindAll(this.listenAddresses(), this.config);
      this.http = await this.startHttp(this.config.http.listen, this.config);
      await this.applyFileSources(this.config);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.listening = true;
    await this.sources.apply(this.config);
    try {
      // The configuration's PvDs' own listeners bind as `listen` does: a failure names its key.
      await this.pvdListeners.sync(this.pvds.list(), (pvd, index, problem) => this.configPvdError(pvd, index, problem));
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.dns64.start();
    this.captive.start();
    this.ddr.start();
    // Start-up's garbage (the configuration's parsing, the schemas' first use) goes after a quiet moment.
    this.opts.reclaimer?.touch();
    const bound = this.addresses();
    this.log.info(
      {
        listen: bound.dns.map((a) => a.label),
        http: bound.http?.label ?? null,
        udp: udpBackend,
        sources: this.sources.views().map((v) => `${v.source}: ${v.via}`),
        pvds: this.pvds.list().map(describePvd),
        config: this.opts.configFile,
      },
      'pvdns started',
    );
  }

  /**
   * bindAll binds UDP and TCP on each address, keeping the listeners already
   * bound on an address that stays; on any failure it closes what it opened
   * and throws, leaving the running listeners alone. `addrs` are
   * `config.listen`, in order (a failure names its key).
   */
  private async bindAll(addrs: SocketAddress[], config: Config): Promise<App['dns']> {
    const kept = new Map(this.dns.map((d) => [d.label, d]));
    const out: App['dns'] = [];
    const opened: App['dns'] = [];
    try {
      for (const [i, addr] of addrs.entries()) {
        const existing = kept.get(addr.label);
        if (existing) out.push(existing);
        else {
          const d = await bindPair(addr, this.handler, this.config.tcp, this.log, (problem) => configErrorAt(config, ['listen', i], problem, this.opts.configFile));
          opened.push(d);
          out.push(d);
        }
      }
    } catch (err) {
      await Promise.all(opened.flatMap((d) => [d.udp.stop(), d.tcp.stop()]));
      throw err;
    }
    return out;
  }

  /** startHttp starts the HTTP listener on `listen` (`config`'s http.listen), or nothing when it is null. */
  private async startHttp(listen: string | null, config: Config): Promise<HttpServer | null> {
    if (listen === null) return null;
    const addr = parseSocketAddress(listen, 8053) as SocketAddress;
    this.httpGuard = guardFor(addr, config);
    const http = new HttpServer(addr, {
      registry: this.metrics,
      readiness: () => this.readiness(),
      log: this.log,
      api: new Api(this.apiDeps()),
      guard: () => this.httpGuard!,
      audit: this.audit,
      clientAllowed: (a) => this.httpClients.allows(a),
    });
    await bind((problem) => configErrorAt(config, ['http', 'listen'], problem, this.opts.configFile), addr.label, () => http.start());
    return http;
  }

  /**
   * readApiToken finds the API's token: http.token, or the file of
   * http.tokenFile, made when `create` and it is not there (check-config only
   * checks that it could be). A file that cannot serve is a configuration error.
   */
  private async readApiToken(config: Config, create: boolean): Promise<string | null> {
    const file = config.http.tokenFile;
    if (file === null) return config.http.token;
    try {
      if (create) return await loadTokenFile(file);
      await checkTokenFile(file);
      return null;
    } catch (err) {
      if (err instanceof TokenError) throw configErrorAt(config, ['http', 'tokenFile'], err.problem, this.opts.configFile);
      throw err;
    }
  }

  private listenAddresses(): SocketAddress[] {
    return this.config.listen.map((l) => parseSocketAddress(l, 53) as SocketAddress);
  }

  /** loopProblem says which server of a PvD from the API or a file is pvdns itself, if one is. */
  private loopProblem(spec: PvdSpec): PvdInputError | null {
    const listeners = [...this.listenAddresses(), ...this.addresses().dns, ...this.pvdListeners.addresses()];
    for (const [i, s] of spec.dnsServers.entries()) {
      const server = parseServer(s, spec.encryption ?? defaultEncryption(spec.dnsServers)) as UpstreamServer;
      if (serverLoops(server, listeners)) return new PvdInputError(`dnsServers[${i}]`, `${server.fallback?.label ?? server.label} is pvdns's own listener: queries would loop`);
    }
    for (const [i, s] of spec.designatedResolvers.entries()) {
      const server = parseServer(s, 'strict') as UpstreamServer;
      if (serverLoops(server, listeners)) return new PvdInputError(`designatedResolvers[${i}]`, `${server.label} is pvdns's own listener: queries would loop`);
    }
    return null;
  }

  /** configPvdError is the ConfigError of a configuration PvD's listen[index] that cannot be bound; null for other PvDs. */
  private configPvdError(pvd: Pvd, index: number, problem: string): ConfigError | null {
    if (pvd.source !== 'config') return null;
    const i = this.config.pvds.findIndex((s) => normalizeDomain(s.identifier) === pvd.id);
    return i < 0 ? null : configErrorAt(this.config, ['pvds', i, 'listen', index], problem, this.opts.configFile);
  }

  /** readiness: listeners bound and some PvD has a server that may be asked (not all down). */
  readiness(): Readiness {
    if (!this.listening) return { ready: false, reason: 'listeners not bound yet' };
    const why = this.forwarder.noneUsable(this.pvds.list());
    return why === null ? { ready: true } : { ready: false, reason: why };
  }

  /**
   * reload applies a new configuration without dropping queries: PvDs are
   * diffed (an unchanged PvD keeps its cache and server state), listeners
   * are rebound only where their addresses changed, and everything else
   * changes in place. What can fail comes first, so a bad reload leaves the
   * running configuration serving.
   */
  reload(next: Config): Promise<void> {
    // One at a time, in the order asked: two SIGHUPs close together must not interleave their steps.
    const run = this.reloading.then(() => this.reloadNow(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  /** The reload in progress, if any: the next waits for it. */
  private reloading: Promise<void> = Promise.resolve();

  private async reloadNow(next: Config): Promise<void> {
    const prev = this.config;
    const unchanged = (k: keyof Config): boolean => JSON.stringify(prev[k]) === JSON.stringify(next[k]);
    const listenAddrs = next.listen.map((l) => parseSocketAddress(l, 53) as SocketAddress);
    await this.check(next, listenAddrs);
    // A raw socket pvdns may not open is refused before anything changes (CAP_NET_RAW).
    if (this.listening && next.pvdSources.routerAdvertisements && !prev.pvdSources.routerAdvertisements) {
      const problem = raReceiverProblem();
      if (problem) throw configErrorAt(next, ['pvdSources', 'routerAdvertisements'], problem, this.opts.configFile);
    }
    // Read again on every reload: rotating the token is writing the file and sending SIGHUP.
    const token = this.listening ? await this.readApiToken(next, true) : this.apiToken;
    const ca = this.listening ? await this.readCa(next) : null;
    if (this.listening && !unchanged('listen')) {
      const dns = await this.bindAll(listenAddrs, next);
      const gone = this.dns.filter((d) => !dns.includes(d));
      this.dns = dns;
      await Promise.all(gone.flatMap((d) => [d.udp.stop(), d.tcp.stop()]));
    }
    // Only a new http.listen binds anew (binding the same address twice would fail); the token,
    // the client list and the Host checks change in place below.
    if (this.listening && prev.http.listen !== next.http.listen) {
      const http = await this.startHttp(next.http.listen, next);
      await this.http?.stop();
      this.http = http;
    }
    this.config = next;
    this.apiToken = token;
    if (this.listening) this.trust.setExtra(ca);
    this.httpClients = new AccessList(next.http.allow ?? next.access.allow);
    if (this.http !== null) this.httpGuard = guardFor(this.http.address, next);
    // An event stream opened by a client the new lists refuse ends now: it would go on hearing every change.
    this.events.closeWhere((address) => !this.httpClients.allows(address));
    this.log.level = next.log.level;
    if (!unchanged('cache')) {
      // A new cache starts empty: entries admitted under the old limits go.
      this.cache = new AnswerCache(next.cache, this.opts.clock);
      this.failures = new FailureCache(FAILURE_ENTRIES, this.opts.clock);
    }
    // New timeouts mean new pools; otherwise servers keep their state.
    if (!unchanged('upstream')) this.forwarder.setOptions({ ...next.upstream });
    if (!unchanged('captive')) this.captive.setOptions(next.captive);
    for (const d of this.dns) d.tcp.setOptions({ ...next.tcp });
    await this.sources.apply(next, { once: !this.listening });
    if (this.listening) await this.applyFileSources(next);
    if (!unchanged('forwardTestNames')) this.rebuildRoutes();
    this.accessList = new AccessList(next.access.allow);
    if (!unchanged('access')) this.limiter = new RateLimiter(next.access.rateLimit);
    this.pipelineNext = this.pipeline();
    for (const h of [this.handler, ...this.pvdListeners.handlers.values()]) h.reconfigure(this.pipelineNext, this.accessList, this.limiter);
    this.log.info({ pvds: this.pvds.list().map((p) => p.id), config: this.opts.configFile }, 'configuration reloaded');
  }

  /**
   * applyFileSources follows the PvD directory and Router Advertisements as
   * `config` asks. A folder that has gone and a socket pvdns may not open
   * (CAP_NET_RAW) are configuration errors (and so is a CA file that cannot
   * be read, where start and reload read it).
   */
  private async applyFileSources(config: Config): Promise<void> {
    const dir = config.pvdSources.directory;
    // Checked by preview and reload already; the folder may have gone since.
    const problem = dir === null ? null : await directoryProblem(dir);
    if (problem) throw configErrorAt(config, ['pvdSources', 'directory'], problem, this.opts.configFile);
    await this.sources.applyDirectory(config);
    try {
      // RA PvDs' information is verified with this.trust, which start and reload gave tls.caFile first.
      await this.sources.applyRouterAdvertisements(config);
    } catch (err) {
      throw configErrorAt(config, ['pvdSources', 'routerAdvertisements'], (err as Error).message, this.opts.configFile);
    }
  }

  /** readCa reads tls.caFile (null without one); a file that cannot be read is a configuration error. */
  private async readCa(config: Config): Promise<Buffer | null> {
    if (config.tls.caFile === null) return null;
    try {
      return await readFile(config.tls.caFile);
    } catch (err) {
      throw configErrorAt(config, ['tls', 'caFile'], `cannot read ${config.tls.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, this.opts.configFile);
    }
  }

  /**
   * resolveIn resolves a name's addresses in one PvD only (its cache and
   * servers): where an RFC 8801 PvD's Additional Information is fetched from.
   */
  private async resolveIn(pvdId: string, name: string): Promise<string[]> {
    const pvd = this.pvds.get(pvdId);
    if (!pvd) return [];
    const out: string[] = [];
    for (const type of ['AAAA', 'A']) {
      const { query, answer, reply } = await this.handler.translate(translateQuery(name, type), SELF_CLIENT, pvd);
      for (const r of translateResult(name, query, answer, reply).answers) if (r.type === type) out.push(r.data);
    }
    return out;
  }

  /** stop takes no new queries, lets queries in flight finish (at most 2 s), then closes everything. */
  async stop(): Promise<void> {
    const listeners = [...this.dns, ...this.pvdListeners.pairs()].flatMap((d) => [d.udp, d.tcp]);
    for (const l of listeners) l.pause();
    const limitMs = Math.min(2000, this.config.upstream.queryTimeoutMs + 500);
    let timer: NodeJS.Timeout | undefined;
    const drained = Promise.all([this.handler, ...this.pvdListeners.handlers.values()].map((h) => h.drained()));
    await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, limitMs)))]);
    clearTimeout(timer);
    await Promise.all(listeners.map((l) => l.stop()));
    await this.pvdListeners.stop();
    this.dns = [];
    await this.http?.stop();
    this.events.close();
    this.sources.stop();
    this.dns64.close();
    this.captive.close();
    this.ddr.close();
    this.loopDelay.stop();
    this.opts.reclaimer?.stop();
    this.transport.close?.();
    this.pvds.close();
    this.listening = false;
  }

  /** addresses reports what pvdns is bound to. */
  addresses(): BoundAddresses {
    return { dns: this.dns.map((d) => d.udp.address), http: this.http?.address ?? null };
  }

  /** routeTable exposes the current routes (check-config, tests). */
  routeTable(): RouteTable {
    return this.routes;
  }
}

/**
 * selfQuery is a question pvdns asks for itself in exactly one PvD, past
 * routing and the cache (probes, DDR, Pref64 discovery); with `clear`, of
 * its cleartext servers when it has encrypted ones.
 */
function selfQuery(pvd: Pvd, msg: Buffer, clear: boolean): Query {
  const q = new Query('api', SELF_CLIENT, performance.now());
  parseQuery(msg, q);
  q.pvd = pvd;
  q.clear = clear;
  return q;
}

/** serverViews is servers with their state in `pool` (none before the pool is first asked). */
function serverViews(servers: readonly UpstreamServer[], pool: UpstreamPool | undefined, learned: readonly Learned[]): ServerView[] {
  return servers.map((s, i) => {
    // By label: a PvD updated with the same servers keeps its pool, whose server objects are the earlier ones.
    const at = pool === undefined ? -1 : pool.servers.findIndex((x) => x.label === s.label);
    const h = at < 0 ? undefined : pool!.health[at];
    const st = at < 0 ? undefined : pool!.statsOf[at];
    return {
      address: s.label,
      state: h?.state ?? 'untested',
      rttMs: h?.srttMs === null || h === undefined ? null : Math.round(h.srttMs * 1000) / 1000,
      since: h ? new Date(h.since).toISOString() : null,
      lastError: h?.lastError ?? null,
      probesPaused: at >= 0 && pool!.probesPaused(at),
      transport: s.transport,
      authName: s.authName,
      encryption: s.transport === 'udp' ? null : (st?.via ?? null),
      authenticated: st?.authenticated ?? null,
      encryptionError: st?.encryptionError ?? null,
      fallback: s.fallback?.label ?? null,
      learned: learned[i] ?? 'config',
      // Encrypted and its certificate checked against its name or address (a DDR server: by verified discovery).
      verified: s.transport === 'udp' ? null : st?.via === 'cleartext' ? false : s.authenticate,
    };
  });
}

/** guardFor is the Host and Origin checks of an HTTP listener on `addr`. */
function guardFor(addr: SocketAddress, config: Config): RequestGuard {
  return new RequestGuard({ listenHost: addr.host, allowedHosts: config.http.allowedHosts });
}
