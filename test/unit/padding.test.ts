// EDNS(0) padding of queries (RFC 7830 §3, block-length policy of RFC 8467
// §4.1): lengths, the exact octets of the option, the OPT added when there
// is none, other options kept, and every padded query still a valid query.

import { describe, expect, it } from 'vitest';
import { TYPE } from '../../src/dns/constants.js';
import { encodeName } from '../../src/dns/name.js';
import { OPTION_PADDING, padQuery } from '../../src/dns/padding.js';
import { encodeQuery, PARSE_OK, parseQuery, questionMessage, type WireQuery } from '../../src/dns/query.js';

function question(name: string, qtype: number = TYPE.A): Buffer {
  const n = encodeName(name);
  const q = Buffer.alloc(n.length + 4);
  n.copy(q);
  q.writeUInt16BE(qtype, n.length);
  q.writeUInt16BE(1, n.length + 2);
  return q;
}

function parses(msg: Buffer): WireQuery {
  const q = {} as WireQuery;
  expect(parseQuery(msg, q)).toBe(PARSE_OK);
  return q;
}

/** The options of the (only) OPT record of a query with one question and only the OPT after it. */
function options(msg: Buffer, qEnd: number): Array<{ code: number; data: Buffer }> {
  const rdlen = msg.readUInt16BE(qEnd + 9);
  const out: Array<{ code: number; data: Buffer }> = [];
  for (let o = qEnd + 11; o < qEnd + 11 + rdlen; o += 4 + msg.readUInt16BE(o + 2)) {
    out.push({ code: msg.readUInt16BE(o), data: msg.subarray(o + 4, o + 4 + msg.readUInt16BE(o + 2)) });
  }
  return out;
}

describe('padQuery', () => {
  it('pads pvdns\'s own query to 128 octets: the exact octets of the OPT (RFC 7830 §3)', () => {
    // 12 header + 17 question (example.com A IN) + 11 OPT = 40; + 4 option header + 84 padding = 128.
    const msg = encodeQuery(0x1234, question('example.com'), false, true);
    expect(msg.length).toBe(40);
    const out = padQuery(msg);
    expect(out.length).toBe(128);
    // Header and question unchanged, ARCOUNT still 1.
    expect(out.subarray(0, 29)).toEqual(msg.subarray(0, 29));
    const opt = out.subarray(29);
    expect(opt.subarray(0, 11).toString('hex')).toBe(
      '00' + '0029' + '04d0' + '00008000' + (4 + 84).toString(16).padStart(4, '0'),
    );
    expect(opt.subarray(11, 15).toString('hex')).toBe('000c' + '0054'); // code 12, length 84
    expect(opt.subarray(15).equals(Buffer.alloc(84))).toBe(true); // RFC 7830 §3: zero octets
    const q = parses(out);
    expect(q.dnssecOk).toBe(true);
    expect(q.udpSize).toBe(1232);
    expect(msg.length).toBe(40); // the input is not modified
  });

  it('makes every length a multiple of 128, the next one up (RFC 8467 §4.1)', () => {
    for (let n = 1; n <= 250; n += 7) {
      const label = 'a'.repeat(Math.min(n, 63));
      const name = [label, 'b'.repeat(Math.max(0, Math.min(63, n - 63))) || 'x', 'example'].join('.');
      const msg = encodeQuery(7, question(name), false, false);
      const out = padQuery(msg);
      expect(out.length % 128).toBe(0);
      expect(out.length).toBe(Math.ceil((msg.length + 4) / 128) * 128);
      parses(out);
    }
  });

  it('adds a zero-length padding option when the query already ends on a block', () => {
    // 124 octets + the 4-octet option header = 128: no padding octets.
    const msg = encodeQuery(7, question('a'.repeat(63) + '.' + 'b'.repeat(31)), false, false);
    expect(msg.length).toBe(124);
    const out = padQuery(msg);
    expect(out.length).toBe(128);
    expect(options(out, 12 + 97 + 4)).toEqual([{ code: OPTION_PADDING, data: Buffer.alloc(0) }]);
    // 125 octets spill into the next block.
    const over = padQuery(encodeQuery(7, question('a'.repeat(63) + '.' + 'b'.repeat(32)), false, false));
    expect(over.length).toBe(256);
  });

  it('adds an OPT to a query that has none, ARCOUNT one more', () => {
    // questionMessage: 12 + 17, no OPT; + 11 OPT + 4 option header = 44, padded to 128.
    const msg = questionMessage(encodeName('example.com'), TYPE.AAAA);
    expect(msg.readUInt16BE(10)).toBe(0);
    const out = padQuery(msg);
    expect(out.length).toBe(128);
    expect(out.readUInt16BE(10)).toBe(1);
    const q = parses(out);
    expect(q.edns).toBe(true);
    expect(q.qtype).toBe(TYPE.AAAA);
    expect(options(out, 29)).toEqual([{ code: OPTION_PADDING, data: Buffer.alloc(84) }]);
  });

  it('keeps other options byte for byte and replaces an old padding option', () => {
    const base = encodeQuery(9, question('example.com'), false, false);
    // Give the OPT a cookie (RFC 7873, code 10, 8 octets) and a 3-octet padding option of nonzero junk.
    const cookie = Buffer.from('000a0008' + '0102030405060708', 'hex');
    const oldPad = Buffer.from('000c0003' + 'ffffff', 'hex');
    const msg = Buffer.concat([base, cookie, oldPad]);
    msg.writeUInt16BE(cookie.length + oldPad.length, base.length - 2);
    parses(msg);
    const out = padQuery(msg);
    expect(out.length).toBe(128);
    const opts = options(out, 29);
    expect(opts.map((o) => o.code)).toEqual([10, OPTION_PADDING]);
    expect(opts[0]!.data.toString('hex')).toBe('0102030405060708');
    // 40 + 12 (cookie) + 4 = 56 → 72 octets of zero padding.
    expect(opts[1]!.data).toEqual(Buffer.alloc(72));
    parses(out);
  });

  it('pads to another block length when asked', () => {
    const out = padQuery(encodeQuery(1, question('example.com'), false, false), 468);
    expect(out.length).toBe(468);
  });

  it('returns an unreadable message as it is', () => {
    const msg = encodeQuery(1, question('example.com'), false, false);
    const cut = msg.subarray(0, msg.length - 3);
    expect(padQuery(cut)).toBe(cut);
    const short = Buffer.alloc(5);
    expect(padQuery(short)).toBe(short);
    const badOpts = Buffer.concat([msg, Buffer.from('000a00', 'hex')]);
    badOpts.writeUInt16BE(3, msg.length - 2); // an option header cut short
    expect(padQuery(badOpts)).toBe(badOpts);
  });
});
