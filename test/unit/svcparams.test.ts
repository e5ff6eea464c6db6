// The SvcParams reader (src/dns/svcparams.ts) DDR's SVCB records and DNR's
// Encrypted DNS option share: RFC 9460 §2.2's key order and lengths, each
// value's format (§7, §8; RFC 9461 §5), the "mandatory" list against the
// keys a caller understands, on wire vectors written octet by octet.

import { describe, expect, it } from 'vitest';
import { READ_KEYS, SVC_KEY, readSvcParams, type SvcParams } from '../../src/dns/svcparams.js';

/** The octets of a hex string, spaces allowed. */
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

/** readSvcParams over the whole of b, with every key understood unless told. */
const read = (b: Uint8Array, understood: ReadonlySet<number> = READ_KEYS): SvcParams | string => readSvcParams(b, 0, b.length, understood);

/**
 * mandatory=port, alpn=dot,h2, port=8853, ipv4hint=192.0.2.1,
 * ipv6hint=2001:db8::53, dohpath=/dns-query{?dns} (RFC 9460 §2.2 wire form).
 */
const GOOD = hex(`
  0000 0002 0003
  0001 0007 03646f74 026832
  0003 0002 2295
  0004 0004 c0000201
  0006 0010 20010db8000000000000000000000053
  0007 0010 2f646e732d71756572797b3f646e737d
`);

describe('readSvcParams (RFC 9460 §2.2)', () => {
  it('reads a list with every key it knows', () => {
    expect(read(GOOD)).toEqual({
      alpn: ['dot', 'h2'],
      noDefaultAlpn: false,
      port: 8853,
      ipv4hint: ['192.0.2.1'],
      ipv6hint: ['2001:db8::53'],
      dohpath: '/dns-query{?dns}',
      mandatory: [SVC_KEY.port],
      keys: [0, 1, 3, 4, 6, 7],
    });
  });

  it('reads only between the offsets given, from a Buffer as from a Uint8Array', () => {
    // Two octets of something else before, a key that must not be read after.
    const framed = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.from(hex('0001 0004 03646f74 0002 0000')), Buffer.from(hex('0003 0001 00'))]);
    expect(readSvcParams(framed, 2, framed.length - 5, READ_KEYS)).toMatchObject({ alpn: ['dot'], noDefaultAlpn: true, port: null, keys: [1, 2] });
    expect(read(new Uint8Array(0))).toMatchObject({ alpn: [], keys: [] });
  });

  it('ignores a key it does not know unless "mandatory" lists it (RFC 9460 §8)', () => {
    // alpn=dot, key9="xy", key65000 empty
    expect(read(hex('0001 0004 03646f74  0009 0002 7879  fde8 0000'))).toMatchObject({ alpn: ['dot'], keys: [1, 9, 65000] });
    // mandatory=key9 with key9 present: understood by no caller
    expect(read(hex('0000 0002 0009  0001 0004 03646f74  0009 0002 7879'))).toBe('"mandatory" lists key9, which pvdns does not support (RFC 9460 §8: the list is passed over)');
    // ech (5) is read by nobody: mandatory=ech makes the list unusable
    expect(read(hex('0000 0002 0005  0001 0004 03646f74  0005 0001 00'))).toMatch(/lists key5, which pvdns does not support/);
  });

  it('checks "mandatory" against the keys the caller understands', () => {
    // mandatory=ipv4hint, alpn=dot, ipv4hint=192.0.2.1: usable by DDR, not by a caller without hints (DNR)
    const list = hex('0000 0002 0004  0001 0004 03646f74  0004 0004 c0000201');
    expect(read(list)).toMatchObject({ mandatory: [4], ipv4hint: ['192.0.2.1'] });
    const noHints = new Set([SVC_KEY.alpn, SVC_KEY.noDefaultAlpn, SVC_KEY.port, SVC_KEY.dohpath]);
    expect(read(list, noHints)).toMatch(/lists key4, which pvdns does not support/);
  });

  it('refuses keys out of order or repeated (RFC 9460 §2.2)', () => {
    // port then alpn
    expect(read(hex('0003 0002 0035  0001 0004 03646f74'))).toBe('keys out of order: key1 follows key3 (RFC 9460 §2.2: strictly increasing)');
    // alpn twice
    expect(read(hex('0001 0004 03646f74  0001 0003 026832'))).toMatch(/key1 follows key1/);
  });

  it('refuses a truncated list', () => {
    // a key and half its length field
    expect(read(hex('0001 0004 03646f74  0003 00'))).toBe('SvcParams end in a truncated key (RFC 9460 §2.2)');
    // a value longer than what is left
    expect(read(hex('0001 0005 03646f74'))).toBe('SvcParam key1 runs past the end of the SvcParams (RFC 9460 §2.2)');
    // Every cut of the good list inside a key is refused with one line, never thrown; a cut
    // between keys is a shorter list, usable once the port "mandatory" asks for is in it.
    const ends = [6, 17, 23, 31, 51, 71];
    for (let n = 1; n < GOOD.length; n++) {
      const r = readSvcParams(GOOD, 0, n, READ_KEYS);
      if (ends.includes(n) && n >= 23) expect(r, `cut at ${n}`).toMatchObject({ port: 8853 });
      else if (typeof r !== 'string') expect.fail(`a cut at ${n} parsed`);
      else expect(r).not.toMatch(/[\n\r]/);
    }
  });

  it('refuses a bad "mandatory" list (RFC 9460 §8)', () => {
    expect(read(hex('0000 0000  0001 0004 03646f74'))).toMatch(/"mandatory" SvcParam of length 0/);
    expect(read(hex('0000 0003 000300  0001 0004 03646f74'))).toMatch(/"mandatory" SvcParam of length 3/);
    expect(read(hex('0000 0004 0000 0001  0001 0004 03646f74'))).toBe('a "mandatory" SvcParam that lists itself (RFC 9460 §8)');
    expect(read(hex('0000 0004 0003 0001  0001 0004 03646f74  0003 0002 0035'))).toMatch(/"mandatory" keys not in strictly increasing order/);
    // mandatory=port with no port
    expect(read(hex('0000 0002 0003  0001 0004 03646f74'))).toBe('"mandatory" lists key3, which is absent (RFC 9460 §8)');
  });

  it("refuses a value that breaks its key's format", () => {
    expect(read(hex('0001 0000'))).toMatch(/an empty "alpn"/);
    expect(read(hex('0001 0002 0500'))).toMatch(/a malformed "alpn"/);
    expect(read(hex('0001 0002 0061  0002 0000'))).toMatch(/a malformed "alpn"/); // an empty protocol ID
    expect(read(hex('0002 0001 00'))).toMatch(/"no-default-alpn" SvcParam of length 1/);
    expect(read(hex('0003 0001 35'))).toMatch(/"port" SvcParam of length 1 \(RFC 9460 §7\.2: 2\)/);
    expect(read(hex('0004 0003 c00002'))).toMatch(/"ipv4hint" SvcParam of length 3/);
    expect(read(hex('0006 0004 20010db8'))).toMatch(/"ipv6hint" SvcParam of length 4/);
    expect(read(hex('0007 0002 c328'))).toMatch(/"dohpath" SvcParam that is not UTF-8/);
  });
});
