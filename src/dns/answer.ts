// Answer: the part of a reply that does not depend on who asked — RCODE, the
// AA/AD flags and the answer, authority and additional records as octets.
// The listener combines it with the client's header, question and OPT
// (reply.ts). Records are kept byte-exact as the upstream sent them, so
// unknown types, DNSSEC records and their compression pass through untouched.

import { FLAG_AA, FLAG_AD, FLAG_QR, FLAG_TC, HEADER_SIZE, OPCODE_MASK, OPTION_EDE, TYPE } from './constants.js';
import { checkName, equalsWireKey, skipName } from './name.js';

/** Ede is an Extended DNS Error (RFC 8914): an INFO-CODE and EXTRA-TEXT. */
export interface Ede {
  code: number;
  text: string;
}

/** Per-record metadata stride in Answer.rr: [end of record, offset of its TTL, TTL as stored]. */
export const RR_STRIDE = 3;

/**
 * Answer is a reply body that can be sent to any client that asked the same
 * question. `body` follows a question of the same length at offset 12, so
 * compression pointers inside it stay valid in every reply.
 */
export interface Answer {
  rcode: number;
  /**
   * FLAG_AA (set only on pvdns's own local answers) and FLAG_AD as the
   * upstream set it; bits above the header's 16 are pvdns's own marks
   * (ANSWER_SYNTHESIZED, ANSWER_CAPTIVE, ANSWER_TRANSIENT), never sent.
   */
  flags: number;
  body: Buffer;
  an: number;
  ns: number;
  ar: number;
  /** RR_STRIDE numbers per record, offsets relative to `body`. */
  rr: Uint32Array;
  /** min(SOA TTL, SOA MINIMUM) of an SOA in the authority section, or -1 (RFC 2308 §5). */
  soaTtl: number;
  ede: Ede | null;
}

/** Answer.flags mark: the answer holds DNS64-synthesized records, valid only in the PvD it was made in. */
export const ANSWER_SYNTHESIZED = 0x10000;

/** Answer.flags mark: the answer came from a PvD behind a captive portal (or holds its portal's address): never cached. */
export const ANSWER_CAPTIVE = 0x20000;

/** Answer.flags mark: a failure of the moment (too much in flight), not one to remember in the failure cache. */
export const ANSWER_TRANSIENT = 0x40000;

/**
 * Answer.flags mark: the answer section holds a CNAME (set by parseResponse),
 * so the CNAME stage looks at this answer and at no other.
 */
export const ANSWER_CNAME = 0x80000;

/** The TTL pvdns writes into records it makes up itself. */
export const LOCAL_TTL = 3600;

/** ResponseCheck is what parseResponse concluded about an upstream's reply. */
export type ResponseCheck =
  | { ok: true; answer: Answer; truncated: boolean }
  | { ok: false; reason: string };

/** The question an upstream reply must repeat (RFC 5452 §9.1). */
export interface Expected {
  id: number;
  nameKey: string;
  qtype: number;
  qclass: number;
}

/**
 * parseResponse checks that `msg` answers exactly the query it was sent for —
 * ID, question name (case-insensitive, RFC 4343), type and class (RFC 5452
 * §9.1, RFC 7766 §7) — and turns it into an Answer. The upstream's own OPT
 * record is removed: EDNS is hop-by-hop (RFC 6891 §6.2.6); its EDE is kept
 * for the record. A mismatch is not an error of the exchange: the caller
 * keeps waiting for the real reply.
 *
 * Nor is a reply whose names cannot be decoded (checkName: a pointer loop, a
 * forward or out-of-bounds pointer, a name over 255 octets) or whose RDATA
 * of a type that may hold compressed names (RFC 3597 §4) does not match its
 * RDLENGTH: passed on, a client would choke on it, and cached, every client
 * would. It is refused like a mismatch, so the query is retried or fails,
 * and it is never cached. Every owner name is checked, and the names in
 * those RDATA: the only ones a compression pointer may sit in.
 */
export function parseResponse(msg: Buffer, want: Expected): ResponseCheck {
  const end = msg.length;
  if (end < HEADER_SIZE) return { ok: false, reason: 'short header' };
  const flags = msg.readUInt16BE(2);
  if (msg.readUInt16BE(0) !== want.id) return { ok: false, reason: 'wrong id' };
  if (!(flags & FLAG_QR) || (flags & OPCODE_MASK) !== 0) return { ok: false, reason: 'not a query response' };
  if (msg.readUInt16BE(4) !== 1) return { ok: false, reason: 'no question' };
  const nameEnd = skipName(msg, HEADER_SIZE, end);
  if (nameEnd < 0 || nameEnd + 4 > end || msg[nameEnd - 1] !== 0) return { ok: false, reason: 'malformed question' };
  if (
    msg.readUInt16BE(nameEnd) !== want.qtype ||
    msg.readUInt16BE(nameEnd + 2) !== want.qclass ||
    !equalsWireKey(msg, HEADER_SIZE, nameEnd, want.nameKey)
  ) {
    return { ok: false, reason: 'wrong question' };
  }
  // TC=1: the records may stop anywhere (RFC 2181 §9); the whole answer is asked over TCP, so none is read.
  if (flags & FLAG_TC) return { ok: true, truncated: true, answer: truncatedAnswer(flags) };
  const qEnd = nameEnd + 4;
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  let ar = msg.readUInt16BE(10);
  const total = an + ns + ar;
  const meta = new Uint32Array(total * RR_STRIDE);
  let kept = 0;
  let rcode = flags & 0xf;
  let soaTtl = -1;
  let ede: Ede | null = null;
  let bodyEnd = -1;
  let cname = 0;
  let off = qEnd;
  for (let i = 0; i < total; i++) {
    const start = off;
    off = checkName(msg, off, end);
    if (off < 0) return { ok: false, reason: 'malformed owner name' };
    if (off + 10 > end) return { ok: false, reason: 'malformed record' };
    const type = msg.readUInt16BE(off);
    const ttl = msg.readUInt32BE(off + 4);
    const rdlen = msg.readUInt16BE(off + 8);
    const next = off + 10 + rdlen;
    if (next > end) return { ok: false, reason: 'malformed record' };
    if (type <= TYPE.MX && !rdataNamesOk(msg, type, off + 10, next)) return { ok: false, reason: 'malformed names in RDATA' };
    if (type === TYPE.CNAME && i < an) cname = ANSWER_CNAME;
    if (type === TYPE.OPT) {
      if (i < an + ns) return { ok: false, reason: 'OPT outside the additional section' };
      rcode |= (ttl >>> 24) << 4; // extended RCODE (RFC 6891 §6.1.3)
      ede = readEde(msg, off + 10, next);
      // Records after an OPT would move if it were cut out of the middle, and
      // their compression pointers with them; they are optional data, so drop them.
      bodyEnd = start;
      ar = i - an - ns;
      break;
    }
    // RFC 2181 §8: a TTL with the top bit set is treated as zero.
    meta[kept++] = next - qEnd;
    meta[kept++] = off + 4 - qEnd;
    meta[kept++] = ttl > 0x7fffffff ? 0 : ttl;
    if (type === TYPE.SOA && i >= an && i < an + ns && rdlen >= 20) {
      const minimum = msg.readUInt32BE(next - 4);
      soaTtl = Math.min(ttl > 0x7fffffff ? 0 : ttl, minimum > 0x7fffffff ? 0 : minimum);
    }
    off = next;
  }
  if (bodyEnd < 0) bodyEnd = off;
  // AA is dropped: pvdns is no authority for what it forwards or caches (RFC 1035 §4.1.1).
  const answer: Answer = { rcode, flags: (flags & FLAG_AD) | cname, body: Buffer.from(msg.subarray(qEnd, bodyEnd)), an, ns, ar, rr: kept < meta.length ? meta.slice(0, kept) : meta, soaTtl, ede };
  setTtls(answer, 0); // TTLs with the top bit set go out as 0, not as sent
  return { ok: true, truncated: (flags & FLAG_TC) !== 0, answer };
}

/**
 * rdataNamesOk checks the RDATA [start, end) of the types whose RDATA may
 * hold compressed names — those of RFC 1035, listed in RFC 3597 §4: NS, MD,
 * MF, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX — name by name, and that the
 * names and fixed fields fill RDLENGTH exactly. Other types pass: their
 * RDATA is opaque to pvdns (RFC 3597 §4 forbids compression in them).
 */
function rdataNamesOk(msg: Buffer, type: number, start: number, end: number): boolean {
  switch (type) {
    case TYPE.NS:
    case 3: // MD
    case 4: // MF
    case TYPE.CNAME:
    case 7: // MB
    case 8: // MG
    case 9: // MR
    case TYPE.PTR:
      return checkName(msg, start, end) === end;
    case TYPE.SOA: {
      // MNAME, RNAME, then SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM (RFC 1035 §3.3.13)
      const rname = checkName(msg, start, end);
      return rname >= 0 && checkName(msg, rname, end) === end - 20;
    }
    case 14: {
      // MINFO: RMAILBX, EMAILBX (RFC 1035 §3.3.7)
      const second = checkName(msg, start, end);
      return second >= 0 && checkName(msg, second, end) === end;
    }
    case TYPE.MX:
      // PREFERENCE, EXCHANGE (RFC 1035 §3.3.9)
      return checkName(msg, start + 2, end) === end;
    default:
      return true;
  }
}

/** truncatedAnswer stands for a TC=1 reply: never sent to a client, the query goes to TCP. */
function truncatedAnswer(flags: number): Answer {
  return errorAnswer(flags & 0xf);
}

function readEde(msg: Buffer, start: number, end: number): Ede | null {
  for (let o = start; o + 4 <= end; ) {
    const code = msg.readUInt16BE(o);
    const len = msg.readUInt16BE(o + 2);
    if (o + 4 + len > end) return null;
    if (code === OPTION_EDE && len >= 2) {
      return { code: msg.readUInt16BE(o + 4), text: msg.toString('utf8', o + 6, o + 4 + len) };
    }
    o += 4 + len;
  }
  return null;
}

/**
 * setTtls writes each record's stored TTL minus `elapsedS` (never below 0)
 * into the body, so a cached answer's TTLs count down (RFC 1035 §7.1, RFC
 * 2308 §6).
 */
export function setTtls(a: Answer, elapsedS: number): void {
  const { rr, body } = a;
  for (let i = 0; i < rr.length; i += RR_STRIDE) {
    const t = rr[i + 2]! - elapsedS;
    body.writeUInt32BE(t > 0 ? t : 0, rr[i + 1]!);
  }
}

/** errorAnswer is an answer with no records, e.g. SERVFAIL with an EDE. */
export function errorAnswer(rcode: number, ede: Ede | null = null, flags = 0): Answer {
  return { rcode, flags, body: EMPTY, an: 0, ns: 0, ar: 0, rr: NO_RR, soaTtl: -1, ede };
}

const EMPTY = Buffer.alloc(0);
const NO_RR = new Uint32Array(0);

/**
 * AnswerBuilder writes records pvdns makes up itself (local names), with the
 * owner given as a compression pointer into the client's question: `ownerAt`
 * is an offset within the question name, so `0` is the name itself and a
 * suffix offset is a parent zone.
 */
export class AnswerBuilder {
  private readonly parts: Buffer[] = [];
  private readonly meta: number[] = [];
  private size = 0;
  private counts = [0, 0, 0];
  private section = 0;

  /** add appends a record to section 0 (answer), 1 (authority) or 2 (additional). */
  add(section: 0 | 1 | 2, ownerAt: number, type: number, ttl: number, rdata: Buffer): this {
    if (section < this.section) throw new Error('records must be added in section order');
    this.section = section;
    const head = Buffer.allocUnsafe(12);
    head.writeUInt16BE(0xc000 | (HEADER_SIZE + ownerAt), 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt32BE(ttl, 6);
    head.writeUInt16BE(rdata.length, 10);
    this.parts.push(head, rdata);
    this.meta.push(this.size + 12 + rdata.length, this.size + 6, ttl);
    this.size += 12 + rdata.length;
    this.counts[section]!++;
    return this;
  }

  /** build returns the Answer; `soaTtl` marks a cacheable negative answer. */
  build(rcode: number, flags = FLAG_AA, soaTtl = -1): Answer {
    return {
      rcode,
      flags,
      body: Buffer.concat(this.parts, this.size),
      an: this.counts[0]!,
      ns: this.counts[1]!,
      ar: this.counts[2]!,
      rr: Uint32Array.from(this.meta),
      soaTtl,
      ede: null,
    };
  }
}

/** pointerTo is a two-octet compression pointer to an offset in the question name. */
export function pointerTo(ownerAt: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(0xc000 | (HEADER_SIZE + ownerAt), 0);
  return b;
}
