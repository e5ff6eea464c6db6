// PvdView: a PvD with its live state, as GET /v1/pvds and the events show it
// (DESIGN's PvD object, with a few fields more).

import type { Pvd } from './model.js';
import type { Learned } from '../upstream/server.js';

/** A PvD's captive-portal state as the API shows it (src/captive/tracker.ts fills it in). */
export interface CaptiveView {
  /** null while unknown. */
  captive: boolean | null;
  /** unknown, open or captive. */
  captiveState: string;
  /** From the PvD's RFC 8908 API: where the user logs in. */
  userPortalUrl: string | null;
  venueInfoUrl: string | null;
  /** When the state last changed (RFC 3339). */
  captiveSince: string | null;
  /** What decided the state: the probe that saw a rewrite, or the API. */
  captiveReason: string | null;
  /** Addresses seen in rewritten answers. */
  portalAddresses: string[];
  /** Why the RFC 8908 API could not be read, until it can. */
  captiveApiError: string | null;
}

/** A PvD's DNS64 as the API shows it (src/dns64/tracker.ts fills it in). */
export interface Dns64View {
  /** The Pref64::/n set; null while unknown or with dns64 off, [] when the PvD has no NAT64. */
  pref64: string[] | null;
  /** Who synthesizes: off, discovering, none, network (the PvD's resolver) or pvdns. */
  dns64: string;
  /** How the prefixes were learned: discovery (RFC 7050), config, or default (the Well-Known Prefix). */
  pref64Source: string | null;
  /** When discovery runs next (RFC 3339). */
  pref64NextCheck: string | null;
  /** Why the last discovery failed, until one succeeds. */
  pref64Error: string | null;
}

/** A PvD's Discovery of Designated Resolvers (RFC 9462) as the API shows it (src/ddr/tracker.ts fills it in). */
export interface DdrView {
  /**
   * off (ddr not on for the PvD), checking (first discovery under way),
   * none (no designation), verified or opportunistic (designated resolvers
   * in use, at least one verified), unverified (designations found, none
   * the PvD's mode allows), error (its cleartext servers could not be asked).
   */
  state: 'off' | 'checking' | 'none' | 'verified' | 'opportunistic' | 'unverified' | 'error';
  /** The designated resolvers in use, in the order they are asked. */
  designated: Array<{ address: string; transport: string; authName: string; discovery: 'verified' | 'opportunistic'; from: string }>;
  /** Designations passed over, and why (a certificate that does not cover the address, a malformed record). */
  rejected: Array<{ address: string; reason: string }>;
  /** Why the last discovery failed, until one succeeds. */
  lastError: string | null;
  /** When discovery last ran, and runs next (RFC 3339). */
  checkedAt: string | null;
  nextCheckAt: string | null;
}

export interface ServerView {
  address: string;
  /** untested, operational, suspect or down. */
  state: string;
  rttMs: number | null;
  /** When the state last changed (RFC 3339). */
  since: string | null;
  lastError: string | null;
  /**
   * A down server whose probes wait for its PvD's next client query (none came
   * for a minute): its state is as of its last probe, and the next query tries
   * it and probes it again. False otherwise.
   */
  probesPaused: boolean;
  /** How it is spoken to as configured: udp (cleartext UDP, TCP after truncation), tls (DoT) or https (DoH). */
  transport: 'udp' | 'tls' | 'https';
  /** The name its certificate must cover (RFC 8310), or null (the address, or none checked). */
  authName: string | null;
  /**
   * What carries its queries now: "tls"/"https" once an encrypted exchange
   * worked, "cleartext" while an opportunistic server falls back, null before
   * the first exchange (and for a cleartext server).
   */
  encryption: 'tls' | 'https' | 'cleartext' | null;
  /** Whether the last handshake checked the certificate (false: opportunistic without a name); null before one. */
  authenticated: boolean | null;
  /** Why encryption failed last (the reason an opportunistic server is in the clear); null when it works. */
  encryptionError: string | null;
  /** The cleartext address an opportunistic server falls back to; null: never in the clear. */
  fallback: string | null;
  /** How it was learned: config, api, file, host, ra, ddr (RFC 9462) or dnr (RFC 9463). */
  learned: Learned;
  /** Encrypted, with its certificate checked (a DDR server: by verified discovery, RFC 9462 §4.2); false: opportunistic; null: cleartext. */
  verified: boolean | null;
}

/** One address of a PvD's own DNS listener (`listen`) as the API shows it. */
export interface ListenView {
  /** As configured. */
  address: string;
  /** Where it is bound (the real port when configured as 0); null while not bound. */
  bound: string | null;
  /** Why it could not be bound, until it is. */
  error: string | null;
}

/** How a PvD's queries are protected, as the API shows it. */
export interface EncryptionView {
  /** strict, opportunistic or off: as configured, else opportunistic with designated resolvers, else as its servers say. */
  encryption: string;
  /** A PvD with encrypted servers: the cleartext ones its captive portal's names and probes go to; [] otherwise. */
  cleartextServers: ServerView[];
  /** Whether names other than the portal's go in the clear now: captive, with opportunistic encryption. */
  captiveCleartext: boolean;
}

/** PvdView is DESIGN's PvD object: the PvD, its servers' state, its captive-portal state, its DNS64, its cache size. */
export interface PvdView extends CaptiveView, Dns64View, EncryptionView {
  identifier: string;
  source: string;
  /** How the source learned it: "resolved (D-Bus)", "resolvectl (polled every 10 s)"; null where the source says it all. */
  origin: string | null;
  default: boolean;
  priority: number;
  noInternet: boolean;
  /** Whether private addresses from its servers are refused for names it does not own (DNS rebinding protection). */
  rebindProtection: boolean;
  /** The RFC 8908 captive-portal API URI the PvD names (RFC 8910), or null. */
  captivePortal: string | null;
  /** Whether pvdns makes AAAA records from A records for this PvD (dns64Synthesize) rather than its resolver. */
  dns64Synthesize: boolean;
  dnsZones: readonly string[];
  prefixes: readonly string[];
  expires: string | null;
  sourceAddress: string | null;
  /** Whether sourceAddress is on one of the host's links (netlink); null when unknown or unset. */
  sourceAddressPresent: boolean | null;
  interface: string | null;
  /** Whether home.arpa (RFC 8375) is asked here: as configured, else judged by interface and noInternet. */
  localNetwork: boolean;
  servers: ServerView[];
  /** Its own DNS listener: every query there is resolved in this PvD only. */
  listen: ListenView[];
  /** Discovery of Designated Resolvers (RFC 9462). */
  ddr: DdrView;
  cacheEntries: number;
}

/** pvdView combines a PvD with its servers' state, its captive-portal state, its DNS64 and its cache size. */
export function pvdView(
  p: Pvd,
  servers: ServerView[],
  captive: CaptiveView,
  dns64: Dns64View,
  cacheEntries: number,
  ddr: DdrView,
  sourceAddressPresent: boolean | null = null,
  encryption: EncryptionView = { encryption: p.encryption, cleartextServers: [], captiveCleartext: false },
  listen: ListenView[] = p.listen.map((a) => ({ address: a.label, bound: null, error: null })),
): PvdView {
  return {
    identifier: p.identifier,
    source: p.source,
    origin: p.origin,
    default: p.isDefault,
    priority: p.priority,
    noInternet: p.noInternet,
    rebindProtection: p.rebindProtection,
    captivePortal: p.captivePortal,
    dns64Synthesize: p.dns64Synthesize,
    dnsZones: p.dnsZones,
    prefixes: p.prefixes,
    expires: p.expiresAt === null ? null : new Date(p.expiresAt).toISOString(),
    sourceAddress: p.sourceAddress,
    sourceAddressPresent,
    interface: p.interface,
    localNetwork: p.localNetwork,
    servers,
    listen,
    ...encryption,
    ddr,
    ...captive,
    ...dns64,
    cacheEntries,
  };
}
