// What a DNS answer says about captivity: the probes' names and how their
// answers are judged, and the addresses no public name should resolve to.
// The heuristics follow ../shared/reference/standards.md §5.5 (H1, H3, H7):
// a name that cannot exist answered with addresses, a canary answered
// wrongly, a private address for a name the PvD does not own.

import { randomFillSync } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { RR_STRIDE, type Answer } from '../dns/answer.js';
import { RCODE, TYPE } from '../dns/constants.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** randomLabel is 12–15 random letters and digits: a label no registry holds (Chromium's probe names are alike). */
export function randomLabel(): string {
  const bytes = randomFillSync(Buffer.alloc(16));
  const len = 12 + (bytes[0]! % 4);
  let s = '';
  for (let i = 1; i <= len; i++) s += ALPHABET[bytes[i]! % ALPHABET.length];
  // Starting with a letter keeps it a hostname label (RFC 952 as relaxed by RFC 1123 §2.1 allows digits too).
  return `p${s.slice(1)}`;
}

/**
 * probeNames are names that must not exist: a random top-level label, and a
 * random label under another random top-level label. The root zone answers
 * them NXDOMAIN (from a resolver's cache, with aggressive NSEC use, RFC
 * 8198), so probing costs the Internet nothing.
 */
export function probeNames(): string[] {
  return [randomLabel(), `${randomLabel()}.${randomLabel()}`];
}

/** addressesOf lists the A and AAAA addresses of an answer section as text. */
export function addressesOf(a: Answer): string[] {
  const out: string[] = [];
  const { rr, body } = a;
  for (let i = 0; i < a.an; i++) {
    const ttlAt = rr[i * RR_STRIDE + 1]!;
    const type = body.readUInt16BE(ttlAt - 4);
    const len = body.readUInt16BE(ttlAt + 4);
    const at = ttlAt + 6;
    if (type === TYPE.A && len === 4) out.push(`${body[at]}.${body[at + 1]}.${body[at + 2]}.${body[at + 3]}`);
    else if (type === TYPE.AAAA && len === 16) out.push(ipaddr.fromByteArray([...body.subarray(at, at + 16)]).toString());
  }
  return out;
}

/**
 * isSpecialAddress says whether an address is one no public name should
 * resolve to: private, shared, loopback, link-local, unspecified, multicast
 * or reserved space (standards.md §5.5 H7, RFC 6890). Documentation ranges
 * are not in the list: they stand in for public addresses in examples.
 */
export function isSpecialAddress(text: string): boolean {
  const octets = Buffer.from(ipaddr.parse(text).toByteArray());
  return specialAt(octets, 0, octets.length);
}

/**
 * specialAt says the same of the octets of an A (4) or AAAA (16) record's
 * address at `at` (private, shared, loopback, link-local, unspecified,
 * multicast, reserved; unique-local and IPv4-mapped for IPv6): the query
 * path looks at every answer with it, without making strings.
 */
export function specialAt(b: Buffer, at: number, len: number): boolean {
  const x = b[at]!;
  const y = b[at + 1]!;
  if (len === 4) {
    return (
      x === 0 || x === 10 || x === 127 || x >= 224 ||
      (x === 100 && y >= 64 && y < 128) || (x === 169 && y === 254) ||
      (x === 172 && y >= 16 && y < 32) || (x === 192 && y === 168) || (x === 198 && (y === 18 || y === 19))
    );
  }
  if (x === 0xff || x === 0xfc || x === 0xfd || (x === 0xfe && (y & 0xc0) === 0x80)) return true; // multicast, ULA, link-local
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) return false;
  const mapped = b.readUInt16BE(at + 10);
  if (mapped === 0xffff) return true; // ::ffff:0:0/96
  if (mapped !== 0 || b[at + 12] !== 0 || b[at + 13] !== 0 || b[at + 14] !== 0) return false;
  return b[at + 15]! <= 1; // :: and ::1
}

/** What one probe's answer says. */
export type ProbeVerdict =
  /** Answered as it should be (or refused: a server that will not resolve it rewrites nothing). */
  | { kind: 'clean' }
  /** Answered with addresses it should not have: the addresses are the portal's (or the ad server's). */
  | { kind: 'rewritten'; addresses: string[]; why: string }
  /** No verdict: a timeout or a server failure. */
  | { kind: 'unknown'; why: string };

/** judgeMissing judges the answer for a name that must not exist: any address is a rewrite. */
export function judgeMissing(name: string, a: Answer): ProbeVerdict {
  if (a.rcode === RCODE.SERVFAIL) return { kind: 'unknown', why: a.ede?.text ?? 'SERVFAIL' };
  const addresses = a.rcode === RCODE.NOERROR ? addressesOf(a) : [];
  if (addresses.length > 0) return { kind: 'rewritten', addresses, why: `${name} (a name that cannot exist) answered ${addresses.join(', ')}` };
  return { kind: 'clean' };
}

/**
 * judgeCanary judges the answer for the canary name: with known addresses,
 * an answer sharing none of them is a rewrite; without, an answer whose
 * addresses are all special or known to be the portal's is. NXDOMAIN and
 * refusals say nothing: a network without Internet access may give them.
 */
export function judgeCanary(name: string, a: Answer, expected: ReadonlySet<string>, portal: ReadonlySet<string>): ProbeVerdict {
  if (a.rcode === RCODE.SERVFAIL) return { kind: 'unknown', why: a.ede?.text ?? 'SERVFAIL' };
  const addresses = a.rcode === RCODE.NOERROR ? addressesOf(a) : [];
  if (addresses.length === 0) return { kind: 'clean' };
  const wrong = expected.size > 0 ? !addresses.some((x) => expected.has(x)) : addresses.every((x) => isSpecialAddress(x) || portal.has(x));
  return wrong ? { kind: 'rewritten', addresses, why: `canary ${name} answered ${addresses.join(', ')}` } : { kind: 'clean' };
}
