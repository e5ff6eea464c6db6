// EDNS(0) padding of queries sent over an encrypted transport (RFC 7830), so
// an observer of the TLS records cannot tell the name asked from the length.
// Block-length padding to 128 octets is the policy RFC 8467 §4.1 recommends
// for clients: the padded message is the smallest multiple of 128 that holds
// it. Used by the DoT and DoH carriers, never on cleartext (RFC 7830 §6: it
// only helps under encryption).

import { EDNS_UDP_SIZE, HEADER_SIZE, TYPE } from './constants.js';
import { skipName } from './name.js';

/** EDNS option code of Padding (RFC 7830 §3). */
export const OPTION_PADDING = 12;

/** The block length a query is padded to (RFC 8467 §4.1). */
export const QUERY_PADDING_BLOCK = 128;

/** An OPT record with no options: root name, TYPE, CLASS, TTL, RDLENGTH (RFC 6891 §6.1.2). */
const OPT_FIXED = 11;
/** An option's code and length (RFC 6891 §6.1.2). */
const OPTION_HEADER = 4;

/**
 * padQuery returns `msg` with a Padding option (RFC 7830 §3: code 12, its
 * contents zero octets) in its OPT record so that the message's length is a
 * multiple of `block` (RFC 8467 §4.1). A message with no OPT gains one
 * (advertising 1232 octets, no DO bit) and ARCOUNT grows by one; a Padding
 * option already there is replaced, the other options are kept byte for
 * byte. A message that cannot be read (short, a name that runs off the end,
 * options that do not tile the OPT's RDATA) is returned as it is: padding
 * must never make a query unreadable. The result is a new buffer.
 */
export function padQuery(msg: Buffer, block = QUERY_PADDING_BLOCK): Buffer {
  if (msg.length < HEADER_SIZE || block < 1) return msg;
  const end = msg.length;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let off = HEADER_SIZE;
  for (let i = 0; i < qd; i++) {
    off = skipName(msg, off, end);
    if (off < 0 || off + 4 > end) return msg;
    off += 4;
  }
  // Find the OPT record, if any: [start of its RDATA, RDLENGTH].
  let optRdata = -1;
  let optRdlen = 0;
  for (let i = 0, n = an + ns + ar; i < n; i++) {
    off = skipName(msg, off, end);
    if (off < 0 || off + 10 > end) return msg;
    const rdlen = msg.readUInt16BE(off + 8);
    if (off + 10 + rdlen > end) return msg;
    if (msg.readUInt16BE(off) === TYPE.OPT && i >= an + ns && optRdata < 0) {
      optRdata = off + 10;
      optRdlen = rdlen;
    }
    off += 10 + rdlen;
  }
  if (off !== end) return msg;

  if (optRdata < 0) {
    // No OPT: append one holding only the padding.
    const base = end + OPT_FIXED + OPTION_HEADER;
    const pad = (block - (base % block)) % block;
    const out = Buffer.alloc(base + pad);
    msg.copy(out, 0);
    out.writeUInt16BE(ar + 1, 10);
    out[end] = 0;
    out.writeUInt16BE(TYPE.OPT, end + 1);
    out.writeUInt16BE(EDNS_UDP_SIZE, end + 3);
    out.writeUInt32BE(0, end + 5);
    out.writeUInt16BE(OPTION_HEADER + pad, end + 9);
    out.writeUInt16BE(OPTION_PADDING, end + 11);
    out.writeUInt16BE(pad, end + 13);
    return out;
  }

  // Keep every option but an old Padding one.
  const kept: Buffer[] = [];
  let o = optRdata;
  const rdEnd = optRdata + optRdlen;
  while (o < rdEnd) {
    if (o + OPTION_HEADER > rdEnd) return msg;
    const len = msg.readUInt16BE(o + 2);
    if (o + OPTION_HEADER + len > rdEnd) return msg;
    if (msg.readUInt16BE(o) !== OPTION_PADDING) kept.push(msg.subarray(o, o + OPTION_HEADER + len));
    o += OPTION_HEADER + len;
  }
  const keptLen = kept.reduce((n, b) => n + b.length, 0);
  const base = end - optRdlen + keptLen + OPTION_HEADER;
  const pad = (block - (base % block)) % block;
  const rdlen = keptLen + OPTION_HEADER + pad;
  if (rdlen > 0xffff) return msg;
  const out = Buffer.alloc(base + pad);
  msg.copy(out, 0, 0, optRdata);
  out.writeUInt16BE(rdlen, optRdata - 2);
  let w = optRdata;
  for (const b of kept) w += b.copy(out, w);
  out.writeUInt16BE(OPTION_PADDING, w);
  out.writeUInt16BE(pad, w + 2);
  w += OPTION_HEADER + pad; // the padding octets are zero (Buffer.alloc), RFC 7830 §3
  msg.copy(out, w, rdEnd);
  return out;
}
