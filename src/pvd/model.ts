// Pvd: one provisioning domain as pvdns works with it — its servers parsed,
// its zones normalized, the reverse zones of its prefixes derived.

import { parsePrefix, parseSocketAddress, type SocketAddress } from '../config/address.js';
import { cleartextOf, defaultEncryption, isEncryptedForm, parseServer, type Encryption, type Learned, type UpstreamServer } from '../upstream/server.js';
import type { Answer } from '../dns/answer.js';
import { reverseZones } from './reverse.js';
import { normalizeDomain, type PvdSpec } from './schema.js';

/** Where a PvD came from. */
export type PvdSource = 'config' | 'host' | 'api' | 'file' | 'ra';

/** Pvd is immutable; an update replaces the object (and keeps its tag). */
export interface Pvd {
  /** The identifier lower-cased without a trailing dot: PvD IDs compare case-insensitively (RFC 8801 §3.4). */
  readonly id: string;
  /** The identifier as announced. */
  readonly identifier: string;
  /** Unique per announcement: the namespace of this PvD's cache entries. */
  readonly tag: number;
  readonly source: PvdSource;
  /** How the source learned it, where that says more than the source: "resolved (D-Bus)", "resolvectl (polled every 10 s)". */
  readonly origin: string | null;
  readonly servers: readonly UpstreamServer[];
  /** How its servers are spoken to: as configured, else strict when one is encrypted, else off. */
  readonly encryption: Encryption;
  /** `encryption` as written; null when the PvD named none (see effectiveEncryption). */
  readonly encryptionConfigured: Encryption | null;
  /** How each of `servers` was learned: the PvD's source. */
  readonly learned: readonly Learned[];
  /**
   * The network's encrypted resolvers (RFC 9463 DNR), asked before
   * `servers` while one of them works; `servers` are then the cleartext ones
   * to fall back on (as `effectiveEncryption` allows) and reach a captive
   * portal through.
   */
  readonly designated: readonly UpstreamServer[];
  /**
   * Whether DDR (RFC 9462) runs for this PvD: `ddr`, else on for a network's
   * PvDs (host, RA) and off for those written by hand; never with
   * encryption off, designated resolvers given, or no server written as a
   * plain address.
   */
  readonly ddr: boolean;
  /** The cleartext servers DDR asks for `_dns.resolver.arpa` SVCB: those written as plain addresses. */
  readonly ddrServers: readonly UpstreamServer[];
  /**
   * Each server's cleartext address, once each (cleartextOf): what a captive
   * PvD's portal names and probes are asked through while its encrypted
   * servers cannot be reached.
   */
  readonly clearServers: readonly UpstreamServer[];
  /** Normalized dnsZones (lower case, no trailing dot). */
  readonly dnsZones: readonly string[];
  readonly prefixes: readonly string[];
  /** The reverse zones its prefixes own. */
  readonly reverseZones: readonly string[];
  /** Serves names nobody claims: `default`, else true unless noInternet or it has no servers. */
  readonly isDefault: boolean;
  readonly priority: number;
  readonly noInternet: boolean;
  /** Epoch milliseconds, or null for never. */
  readonly expiresAt: number | null;
  readonly sourceAddress: string | null;
  readonly interface: string | null;
  readonly dns64: string;
  readonly dns64Synthesize: boolean;
  readonly captivePortal: string | null;
  readonly rebindProtection: boolean;
  /** Where its own DNS listener binds (`listen`): every query there is resolved in this PvD only. */
  readonly listen: readonly SocketAddress[];
  /** Whether home.arpa (RFC 8375) is asked here: `localNetwork`, else localNetworkOf. */
  readonly localNetwork: boolean;
  /** `localNetwork` as written; null when the PvD named none. */
  readonly localNetworkConfigured: boolean | null;
  /** Declaration order: breaks ties of priority. */
  readonly order: number;
}

/**
 * AskPvd asks one question (a query message) of exactly this PvD's servers,
 * past routing and the cache, and never rejects: what Pref64 discovery and
 * captive-portal probes use.
 */
export type AskPvd = (pvd: Pvd, msg: Buffer) => Promise<Answer>;

let nextTag = 1;

/**
 * Interface names of tunnels (VPNs: tun, tap, wg, ppp, ipsec, vti, GRE and
 * SIT, Tailscale, ZeroTier) and of cellular modems (ww is systemd's
 * predictable prefix for WWAN, as wwan0 and wwp0s20u4; rmnet and ccmni are
 * Qualcomm's and MediaTek's): none is the network the host sits on.
 */
const NOT_LOCAL_INTERFACE = /^(?:tun|tap|wg|ppp|ipsec|vti|ip6tnl|ip6gre|gre|gretap|sit|tailscale|zt|utun|ww|rmnet|ccmni)/i;

/**
 * localNetworkOf says whether a PvD is, by default, one of the local
 * network's, where home.arpa names are asked (RFC 8375 §3: "resolved using
 * local resolvers on the homenet", never "forwarded to servers outside the
 * logical boundaries of the homenet"): a PvD on a known interface that is
 * neither a tunnel nor a cellular modem, and not noInternet (a split-DNS VPN
 * or walled network). A PvD on no interface (one written by hand without
 * `interface`, the host's global servers) could be anywhere: not local
 * unless it says `localNetwork: true`.
 */
export function localNetworkOf(spec: Pick<PvdSpec, 'interface' | 'noInternet'>): boolean {
  return spec.interface !== null && !spec.noInternet && !NOT_LOCAL_INTERFACE.test(spec.interface);
}

/** newTag hands out the next PvD tag. */
export function newTag(): number {
  return nextTag++;
}

/** pvdFromSpec builds a Pvd from a validated spec. */
export function pvdFromSpec(spec: PvdSpec, source: PvdSource, order: number, tag = newTag(), origin: string | null = null): Pvd {
  const encryption = spec.encryption ?? defaultEncryption(spec.dnsServers);
  const parse = (s: string, mode: Encryption): UpstreamServer => {
    const r = parseServer(s, mode);
    if (typeof r === 'string') throw new Error(r); // the schema has checked it
    return r;
  };
  const servers = spec.dnsServers.map((s) => parse(s, encryption));
  // Designated resolvers are authenticated by their names (RFC 9463 §7.1: the ADN); falling back is the pool's, to `servers`.
  const designated = spec.designatedResolvers.map((s) => parse(s, 'strict'));
  // A designated resolver's address need not answer in the clear: its own servers are the PvD's cleartext ones, when it has any.
  const clear = new Map<string, UpstreamServer>();
  for (const s of servers.length > 0 ? servers : designated) {
    const c = cleartextOf(s);
    if (c !== null && !clear.has(c.label)) clear.set(c.label, c);
  }
  const plain = spec.dnsServers.filter((s) => !isEncryptedForm(s)).map((s) => parse(s, 'off'));
  const ddr = (spec.ddr ?? (source === 'host' || source === 'ra')) && spec.encryption !== 'off' && designated.length === 0 && plain.length > 0;
  const reverse = new Set<string>();
  for (const p of spec.prefixes) {
    const r = parsePrefix(p);
    if (typeof r === 'string') throw new Error(r);
    for (const z of reverseZones(r[0], r[1])) reverse.add(z);
  }
  return Object.freeze({
    id: normalizeDomain(spec.identifier),
    identifier: spec.identifier,
    tag,
    source,
    origin,
    servers: Object.freeze(servers),
    encryption,
    encryptionConfigured: spec.encryption,
    learned: Object.freeze(servers.map((): Learned => source)),
    designated: Object.freeze(designated),
    ddr,
    ddrServers: Object.freeze(ddr ? plain : []),
    clearServers: Object.freeze([...clear.values()]),
    dnsZones: Object.freeze([...new Set(spec.dnsZones.map(normalizeDomain))]),
    prefixes: Object.freeze([...spec.prefixes]),
    reverseZones: Object.freeze([...reverse]),
    // A PvD with no servers would answer names nobody claims with SERVFAIL: never a default.
    isDefault: spec.default ?? (!spec.noInternet && servers.length + designated.length > 0),
    priority: spec.priority,
    noInternet: spec.noInternet,
    expiresAt: spec.expires === null ? null : Date.parse(spec.expires),
    sourceAddress: spec.sourceAddress,
    interface: spec.interface,
    dns64: spec.dns64,
    dns64Synthesize: spec.dns64Synthesize,
    captivePortal: spec.captivePortal,
    rebindProtection: spec.rebindProtection,
    listen: Object.freeze(spec.listen.map((l) => parseSocketAddress(l, 53) as SocketAddress)),
    localNetwork: spec.localNetwork ?? localNetworkOf(spec),
    localNetworkConfigured: spec.localNetwork,
    order,
  });
}

/** describePvd is the PvD as logs and check-config show it. */
export function describePvd(p: Pvd): Record<string, unknown> {
  return {
    identifier: p.identifier,
    source: p.source,
    servers: p.servers.map((s) => s.label),
    ...(p.designated.length > 0 ? { designatedResolvers: p.designated.map((s) => s.label) } : {}),
    ...(p.ddr ? { ddr: true } : {}),
    ...(p.listen.length > 0 ? { listen: p.listen.map((a) => a.label) } : {}),
    dnsZones: p.dnsZones,
    prefixes: p.prefixes,
    default: p.isDefault,
    priority: p.priority,
    noInternet: p.noInternet,
    expires: p.expiresAt === null ? null : new Date(p.expiresAt).toISOString(),
    dns64: p.dns64Synthesize ? `${p.dns64}, synthesized by pvdns` : p.dns64,
    localNetwork: p.localNetwork,
  };
}

/**
 * changedKeys names what an update changed, by the keys a PvD is written
 * with (the pvd-updated event's `changed`): dnsServers, dnsZones, priority…
 */
export function changedKeys(before: Pvd, after: Pvd): string[] {
  const labels = (servers: readonly UpstreamServer[]): string => servers.map((s) => s.label).join();
  const keys: Array<[string, unknown, unknown]> = [
    ['dnsServers', labels(before.servers), labels(after.servers)],
    ['designatedResolvers', labels(before.designated), labels(after.designated)],
    ['dnsZones', before.dnsZones.join(), after.dnsZones.join()],
    ['prefixes', before.prefixes.join(), after.prefixes.join()],
    ['noInternet', before.noInternet, after.noInternet],
    ['default', before.isDefault, after.isDefault],
    ['priority', before.priority, after.priority],
    ['expires', before.expiresAt, after.expiresAt],
    ['sourceAddress', before.sourceAddress, after.sourceAddress],
    ['interface', before.interface, after.interface],
    ['dns64', before.dns64, after.dns64],
    ['dns64Synthesize', before.dns64Synthesize, after.dns64Synthesize],
    ['captivePortal', before.captivePortal, after.captivePortal],
    ['rebindProtection', before.rebindProtection, after.rebindProtection],
    ['encryption', before.encryptionConfigured, after.encryptionConfigured],
    ['ddr', before.ddr, after.ddr],
    ['listen', before.listen.map((a) => a.label).join(), after.listen.map((a) => a.label).join()],
    ['localNetwork', before.localNetwork, after.localNetwork],
    ['origin', before.origin, after.origin],
  ];
  return keys.filter(([, a, b]) => a !== b).map(([k]) => k);
}

/**
 * effectiveEncryption is how a PvD's queries are protected once designated
 * resolvers (DNR, or DDR's `discovered`) are known: as configured when the
 * PvD names a mode; else, with designated resolvers, opportunistic — they
 * are asked first and its cleartext servers while they fail (Android's
 * "automatic" private DNS); else as its servers say (strict or off).
 */
export function effectiveEncryption(p: Pvd, discovered: boolean): Encryption {
  if (p.encryptionConfigured !== null) return p.encryptionConfigured;
  return (p.designated.length > 0 || discovered) && p.encryption === 'off' ? 'opportunistic' : p.encryption;
}
