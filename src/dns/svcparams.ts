// SvcParams (RFC 9460 §2.2): the key, length, value list that ends an SVCB
// record, and that an RA's or DHCP's Encrypted DNS option carries on its own
// (RFC 9463 §4.1, §6.1). One reader for both users: DDR's
// `_dns.resolver.arpa` records (src/ddr/svcb.ts) and DNR's option
// (src/pvd/sources/ra-wire.ts). It applies the rules of RFC 9460 that hold
// wherever SvcParams appear — key order, each value's format, the
// "mandatory" list — and leaves to each caller the rules of its own RFC
// (what a record's TargetName may be, which keys DNR forbids or requires).
// Nothing here throws on what the network sends: a list that must not be
// used is one line saying why.

import ipaddr from 'ipaddr.js';

/** SvcParamKeys pvdns knows (RFC 9460 §14.3.2; dohpath: RFC 9461 §5, "key7" in Unbound 1.17's syntax). */
export const SVC_KEY = { mandatory: 0, alpn: 1, noDefaultAlpn: 2, port: 3, ipv4hint: 4, ech: 5, ipv6hint: 6, dohpath: 7 } as const;

/**
 * The keys whose values readSvcParams reads: the most a caller can
 * understand. ech (5) is not among them: pvdns does no Encrypted Client
 * Hello, so a list that makes it mandatory is unusable (RFC 9460 §8).
 */
export const READ_KEYS: ReadonlySet<number> = new Set([SVC_KEY.alpn, SVC_KEY.noDefaultAlpn, SVC_KEY.port, SVC_KEY.ipv4hint, SVC_KEY.ipv6hint, SVC_KEY.dohpath]);

/** SvcParams is one list, read. A key that is absent leaves its field empty, false or null. */
export interface SvcParams {
  /** ALPN protocol IDs in the list's order ("dot", "h2", "h3", "doq"). */
  alpn: string[];
  /** no-default-alpn (RFC 9460 §7.1.1) was present. */
  noDefaultAlpn: boolean;
  /** null: each protocol's default port. */
  port: number | null;
  ipv4hint: string[];
  ipv6hint: string[];
  /** The DoH URI template as sent (RFC 9461 §5: relative, "/dns-query{?dns}"), unchecked beyond UTF-8; null when absent. */
  dohpath: string | null;
  /** The keys "mandatory" lists (RFC 9460 §8), increasing. */
  mandatory: number[];
  /** Every key present, known or not, increasing. */
  keys: number[];
}

/**
 * readSvcParams reads the SvcParams in b[from, to): key, length, value,
 * keys strictly increasing (RFC 9460 §2.2), each value of a key it reads in
 * that key's format (§7, §8; RFC 9461 §5). Other keys are skipped unless
 * "mandatory" lists them. `understood` is the set of keys the caller can
 * use (READ_KEYS or fewer): a "mandatory" list naming a key outside it makes
 * the list unusable (§8). Returns a one-line reason when the list is
 * malformed or unusable.
 */
export function readSvcParams(b: Uint8Array, from: number, to: number, understood: ReadonlySet<number>): SvcParams | string {
  const out: SvcParams = { alpn: [], noDefaultAlpn: false, port: null, ipv4hint: [], ipv6hint: [], dohpath: null, mandatory: [], keys: [] };
  let p = from;
  while (p < to) {
    if (to - p < 4) return 'SvcParams end in a truncated key (RFC 9460 §2.2)';
    const key = u16(b, p);
    const length = u16(b, p + 2);
    const v = p + 4;
    if (v + length > to) return `SvcParam key${key} runs past the end of the SvcParams (RFC 9460 §2.2)`;
    // RFC 9460 §2.2: "SvcParamKeys SHALL appear in increasing numeric order"; a list that breaks it is malformed.
    const last = out.keys.at(-1);
    if (last !== undefined && key <= last) return `keys out of order: key${key} follows key${last} (RFC 9460 §2.2: strictly increasing)`;
    out.keys.push(key);
    const problem = readValue(out, key, b.subarray(v, v + length));
    if (problem !== null) return problem;
    p = v + length;
  }
  // RFC 9460 §8: listed keys MUST appear, and a client that does not understand one must pass the list over.
  for (const k of out.mandatory) {
    if (!out.keys.includes(k)) return `"mandatory" lists key${k}, which is absent (RFC 9460 §8)`;
    if (!understood.has(k)) return `"mandatory" lists key${k}, which pvdns does not support (RFC 9460 §8: the list is passed over)`;
  }
  return out;
}

/** readValue stores one SvcParam's value; a reason when its wire format is wrong. */
function readValue(out: SvcParams, key: number, v: Uint8Array): string | null {
  switch (key) {
    case SVC_KEY.mandatory:
      // RFC 9460 §8: a non-empty list of keys, strictly increasing, never "mandatory" itself.
      if (v.length === 0 || v.length % 2 !== 0) return `a "mandatory" SvcParam of length ${v.length} (RFC 9460 §8: one or more 2-octet keys)`;
      for (let i = 0; i < v.length; i += 2) {
        const k = u16(v, i);
        if (k === SVC_KEY.mandatory) return 'a "mandatory" SvcParam that lists itself (RFC 9460 §8)';
        const last = out.mandatory.at(-1);
        if (last !== undefined && k <= last) return '"mandatory" keys not in strictly increasing order (RFC 9460 §8)';
        out.mandatory.push(k);
      }
      return null;
    case SVC_KEY.alpn:
      // RFC 9460 §7.1.1: a non-empty sequence of non-empty, length-prefixed IDs.
      if (v.length === 0) return 'an empty "alpn" SvcParam (RFC 9460 §7.1.1)';
      for (let i = 0; i < v.length; ) {
        const n = v[i]!;
        if (n === 0 || i + 1 + n > v.length) return 'a malformed "alpn" SvcParam (RFC 9460 §7.1.1: length-prefixed, non-empty protocol IDs)';
        out.alpn.push(String.fromCharCode(...v.subarray(i + 1, i + 1 + n)));
        i += 1 + n;
      }
      return null;
    case SVC_KEY.noDefaultAlpn:
      if (v.length !== 0) return `a "no-default-alpn" SvcParam of length ${v.length} (RFC 9460 §7.1.1: empty)`;
      out.noDefaultAlpn = true;
      return null;
    case SVC_KEY.port:
      if (v.length !== 2) return `a "port" SvcParam of length ${v.length} (RFC 9460 §7.2: 2)`;
      out.port = u16(v, 0);
      return null;
    case SVC_KEY.ipv4hint:
    case SVC_KEY.ipv6hint: {
      // RFC 9460 §7.3: one or more addresses, 4 or 16 octets each.
      const size = key === SVC_KEY.ipv4hint ? 4 : 16;
      const name = key === SVC_KEY.ipv4hint ? 'ipv4hint' : 'ipv6hint';
      if (v.length === 0 || v.length % size !== 0) return `an "${name}" SvcParam of length ${v.length} (RFC 9460 §7.3: one or more ${size}-octet addresses)`;
      const list = key === SVC_KEY.ipv4hint ? out.ipv4hint : out.ipv6hint;
      for (let i = 0; i < v.length; i += size) list.push(ipaddr.fromByteArray(Array.from(v.subarray(i, i + size))).toString());
      return null;
    }
    case SVC_KEY.dohpath:
      // RFC 9461 §5: UTF-8 text; what the template must hold is the caller's to check.
      try {
        out.dohpath = new TextDecoder('utf-8', { fatal: true }).decode(v);
      } catch {
        return 'a "dohpath" SvcParam that is not UTF-8 (RFC 9461 §5)';
      }
      return null;
    default:
      // RFC 9460 §2.2 and §8: keys a client does not know are ignored unless mandatory.
      return null;
  }
}

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}
