// RouteTable: which PvD owns a name. Longest-suffix match over every PvD's
// dnsZones and the reverse zones of its prefixes, and over the zones pvdns
// answers itself (RFC 6761, RFC 6303). A PvD's claim on a zone beats a local
// zone of the same length or shorter, so a LAN that owns 192.168.1.0/24 gets
// its PTR queries; names nobody claims go to the default PvDs.

import { wireKey } from '../dns/name.js';
import type { Pvd } from '../pvd/model.js';

/** How a local zone is answered: loopback addresses, NXDOMAIN, or an empty zone (RFC 6303 §3). */
export type LocalKind = 'localhost' | 'invalid' | 'empty';

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
}

/** RFC 6761 §6.3 and §6.4: names that never leave the host, whatever PvDs claim. */
const SPECIAL_ZONES: ReadonlyArray<[string, LocalKind]> = [
  ['localhost', 'localhost'],
  ['invalid', 'invalid'],
];

/** RFC 6303 §4 (and RFC 7793 for 100.64.0.0/10): locally served empty zones. */
export const RFC6303_ZONES: readonly string[] = [
  '10.in-addr.arpa',
  ...Array.from({ length: 16 }, (_, i) => `${16 + i}.172.in-addr.arpa`),
  '168.192.in-addr.arpa',
  ...Array.from({ length: 64 }, (_, i) => `${64 + i}.100.in-addr.arpa`),
  '0.in-addr.arpa',
  '127.in-addr.arpa',
  '254.169.in-addr.arpa',
  '2.0.192.in-addr.arpa',
  '100.51.198.in-addr.arpa',
  '113.0.203.in-addr.arpa',
  '255.255.255.255.in-addr.arpa',
  `${'0.'.repeat(32)}ip6.arpa`,
  `1.${'0.'.repeat(31)}ip6.arpa`,
  'd.f.ip6.arpa',
  '8.e.f.ip6.arpa',
  '9.e.f.ip6.arpa',
  'a.e.f.ip6.arpa',
  'b.e.f.ip6.arpa',
  '8.b.d.0.1.0.0.2.ip6.arpa',
];

const NONE: readonly string[] = [];

const byPreference = (a: Pvd, b: Pvd): number => a.priority - b.priority || a.order - b.order;

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
  constructor(pvds: readonly Pvd[], learned: (p: Pvd) => readonly string[] = () => NONE) {
    const claims = new Map<string, { zone: string; pvds: Pvd[] }>();
    for (const p of pvds) {
      for (const zone of [...p.dnsZones, ...p.reverseZones, ...learned(p)]) {
        let key: string;
        try {
          key = wireKey(zone);
        } catch {
          continue; // a learned name that is no DNS name routes nowhere (configured zones were checked on input)
        }
        const claim = claims.get(key) ?? { zone, pvds: [] };
        if (!claim.pvds.includes(p)) claim.pvds.push(p);
        claims.set(key, claim);
      }
    }
    for (const zone of RFC6303_ZONES) this.addLocal(zone, 'empty');
    for (const [key, { zone, pvds: owners }] of claims) {
      this.zones.set(key, { zone, zoneKey: key, pvds: owners.sort(byPreference), local: null });
    }
    // Last, so no claim can displace them.
    for (const [zone, kind] of SPECIAL_ZONES) this.addLocal(zone, kind);
    for (const [key, route] of this.zones) {
      const h = suffixHash(key);
      const bucket = this.byHash.get(h);
      if (bucket) bucket.push(route);
      else this.byHash.set(h, [route]);
    }
    const defaults = pvds.filter((p) => p.isDefault && !p.noInternet && p.servers.length + p.designated.length > 0).sort(byPreference);
    this.defaultRoute = { zone: null, zoneKey: '', pvds: defaults, local: null };
  }

  private addLocal(zone: string, local: LocalKind): void {
    const key = wireKey(zone);
    this.zones.set(key, { zone, zoneKey: key, pvds: [], local });
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
