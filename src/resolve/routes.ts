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
  /** Length of the zone's wire key: the zone starts at nameKey.length - zoneKeyLength. */
  readonly zoneKeyLength: number;
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

const byPreference = (a: Pvd, b: Pvd): number => a.priority - b.priority || a.order - b.order;

/** RouteTable is built from the current PvDs and replaced whenever they change. */
export class RouteTable {
  private readonly zones = new Map<string, Route>();
  /** The route of names nobody claims: the default PvDs that have servers. */
  readonly defaultRoute: Route;

  constructor(pvds: readonly Pvd[]) {
    const claims = new Map<string, { zone: string; pvds: Pvd[] }>();
    for (const p of pvds) {
      for (const zone of [...p.dnsZones, ...p.reverseZones]) {
        const key = wireKey(zone);
        const claim = claims.get(key) ?? { zone, pvds: [] };
        if (!claim.pvds.includes(p)) claim.pvds.push(p);
        claims.set(key, claim);
      }
    }
    for (const zone of RFC6303_ZONES) this.addLocal(zone, 'empty');
    for (const [key, { zone, pvds: owners }] of claims) {
      this.zones.set(key, { zone, zoneKeyLength: key.length, pvds: owners.sort(byPreference), local: null });
    }
    // Last, so no claim can displace them.
    for (const [zone, kind] of SPECIAL_ZONES) this.addLocal(zone, kind);
    const defaults = pvds.filter((p) => p.isDefault && !p.noInternet && p.servers.length > 0).sort(byPreference);
    this.defaultRoute = { zone: null, zoneKeyLength: 0, pvds: defaults, local: null };
  }

  private addLocal(zone: string, local: LocalKind): void {
    const key = wireKey(zone);
    this.zones.set(key, { zone, zoneKeyLength: key.length, pvds: [], local });
  }

  /** match finds the route of a name given as a lower-cased wire key. */
  match(nameKey: string): Route {
    // Suffixes longest first: each starts after one more label (octet = length).
    for (let off = 0; ; ) {
      const r = this.zones.get(off === 0 ? nameKey : nameKey.substring(off));
      if (r !== undefined) return r;
      const len = nameKey.charCodeAt(off);
      if (!(len > 0)) return this.defaultRoute;
      off += len + 1;
    }
  }

  /** claims lists every zone with its PvDs, for check-config and the API. */
  claims(): Array<{ zone: string; pvds: string[] }> {
    const out: Array<{ zone: string; pvds: string[] }> = [];
    for (const r of this.zones.values()) if (r.pvds.length > 0) out.push({ zone: r.zone!, pvds: r.pvds.map((p) => p.id) });
    return out;
  }
}
