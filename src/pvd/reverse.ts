// Reverse zones of a prefix (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5
// ip6.arpa). A prefix that does not end on an octet (IPv4) or nibble (IPv6)
// boundary is covered by every zone one step longer that lies inside it, as
// RFC 2317 does for classless IPv4 delegation.

import type ipaddr from 'ipaddr.js';

/** reverseZones lists the reverse zones that together cover `addr/len`. */
export function reverseZones(addr: ipaddr.IPv4 | ipaddr.IPv6, len: number): string[] {
  if (addr.kind() === 'ipv4') {
    const octets = (addr as ipaddr.IPv4).octets;
    return expand(octets, len, 8, 'in-addr.arpa', (v) => String(v));
  }
  const bytes = (addr as ipaddr.IPv6).toByteArray();
  const nibbles: number[] = [];
  for (const b of bytes) nibbles.push(b >> 4, b & 0xf);
  return expand(nibbles, len, 4, 'ip6.arpa', (v) => v.toString(16));
}

function expand(digits: number[], len: number, width: number, suffix: string, show: (v: number) => string): string[] {
  const whole = Math.floor(len / width);
  const spare = len % width;
  const fixed = digits.slice(0, whole).reverse().map(show);
  if (spare === 0) return [[...fixed, suffix].join('.')];
  const free = width - spare;
  const base = digits[whole]! & ~((1 << free) - 1);
  const zones: string[] = [];
  for (let v = base; v < base + (1 << free); v++) zones.push([show(v), ...fixed, suffix].join('.'));
  return zones;
}
