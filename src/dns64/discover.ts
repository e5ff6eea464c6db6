// RFC 7050 §3: learning a network's NAT64 prefixes from the AAAA records its
// DNS64 synthesizes for ipv4only.arpa, whose only IPv4 addresses are the
// well-known 192.0.0.170 and 192.0.0.171 (RFC 8880 §2).

import { pref64, PREF64_LENGTHS, specialRange, v4Offsets, type Pref64 } from './prefix.js';

/** The well-known name, as a query asks it. */
export const WELL_KNOWN_NAME = 'ipv4only.arpa';

/** The well-known IPv4 addresses, in the order RFC 7050 §3 searches for them. */
const WELL_KNOWN_ADDRESSES = [Uint8Array.of(192, 0, 0, 170), Uint8Array.of(192, 0, 0, 171)];

/**
 * prefixesFromAddresses finds the Pref64::/n of each AAAA address of the
 * answer (16 octets each), in the order received, without duplicates
 * (RFC 7050 §3 N2–N4). An address holds a prefix when a well-known IPv4
 * address sits at the RFC 6052 place of exactly one length, with the u octet
 * and the suffix zero. If the well-known address appears in an address twice
 * on octet boundaries, or fits more than one length, the search is repeated
 * with the other well-known address (RFC 7050 §3); if neither gives an
 * unambiguous answer the result is empty: the heuristic failed.
 */
export function prefixesFromAddresses(addresses: readonly Uint8Array[]): Pref64[] {
  for (const wka of WELL_KNOWN_ADDRESSES) {
    const found: Pref64[] = [];
    let ambiguous = false;
    for (const addr of addresses) {
      if (occurrences(addr, wka) > 1) {
        ambiguous = true;
        break;
      }
      const lengths = PREF64_LENGTHS.filter((n) => holdsAt(addr, n, wka));
      if (lengths.length > 1) {
        ambiguous = true;
        break;
      }
      if (lengths.length === 1) {
        const p = pref64(addr, lengths[0]!);
        if (specialRange(p.bytes) === null && !found.some((f) => f.text === p.text)) found.push(p);
      }
    }
    if (!ambiguous && found.length > 0) return found;
  }
  return [];
}

/** occurrences counts the octet-aligned places the 4 octets of `v4` appear in `addr`. */
function occurrences(addr: Uint8Array, v4: Uint8Array): number {
  let n = 0;
  for (let i = 0; i + 4 <= 16; i++) {
    if (addr[i] === v4[0] && addr[i + 1] === v4[1] && addr[i + 2] === v4[2] && addr[i + 3] === v4[3]) n++;
  }
  return n;
}

/** holdsAt says whether `addr` embeds `v4` for a /n prefix, with the u octet and the suffix zero. */
function holdsAt(addr: Uint8Array, n: number, v4: Uint8Array): boolean {
  if (addr[8] !== 0) return false;
  const at = v4Offsets(n);
  if (at.some((o, k) => addr[o] !== v4[k])) return false;
  for (let i = at[3]! + 1; i < 16; i++) if (addr[i] !== 0) return false;
  return true;
}
