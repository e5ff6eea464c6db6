// Explicit PvDs from Router Advertisements (RFC 8801, pvdSources.
// routerAdvertisements): every RA that carries a PvD option announces or
// refreshes that PvD, with what the RA gives it — all the RA's
// configuration, outside the PvD option and nested in it, belongs to the PvD
// (§3.4). Its RDNSS addresses are the PvD's dnsServers (a link-local one
// scoped to its link), its PIOs its prefixes, its PREF64 (RFC 8781) its
// dns64 prefix, so DNS64 needs no ipv4only.arpa query. Its Encrypted DNS
// options (RFC 9463 DNR) are its designatedResolvers, in Service Priority
// order (§6.2), asked before the RDNSS servers, which stay its cleartext
// ones (§3.2): alpn "dot" as tls://[ADDR]:PORT#ADN, "h2" with a dohpath as
// https://[ADDR]:PORT/PATH#ADN (the template's "{?dns}" dropped: pvdns uses
// POST, RFC 8484 §4.1), the certificate checked against the ADN (§3.3).
// Other protocols (DoQ, HTTP/3 alone), ADN-only options (§3.1.6: the ADN
// would need resolving first) and DoH at a link-local address (a URL
// cannot carry its zone) are skipped with a debug line. Each router, server,
// prefix and NAT64 prefix lives as long as the last RA that carried it says
// (RFC 4861 §6.3.4, RFC 8106 §5.3.1, RFC 8781 §4.1, RFC 9463 §6.2); an RA whose router
// lifetime is 0 takes its router's part away at once, and a PvD no router
// advertises any more is withdrawn.
//
// An RA's DNSSL is a search list (RFC 8106 §3: suffixes for unqualified
// names), not a claim on names: a router on the café's Wi-Fi saying
// "corp.example.com" must not pull the VPN's names to the café. dnsZones
// come only from the PvD Additional Information (RFC 8801 §4.3), which the
// PvD ID's owner signs with its certificate.
//
// With the H flag, that information is fetched (§4.1) through the caller's
// fetchInfo (pvdns resolves the PvD ID through the PvD's own servers). The
// PvD is announced from the RA at once: §4 makes the information optional,
// and a PvD whose fetch fails is "as if it has no Additional Information"
// (§4.1), so the RA alone is a whole PvD. The information is dropped on a
// new sequence number, refetched after a random 0..2^(10+delay) ms, and
// refetched again at a random time in the second half of its life; a failed
// fetch is not repeated for that PvD, nor any fetch on a link after 10
// failures; a PvD is asked at most every 10 s, and a link at most 5 times in
// 10 s (all §4.1) — a PvD withdrawn and advertised again on its link counts
// as the same PvD for both. Information whose prefixes no longer cover the PIOs is
// not used (§4.1, §4.4).
//
// A PvD's zones come only with its information, so between the RA and the
// end of the fetch its names would still route elsewhere (a VPN's corp
// names to the café's Wi-Fi). When an RA makes a fetch start at once (a PvD
// first seen, or the H flag newly set), the feed holds the routing gate
// (SourceSink.hold) until the fetch has ended and the PvD is updated with
// what it brought, or not: queries wait (100 ms at most, the gate's bound)
// and are routed by the PvD's zones. A delayed fetch (a new sequence number,
// a refresh) holds nothing: the wait would be its random delay.

import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import { parsePref64 } from '../../dns64/prefix.js';
import { designatedProblem, MAX_DNS_SERVERS, pvdSpecSchema, serverProblem, type PvdSpec } from '../schema.js';
import { DOH_PORT, DOT_PORT } from '../../upstream/server.js';
import { interfaceNames } from './ifnames.js';
import { uncoveredPrefixes, type PvdInfo } from './pvd-info.js';
import { INFINITE_LIFETIME, parseRouterAdvertisement, type EncryptedDnsOption, type RaOptions } from './ra-wire.js';
import type { PvdFeed, SourceSink } from './source.js';

/** One RA as the raw socket delivers it: the ICMPv6 payload and where it came from. */
export interface ReceivedRa {
  payload: Buffer;
  /** The IPv6 source address. */
  source: string;
  ifindex: number;
  /** The IPv6 hop limit it arrived with. */
  hopLimit: number;
}

/** Opens the socket that receives RAs (the addon's openRaReceiver): RAs go to `onRa` until it is closed. */
export type OpenRaReceiver = (onRa: (ra: ReceivedRa) => void) => { close(): void };

/** Where a PvD's Additional Information is to be fetched through (RFC 8801 §4.1: the PvD itself). */
export interface InfoRequest {
  /** The PvD's DNS servers, to resolve the PvD ID through. */
  servers: string[];
  ifname: string;
  /** The host's address in one of the PvD's prefixes on that link, or null when it has none yet. */
  localAddress: string | null;
  /** The PvD's PIO prefixes, each of which the information must cover (§4.3). */
  prefixes: string[];
}

/** Fetches and validates a PvD's Additional Information: the information or one line saying why there is none. */
export type FetchInfo = (pvdId: string, via: InfoRequest) => Promise<PvdInfo | string>;

export interface RaFeedOptions {
  receiver: OpenRaReceiver;
  /** Without it the H flag is not acted on: no information is fetched. */
  fetchInfo?: FetchInfo;
  /** The interface name of an index; by default read from /sys/class/net. */
  ifname?: (ifindex: number) => string | null;
  /** The host's global addresses on an interface; by default from os.networkInterfaces(). */
  addresses?: (ifname: string) => string[];
  log?: Logger;
  /** Uniform in [0, 1); Math.random by default. */
  random?: () => number;
}

/** RFC 8801 §4.1: at least this long between two requests for one PvD's information. */
export const MIN_FETCH_INTERVAL_MS = 10_000;
/** RFC 8801 §4.1: at most this many requests on one link within MIN_FETCH_INTERVAL_MS. */
const MAX_FETCHES_PER_LINK = 5;
/** RFC 8801 §4.1: after this many failures on a link, nothing more is fetched on it. */
const MAX_FAILURES_PER_LINK = 10;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Bounds on what routers can make pvdns keep: anyone on a link can send RAs,
 * with a new PvD ID or source address in each. Past these, new ones are
 * ignored (logged once a minute) until old ones go.
 */
const MAX_RA_PVDS = 64;
const MAX_ROUTERS_PER_PVD = 16;
const MAX_ITEMS_PER_ROUTER = 32;
/** PvDs whose fetch failed, remembered for their link (§4.1): at most this many. */
const MAX_FAILED_REMEMBERED = 1024;

/** What one router (a link-local source on one link) last said about a PvD: each item with when it expires (ms; Infinity). */
interface RouterState {
  ifname: string;
  expiresAt: number;
  heardAt: number;
  servers: Map<string, number>;
  prefixes: Map<string, number>;
  pref64: Map<string, number>;
  /** Designated resolvers (DNR) as the spec writes them, each with its expiry... */
  designated: Map<string, number>;
  /** ...and its Service Priority (RFC 9463 §6.1). */
  priorities: Map<string, number>;
}

interface PvdState {
  id: string;
  /** By "ifname source". */
  routers: Map<string, RouterState>;
  http: boolean;
  delay: number;
  sequence: number;
  info: PvdInfo | null;
  /** When the next fetch is due, or null. */
  fetchAt: number | null;
  /** Bumped whenever a fetch in flight no longer counts (a new sequence number, the PvD withdrawn). */
  generation: number;
  fetching: boolean;
  /** A fetch failed: no more for this PvD while it lasts (§4.1). */
  failed: boolean;
  lastRequestAt: number | null;
  /** Information that did not cover the PIOs, already logged. */
  misfitLogged: PvdInfo | null;
  /** The spec last announced, as JSON, or null. */
  announced: string | null;
  /** The RA just received made a fetch due now: if it starts, it holds the routing gate. */
  holdNextFetch: boolean;
  /** Opens the routing gate this PvD's fetch holds, or null. */
  release: (() => void) | null;
}

/**
 * RaFeed is the router-advertisement source: it announces, updates and
 * withdraws the explicit PvDs RAs advertise (see the file header).
 */
export class RaFeed implements PvdFeed {
  private readonly pvds = new Map<string, PvdState>();
  private readonly requests = new Map<string, number[]>();
  private readonly failures = new Map<string, number>();
  /**
   * By "ifname PvD ID", outliving the PvD's state (a PvD withdrawn and
   * advertised again is the same PvD on the same network, §4.1): when its
   * information was last requested (kept MIN_FETCH_INTERVAL_MS), and whether
   * a request failed (kept while the feed runs).
   */
  private readonly lastRequests = new Map<string, number>();
  private readonly failedPvds = new Set<string>();
  private readonly names = new Map<number, string>();
  private sink: SourceSink | null = null;
  private receiver: { close(): void } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private readonly random: () => number;

  constructor(private readonly opts: RaFeedOptions) {
    this.random = opts.random ?? Math.random;
  }

  describe(): string {
    return 'router advertisements';
  }

  async start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    this.receiver = this.opts.receiver((ra) => this.receive(ra));
  }

  stop(): void {
    this.receiver?.close();
    this.receiver = null;
    this.disarm();
    for (const s of this.pvds.values()) {
      s.generation++;
      if (s.announced !== null) this.sink?.withdraw(s.id);
      releaseHold(s);
    }
    this.pvds.clear();
    this.sink = null;
  }

  /** The PvDs tracked now, as they were last announced: for tests and status. */
  specs(): PvdSpec[] {
    return [...this.pvds.values()].filter((s) => s.announced !== null).map((s) => JSON.parse(s.announced!) as PvdSpec);
  }

  private receive(r: ReceivedRa): void {
    if (this.sink === null) return;
    const ifname = this.ifnameOf(r.ifindex);
    if (ifname === null) {
      this.opts.log?.debug({ ifindex: r.ifindex }, 'router advertisement from an interface with no name: ignored');
      return;
    }
    const ra = parseRouterAdvertisement(r.payload, { source: r.source, hopLimit: r.hopLimit });
    if (typeof ra === 'string') {
      this.opts.log?.debug({ ifname, source: r.source, problem: ra }, 'router advertisement dropped');
      return;
    }
    // An RA without a PvD option is the link's implicit PvD: the host's link sources have it.
    if (ra.pvd === null) return;
    const now = Date.now();
    const pvd = ra.pvd;
    const header = pvd.header ?? ra.header; // the inner header takes precedence (RFC 8801 §3.4)
    const key = `${ifname} ${r.source.split('%', 1)[0]}`;
    let s = this.pvds.get(pvd.id);
    if (header.routerLifetime === 0) {
      // A router leaving (RFC 4861 §6.2.5), or one PvD-aware hosts must not use (RFC 8801 §5.2): its part goes now.
      if (s === undefined) return;
      s.routers.delete(key);
      this.refresh(now);
      return;
    }
    const fresh = s === undefined;
    if (s === undefined && this.pvds.size >= MAX_RA_PVDS) return this.tooMany(now, { ifname, pvd: pvd.id }, `more than ${MAX_RA_PVDS} PvDs advertised: new ones ignored until some go`);
    if (s !== undefined && !s.routers.has(key) && s.routers.size >= MAX_ROUTERS_PER_PVD) return this.tooMany(now, { ifname, pvd: pvd.id }, `more than ${MAX_ROUTERS_PER_PVD} routers advertise this PvD: new ones ignored until some go`);
    if (s === undefined) {
      const onLink = `${ifname} ${pvd.id}`;
      const last = this.lastRequests.get(onLink) ?? null;
      s = { id: pvd.id, routers: new Map(), http: false, delay: 0, sequence: 0, info: null, fetchAt: null, generation: 0, fetching: false, failed: this.failedPvds.has(onLink), lastRequestAt: last !== null && last > now - MIN_FETCH_INTERVAL_MS ? last : null, misfitLogged: null, announced: null, holdNextFetch: false, release: null };
      this.pvds.set(pvd.id, s);
    }
    let router = s.routers.get(key);
    if (router === undefined) {
      router = { ifname, expiresAt: 0, heardAt: now, servers: new Map(), prefixes: new Map(), pref64: new Map(), designated: new Map(), priorities: new Map() };
      s.routers.set(key, router);
    }
    router.expiresAt = now + header.routerLifetime * 1000;
    router.heardAt = now;
    for (const options of [ra.options, pvd.options]) {
      for (const skipped of merge(router, options, ifname, now)) this.opts.log?.debug({ pvd: pvd.id, ifname, source: r.source, skipped }, 'designated resolver not used');
    }
    if (ra.ignored.length > 0) this.opts.log?.debug({ pvd: pvd.id, ifname, source: r.source, ignored: ra.ignored }, 'router advertisement options ignored');
    this.followSequence(s, pvd.http, pvd.sequence, pvd.delay, fresh, now);
    // Only a fetch this RA makes due now holds the gate; one deferred (no server yet, the link's limit) will not.
    s.holdNextFetch = s.http && s.fetchAt !== null && s.fetchAt <= now && !s.fetching;
    this.refresh(now);
    s.holdNextFetch = false;
  }

  /** When the last "too many" line was logged: at most one a minute. */
  private tooManyLoggedAt = -Infinity;

  private tooMany(now: number, fields: Record<string, unknown>, msg: string): void {
    if (now - this.tooManyLoggedAt < 60_000) return;
    this.tooManyLoggedAt = now;
    this.opts.log?.warn(fields, msg);
  }

  /** RFC 8801 §4.1: what the H flag and the sequence number ask of the information. */
  private followSequence(s: PvdState, http: boolean, sequence: number, delay: number, fresh: boolean, now: number): void {
    s.delay = delay;
    if (!http || this.opts.fetchInfo === undefined) {
      // Without the H flag hosts MUST NOT fetch; information fetched earlier is no longer the PvD's.
      if (s.http) this.dropInfo(s);
      s.http = false;
      return;
    }
    if (fresh || !s.http) {
      s.http = true;
      s.sequence = sequence;
      this.scheduleFetch(s, now);
    } else if (sequence !== s.sequence) {
      s.sequence = sequence;
      this.dropInfo(s); // MUST deprecate it and stop using it
      this.scheduleFetch(s, now + this.random() * 2 ** (10 + delay));
    }
  }

  private dropInfo(s: PvdState): void {
    s.info = null;
    s.fetchAt = null;
    s.generation++;
    s.fetching = false;
    releaseHold(s); // the fetch it waited for no longer counts
  }

  /** scheduleFetch plans a fetch at `at`, or later when §4.1's 10 s between requests asks it. */
  private scheduleFetch(s: PvdState, at: number): void {
    if (s.failed) return;
    s.fetchAt = Math.max(at, s.lastRequestAt === null ? at : s.lastRequestAt + MIN_FETCH_INTERVAL_MS);
  }

  /** refresh drops what has expired, starts fetches that are due, announces what changed and arms the timer. */
  private refresh(now: number): void {
    for (const s of [...this.pvds.values()]) {
      for (const [key, r] of s.routers) {
        if (r.expiresAt <= now) s.routers.delete(key);
        else {
          for (const items of [r.servers, r.prefixes, r.pref64, r.designated]) for (const [k, at] of items) if (at <= now) items.delete(k);
          for (const k of r.priorities.keys()) if (!r.designated.has(k)) r.priorities.delete(k);
        }
      }
      if (s.routers.size === 0) {
        this.pvds.delete(s.id);
        s.generation++;
        if (s.announced !== null) this.sink?.withdraw(s.id);
        releaseHold(s);
        continue;
      }
      if (s.info !== null && s.info.expiresAt <= now) {
        // §4.1: expired information MUST be deprecated; the refetch planned before it failed or is late.
        s.info = null;
        if (s.fetchAt === null && !s.fetching) this.scheduleFetch(s, now);
      }
      // Announced first: the fetch resolves the PvD ID through the PvD, which must be in the registry by then (§4.1).
      this.announce(s, now);
      if (s.http && s.fetchAt !== null && s.fetchAt <= now && !s.fetching) this.fetch(s, now);
    }
    this.arm(now);
  }

  private fetch(s: PvdState, now: number): void {
    const fetchInfo = this.opts.fetchInfo!;
    const spec = this.build(s, now, false);
    const ifname = spec.interface!;
    if ((this.failures.get(ifname) ?? 0) >= MAX_FAILURES_PER_LINK) {
      s.fetchAt = null;
      return;
    }
    if (spec.dnsServers.length === 0) {
      // The PvD ID can be resolved only through the PvD's own servers (§4.1): wait for an RDNSS.
      s.fetchAt = now + MIN_FETCH_INTERVAL_MS;
      return;
    }
    const recent = (this.requests.get(ifname) ?? []).filter((t) => t > now - MIN_FETCH_INTERVAL_MS);
    this.requests.set(ifname, recent);
    if (recent.length >= MAX_FETCHES_PER_LINK) {
      s.fetchAt = recent[0]! + MIN_FETCH_INTERVAL_MS;
      return;
    }
    recent.push(now);
    for (const [k, at] of this.lastRequests) if (at <= now - MIN_FETCH_INTERVAL_MS) this.lastRequests.delete(k);
    this.lastRequests.set(`${ifname} ${s.id}`, now);
    s.fetchAt = null;
    s.fetching = true;
    // In the same turn of the event loop as the RA's announce: no query is routed in between.
    if (s.holdNextFetch && s.release === null && this.sink !== null) s.release = this.sink.hold();
    s.lastRequestAt = now;
    const generation = s.generation;
    const via: InfoRequest = { servers: spec.dnsServers, ifname, localAddress: this.localAddress(ifname, spec.prefixes), prefixes: spec.prefixes };
    fetchInfo(s.id, via).then(
      (r) => this.fetched(s, generation, ifname, r),
      (err: unknown) => this.fetched(s, generation, ifname, (err as Error)?.message ?? String(err)),
    );
  }

  private fetched(s: PvdState, generation: number, ifname: string, r: PvdInfo | string): void {
    if (this.pvds.get(s.id) !== s || s.generation !== generation) return; // withdrawn, or a new sequence number since
    s.fetching = false;
    const now = Date.now();
    if (typeof r === 'string') {
      s.failed = true; // §4.1: not requested again for this PvD while the link lasts
      if (this.failedPvds.size >= MAX_FAILED_REMEMBERED) this.failedPvds.delete(this.failedPvds.values().next().value!);
      this.failedPvds.add(`${ifname} ${s.id}`);
      const failures = (this.failures.get(ifname) ?? 0) + 1;
      this.failures.set(ifname, failures);
      this.opts.log?.warn({ pvd: s.id, ifname, problem: r }, 'PvD Additional Information not used');
      if (failures === MAX_FAILURES_PER_LINK) this.opts.log?.warn({ ifname }, `${failures} PvD Additional Information failures on this link: no more are fetched on it (RFC 8801 §4.1)`);
    } else {
      s.info = r;
      // §4.1: refetch at a uniformly random time in [(B-A)/2, B] after A; B-A is the time left.
      const left = r.expiresAt - now;
      s.fetchAt = now + left / 2 + this.random() * (left / 2);
      this.opts.log?.info({ pvd: s.id, ifname, expires: r.expires, dnsZones: r.dnsZones.length, noInternet: r.noInternet }, 'PvD Additional Information fetched');
    }
    this.refresh(now);
    releaseHold(s); // the PvD is updated (or is as if it had no information): its names route by it now
  }

  private announce(s: PvdState, now: number): void {
    const spec = this.build(s, now, true);
    const text = JSON.stringify(spec);
    if (text === s.announced) return;
    s.announced = text;
    this.sink?.announce(spec);
  }

  /** build makes the PvD's spec from its routers and, with `withInfo`, its information where it may be used. */
  private build(s: PvdState, now: number, withInfo: boolean): PvdSpec {
    const servers = new Set<string>();
    const designated = new Map<string, number>(); // server → its best Service Priority among the routers
    const prefixes = new Set<string>();
    let pref64: string | null = null;
    let expiresAt = 0;
    let latest: RouterState | null = null;
    for (const r of s.routers.values()) {
      for (const a of r.servers.keys()) servers.add(a);
      for (const [d, priority] of r.priorities) if (r.designated.has(d)) designated.set(d, Math.min(priority, designated.get(d) ?? Infinity));
      for (const p of r.prefixes.keys()) prefixes.add(p);
      pref64 ??= r.pref64.keys().next().value ?? null; // RFC 8781 §5.1 leaves the choice among several to the host
      expiresAt = Math.max(expiresAt, r.expiresAt);
      if (latest === null || r.heardAt >= latest.heardAt) latest = r;
    }
    const base = {
      identifier: s.id,
      dnsServers: [...servers].slice(0, MAX_DNS_SERVERS),
      // RFC 9463 §6.2: smaller Service Priority first; equal ones in the order heard (sort is stable).
      designatedResolvers: [...designated].sort((a, b) => a[1] - b[1]).map(([d]) => d).slice(0, MAX_DNS_SERVERS),
      prefixes: [...prefixes],
      interface: latest!.ifname,
      // Whole seconds: the registry withdraws at this time if no RA renews it first.
      expires: new Date(Math.ceil(expiresAt / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
      dns64: pref64 ?? 'auto',
    };
    const info = withInfo ? this.usableInfo(s, base.prefixes, now) : null;
    if (info !== null) {
      const r = pvdSpecSchema.safeParse({ ...base, dnsZones: info.dnsZones, noInternet: info.noInternet });
      if (r.success) return r.data;
      this.opts.log?.warn({ pvd: s.id, problem: r.error.issues[0]?.message }, 'PvD Additional Information does not make a valid PvD: not used');
    }
    return pvdSpecSchema.parse(base); // cannot fail: merge() kept only servers and a PREF64 the schema takes
  }

  private usableInfo(s: PvdState, prefixes: string[], now: number): PvdInfo | null {
    const info = s.info;
    if (info === null || info.expiresAt <= now) return null;
    const outside = uncoveredPrefixes(prefixes, info.prefixes);
    if (outside.length === 0) return info;
    if (s.misfitLogged !== info) {
      s.misfitLogged = info;
      this.opts.log?.warn({ pvd: s.id, prefix: outside[0] }, 'PvD Additional Information does not cover an advertised prefix: not used (RFC 8801 §4.4)');
    }
    return null;
  }

  /** The host's address on `ifname` inside one of the prefixes (§4.1: the request leaves from the PvD's address). */
  private localAddress(ifname: string, prefixes: string[]): string | null {
    const addrs = this.opts.addresses ? this.opts.addresses(ifname) : globalAddresses(ifname);
    for (const a of addrs) if (uncoveredPrefixes([`${a}/${a.includes(':') ? 128 : 32}`], prefixes).length === 0) return a;
    return null;
  }

  private ifnameOf(ifindex: number): string | null {
    if (this.opts.ifname) return this.opts.ifname(ifindex);
    let name = this.names.get(ifindex);
    if (name === undefined) {
      this.names.clear();
      for (const [i, n] of interfaceNames()) this.names.set(i, n);
      name = this.names.get(ifindex);
    }
    return name ?? null;
  }

  /** arm sets the one timer at the next thing due: an expiry or a fetch. None while nothing is tracked. */
  private arm(now: number): void {
    let next = Infinity;
    for (const s of this.pvds.values()) {
      for (const r of s.routers.values()) {
        next = Math.min(next, r.expiresAt);
        for (const items of [r.servers, r.prefixes, r.pref64, r.designated]) for (const at of items.values()) next = Math.min(next, at);
      }
      if (s.info !== null) next = Math.min(next, s.info.expiresAt);
      if (s.fetchAt !== null && !s.fetching) next = Math.min(next, s.fetchAt);
    }
    if (next === this.timerAt && this.timer !== null) return;
    this.disarm();
    if (next === Infinity) return;
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.refresh(Date.now());
      },
      Math.min(Math.max(0, next - now), MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }
}

/** releaseHold opens the routing gate a PvD's fetch holds, if it holds it. */
function releaseHold(s: PvdState): void {
  const release = s.release;
  s.release = null;
  release?.();
}

/**
 * merge records an RA's options in its router's state: each item's expiry,
 * a lifetime of 0 removing it. Returns why Encrypted DNS options (or some of
 * their protocols) were not taken, one line each.
 */
function merge(router: RouterState, options: RaOptions, ifname: string, now: number): string[] {
  const until = (lifetime: number): number => (lifetime === INFINITE_LIFETIME ? Infinity : now + lifetime * 1000);
  const set = (items: Map<string, number>, key: string, lifetime: number): void => {
    if (lifetime === 0) items.delete(key);
    else if (items.has(key) || items.size < MAX_ITEMS_PER_ROUTER) items.set(key, until(lifetime));
  };
  // A multicast or unspecified RDNSS address, or a PREF64 RFC 6052 cannot use, is nobody's: left out.
  for (const o of options.rdnss) {
    for (const a of o.addresses) {
      const text = serverText(a, ifname);
      if (serverProblem(text) === null) set(router.servers, text, o.lifetime);
    }
  }
  for (const p of options.prefixes) set(router.prefixes, p.prefix, p.validLifetime);
  for (const p of options.pref64) if (typeof parsePref64(p.prefix) !== 'string') set(router.pref64, p.prefix, p.lifetime);
  const skipped: string[] = [];
  for (const o of options.dnr) {
    const forms = designatedForms(o, ifname, skipped);
    for (const text of forms) {
      const problem = designatedProblem(text);
      if (problem !== null) {
        skipped.push(`${text}: ${problem}`);
        continue;
      }
      set(router.designated, text, o.lifetime); // RFC 9463 §6.2 → RFC 8106 §5.3.1: as RDNSS servers expire
      if (router.designated.has(text)) router.priorities.set(text, o.priority);
      else router.priorities.delete(text);
    }
  }
  return skipped;
}

/**
 * designatedForms writes an Encrypted DNS option's resolver as the servers
 * pvdns can use, per address (in their order of preference, RFC 9463
 * §3.1.3) and protocol (in the order of its alpn): "dot" → DoT on `port`
 * or 853, "h2" with a dohpath → DoH on `port` or 443 (RFC 9461 §4.1, §5.1: DoH
 * needs the dohpath), each authenticated by the ADN (§3.3). What cannot be
 * used goes to `skipped`.
 */
export function designatedForms(o: EncryptedDnsOption, ifname: string, skipped: string[]): string[] {
  if (o.params === null) {
    skipped.push(`${o.adn}: ADN-only mode, which needs the ADN resolved through SVCB first (RFC 9463 §3.1.6): not supported`);
    return [];
  }
  const params = o.params;
  const out: string[] = [];
  const unused = params.alpn.filter((a) => a !== 'dot' && !(a === 'h2' && params.dohpath !== null));
  if (unused.length > 0) {
    const why = unused.map((a) => (a === 'h2' ? 'h2 without a dohpath (RFC 9461 §5.1)' : a)).join(', ');
    skipped.push(`${o.adn}: alpn ${why}: pvdns speaks DoT ("dot") and DoH over HTTP/2 ("h2") only`);
  }
  for (const address of o.addresses) {
    const linkLocal = /^fe[89ab]/i.test(address);
    for (const alpn of params.alpn) {
      if (alpn === 'dot') {
        out.push(`tls://[${linkLocal ? `${address}%${ifname}` : address}]:${params.port ?? DOT_PORT}#${o.adn}`);
      } else if (alpn === 'h2' && params.dohpath !== null) {
        if (linkLocal) {
          skipped.push(`${o.adn}: DoH at the link-local address ${address}, which a URL cannot scope to its link (${ifname})`);
          continue;
        }
        // The template's variables go: pvdns POSTs the query to the path (RFC 8484 §4.1).
        const path = params.dohpath.replace(/\{[^}]*\}/g, '');
        const port = params.port ?? DOH_PORT;
        out.push(`https://[${address}]${port === DOH_PORT ? '' : `:${port}`}${path}#${o.adn}`);
      }
    }
  }
  return [...new Set(out)];
}

/** A link-local server is reachable only through its link (RFC 8106 §5.1): scoped to it. */
function serverText(address: string, ifname: string): string {
  return /^fe[89ab]/i.test(address) ? `[${address}%${ifname}]` : address;
}

/** globalAddresses lists an interface's IPv6 addresses that are not link-local. */
function globalAddresses(ifname: string): string[] {
  return (networkInterfaces()[ifname] ?? []).filter((a) => a.family === 'IPv6' && !a.internal && a.scopeid === 0).map((a) => a.address);
}
