// Records rendered as text for people and the API: presentation form for
// the types a user of Translate Name expects to read (RFC 1035 §5, RFC 3596,
// RFC 2782), the RFC 3597 generic form for everything else. Off the hot path.

import ipaddr from 'ipaddr.js';
import { HEADER_SIZE, TYPE, typeName } from './constants.js';
import { readName, skipName } from './name.js';

/** RecordText is one record as /v1/resolve shows it. */
export interface RecordText {
  name: string;
  type: string;
  ttl: number;
  data: string;
}

/** answerRecords lists the answer section of a whole DNS message. */
export function answerRecords(msg: Buffer): RecordText[] {
  const out: RecordText[] = [];
  if (msg.length < HEADER_SIZE) return out;
  let off = HEADER_SIZE;
  for (let i = msg.readUInt16BE(4); i > 0; i--) {
    off = skipName(msg, off, msg.length);
    if (off < 0) return out;
    off += 4;
  }
  for (let i = msg.readUInt16BE(6); i > 0; i--) {
    const nameEnd = skipName(msg, off, msg.length);
    if (nameEnd < 0 || nameEnd + 10 > msg.length) break;
    const type = msg.readUInt16BE(nameEnd);
    const rdlen = msg.readUInt16BE(nameEnd + 8);
    const rdata = nameEnd + 10;
    if (rdata + rdlen > msg.length) break;
    out.push({
      name: readName(msg, off) ?? '',
      type: typeName(type),
      ttl: msg.readUInt32BE(nameEnd + 4),
      data: rdataText(msg, type, rdata, rdlen),
    });
    off = rdata + rdlen;
  }
  return out;
}

/** rdataText renders one record's data; names inside it may be compressed against `msg`. */
function rdataText(msg: Buffer, type: number, at: number, len: number): string {
  const end = at + len;
  const name = (o: number): string | null => {
    const n = readName(msg, o);
    return n === null ? null : `${n}.`;
  };
  switch (type) {
    case TYPE.A:
      if (len === 4) return `${msg[at]}.${msg[at + 1]}.${msg[at + 2]}.${msg[at + 3]}`;
      break;
    case TYPE.AAAA:
      // RFC 5952 text form; §5: an IPv4-mapped address keeps its IPv4 part dotted.
      if (len === 16) {
        const v6 = ipaddr.fromByteArray([...msg.subarray(at, end)]) as ipaddr.IPv6;
        return v6.isIPv4MappedAddress() ? `::ffff:${v6.toIPv4Address().toString()}` : v6.toRFC5952String();
      }
      break;
    case TYPE.CNAME:
    case TYPE.NS:
    case TYPE.PTR:
      return name(at) ?? generic(msg, at, len);
    case TYPE.MX:
      if (len >= 3) return `${msg.readUInt16BE(at)} ${name(at + 2) ?? '?'}`;
      break;
    case TYPE.SRV:
      if (len >= 7) return `${msg.readUInt16BE(at)} ${msg.readUInt16BE(at + 2)} ${msg.readUInt16BE(at + 4)} ${name(at + 6) ?? '?'}`;
      break;
    case TYPE.TXT:
      return txt(msg, at, end) ?? generic(msg, at, len);
    case TYPE.SOA: {
      const rname = skipName(msg, at, end);
      const counters = rname < 0 ? -1 : skipName(msg, rname, end);
      if (counters > 0 && counters + 20 === end) {
        const n = [0, 4, 8, 12, 16].map((k) => msg.readUInt32BE(counters + k));
        return `${name(at)} ${name(rname)} ${n.join(' ')}`;
      }
      break;
    }
  }
  return generic(msg, at, len);
}

/** The character-strings of a TXT record, quoted (RFC 1035 §3.3.14). */
function txt(msg: Buffer, at: number, end: number): string | null {
  const parts: string[] = [];
  while (at < end) {
    const n = msg[at]!;
    if (at + 1 + n > end) return null;
    parts.push(`"${msg.toString('latin1', at + 1, at + 1 + n).replace(/["\\]/g, '\\$&')}"`);
    at += 1 + n;
  }
  return parts.join(' ');
}

/** RFC 3597 §5: \# length hex. */
function generic(msg: Buffer, at: number, len: number): string {
  return len === 0 ? '\\# 0' : `\\# ${len} ${msg.toString('hex', at, at + len)}`;
}
