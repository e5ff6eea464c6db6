// EDNS(0) Padding of queries sent encrypted (RFC 7830), so their length says
// little about the name asked: the Block-Length Padding strategy of RFC 8467
// §4.1, queries padded to a multiple of 128 octets.

import { HEADER_SIZE, TYPE } from './constants.js';
import { skipName } from './name.js';

/** EDNS option code of Padding (RFC 7830 §3). */
export const OPTION_PADDING = 12;

/**
 * padQuery returns `msg` with an EDNS(0) Padding option (RFC 7830) added to
 * its OPT record so that its length is a multiple of `block` (RFC 8467 §4.1:
 * 128 for queries). The OPT must be the message's last record, as pvdns's
 * queries have it; a message without one, one already padded, or one it
 * cannot read is returned as it is: padding is an improvement, never a
 * reason to fail a query.
 */
export function padQuery(msg: Buffer, block = 128): Buffer {
  if (msg.length < HEADER_SIZE) return msg;
  const qd = msg.readUInt16BE(4);
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  if (records === 0) return msg;
  let off = HEADER_SIZE;
  for (let i = 0; i < qd; i++) {
    off = skipName(msg, off, msg.length);
    if (off < 0 || off + 4 > msg.length) return msg;
    off += 4;
  }
  let optAt = -1;
  for (let i = 0; i < records; i++) {
    const start = off;
    off = skipName(msg, off, msg.length);
    if (off < 0 || off + 10 > msg.length) return msg;
    const next = off + 10 + msg.readUInt16BE(off + 8);
    if (next > msg.length) return msg;
    if (msg.readUInt16BE(off) === TYPE.OPT) optAt = i === records - 1 && msg[start] === 0 ? off : -2;
    off = next;
  }
  // Only an OPT that ends the message can grow without moving anything after it.
  if (optAt < 0 || off !== msg.length) return msg;
  const rdStart = optAt + 10;
  for (let o = rdStart; o + 4 <= msg.length; o += 4 + msg.readUInt16BE(o + 2)) {
    if (msg.readUInt16BE(o) === OPTION_PADDING) return msg;
  }
  const padding = (block - ((msg.length + 4) % block)) % block;
  const out = Buffer.alloc(msg.length + 4 + padding);
  msg.copy(out);
  out.writeUInt16BE(msg.readUInt16BE(optAt + 8) + 4 + padding, optAt + 8);
  out.writeUInt16BE(OPTION_PADDING, msg.length);
  out.writeUInt16BE(padding, msg.length + 2);
  return out;
}
