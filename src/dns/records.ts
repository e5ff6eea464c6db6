// Whole records, for the few places that rebuild an answer rather than pass
// it through (DNS64 synthesis). Names are decompressed on the way in and
// written uncompressed on the way out, so a rebuilt body is valid after any
// question. Off the hot path: a cached or forwarded answer never comes here.

import { RR_STRIDE, type Answer } from './answer.js';
import { CLASS_IN, TYPE } from './constants.js';

/** Rec is one resource record with its names in uncompressed wire form. */
export interface Rec {
  /** Owner name, wire form. */
  name: Buffer;
  type: number;
  cls: number;
  ttl: number;
  /** RDATA, with any compressed names of the types in NAMED expanded. */
  rdata: Buffer;
}

/**
 * Types whose RDATA may hold compressed names (RFC 3597 §4 lists the types
 * defined before it; later types must not compress), as the layout of each:
 * 'n' a name, a digit that many fixed octets.
 */
const NAMED = new Map<number, readonly ('n' | number)[]>([
  [TYPE.NS, ['n']],
  [3 /* MD */, ['n']],
  [4 /* MF */, ['n']],
  [TYPE.CNAME, ['n']],
  [TYPE.SOA, ['n', 'n', 20]],
  [7 /* MB */, ['n']],
  [8 /* MG */, ['n']],
  [9 /* MR */, ['n']],
  [TYPE.PTR, ['n']],
  [14 /* MINFO */, ['n', 'n']],
  [TYPE.MX, [2, 'n']],
  [17 /* RP */, ['n', 'n']],
  [18 /* AFSDB */, [2, 'n']],
  [21 /* RT */, [2, 'n']],
  [26 /* PX */, [2, 'n', 'n']],
  [TYPE.SRV, [6, 'n']],
  [39 /* DNAME */, ['n']],
]);

/**
 * expandName returns the name at `off` in uncompressed wire form, and the
 * offset after it in `msg`; null when it is malformed or loops.
 */
export function expandName(msg: Buffer, off: number, end = msg.length): { name: Buffer; next: number } | null {
  const parts: number[] = [];
  let next = -1;
  for (let hops = 0; ; ) {
    if (off >= end) return null;
    const len = msg[off]!;
    if (len === 0) {
      parts.push(0);
      if (next < 0) next = off + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= end || ++hops > 64) return null;
      if (next < 0) next = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1]!;
      continue;
    }
    if (len & 0xc0 || off + 1 + len > end) return null;
    if (parts.length + len + 2 > 255) return null; // with the root octet still to come (RFC 1035 §2.3.4)
    for (let i = off; i <= off + len; i++) parts.push(msg[i]!);
    off += len + 1;
  }
  return { name: Buffer.from(parts), next };
}

/**
 * readRecords decodes `count` records of `msg` starting at `off`; null when
 * one is malformed. `msg` is a whole message, so compression pointers resolve.
 */
export function readRecords(msg: Buffer, off: number, count: number): { recs: Rec[]; next: number } | null {
  const recs: Rec[] = [];
  for (let i = 0; i < count; i++) {
    const owner = expandName(msg, off);
    if (owner === null || owner.next + 10 > msg.length) return null;
    off = owner.next;
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    const start = off + 10;
    const end = start + rdlen;
    if (end > msg.length) return null;
    const rdata = expandRdata(msg, type, start, end);
    if (rdata === null) return null;
    recs.push({ name: owner.name, type, cls: msg.readUInt16BE(off + 2), ttl: msg.readUInt32BE(off + 4), rdata });
    off = end;
  }
  return { recs, next: off };
}

function expandRdata(msg: Buffer, type: number, start: number, end: number): Buffer | null {
  const layout = NAMED.get(type);
  if (layout === undefined) return Buffer.from(msg.subarray(start, end));
  const parts: Buffer[] = [];
  let off = start;
  for (const piece of layout) {
    if (piece === 'n') {
      const n = expandName(msg, off, end);
      if (n === null) return null;
      parts.push(n.name);
      off = n.next;
    } else {
      if (off + piece > end) return null;
      parts.push(msg.subarray(off, off + piece));
      off += piece;
    }
  }
  if (off !== end) return null;
  return Buffer.concat(parts);
}

/** Sections of an Answer's records, decoded. */
export interface Sections {
  answer: Rec[];
  authority: Rec[];
  additional: Rec[];
}

/**
 * answerSections decodes an Answer's records. `question` is the header and
 * question the body was received after (same length as the query's), which
 * compression pointers in the body may point into.
 */
export function answerSections(question: Buffer, a: Answer): Sections | null {
  const msg = Buffer.concat([question, a.body]);
  const start = question.length;
  const an = readRecords(msg, start, a.an);
  if (an === null) return null;
  const ns = readRecords(msg, an.next, a.ns);
  if (ns === null) return null;
  const ar = readRecords(msg, ns.next, a.ar);
  if (ar === null) return null;
  return { answer: an.recs, authority: ns.recs, additional: ar.recs };
}

/**
 * buildAnswer writes the sections as an Answer body, every name
 * uncompressed, so it follows any question (and compression pointers in
 * later records never move).
 */
export function buildAnswer(rcode: number, flags: number, s: Sections, soaTtl = -1): Answer {
  const all = [...s.answer, ...s.authority, ...s.additional];
  const size = all.reduce((n, r) => n + r.name.length + 10 + r.rdata.length, 0);
  const body = Buffer.allocUnsafe(size);
  const rr = new Uint32Array(all.length * RR_STRIDE);
  let off = 0;
  all.forEach((r, i) => {
    off += r.name.copy(body, off);
    body.writeUInt16BE(r.type, off);
    body.writeUInt16BE(r.cls, off + 2);
    body.writeUInt32BE(r.ttl, off + 4);
    body.writeUInt16BE(r.rdata.length, off + 8);
    r.rdata.copy(body, off + 10);
    rr[i * RR_STRIDE + 1] = off + 4;
    rr[i * RR_STRIDE + 2] = r.ttl > 0x7fffffff ? 0 : r.ttl;
    off += 10 + r.rdata.length;
    rr[i * RR_STRIDE] = off;
  });
  return { rcode, flags, body, an: s.answer.length, ns: s.authority.length, ar: s.additional.length, rr, soaTtl, ede: null };
}

/** record makes an IN record. */
export function record(name: Buffer, type: number, ttl: number, rdata: Buffer): Rec {
  return { name, type, cls: CLASS_IN, ttl, rdata };
}
