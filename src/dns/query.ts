// Reading a client's query: header, the one question and the OPT record,
// nothing more (the hot path never decodes a whole message).

import {
  CLASS_IN,
  CLASSIC_UDP_SIZE,
  EDNS_DO,
  EDNS_UDP_SIZE,
  FLAG_CD,
  FLAG_QR,
  FLAG_RD,
  HEADER_SIZE,
  OPCODE_MASK,
  RCODE,
  TYPE,
} from './constants.js';
import { lowerWire, skipName } from './name.js';

/** WireQuery is what the listener learns from a query's octets. */
export interface WireQuery {
  msg: Buffer;
  id: number;
  flags: number;
  /** End of the question section; HEADER_SIZE when the reply carries no question. */
  qEnd: number;
  qtype: number;
  qclass: number;
  /** The question name in lower-cased wire form (see name.ts). */
  nameKey: string;
  /** The query carried an OPT record, so the reply must carry one (RFC 6891 §7). */
  edns: boolean;
  /** The requestor's UDP payload size, floored at 512 (RFC 6891 §6.2.5). */
  udpSize: number;
  dnssecOk: boolean;
}

/** Outcomes of parseQuery besides an RCODE to answer with. */
export const PARSE_OK = 0;
export const PARSE_DROP = -1;

/**
 * parseQuery fills `q` from `msg` and returns PARSE_OK, PARSE_DROP (not a
 * query we can answer at all: short header, a response, an unreadable
 * question) or the RCODE the reply must carry (FORMERR, NOTIMP, BADVERS).
 * When it returns an RCODE, `q.qEnd` says how much of the question can be
 * echoed and `q.edns` whether the reply carries an OPT.
 */
export function parseQuery(msg: Buffer, q: WireQuery): number {
  const end = msg.length;
  q.msg = msg;
  q.edns = false;
  q.udpSize = CLASSIC_UDP_SIZE;
  q.dnssecOk = false;
  q.qEnd = HEADER_SIZE;
  q.qtype = 0;
  q.qclass = 0;
  q.nameKey = '';
  if (end < HEADER_SIZE) return PARSE_DROP;
  q.id = msg.readUInt16BE(0);
  const flags = (q.flags = msg.readUInt16BE(2));
  if (flags & FLAG_QR) return PARSE_DROP; // never answer a response: that is how loops start
  const qd = msg.readUInt16BE(4);
  if (qd !== 1) {
    // No question to echo; still look for an OPT, so the FORMERR carries one
    // if the query did (RFC 6891 §7) — a cookie-only query (RFC 7873 §5.4) is one.
    let off = HEADER_SIZE;
    for (let i = 0; i < qd && off >= 0; i++) {
      const next = skipName(msg, off, end);
      off = next < 0 ? -1 : next + 4;
    }
    if (off >= 0 && off <= end) readRecords(msg, q, off);
    return RCODE.FORMERR;
  }

  // The question: an uncompressed name (a pointer here has nothing valid to point at).
  let off = HEADER_SIZE;
  for (;;) {
    if (off >= end) return PARSE_DROP;
    const len = msg[off]!;
    if (len === 0) break;
    if (len > 63) return PARSE_DROP;
    off += len + 1;
  }
  const nameEnd = off + 1;
  if (nameEnd + 4 > end) return PARSE_DROP;
  q.qtype = msg.readUInt16BE(nameEnd);
  q.qclass = msg.readUInt16BE(nameEnd + 2);
  q.qEnd = nameEnd + 4;
  if (nameEnd - HEADER_SIZE > 255) return RCODE.FORMERR; // RFC 1035 §3.1
  q.nameKey = lowerWire(msg, HEADER_SIZE, nameEnd);

  const status = readRecords(msg, q, q.qEnd);
  if (status !== PARSE_OK) return status;
  if ((flags & OPCODE_MASK) !== 0) return RCODE.NOTIMP; // only QUERY (RFC 1035 §4.1.1)
  if (q.qtype === TYPE.OPT) return RCODE.FORMERR; // OPT is a pseudo-RR, never a question (RFC 6891 §6.1.1)
  return PARSE_OK;
}

/** Walks the answer, authority and additional sections from `off` looking for the OPT record. */
function readRecords(msg: Buffer, q: WireQuery, off: number): number {
  const end = msg.length;
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let opts = 0;
  let status = PARSE_OK;
  for (let i = 0, n = an + ns + ar; i < n; i++) {
    const rrStart = off;
    off = skipName(msg, off, end);
    if (off < 0 || off + 10 > end) return RCODE.FORMERR;
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (rdata + rdlen > end) return RCODE.FORMERR;
    if (type === TYPE.OPT) {
      q.edns = true; // whatever else is wrong, the reply carries an OPT (RFC 6891 §7)
      // One OPT, in the additional section, owned by the root (RFC 6891 §6.1.1).
      if (++opts > 1 || i < an + ns || msg[rrStart] !== 0 || off !== rrStart + 1) return RCODE.FORMERR;
      q.udpSize = Math.max(CLASSIC_UDP_SIZE, msg.readUInt16BE(off + 2));
      const version = msg[off + 5]!;
      q.dnssecOk = (msg.readUInt16BE(off + 6) & EDNS_DO) !== 0;
      // Options must tile the RDATA exactly; their contents are ignored (§6.1.2).
      let o = rdata;
      while (o < rdata + rdlen) {
        if (o + 4 > rdata + rdlen) return RCODE.FORMERR;
        o += 4 + msg.readUInt16BE(o + 2);
      }
      if (o !== rdata + rdlen) return RCODE.FORMERR;
      if (version !== 0) status = RCODE.BADVERS; // RFC 6891 §6.1.3
    }
    off = rdata + rdlen;
  }
  return status;
}

/**
 * encodeQuery builds a query for an upstream: a fresh ID, RD set, the CD bit
 * as given, the question copied octet for octet from `question` (name, type
 * and class), and pvdns's own OPT — a new transaction, not the client's
 * (RFC 6891 §6.2.6) — advertising 1232 and the DO bit as given.
 */
export function encodeQuery(id: number, question: Buffer, cd: boolean, dnssecOk: boolean): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + question.length + 11);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG_RD | (cd ? FLAG_CD : 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(1, 10);
  question.copy(out, HEADER_SIZE);
  const o = HEADER_SIZE + question.length;
  out[o] = 0;
  out.writeUInt16BE(TYPE.OPT, o + 1);
  out.writeUInt16BE(EDNS_UDP_SIZE, o + 3);
  out.writeUInt32BE(dnssecOk ? EDNS_DO : 0, o + 5);
  out.writeUInt16BE(0, o + 9);
  return out;
}

/**
 * questionMessage is a query of one question (class IN) with RD set and no
 * OPT: what pvdns asks on its own behalf or for the HTTP API. `name` is in
 * wire form.
 */
export function questionMessage(name: Buffer, qtype: number): Buffer {
  const msg = Buffer.alloc(HEADER_SIZE + name.length + 4);
  msg.writeUInt16BE(FLAG_RD, 2);
  msg.writeUInt16BE(1, 4);
  name.copy(msg, HEADER_SIZE);
  msg.writeUInt16BE(qtype, HEADER_SIZE + name.length);
  msg.writeUInt16BE(CLASS_IN, HEADER_SIZE + name.length + 2);
  return msg;
}
