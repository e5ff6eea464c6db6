// Router Advertisements on the wire (RFC 4861 §4.2): the ICMPv6 payload the
// raw socket hands over, read into the header and the options pvdns uses —
// RDNSS and DNSSL (RFC 8106 §5), Prefix Information (RFC 4861 §4.6.2),
// PREF64 (RFC 8781 §4), the Encrypted DNS option (RFC 9463 §6.1: DNR, its
// SvcParams in RFC 9460 §2.2's wire form, read by src/dns/svcparams.ts) and
// the PvD option (RFC 8801 §3.1) with the options nested in it. The RA is
// checked as RFC 4861 §6.1.2 asks, as far as the payload and the socket's
// metadata allow (the kernel checked the ICMPv6 checksum). Nothing here
// throws on what the network sends: a packet that must be dropped is one
// line saying why, and an option that must be ignored is left out with a
// line in `ignored`.

import ipaddr from 'ipaddr.js';
import { SVC_KEY, readSvcParams } from '../../dns/svcparams.js';
import { domainProblem, normalizeDomain } from '../schema.js';

/** ICMPv6 type of a Router Advertisement (RFC 4861 §4.2). */
export const ICMP6_ROUTER_ADVERTISEMENT = 134;
/** Option types read here. */
export const OPT_PREFIX_INFORMATION = 3; // RFC 4861 §4.6.2
export const OPT_RDNSS = 25; // RFC 8106 §5.1
export const OPT_DNSSL = 31; // RFC 8106 §5.2
export const OPT_PREF64 = 38; // RFC 8781 §4
export const OPT_PVD = 21; // RFC 8801 §3.1
export const OPT_ENCRYPTED_DNS = 144; // RFC 9463 §6.1, §9.3

/** A 32-bit lifetime of all one bits is infinity (RFC 4861 §4.6.2, RFC 8106 §5.1). */
export const INFINITE_LIFETIME = 0xffffffff;

/** The RA message header's fields (RFC 4861 §4.2), outside or inside a PvD option. */
export interface RaHeader {
  curHopLimit: number;
  /** M: addresses are available from DHCPv6. */
  managed: boolean;
  /** O: other configuration is available from DHCPv6. */
  other: boolean;
  /** Seconds this router is a default router; 0: it is not one. */
  routerLifetime: number;
  reachableTimeMs: number;
  retransTimerMs: number;
}

/** An RDNSS option (RFC 8106 §5.1): servers sharing one lifetime in seconds. */
export interface RdnssOption {
  lifetime: number;
  addresses: string[];
}

/** A DNSSL option (RFC 8106 §5.2): search domains, lower case without the trailing dot. */
export interface DnsslOption {
  lifetime: number;
  domains: string[];
}

/** A Prefix Information option (RFC 4861 §4.6.2). */
export interface PrefixOption {
  /** "2001:db8:1::/64", the bits past the length cleared (they are to be ignored). */
  prefix: string;
  length: number;
  /** L: the prefix is on-link. */
  onLink: boolean;
  /** A: the prefix may be used for SLAAC. */
  autonomous: boolean;
  validLifetime: number;
  preferredLifetime: number;
}

/** A PREF64 option (RFC 8781 §4). */
export interface Pref64Option {
  /** Seconds: the scaled lifetime times 8 (§4.1). */
  lifetime: number;
  /** "64:ff9b::/96". */
  prefix: string;
  length: number;
}

/** The service parameters of an Encrypted DNS option (RFC 9463 §3.1.5) pvdns reads. */
export interface DnrParams {
  /** ALPN protocol IDs as sent ("dot", "h2", "doq", "h3"): never empty (RFC 9463 §3.1.5, §3.1.8). */
  alpn: string[];
  /** no-default-alpn (RFC 9460 §7.1.1) was present. */
  noDefaultAlpn: boolean;
  /** null: each protocol's default port (RFC 9463 §6.1: 853 for DoT, 443 for DoH). */
  port: number | null;
  /** The DoH URI Template's relative path, "/dns-query{?dns}" (RFC 9461 §5.1); null when absent. */
  dohpath: string | null;
  /** The keys "mandatory" lists (RFC 9460 §8). */
  mandatory: number[];
}

/**
 * An Encrypted DNS option (RFC 9463 §6.1): one network-designated
 * resolver, reached at its addresses by the protocols its SvcParams name,
 * authenticated by its ADN.
 */
export interface EncryptedDnsOption {
  /** Service Priority: smaller is preferred (RFC 9463 §6.2); never 0, which is SVCB's AliasMode. */
  priority: number;
  /** Seconds; 0: the resolver MUST no longer be used; INFINITE_LIFETIME: infinity (§6.1). */
  lifetime: number;
  /** The Authentication Domain Name, lower case without the trailing dot (§3.1.1). */
  adn: string;
  /** The resolver's addresses in order of preference (§3.1.3), multicast and loopback ones left out (§6.2); empty in ADN-only mode. */
  addresses: string[];
  /** null in ADN-only mode (§3.1.6): only the ADN was sent, to be resolved by SVCB queries. */
  params: DnrParams | null;
}

/** The options of an RA, or of a PvD option, that pvdns reads, each kind in the order sent. */
export interface RaOptions {
  rdnss: RdnssOption[];
  dnssl: DnsslOption[];
  prefixes: PrefixOption[];
  pref64: Pref64Option[];
  dnr: EncryptedDnsOption[];
}

/** A PvD option (RFC 8801 §3.1). */
export interface PvdOption {
  /** The PvD ID, lower case without the trailing dot (PvD IDs compare case-insensitively, §3.4). */
  id: string;
  /** H: PvD Additional Information is at https://<PvD ID>/.well-known/pvd (§4). */
  http: boolean;
  /** L: the PvD is associated with the link's DHCPv4 information (§3.4.2). */
  legacy: boolean;
  /** The fetch backoff exponent: wait a random 0..2^(10+delay) ms (§4.1). */
  delay: number;
  sequence: number;
  /** The RA header carried inside (R flag): it takes precedence over the outer one (§3.4). */
  header: RaHeader | null;
  options: RaOptions;
}

/** A Router Advertisement as pvdns reads it. */
export interface RouterAdvertisement {
  header: RaHeader;
  options: RaOptions;
  /** The first PvD option; later ones are ignored (RFC 8801 §3.4). */
  pvd: PvdOption | null;
  /** Options left out, one line each (a wrong length, a PLC RFC 8781 does not define, ...). */
  ignored: string[];
}

/** What the raw socket says about the packet beside its payload. */
export interface RaMeta {
  /** The IPv6 source address (a %zone is allowed). */
  source: string;
  /** The IPv6 hop limit the packet arrived with. */
  hopLimit: number;
}

const RA_HEADER_BYTES = 16;

/**
 * parseRouterAdvertisement reads an ICMPv6 payload (from the type octet on)
 * as a Router Advertisement, or returns why the packet must be dropped
 * (RFC 4861 §6.1.2: hop limit 255, a link-local source, type 134 code 0, at
 * least 16 octets, every option's length non-zero and inside the packet).
 */
export function parseRouterAdvertisement(payload: Uint8Array, meta: RaMeta): RouterAdvertisement | string {
  if (meta.hopLimit !== 255) return `hop limit ${meta.hopLimit}, not 255: not from this link (RFC 4861 §6.1.2)`;
  const source = meta.source.split('%', 1)[0]!;
  if (!isLinkLocal(source)) return `source ${JSON.stringify(meta.source)} is not a link-local address (RFC 4861 §6.1.2)`;
  if (payload.length < RA_HEADER_BYTES) return `${payload.length} octets: an RA is at least ${RA_HEADER_BYTES} (RFC 4861 §6.1.2)`;
  if (payload[0] !== ICMP6_ROUTER_ADVERTISEMENT) return `ICMPv6 type ${payload[0]}, not a Router Advertisement (134)`;
  if (payload[1] !== 0) return `ICMPv6 code ${payload[1]}, not 0 (RFC 4861 §6.1.2)`;
  const header = readHeader(payload, 0);
  const ignored: string[] = [];
  const out: { pvd: PvdOption | null } = { pvd: null };
  const options = readOptions(payload, RA_HEADER_BYTES, payload.length, ignored, out, false);
  if (typeof options === 'string') return options;
  return { header, options, pvd: out.pvd, ignored };
}

function readHeader(b: Uint8Array, at: number): RaHeader {
  return {
    curHopLimit: b[at + 4]!,
    managed: (b[at + 5]! & 0x80) !== 0,
    other: (b[at + 5]! & 0x40) !== 0,
    routerLifetime: u16(b, at + 6),
    reachableTimeMs: u32(b, at + 8),
    retransTimerMs: u32(b, at + 12),
  };
}

/**
 * readOptions reads the options in b[from, to). `inPvd`: they are nested in
 * a PvD option, where a PvD option is ignored (RFC 8801 §3.2 forbids it).
 * Returns a problem when the options do not tile the space exactly.
 */
function readOptions(b: Uint8Array, from: number, to: number, ignored: string[], out: { pvd: PvdOption | null }, inPvd: boolean): RaOptions | string {
  const options: RaOptions = { rdnss: [], dnssl: [], prefixes: [], pref64: [], dnr: [] };
  const where = inPvd ? ' inside the PvD option' : '';
  let at = from;
  while (at < to) {
    if (to - at < 2) return `a truncated option at octet ${at}${where}`;
    const type = b[at]!;
    const units = b[at + 1]!;
    if (units === 0) return `option ${type} at octet ${at}${where} has length 0 (RFC 4861 §6.1.2)`;
    const end = at + units * 8;
    if (end > to) return `option ${type} at octet ${at}${where} runs past the end (${units * 8} octets, ${to - at} left)`;
    switch (type) {
      case OPT_RDNSS:
        pushOr(options.rdnss, readRdnss(b, at, units), ignored);
        break;
      case OPT_DNSSL:
        pushOr(options.dnssl, readDnssl(b, at, end), ignored);
        break;
      case OPT_PREFIX_INFORMATION:
        pushOr(options.prefixes, readPrefix(b, at, units), ignored);
        break;
      case OPT_PREF64:
        pushOr(options.pref64, readPref64(b, at, units), ignored);
        break;
      case OPT_ENCRYPTED_DNS:
        pushOr(options.dnr, readEncryptedDns(b, at, end), ignored);
        break;
      case OPT_PVD:
        if (inPvd) ignored.push('a PvD option inside a PvD option (RFC 8801 §3.2)');
        else if (out.pvd !== null) ignored.push(`a second PvD option (RFC 8801 §3.4: only the first counts)`);
        else {
          const pvd = readPvd(b, at, end, ignored, out);
          if (typeof pvd === 'string') return pvd;
          if (pvd !== null) out.pvd = pvd;
        }
        break;
      default:
        break; // RFC 4861 §4.2: options a host does not know are skipped
    }
    at = end;
  }
  return options;
}

function pushOr<T>(list: T[], item: T | string, ignored: string[]): void {
  if (typeof item === 'string') ignored.push(item);
  else list.push(item);
}

/** RFC 8106 §5.1: length 3 or more and odd ((length - 1) / 2 addresses); §5.3.1 ignores it otherwise. */
function readRdnss(b: Uint8Array, at: number, units: number): RdnssOption | string {
  if (units < 3 || units % 2 === 0) return `an RDNSS option of length ${units} (RFC 8106 §5.1: 3, 5, 7, ...)`;
  const addresses: string[] = [];
  for (let p = at + 8; p < at + units * 8; p += 16) addresses.push(v6(b, p));
  return { lifetime: u32(b, at + 4), addresses };
}

/**
 * RFC 8106 §5.2: names in DNS wire form (RFC 1035 §3.1, no compression),
 * then zero padding. A name that is not a host name pvdns can use is left
 * out; an option whose names do not parse is ignored whole.
 */
function readDnssl(b: Uint8Array, at: number, end: number): DnsslOption | string {
  if (end - at < 16) return `a DNSSL option of length ${(end - at) / 8} (RFC 8106 §5.2: at least 2)`;
  const domains: string[] = [];
  let p = at + 8;
  while (p < end && b[p] !== 0) {
    const name = readName(b, p, end);
    if (typeof name === 'string') return `a DNSSL option: ${name}`;
    if (domainProblem(name.name) === null) domains.push(normalizeDomain(name.name));
    p = name.next;
  }
  return { lifetime: u32(b, at + 4), domains };
}

/** RFC 4861 §4.6.2: length 4; §6.3.4 and RFC 4862 §5.5.3 ignore a link-local prefix. */
function readPrefix(b: Uint8Array, at: number, units: number): PrefixOption | string {
  if (units !== 4) return `a Prefix Information option of length ${units} (RFC 4861 §4.6.2: 4)`;
  const length = b[at + 2]!;
  if (length > 128) return `a Prefix Information option with prefix length ${length}`;
  const bytes = Array.from(b.subarray(at + 16, at + 32));
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff; // bits past the length are ignored (§4.6.2)
  }
  const text = ipaddr.fromByteArray(bytes).toString();
  if (isLinkLocal(text)) return `a Prefix Information option for the link-local prefix ${text}/${length} (RFC 4861 §6.3.4)`;
  return {
    prefix: `${text}/${length}`,
    length,
    onLink: (b[at + 3]! & 0x80) !== 0,
    autonomous: (b[at + 3]! & 0x40) !== 0,
    validLifetime: u32(b, at + 4),
    preferredLifetime: u32(b, at + 8),
  };
}

/** RFC 8781 §4: PLC 0..5 is /96, /64, /56, /48, /40, /32. */
const PLC_LENGTHS = [96, 64, 56, 48, 40, 32];

/** RFC 8781 §4: length 2 and a defined PLC, or the option is ignored. */
function readPref64(b: Uint8Array, at: number, units: number): Pref64Option | string {
  if (units !== 2) return `a PREF64 option of length ${units} (RFC 8781 §4: 2)`;
  const word = u16(b, at + 2);
  const plc = word & 0x7;
  const length = PLC_LENGTHS[plc];
  if (length === undefined) return `a PREF64 option with prefix length code ${plc} (RFC 8781 §4: 0 to 5)`;
  const bytes = new Array<number>(16).fill(0);
  for (let i = 0; i < length / 8; i++) bytes[i] = b[at + 4 + i]!;
  return { lifetime: (word >>> 3) * 8, prefix: `${ipaddr.fromByteArray(bytes).toString()}/${length}`, length };
}

/**
 * RFC 9463 §6.1: Service Priority, Lifetime, the ADN (length-prefixed, RFC
 * 8415 §10's uncompressed wire form), then, unless only the ADN is sent
 * (ADN-only mode, §3.1.6), the addresses and the SvcParams (each
 * length-prefixed), then zero padding. An option that fails §3.1.8's checks
 * (or whose lengths do not add up) is discarded whole, with its reason.
 */
function readEncryptedDns(b: Uint8Array, at: number, end: number): EncryptedDnsOption | string {
  const bad = (why: string): string => `an Encrypted DNS option ${why}`;
  if (end - at < 16) return bad(`of length ${(end - at) / 8} (RFC 9463 §6.1: at least 2, for the fields up to the ADN)`);
  const priority = u16(b, at + 2);
  // §6.1: Service Priority follows RFC 9460 §2.4.1, where 0 is AliasMode: no resolver to use.
  if (priority === 0) return bad('with Service Priority 0, which is SVCB AliasMode (RFC 9463 §6.1, RFC 9460 §2.4.1)');
  const lifetime = u32(b, at + 4);
  const adnLength = u16(b, at + 8);
  let p = at + 10;
  if (adnLength === 0) return bad('without an ADN (RFC 9463 §3.1.8: the ADN is present)');
  if (p + adnLength > end) return bad(`whose ADN Length ${adnLength} runs past the option's end`);
  const name = readName(b, p, p + adnLength);
  if (typeof name === 'string') return bad(`whose ADN is not in RFC 8415 §10's wire form: ${name} (RFC 9463 §3.1.8)`);
  if (name.next !== p + adnLength) return bad(`whose ADN ends ${p + adnLength - name.next} octets before its ADN Length (RFC 9463 §3.1.8)`);
  const problem = name.name === '' ? 'is the root' : domainProblem(name.name);
  if (problem !== null) return bad(`whose ADN ${JSON.stringify(name.name)} ${problem} (RFC 9463 §3.1.8)`);
  const adn = normalizeDomain(name.name);
  p += adnLength;
  // ADN-only mode (§3.1.6, §6.1): nothing but padding after the ADN.
  if (end - p < 8 && zeros(b, p, end)) return { priority, lifetime, adn, addresses: [], params: null };
  if (p + 2 > end) return bad('cut short after its ADN');
  const addrLength = u16(b, p);
  p += 2;
  if (addrLength === 0 || addrLength % 16 !== 0) return bad(`with Addr Length ${addrLength} (RFC 9463 §6.1: a multiple of 16; §3.1.8: at least one address)`);
  if (p + addrLength > end) return bad(`whose Addr Length ${addrLength} runs past the option's end`);
  const addresses: string[] = [];
  for (let q = p; q < p + addrLength; q += 16) {
    const a = v6(b, q);
    const range = ipaddr.IPv6.parse(a).range();
    // §6.2: multicast and host loopback addresses MUST be silently discarded; :: names no host.
    if (range !== 'multicast' && range !== 'loopback' && range !== 'unspecified') addresses.push(a);
  }
  if (addresses.length === 0) return bad('with no usable address: multicast, loopback or unspecified only (RFC 9463 §6.2, §3.1.8)');
  p += addrLength;
  if (p + 2 > end) return bad('cut short after its addresses');
  const paramsLength = u16(b, p);
  p += 2;
  if (p + paramsLength > end) return bad(`whose SvcParams Length ${paramsLength} runs past the option's end`);
  const params = readDnrParams(b, p, p + paramsLength);
  if (typeof params === 'string') return bad(params);
  p += paramsLength;
  // §6.1: zero padding to a multiple of 8 octets, and nothing else.
  if (end - p >= 8 || !zeros(b, p, end)) return bad(`with ${end - p} octets after its SvcParams that are not its padding (RFC 9463 §6.1)`);
  return { priority, lifetime, adn, addresses, params };
}

/**
 * The keys a DNR option's "mandatory" may list and the option still be
 * used: the hints are not among them, as §3.1.8 forbids them outright.
 */
const DNR_KEYS: ReadonlySet<number> = new Set([SVC_KEY.alpn, SVC_KEY.noDefaultAlpn, SVC_KEY.port, SVC_KEY.dohpath]);

/**
 * readDnrParams reads an Encrypted DNS option's SvcParams (RFC 9463 §6.1)
 * with the reader every SvcParams list goes through (src/dns/svcparams.ts:
 * RFC 9460 §2.2's order and lengths, each value's format, "mandatory"),
 * then applies DNR's own rules (§3.1.5, §3.1.8). A problem, phrased to
 * follow "an Encrypted DNS option", when the option must be discarded.
 */
function readDnrParams(b: Uint8Array, from: number, to: number): DnrParams | string {
  const p = readSvcParams(b, from, to, DNR_KEYS);
  if (typeof p === 'string') return `whose SvcParams cannot be used: ${p}`;
  // §3.1.8: the option's own addresses supersede any hint.
  for (const [key, name] of [[SVC_KEY.ipv4hint, 'ipv4hint'], [SVC_KEY.ipv6hint, 'ipv6hint']] as const) {
    if (p.keys.includes(key)) return `with an "${name}" SvcParam, which its addresses supersede (RFC 9463 §3.1.8)`;
  }
  // §3.1.5, §3.1.8: "alpn" is mandatory.
  if (p.alpn.length === 0) return 'without the "alpn" SvcParam (RFC 9463 §3.1.5, §3.1.8)';
  // RFC 9461 §5.1: a relative URI Template: it starts with "/" and has the "dns" variable.
  if (p.dohpath !== null && (!p.dohpath.startsWith('/') || !/\{[?&]?(?:[^}]*,)?dns(?:,[^}]*)?\}/.test(p.dohpath))) {
    return `whose "dohpath" ${JSON.stringify(p.dohpath)} is not a relative URI Template with a "dns" variable (RFC 9461 §5.1)`;
  }
  return { alpn: p.alpn, noDefaultAlpn: p.noDefaultAlpn, port: p.port, dohpath: p.dohpath, mandatory: p.mandatory };
}

function zeros(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * RFC 8801 §3.1: flags H, L, R, a 4-bit delay, a sequence number, the PvD ID
 * in DNS wire form, zero padding to 8 octets, an RA header when R is set,
 * then options. A PvD option that cannot be read drops the whole RA: what
 * it held belongs to a PvD, and would otherwise be taken for the link's.
 * One whose PvD ID is no host name is ignored (null) with a line.
 */
function readPvd(b: Uint8Array, at: number, end: number, ignored: string[], out: { pvd: PvdOption | null }): PvdOption | null | string {
  const flags = b[at + 2]!;
  const name = readName(b, at + 6, end);
  if (typeof name === 'string') return `the PvD option's PvD ID: ${name}`;
  let p = at + Math.ceil((name.next - at) / 8) * 8; // padding to the next 8-octet boundary
  let header: RaHeader | null = null;
  if ((flags & 0x20) !== 0) {
    if (end - p < RA_HEADER_BYTES) return 'a PvD option with the R flag and no room for the RA header it promises';
    header = readHeader(b, p); // type, code and checksum are ignored (§3.1)
    p += RA_HEADER_BYTES;
  }
  const options = readOptions(b, p, end, ignored, out, true);
  if (typeof options === 'string') return options;
  const problem = name.name === '' ? 'is the root' : domainProblem(name.name);
  if (problem !== null) {
    ignored.push(`a PvD option whose PvD ID ${JSON.stringify(name.name)} ${problem}`);
    return null;
  }
  return {
    id: normalizeDomain(name.name),
    http: (flags & 0x80) !== 0,
    legacy: (flags & 0x40) !== 0,
    delay: b[at + 3]! & 0x0f,
    sequence: u16(b, at + 4),
    header,
    options,
  };
}

/** readName reads an uncompressed DNS name in b[at, end) as text, with the octet after it. */
function readName(b: Uint8Array, at: number, end: number): { name: string; next: number } | string {
  const labels: string[] = [];
  let p = at;
  let total = 1;
  for (;;) {
    if (p >= end) return 'a name runs past the end of its option';
    const len = b[p]!;
    if (len === 0) return { name: labels.join('.'), next: p + 1 };
    if (len > 63) return `a label of length octet 0x${len.toString(16)} (compression is not allowed here, RFC 8106 §5.2, RFC 8801 §3.1)`;
    if (p + 1 + len > end) return 'a name runs past the end of its option';
    total += len + 1;
    if (total > 255) return 'a name longer than 255 octets';
    let label = '';
    for (let i = p + 1; i <= p + len; i++) label += String.fromCharCode(b[i]!);
    labels.push(label);
    p += 1 + len;
  }
}

function isLinkLocal(address: string): boolean {
  if (!ipaddr.IPv6.isValid(address)) return false;
  return ipaddr.IPv6.parse(address).range() === 'linkLocal';
}

function v6(b: Uint8Array, at: number): string {
  return ipaddr.fromByteArray(Array.from(b.subarray(at, at + 16))).toString();
}

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
}
