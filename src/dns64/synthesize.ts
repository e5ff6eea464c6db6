// RFC 6147 DNS64 synthesis as pvdns does it for a PvD whose network has a
// NAT64 but whose resolver does not synthesize: AAAA records made from A
// records (§5.1), PTR queries under the Pref64's reverse zone (§5.3.1), and
// the mark every answer inside a Pref64 carries, wherever it was made.

import { ANSWER_SYNTHESIZED, RR_STRIDE, type Answer } from '../dns/answer.js';
import { FLAG_AD, RCODE, TYPE } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { answerSections, buildAnswer, record, type Rec, type Sections } from '../dns/records.js';
import { embed, extract, insideAny, isWellKnown, type Pref64 } from './prefix.js';

/** RFC 6147 §5.1.7: the TTL of a synthesized AAAA when the AAAA answer carried no SOA. */
export const NO_SOA_TTL = 600;

/**
 * someAaaa calls `fn` with the body offset of each AAAA address in the
 * answer section (RDATA of 16 octets); it stops when `fn` returns true.
 */
function someAaaa(a: Answer, fn: (body: Buffer, at: number) => boolean): boolean {
  const { rr, body } = a;
  for (let i = 0; i < a.an; i++) {
    const ttlAt = rr[i * RR_STRIDE + 1]!;
    if (body.readUInt16BE(ttlAt - 4) === TYPE.AAAA && body.readUInt16BE(ttlAt + 4) === 16 && fn(body, ttlAt + 6)) return true;
  }
  return false;
}

/** insidePref64 says whether an answer holds an AAAA address inside one of the prefixes. */
export function insidePref64(a: Answer, prefixes: readonly Pref64[]): boolean {
  return prefixes.length > 0 && a.an > 0 && someAaaa(a, (body, at) => insideAny(prefixes, body, at) !== null);
}

/** aaaaAddresses lists the AAAA addresses of an answer section, 16 octets each. */
export function aaaaAddresses(a: Answer): Uint8Array[] {
  const out: Uint8Array[] = [];
  someAaaa(a, (body, at) => (out.push(Uint8Array.from(body.subarray(at, at + 16))), false));
  return out;
}

/** minAaaaTtl is the smallest TTL of the answer's AAAA records, or -1 when it has none. */
export function minAaaaTtl(a: Answer): number {
  let ttl = -1;
  const { rr, body } = a;
  for (let i = 0; i < a.an; i++) {
    const ttlAt = rr[i * RR_STRIDE + 1]!;
    const t = rr[i * RR_STRIDE + 2]!;
    if (body.readUInt16BE(ttlAt - 4) === TYPE.AAAA && (ttl < 0 || t < ttl)) ttl = t;
  }
  return ttl;
}

/** RFC 6147 §5.1.4: AAAA addresses treated as absent; ::ffff:0:0/96 (IPv4-mapped) by default. */
function excludedV6(addr: Uint8Array, at: number): boolean {
  for (let i = 0; i < 10; i++) if (addr[at + i] !== 0) return false;
  return addr[at + 10] === 0xff && addr[at + 11] === 0xff;
}

/**
 * excludedV4 says whether an IPv4 address must not be synthesized with the
 * prefix: addresses no translator forwards (this network, loopback,
 * multicast, the reserved 240/4 and broadcast) and, with the Well-Known
 * Prefix, the non-global ranges RFC 6052 §3.1 forbids it to represent
 * (RFC 1918, shared space RFC 6598, link-local).
 */
export function excludedV4(p: Pref64, v4: Uint8Array): boolean {
  const [a, b] = [v4[0]!, v4[1]!];
  if (a === 0 || a === 127 || a >= 224) return true;
  if (!isWellKnown(p)) return false;
  return a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254);
}

/** What a DNS64 makes of the answer to a AAAA query (RFC 6147 §5.1.1–5.1.4). */
export type AaaaVerdict =
  /** Real AAAA records: answer as is. */
  | { kind: 'real' }
  /** Real AAAA records beside excluded ones: answer with the excluded ones removed. */
  | { kind: 'filtered'; answer: Answer }
  /** NXDOMAIN is answered as it is (§5.1.2). */
  | { kind: 'nxdomain' }
  /** No usable AAAA (NODATA, only excluded addresses, or an error other than NXDOMAIN): ask for A. */
  | { kind: 'empty' }
  /** Excluded records beside real ones, in an answer pvdns cannot take apart: it cannot be answered safely. */
  | { kind: 'undecodable' };

/** judgeAaaa applies RFC 6147 §5.1.1–5.1.4 to an upstream AAAA answer; `question` is what its body follows. */
export function judgeAaaa(question: Buffer, a: Answer): AaaaVerdict {
  if (a.rcode === RCODE.NXDOMAIN) return { kind: 'nxdomain' };
  if (a.rcode !== RCODE.NOERROR) return { kind: 'empty' }; // §5.1.2, §5.1.3: other errors and timeouts
  let real = 0;
  let excluded = 0;
  someAaaa(a, (body, at) => {
    if (excludedV6(body, at)) excluded++;
    else real++;
    return false;
  });
  if (real === 0) return { kind: 'empty' };
  if (excluded === 0) return { kind: 'real' };
  // §5.1.4: build the answer from the AAAA records outside the excluded range; never return those inside.
  const s = answerSections(question, a);
  if (s === null) return { kind: 'undecodable' };
  // The AAAA RRset changed, so its signature no longer holds: drop it and AD (RFC 4035 §3.2.3).
  const answer = s.answer.filter((r) => !(r.type === TYPE.AAAA && r.rdata.length === 16 && excludedV6(r.rdata, 0)) && !covers(r, TYPE.AAAA));
  return { kind: 'filtered', answer: buildAnswer(a.rcode, a.flags & ~FLAG_AD, { ...s, answer }, a.soaTtl) };
}

/** covers says whether a record is an RRSIG over the given type. */
function covers(r: Rec, type: number): boolean {
  return r.type === TYPE.RRSIG && r.rdata.length >= 2 && r.rdata.readUInt16BE(0) === type;
}

/**
 * synthesizeAaaa builds the answer to a AAAA query from a positive answer to
 * the A query for the same name (RFC 6147 §5.1.5–5.1.7, §5.4): the CNAME
 * and DNAME chain kept, each A record replaced by one AAAA per prefix in the
 * order they were learned (RFC 7050 §3), with TTL min(A TTL, SOA TTL of the
 * AAAA answer, or 600 without one); authority and additional sections as
 * the A answer had them, none of it synthesized (§5.3.2). AD is cleared:
 * pvdns validates nothing (§5.5). When every address is excluded, the
 * answer is the chain alone (NODATA). Returns null when the A answer cannot
 * be taken apart.
 */
export function synthesizeAaaa(question: Buffer, aaaa: Answer, a: Answer, prefixes: readonly Pref64[]): Answer | null {
  const s = answerSections(question, a);
  if (s === null) return null;
  const cap = aaaa.soaTtl >= 0 ? aaaa.soaTtl : NO_SOA_TTL;
  const answer: Rec[] = [];
  let made = 0;
  for (const r of s.answer) {
    if (r.type === TYPE.A && r.rdata.length === 4) {
      for (const p of prefixes) {
        if (excludedV4(p, r.rdata)) continue;
        answer.push(record(r.name, TYPE.AAAA, Math.min(r.ttl, cap), Buffer.from(embed(p, r.rdata))));
        made++;
      }
    } else if (!covers(r, TYPE.A)) {
      answer.push(r); // the chain; a signature of the A records covers nothing that is sent
    }
  }
  return buildAnswer(RCODE.NOERROR, (a.flags & ~FLAG_AD) | (made > 0 ? ANSWER_SYNTHESIZED : 0), { ...s, answer });
}

/** copyAnswer is an answer of its own, for use under another cache key (TTLs are patched in place per entry). */
export function copyAnswer(a: Answer): Answer {
  return { ...a, flags: a.flags & ~ANSWER_SYNTHESIZED, body: Buffer.from(a.body), rr: a.rr.slice() };
}

/** The IPv4 address a reverse name under ip6.arpa stands for, when it is a whole address inside a prefix. */
export function ptrTarget(nameKey: string, prefixes: readonly Pref64[]): { v4: Uint8Array; prefix: Pref64 } | null {
  // 32 one-nibble labels ("\x01x" each) then "\x03ip6\x04arpa\x00".
  if (nameKey.length !== 32 * 2 + IP6_ARPA.length || !nameKey.endsWith(IP6_ARPA)) return null;
  const addr = new Uint8Array(16);
  for (let i = 0; i < 32; i++) {
    if (nameKey.charCodeAt(i * 2) !== 1) return null;
    const v = parseInt(nameKey[i * 2 + 1]!, 16);
    if (Number.isNaN(v)) return null;
    // The first label is the last nibble (RFC 3596 §2.5).
    const n = 31 - i;
    addr[n >> 1]! |= n & 1 ? v : v << 4;
  }
  const prefix = insideAny(prefixes, addr);
  return prefix === null ? null : { v4: extract(prefix, addr), prefix };
}

const IP6_ARPA = '\x03ip6\x04arpa\x00';

/** inAddrName is the in-addr.arpa name of an IPv4 address, in wire form. */
export function inAddrName(v4: Uint8Array): Buffer {
  return encodeName(`${v4[3]}.${v4[2]}.${v4[1]}.${v4[0]}.in-addr.arpa`);
}

/**
 * ptrViaCname answers a PTR query for an address inside a Pref64 (RFC 6147
 * §5.3.1, the second option): a CNAME from the ip6.arpa name to the
 * in-addr.arpa name of the embedded IPv4 address, followed by what that name
 * holds (`target`, the answer to its PTR query, whose body follows
 * `targetQuestion`). `qname` is the query name in wire form.
 */
export function ptrViaCname(qname: Buffer, targetQuestion: Buffer, target: Answer): Answer | null {
  const s = answerSections(targetQuestion, target);
  // §5.3.1: no CNAME that would lengthen a chain; the caller then asks as for any other name.
  if (s === null || s.answer[0]?.type === TYPE.CNAME) return null;
  const owner = targetQuestion.subarray(12, targetQuestion.length - 4);
  const chain: Sections = { ...s, answer: [record(qname, TYPE.CNAME, NO_SOA_TTL, Buffer.from(owner)), ...s.answer] };
  return buildAnswer(target.rcode, (target.flags & ~FLAG_AD) | ANSWER_SYNTHESIZED, chain, target.soaTtl);
}
