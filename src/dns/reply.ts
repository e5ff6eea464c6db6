// Composing the octets sent back to a client: its own ID and question (case
// included), the Answer's records, and pvdns's own OPT when the client sent
// one; then truncation to what the client can take over UDP.

import type { Answer, Ede } from './answer.js';
import { errorAnswer, RR_STRIDE } from './answer.js';
import {
  CLASSIC_UDP_SIZE,
  EDNS_DO,
  EDNS_UDP_SIZE,
  FLAG_AA,
  FLAG_AD,
  FLAG_CD,
  FLAG_QR,
  FLAG_RA,
  FLAG_RD,
  FLAG_TC,
  HEADER_SIZE,
  OPCODE_MASK,
  OPTION_EDE,
  TYPE,
} from './constants.js';
import { readName, skipName } from './name.js';
import type { WireQuery } from './query.js';

const OPT_SIZE = 11;
const MAX_TCP_MESSAGE = 0xffff;

/**
 * udpLimit is the largest UDP reply a client may get: 512 without EDNS, else
 * its advertised size capped at pvdns's own 1232 (RFC 6891 §6.2.3–§6.2.5).
 */
export function udpLimit(q: WireQuery): number {
  return q.edns ? Math.min(q.udpSize, EDNS_UDP_SIZE) : CLASSIC_UDP_SIZE;
}

/** tcpLimit is the largest message a two-octet length prefix can carry (RFC 1035 §4.2.2). */
export const TCP_LIMIT = MAX_TCP_MESSAGE;

/**
 * encodeReply builds the reply to `q` carrying `a`, at most `limit` octets.
 * The AD bit is only kept for clients that asked for DNSSEC data (RFC 6840
 * §5.8); RD and CD are echoed (RFC 1035 §4.1.1, RFC 4035 §3.1.6).
 */
export function encodeReply(q: WireQuery, a: Answer, limit: number): Buffer {
  const qEnd = q.qEnd;
  const edeBytes = q.edns && a.ede ? edeLength(a.ede) : 0;
  const optLen = q.edns ? OPT_SIZE + edeBytes : 0;
  const size = qEnd + a.body.length + optLen;
  if (size > limit) return truncate(q, a, limit);
  const out = Buffer.allocUnsafe(size);
  writeHeader(out, q, a, a.an, a.ns, a.ar, false);
  q.msg.copy(out, HEADER_SIZE, HEADER_SIZE, qEnd);
  a.body.copy(out, qEnd);
  if (q.edns) writeOpt(out, qEnd + a.body.length, q, a.rcode, edeBytes ? a.ede : null);
  return out;
}

function writeHeader(out: Buffer, q: WireQuery, a: Answer, an: number, ns: number, ar: number, tc: boolean): void {
  const wantsAd = q.dnssecOk || (q.flags & FLAG_AD) !== 0;
  const flags =
    FLAG_QR |
    FLAG_RA |
    (q.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) |
    (a.flags & FLAG_AA) |
    (wantsAd ? a.flags & FLAG_AD : 0) |
    (tc ? FLAG_TC : 0) |
    (a.rcode & 0xf);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(q.qEnd > HEADER_SIZE ? 1 : 0, 4);
  out.writeUInt16BE(an, 6);
  out.writeUInt16BE(ns, 8);
  out.writeUInt16BE(ar + (q.edns ? 1 : 0), 10);
}

function edeLength(ede: Ede): number {
  return 6 + Buffer.byteLength(ede.text, 'utf8');
}

/** writeOpt writes pvdns's OPT: its own UDP size, the extended RCODE, the client's DO (RFC 3225 §3). */
function writeOpt(out: Buffer, off: number, q: WireQuery, rcode: number, ede: Ede | null): void {
  out[off] = 0;
  out.writeUInt16BE(TYPE.OPT, off + 1);
  out.writeUInt16BE(EDNS_UDP_SIZE, off + 3);
  out[off + 5] = (rcode >>> 4) & 0xff;
  out[off + 6] = 0; // version 0
  out.writeUInt16BE(q.dnssecOk ? EDNS_DO : 0, off + 7);
  if (!ede) {
    out.writeUInt16BE(0, off + 9);
    return;
  }
  const textLen = Buffer.byteLength(ede.text, 'utf8');
  out.writeUInt16BE(6 + textLen, off + 9);
  out.writeUInt16BE(OPTION_EDE, off + 11);
  out.writeUInt16BE(2 + textLen, off + 13);
  out.writeUInt16BE(ede.code, off + 15);
  out.write(ede.text, off + 17, textLen, 'utf8');
}

/**
 * truncate fits a reply into `limit` octets (RFC 2181 §9): the EDE goes
 * first (RFC 8914 §3); if the answer and authority sections still do not fit,
 * the reply is header + question + OPT with TC=1; otherwise whole RRsets of
 * the additional section are left out, without TC.
 */
function truncate(q: WireQuery, a: Answer, limit: number): Buffer {
  const qEnd = q.qEnd;
  const optLen = q.edns ? OPT_SIZE : 0;
  const room = limit - qEnd - optLen;
  const keepAnNs = a.an + a.ns;
  const anNsEnd = keepAnNs > 0 ? a.rr[(keepAnNs - 1) * RR_STRIDE]! : 0;
  let count = 0;
  let bodyLen = 0;
  let tc = false;
  if (anNsEnd > room) {
    tc = true;
  } else {
    count = keepAnNs;
    bodyLen = anNsEnd;
    let setStart = keepAnNs;
    for (let i = keepAnNs; i < keepAnNs + a.ar; i++) {
      if (!sameRRset(q, a, i, setStart)) setStart = i;
      const end = a.rr[i * RR_STRIDE]!;
      if (end > room) {
        // Leave out the RRset this record belongs to, whole.
        count = setStart;
        bodyLen = setStart > 0 ? a.rr[(setStart - 1) * RR_STRIDE]! : 0;
        break;
      }
      count = i + 1;
      bodyLen = end;
    }
  }
  const out = Buffer.allocUnsafe(qEnd + bodyLen + optLen);
  const an = Math.min(count, a.an);
  const ns = Math.min(count - an, a.ns);
  writeHeader(out, q, a, an, ns, count - an - ns, tc);
  q.msg.copy(out, HEADER_SIZE, HEADER_SIZE, qEnd);
  a.body.copy(out, qEnd, 0, bodyLen);
  if (q.edns) writeOpt(out, qEnd + bodyLen, q, a.rcode, null);
  return out;
}

/** sameRRset says whether additional record i belongs to the RRset starting at record j. */
function sameRRset(q: WireQuery, a: Answer, i: number, j: number): boolean {
  if (i === j) return true;
  const key = (k: number): string => {
    const start = k > 0 ? a.rr[(k - 1) * RR_STRIDE]! : 0;
    // Owner names may be compressed against the question, so read them in a
    // message laid out as the client will see it.
    const msg = Buffer.concat([q.msg.subarray(0, q.qEnd), a.body]);
    const at = q.qEnd + start;
    const nameEnd = skipName(msg, at, msg.length);
    return `${(readName(msg, at) ?? '').toLowerCase()}/${nameEnd > 0 ? msg.readUInt16BE(nameEnd) : -1}`;
  };
  return key(i) === key(j);
}

/** encodeError answers `q` with `rcode` and no records, e.g. FORMERR or REFUSED. */
export function encodeError(q: WireQuery, rcode: number, ede: Ede | null = null): Buffer {
  return encodeReply(q, errorAnswer(rcode, ede), udpLimit(q));
}
