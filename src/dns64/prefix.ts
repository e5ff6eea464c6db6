// RFC 6052 address math: a NAT64 prefix (Pref64::/n) and the IPv4-embedded
// IPv6 addresses made from it. A leaf module: the PvD schema validates
// configured prefixes with it, discovery and synthesis build on it.

import ipaddr from 'ipaddr.js';

/** RFC 6052 §2.2: the prefix lengths an IPv4-embedded address may use. */
export const PREF64_LENGTHS: readonly number[] = [32, 40, 48, 56, 64, 96];

/** Pref64 is one NAT64 prefix. */
export interface Pref64 {
  /** The 16 octets of the prefix, zero past its length. */
  readonly bytes: Uint8Array;
  readonly length: number;
  /** RFC 5952 text with the length, e.g. "64:ff9b::/96". */
  readonly text: string;
  /** The octets the IPv4 address occupies, in order (RFC 6052 §2.2, Figure 1: octet 8, "u", is skipped). */
  readonly v4At: readonly number[];
}

/** U_OCTET is octet 8 (bits 64–71), which RFC 6052 §2.2 reserves and requires to be zero. */
const U_OCTET = 8;

/**
 * parsePref64 reads "prefix/len" as a NAT64 prefix, or returns why it is not
 * one: not IPv6, a length RFC 6052 does not allow, bits set past the length,
 * or (for /96) the reserved u octet set.
 */
export function parsePref64(text: string): Pref64 | string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  let length: number;
  try {
    [addr, length] = ipaddr.parseCIDR(text.trim());
  } catch {
    return `"${text}" is not an IPv6 prefix (address/length)`;
  }
  if (addr.kind() !== 'ipv6') return `"${text}" is not an IPv6 prefix`;
  if (!PREF64_LENGTHS.includes(length)) return `"${text}": a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052 §2.2)`;
  const bytes = Uint8Array.from((addr as ipaddr.IPv6).toByteArray());
  for (let i = length / 8; i < 16; i++) if (bytes[i] !== 0) return `"${text}" has bits set past /${length}`;
  if (bytes[U_OCTET] !== 0) return `"${text}": bits 64–71 of a NAT64 prefix must be zero (RFC 6052 §2.2)`;
  const special = specialRange(bytes);
  if (special !== null) return `"${text}" lies in ${special}, which cannot hold IPv4-embedded addresses`;
  return pref64(bytes, length);
}

/**
 * specialRange names the address range a would-be prefix lies in when no
 * NAT64 can use it: the unspecified and IPv4-mapped space, link-local,
 * multicast. A hijacking resolver's "discovered" prefix there is refused.
 */
export function specialRange(bytes: Uint8Array): string | null {
  if (bytes.subarray(0, 10).every((b) => b === 0)) return '::/80 (unspecified and IPv4-mapped space)';
  if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80) return 'fe80::/10 (link-local)';
  if (bytes[0] === 0xff) return 'ff00::/8 (multicast)';
  return null;
}

/** v4Offsets lists the octets an IPv4 address occupies after a /length prefix (RFC 6052 §2.2, the u octet skipped). */
export function v4Offsets(length: number): readonly number[] {
  const at: number[] = [];
  for (let i = length / 8; at.length < 4; i++) if (i !== U_OCTET) at.push(i);
  return at;
}

/** pref64 makes a Pref64 from the first length/8 octets of `addr` (the rest are taken as zero). */
export function pref64(addr: Uint8Array, length: number): Pref64 {
  const bytes = new Uint8Array(16);
  bytes.set(addr.subarray(0, length / 8));
  const v4At = v4Offsets(length);
  const text = `${ipaddr.fromByteArray([...bytes]).toString()}/${length}`;
  return Object.freeze({ bytes, length, text, v4At: Object.freeze(v4At) });
}

/** The Well-Known Prefix (RFC 6052 §2.1). */
export const WELL_KNOWN_PREFIX = parsePref64('64:ff9b::/96') as Pref64;

/** isWellKnown says whether a prefix is 64:ff9b::/96. */
export function isWellKnown(p: Pref64): boolean {
  return p.text === WELL_KNOWN_PREFIX.text;
}

/** embed writes the IPv4-embedded IPv6 address of `v4` (4 octets) into `out` at `at` (RFC 6052 §2.2). */
export function embed(p: Pref64, v4: Uint8Array, out: Uint8Array = new Uint8Array(16), at = 0): Uint8Array {
  out.set(p.bytes, at); // the u octet and the suffix are zero (RFC 6052 §2.2)
  for (let i = 0; i < 4; i++) out[at + p.v4At[i]!] = v4[i]!;
  return out;
}

/** contains says whether the 16 octets of `addr` at `at` lie inside the prefix. */
export function contains(p: Pref64, addr: Uint8Array, at = 0): boolean {
  const whole = p.length / 8;
  for (let i = 0; i < whole; i++) if (addr[at + i] !== p.bytes[i]) return false;
  return true;
}

/** extract reads the IPv4 address an address inside the prefix embeds (RFC 6052 §2.3). */
export function extract(p: Pref64, addr: Uint8Array, at = 0): Uint8Array {
  const v4 = new Uint8Array(4);
  for (let i = 0; i < 4; i++) v4[i] = addr[at + p.v4At[i]!]!;
  return v4;
}

/** insideAny is the first prefix of `prefixes` that holds the address, or null. */
export function insideAny(prefixes: readonly Pref64[], addr: Uint8Array, at = 0): Pref64 | null {
  for (const p of prefixes) if (contains(p, addr, at)) return p;
  return null;
}

/** formatV6 renders 16 octets in RFC 5952 form. */
export function formatV6(addr: Uint8Array): string {
  return ipaddr.fromByteArray([...addr]).toString();
}
