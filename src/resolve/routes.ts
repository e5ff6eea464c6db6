// RouteTable: which PvD owns a name. Longest-suffix match over every PvD's
// dnsZones and the reverse zones of its prefixes, and over the zones pvdns
// answers itself (RFC 6761, RFC 6303). A PvD's claim on a zone beats a local
// zone of the same length or shorter, so a LAN that owns 192.168.1.0/24 gets
// its PTR queries; names nobody claims go to the default PvDs.
//
// Special-use names (README "Local and special-use names"):
//   localhost, invalid  always local, whatever PvDs claim (RFC 6761 §6.3, §6.4)
//   resolver.arpa       always local: pvdns is no designated resolver (RFC 9462 §6.1, §6.4)
//   local and the link-local reverse zones
//                       NXDOMAIN unless a PvD names the zone in its dnsZones
//                       (RFC 6762 §3, §4, §22.1); a prefix does not claim them
//   test                NXDOMAIN unless a PvD claims it or forwardTestNames (RFC 6761 §6.2)
//   home.arpa           the local network's PvDs (Pvd.localNetwork), else NXDOMAIN,
//                       unless a PvD claims it (RFC 8375 §3, §4)

import { wireKey } from '../dns/name.js';
import type { Pvd } from '../pvd/model.js';

/**
 * How a local zone is answered: loopback addresses (localhost), NXDOMAIN
 * (invalid; mdns: .local and the link-local reverse zones; test; home:
 * home.arpa with no local network's PvD), an empty zone (RFC 6303 §3), or
 * an empty zone whose every name exists (resolver: NODATA, RFC 9462 §6.4).
 */
export type LocalKind = 'localhost' | 'invalid' | 'empty' | 'mdns' | 'test' | 'home' | 'resolver';

/** Route is a routing decision; routes are shared between queries and never changed. */
export interface Route {
  /** The matching zone in presentation form, or null for names nobody claims. */
  readonly zone: string | null;
  /** The zone's wire key (empty for the default route); the zone starts at nameKey.length - zoneKey.length. */
  readonly zoneKey: string;
  /** The PvDs to ask, in order (priority, then declaration). */
  readonly pvds: readonly Pvd[];
  /** Set when pvdns answers the name itself. */
  readonly local: LocalKind | null;
  /**
   * The special-use zone the name is in (mdns, test, home), also when a PvD's
   * claim routes it: a query forced into one PvD (q.forced) goes there only
   * if that PvD is among `pvds`; else null.
   */
  readonly special: LocalKind | null;
}

/** What the route table is built with besides the PvDs. */
export interface RouteOptions {
  /**
   * Send names under test. that no PvD claims to the default PvDs, as any
   * other name: RFC 6761 §6.2 item 4's "configuration option (disabled by
   * default) to enable upstream resolving of test names".
   */
  forwardTestNames?: boolean;
}

/**
 * Names that never leave the host, whatever PvDs claim: RFC 6761 §6.3 and
 * §6.4; resolver.arpa, since RFC 9462 §6.1 says a forwarder "SHOULD NOT
 * forward queries for resolver.arpa upstream" (a designation an upstream
 * gives is for its own address, never pvdns's: §4.2) and §6.4 makes it a
 * locally served zone. pvdns's own DDR asks its PvDs' servers directly
 * (DdrTracker, Forwarder.askServer), past this table.
 */
const SPECIAL_ZONES: ReadonlyArray<[string, LocalKind]> = [
  ['localhost', 'localhost'],
  ['invalid', 'invalid'],
  ['resolver.arpa', 'resolver'],
];

/**
 * RFC 6762's link-local names: ".local." (§3: queries "MUST be sent to the
 * mDNS IPv4 link-local multicast address") and the reverse zones of
 * 169.254/16 and fe80::/10 (§4: the same MUST), registered as special-use
 * in §22, whose §22.1 item 3 says resolution libraries "SHOULD NOT send
 * queries for these names to their configured (unicast) caching DNS
 * server(s)" and item 4 that caching servers "SHOULD generate immediate
 * NXDOMAIN responses for all such queries". pvdns does not speak mDNS, so
 * they are NXDOMAIN — unless a PvD lists the zone in its dnsZones (a network
 * that does serve .local over unicast, RFC 6762 Appendix G): only such an
 * explicit claim takes them, never a prefix's reverse zone.
 */
export const MDNS_ZONES: readonly string[] = ['local', '254.169.in-addr.arpa', '8.e.f.ip6.arpa', '9.e.f.ip6.arpa', 'a.e.f.ip6.arpa', 'b.e.f.ip6.arpa'];

/** RFC 8375 §6: the homenet's special-use name, for the local network's PvDs only. */
export const HOME_ZONE = 'home.arpa';

/** RFC 6761 §6.2: names for testing, negative by default. */
export const TEST_ZONE = 'test';

/**
 * RFC 6303 §4 (and RFC 7793 for 100.64.0.0/10): locally served empty zones.
 * Its 254.169.in-addr.arpa and [89ab].e.f.ip6.arpa are in MDNS_ZONES.
 */
export const RFC6303_ZONES: readonly string[] = [
  '10.in-addr.arpa',
  ...Array.from({ length: 16 }, (_, i) => `${16 + i}.172.in-addr.arpa`),
  '168.192.in-addr.arpa',
  ...Array.from({ length: 64 }, (_, i) => `${64 + i}.100.in-addr.arpa`),
  '0.in-addr.arpa',
  '127.in-addr.arpa',
  '2.0.192.in-addr.arpa',
  '100.51.198.in-addr.arpa',
  '113.0.203.in-addr.arpa',
  '255.255.255.255.in-addr.arpa',
  `${'0.'.repeat(32)}ip6.arpa`,
  `1.${'0.'.repeat(31)}ip6.arpa`,
  'd.f.ip6.arpa',
  '8.b.d.0.1.0.0.2.ip6.arpa',
];

const NONE: readonly string[] = [];

/** The local kinds no PvD can claim: RFC 6761 §6.3, §6.4 and RFC 9462 §6.1. */
const PINNED: ReadonlySet<LocalKind> = new Set(SPECIAL_ZONES.map(([, kind]) => kind));

const byPreference = (a: Pvd, b: Pvd): number => a.priority - b.priority || a.order - b.order;

/** A PvD with no server would answer every name it is sent SERVFAIL. */
const hasServers = (p: Pvd): boolean => p.servers.length + p.designated.length > 0;

/**
 * suffixHash hashes a wire key read backwards (FNV-1a, 32 bits), so the
 * hashes of all its suffixes fall out of one pass from the end.
 */
function suffixHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = key.length - 1; i >= 0; i--) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Label start offsets of the name being matched (a name has at most 128 labels). */
const starts = new Int32Array(128);

/** RouteTable is built from the current PvDs and replaced whenever they change. */
export class RouteTable {
  private readonly zones = new Map<string, Route>();
  /** The same routes by suffixHash of their zone key, for matching without building substrings. */
  private readonly byHash = new Map<number, Route[]>();
  /** The route of names nobody claims: the default PvDs that have servers. */
  readonly defaultRoute: Route;

  /**
   * `learned` adds zones a PvD owns by what pvdns has learned of it rather
   * than by its announcement: the ip6.arpa zones of its Pref64, so PTR
   * queries for its synthesized addresses reach it.
   */
  constructor(pvds: readonly Pvd[], learned: (p: Pvd) => readonly string[] = () => NONE, opts: RouteOptions = {}) {
    const defaults = pvds.filter((p) => p.isDefault && !p.noInternet && hasServers(p)).sort(byPreference);
    this.defaultRoute = { zone: null, zoneKey: '', pvds: defaults, local: null, special: null };
    // First the zones pvdns answers itself, alone, so each claim can be matched against them.
    for (const zone of RFC6303_ZONES) this.addLocal(zone, 'empty', null);
    for (const zone of MDNS_ZONES) this.addLocal(zone, 'mdns', 'mdns');
    if (!opts.forwardTestNames) this.addLocal(TEST_ZONE, 'test', 'test');
    // RFC 8375 §4 item 3: a host may use "the resolvers that are locally provided for resolving
    // 'home.arpa.'"; with none, item 4B: as an RFC 6303 §3 zone, never forwarded.
    const home = pvds.filter((p) => p.localNetwork && hasServers(p)).sort(byPreference);
    if (home.length === 0) this.addLocal(HOME_ZONE, 'home', 'home');
    else this.zones.set(wireKey(HOME_ZONE), { zone: HOME_ZONE, zoneKey: wireKey(HOME_ZONE), pvds: home, local: null, special: 'home' });
    for (const [zone, kind] of SPECIAL_ZONES) this.addLocal(zone, kind, null);
    this.index();

    const claims = new Map<string, { zone: string; pvds: Pvd[]; special: LocalKind | null }>();
    const claim = (p: Pvd, zone: string, explicit: boolean): void => {
      let key: string;
      try {
        key = wireKey(zone);
      } catch {
        return; // a learned name that is no DNS name routes nowhere (configured zones were checked on input)
      }
      let c = claims.get(key);
      if (c === undefined) {
        const under = this.match(key);
        // Names that never leave the host cannot be claimed (the schema refuses such dnsZones).
        if (under.local !== null && PINNED.has(under.local)) return;
        c = { zone, pvds: [], special: under.special };
        claims.set(key, c);
      }
      // RFC 6762's link-local zones go to a PvD that names them in dnsZones, never by a prefix or what was learned.
      if (c.special === 'mdns' && !explicit) return;
      if (!c.pvds.includes(p)) c.pvds.push(p);
    };
    for (const p of pvds) {
      for (const zone of p.dnsZones) claim(p, zone, true);
      for (const zone of p.reverseZones) claim(p, zone, false);
      for (const zone of learned(p)) claim(p, zone, false);
    }
    // A PvD's claim replaces a local zone of the same name; the pinned ones were never claimed.
    for (const [key, { zone, pvds: owners, special }] of claims) {
      if (owners.length > 0) this.zones.set(key, { zone, zoneKey: key, pvds: owners.sort(byPreference), local: null, special });
    }
    this.index();
  }

  private addLocal(zone: string, local: LocalKind, special: LocalKind | null): void {
    const key = wireKey(zone);
    this.zones.set(key, { zone, zoneKey: key, pvds: [], local, special });
  }

  /** index (re)builds byHash from zones. */
  private index(): void {
    this.byHash.clear();
    for (const [key, route] of this.zones) {
      const h = suffixHash(key);
      const bucket = this.byHash.get(h);
      if (bucket) bucket.push(route);
      else this.byHash.set(h, [route]);
    }
  }

  /**
   * match finds the route of a name given as a lower-cased wire key: the
   * longest zone that is a suffix of it at a label boundary. One backward
   * pass hashes every suffix; only a hash hit compares characters.
   */
  match(nameKey: string): Route {
    let labels = 0;
    for (let off = 0; off < nameKey.length && labels < starts.length; ) {
      starts[labels++] = off;
      off += nameKey.charCodeAt(off) + 1;
    }
    let found: Route = this.defaultRoute;
    let h = 0x811c9dc5;
    let i = nameKey.length - 1;
    for (let l = labels - 1; l >= 0; l--) {
      const start = starts[l]!;
      for (; i >= start; i--) h = Math.imul(h ^ nameKey.charCodeAt(i), 0x01000193) >>> 0;
      const bucket = this.byHash.get(h);
      if (bucket === undefined) continue;
      for (const r of bucket) {
        if (r.zoneKey.length === nameKey.length - start && nameKey.endsWith(r.zoneKey)) found = r;
      }
    }
    return found;
  }

  /** claims lists every zone with its PvDs, for check-config and the API. */
  claims(): Array<{ zone: string; pvds: string[] }> {
    const out: Array<{ zone: string; pvds: string[] }> = [];
    for (const r of this.zones.values()) if (r.pvds.length > 0) out.push({ zone: r.zone!, pvds: r.pvds.map((p) => p.id) });
    return out;
  }
}
