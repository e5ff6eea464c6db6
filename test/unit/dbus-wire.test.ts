// The D-Bus wire format (src/dbus/wire.ts): what pvdns reads from
// systemd-resolved and NetworkManager and writes back. The vectors are built
// by hand from the D-Bus Specification ("Marshaling (Wire Format)"); two
// whole messages were captured from busctl and dbus-send on a private bus
// (dbus-monitor --binary), so a misreading of the spec that our own writer
// shares with our reader still shows.

import { describe, expect, it } from 'vitest';
import {
  DBusWireError,
  decodeMessage,
  encodeMessage,
  frameLength,
  marshal,
  parseSignature,
  splitSignature,
  unmarshal,
  Variant,
  type DBusMessage,
} from '../../src/dbus/wire.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const refused = (fn: () => unknown, pattern: RegExp): void => {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DBusWireError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain('\n');
};

// `busctl emit /org/pvdns/Capture org.pvdns.Capture Changed 'sa{sv}as' eth0 3 Servers as 2 192.0.2.1 fd00::1
//  Ifindex i 3 Default b true 1 Domains`, as the bus delivered it (sender :1.4).
const BUSCTL_SIGNAL = hex(
  '6c0401017c000000020000006d00000001016f00120000002f6f72672f7076646e732f4361707475726500000000000002017300110000006f72672e7076646e732e436170747572650000000000000003017300070000004368616e67656400080167000873617b73767d617300000007017300040000003a312e34000000000400000065746830000000005c000000070000005365727665727300026173001c000000090000003139322e302e322e3100000007000000666430303a3a3100070000004966696e646578000169000003000000000000000700000044656661756c740001620000010000000c00000007000000446f6d61696e7300',
);
// `dbus-send --type=signal /org/pvdns/Capture org.pvdns.Capture.Sent string:héllo uint64:18446744073709551615
//  int16:-2 byte:7 array:string:a,b double:1.5` (sender :1.5).
const DBUS_SEND_SIGNAL = hex(
  '6c04010138000000020000006d00000001016f00120000002f6f72672f7076646e732f4361707475726500000000000002017300110000006f72672e7076646e732e4361707475726500000000000000030173000400000053656e7400000000080167000773746e796173640000000007017300040000003a312e35000000000600000068c3a96c6c6f000000000000fffffffffffffffffeff07000e00000001000000610000000100000062000000000000000000f83f',
);

describe('marshal: hand-built vectors from the spec', () => {
  it('aligns each value to its size, counted from the start of the body', () => {
    expect(marshal('yu', [1, 2])).toEqual(hex('01 000000 02000000'));
    expect(marshal('yn', [1, -2])).toEqual(hex('01 00 feff'));
    expect(marshal('yx', [1, -1n])).toEqual(hex('01 00000000000000 ffffffffffffffff'));
    expect(marshal('yd', [1, 1.5])).toEqual(hex('01 00000000000000 000000000000f83f'));
    expect(marshal('b', [true])).toEqual(hex('01000000'));
  });

  it('writes strings with a uint32 length and a NUL, signatures with a byte length', () => {
    expect(marshal('s', ['ab'])).toEqual(hex('02000000 6162 00'));
    expect(marshal('o', ['/a'])).toEqual(hex('02000000 2f61 00'));
    expect(marshal('g', ['as'])).toEqual(hex('02 6173 00'));
    expect(marshal('s', ['é'])).toEqual(hex('02000000 c3a9 00'));
  });

  it('starts a struct on 8 bytes, after an odd field too', () => {
    expect(marshal('y(yt)', [1, [2, 3n]])).toEqual(hex('01 00000000000000 02 00000000000000 0300000000000000'));
    expect(marshal('ya(y)', [9, [[1], [2]]])).toEqual(hex('09 000000 09000000 01 00000000000000 02'));
  });

  it('pads an empty array to its element alignment, the padding not counted in its length', () => {
    expect(marshal('at', [[]])).toEqual(hex('00000000 00000000'));
    expect(marshal('at', [[5n]])).toEqual(hex('08000000 00000000 0500000000000000'));
  });

  it('writes a{sv} entries as 8-aligned structs of key and variant', () => {
    // length 16 (from offset 8), "a", variant of signature "u", 3 padding bytes, 1
    expect(marshal('a{sv}', [{ a: new Variant('u', 1) }])).toEqual(hex('10000000 00000000 01000000 6100 017500 000000 01000000'));
    expect(marshal('a{sv}', [new Map([['a', new Variant('u', 1)]])])).toEqual(marshal('a{sv}', [{ a: new Variant('u', 1) }]));
  });

  it('writes big-endian when asked', () => {
    expect(marshal('us', [1, 'hi'], false)).toEqual(hex('00000001 00000002 6869 00'));
  });
});

describe('unmarshal', () => {
  it('reads the hand-built vectors back', () => {
    expect(unmarshal('yu', hex('01 000000 02000000'))).toEqual([1, 2]);
    expect(unmarshal('y(yt)', hex('01 00000000000000 02 00000000000000 0300000000000000'))).toEqual([1, [2, 3n]]);
    expect(unmarshal('at', hex('00000000 00000000'))).toEqual([[]]);
    const [dict] = unmarshal('a{sv}', hex('10000000 00000000 01000000 6100 017500 000000 01000000'));
    expect(Object.getPrototypeOf(dict)).toBeNull();
    expect({ ...(dict as object) }).toEqual({ a: 1 });
  });

  it('reads big-endian', () => {
    expect(unmarshal('us', hex('00000001 00000002 6869 00'), 0, false)).toEqual([1, 'hi']);
    expect(unmarshal('nx', hex('fffe 0000 0000 0000 0000000000000100'), 0, false)).toEqual([-2, 256n]);
  });

  it('round-trips every basic type and container, in both byte orders', () => {
    const sig = 'ybnqiuxtdsogayasa{sv}a{ua(sb)}(yv)v';
    const values = [
      255,
      false,
      -32768,
      65535,
      -2147483648,
      4294967295,
      -(2n ** 63n),
      2n ** 64n - 1n,
      -0.25,
      'pvd €',
      '/org/freedesktop/resolve1/link/_32',
      'a{sv}',
      Buffer.from([0, 1, 2]),
      ['', 'x'],
      { DNS: new Variant('a(iay)', [[2, Buffer.from([192, 0, 2, 1])]]), Scopes: new Variant('t', 3n) },
      new Map([[7, [['x', true]]]]),
      [1, new Variant('as', ['deep'])],
      new Variant('a{sv}', { inner: new Variant('v', new Variant('s', 'two deep')) }),
    ];
    for (const le of [true, false]) {
      const out = unmarshal(sig, marshal(sig, values, le), 0, le);
      expect(out.slice(0, 14)).toEqual(values.slice(0, 14));
      expect({ ...(out[14] as object) }).toEqual({ DNS: [[2, Buffer.from([192, 0, 2, 1])]], Scopes: 3n });
      expect(out[15]).toEqual(new Map([[7, [['x', true]]]]));
      expect(out[16]).toEqual([1, ['deep']]);
      expect({ ...(out[17] as object) }).toEqual({ inner: 'two deep' });
    }
  });

  it('reads at an offset, alignment counted from the start of the buffer', () => {
    expect(unmarshal('u', hex('ff 000000 2a000000'), 1)).toEqual([42]);
  });

  it('keeps a key named __proto__ as data', () => {
    const [d] = unmarshal('a{ss}', marshal('a{ss}', [new Map([['__proto__', 'x']])]));
    expect(Object.keys(d as object)).toEqual(['__proto__']);
  });
});

describe('refusals', () => {
  it('refuses truncated input', () => {
    refused(() => unmarshal('u', hex('010000')), /truncated/);
    refused(() => unmarshal('s', hex('05000000 6162 00')), /truncated/);
    refused(() => unmarshal('ay', hex('08000000 0102')), /truncated/);
    refused(() => unmarshal('a{sv}', hex('10000000 00000000 01000000 6100 017500 000000 0100')), /truncated/);
    // an element running past its array's length
    refused(() => unmarshal('au', hex('02000000 01000000')), /truncated/);
  });

  it('refuses padding that is not zero', () => {
    refused(() => unmarshal('yu', hex('01 000100 02000000')), /padding byte at offset 2/);
    refused(() => unmarshal('y(y)', hex('01 00000000000001 02')), /padding/);
  });

  it('refuses arrays over 64 MiB, before reading them', () => {
    refused(() => unmarshal('ay', hex('01000004')), /over 64 MiB/);
  });

  it('refuses nesting over 64, on read and on write', () => {
    let v: unknown = new Variant('y', 7);
    for (let i = 0; i < 70; i++) v = new Variant('v', v);
    refused(() => marshal('v', [v]), /nested more than 64 deep/);
    const deep = Buffer.concat([...Array.from({ length: 70 }, () => hex('017600')), hex('017900 07')]);
    refused(() => unmarshal('v', deep), /nested more than 64 deep/);
    refused(() => parseSignature(`${'a'.repeat(33)}y`), /arrays more than 32 deep/);
    refused(() => parseSignature(`${'('.repeat(33)}y${')'.repeat(33)}`), /structs more than 32 deep/);
  });

  it('refuses strings that are not NUL-terminated, hold NUL or are not UTF-8', () => {
    refused(() => unmarshal('s', hex('02000000 6162 01')), /not NUL-terminated/);
    refused(() => unmarshal('s', hex('02000000 6100 00')), /contains NUL/);
    refused(() => unmarshal('s', hex('02000000 c328 00')), /not valid UTF-8/);
    refused(() => unmarshal('g', hex('01 73 01')), /not NUL-terminated/);
  });

  it('refuses booleans other than 0 and 1, bad object paths and bad signatures', () => {
    refused(() => unmarshal('b', hex('02000000')), /not 0 or 1/);
    refused(() => unmarshal('o', hex('02000000 2f2f 00')), /object path/);
    refused(() => unmarshal('o', hex('03000000 612f62 00')), /object path/);
    refused(() => unmarshal('v', hex('02 7575 00')), /not one complete type/);
    refused(() => unmarshal('v', hex('02 617a 00')), /"z" where a type belongs/);
    refused(() => parseSignature('a{vs}'), /dict key that is not a basic type/);
    refused(() => parseSignature('{ss}'), /"\{" where a type belongs/);
    refused(() => parseSignature('()'), /empty struct/);
    refused(() => parseSignature('(s'), /unclosed struct/);
    refused(() => parseSignature('a'), /ends inside a type/);
    refused(() => parseSignature('y'.repeat(256)), /longer than 255/);
  });

  it('refuses unix fds with a clear error', () => {
    refused(() => marshal('h', [3]), /unix fds .* not supported/);
    refused(() => unmarshal('h', hex('00000000')), /unix fds .* not supported/);
  });

  it('refuses values that do not fit the signature', () => {
    refused(() => marshal('y', [256]), /cannot write 256 as D-Bus "y"/);
    refused(() => marshal('u', [-1]), /"u"/);
    refused(() => marshal('t', [-1n]), /out of range/);
    refused(() => marshal('s', [1]), /cannot write 1 as D-Bus "s"/);
    refused(() => marshal('s', ['a\0b']), /contains NUL/);
    refused(() => marshal('o', ['relative']), /not an object path/);
    refused(() => marshal('v', ['bare']), /written from a Variant/);
    refused(() => marshal('(ss)', [['one']]), /struct is an array of 2 values/);
    refused(() => marshal('a{us}', [{ 1: 'x' }]), /a dict is a Map/);
    refused(() => marshal('ss', ['one']), /has 2 values, got 1/);
  });
});

describe('messages', () => {
  it('reads a signal busctl sent, a{sv} variants unwrapped', () => {
    expect(frameLength(BUSCTL_SIGNAL.subarray(0, 16))).toBe(BUSCTL_SIGNAL.length);
    const d = decodeMessage(BUSCTL_SIGNAL)!;
    expect(d.flags).toBe(1); // NO_REPLY_EXPECTED
    const { body, ...header } = d.message;
    expect(header).toEqual({ type: 'signal', serial: 2, path: '/org/pvdns/Capture', interface: 'org.pvdns.Capture', member: 'Changed', sender: ':1.4', signature: 'sa{sv}as' });
    expect(body[0]).toBe('eth0');
    expect({ ...(body[1] as object) }).toEqual({ Servers: ['192.0.2.1', 'fd00::1'], Ifindex: 3, Default: true });
    expect(body[2]).toEqual(['Domains']);
  });

  it('reads a signal dbus-send sent: UTF-8, uint64 max, int16, byte, array, double', () => {
    const { message } = decodeMessage(DBUS_SEND_SIGNAL)!;
    expect(message.member).toBe('Sent');
    expect(message.signature).toBe('stnyasd');
    expect(message.body).toEqual(['héllo', 2n ** 64n - 1n, -2, 7, ['a', 'b'], 1.5]);
  });

  it('writes messages it reads back the same, with the body bytes dbus-send wrote', () => {
    const m: DBusMessage = { type: 'signal', serial: 2, path: '/org/pvdns/Capture', interface: 'org.pvdns.Capture', member: 'Sent', sender: ':1.5', signature: 'stnyasd', body: ['héllo', 2n ** 64n - 1n, -2, 7, ['a', 'b'], 1.5] };
    const ours = encodeMessage(m, 1);
    // The bus appends the sender field, so the headers differ in order only; the bodies (56 bytes) are equal.
    expect(ours.subarray(-56)).toEqual(DBUS_SEND_SIGNAL.subarray(-56));
    expect(ours.length).toBe(DBUS_SEND_SIGNAL.length);
    expect(decodeMessage(ours)).toEqual(decodeMessage(DBUS_SEND_SIGNAL));
    const call: DBusMessage = { type: 'method_call', serial: 0xffffffff, destination: 'org.freedesktop.DBus', path: '/', interface: 'org.freedesktop.DBus', member: 'Hello', signature: '', body: [] };
    expect(decodeMessage(encodeMessage(call))).toEqual({ message: call, flags: 0 });
    const err: DBusMessage = { type: 'error', serial: 9, replySerial: 3, errorName: 'org.freedesktop.DBus.Error.Failed', signature: 's', body: ['no'] };
    expect(decodeMessage(encodeMessage(err))!.message).toEqual(err);
  });

  it('reads a big-endian message', () => {
    const body = marshal('s', ['hi'], false);
    const header = marshal('yyyyuua(yv)', [0x42, 2, 0, 1, body.length, 7, [[5, new Variant('u', 3)], [8, new Variant('g', 's')]]], false);
    const msg = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8), body]);
    expect(decodeMessage(msg)!.message).toEqual({ type: 'method_return', serial: 7, replySerial: 3, signature: 's', body: ['hi'] });
  });

  it('refuses bad messages', () => {
    const good = encodeMessage({ type: 'method_return', serial: 1, replySerial: 1, signature: 'u', body: [1] });
    const patched = (at: number, byte: number): Buffer => {
      const b = Buffer.from(good);
      b[at] = byte;
      return b;
    };
    refused(() => frameLength(patched(0, 0x78)), /byte order 0x78/);
    refused(() => frameLength(patched(3, 2)), /protocol version 2/);
    refused(() => frameLength(hex('6c020001 00000008 01000000 00000000')), /over the 128 MiB limit/);
    refused(() => decodeMessage(good.subarray(0, good.length - 1)), /its header says/);
    refused(() => decodeMessage(patched(8, 0).fill(0, 8, 12)), /serial is 0/);
    // reply serial (field 5) sent as a string
    const wrongType = Buffer.concat([marshal('yyyyuua(yv)', [0x6c, 2, 0, 1, 0, 1, [[5, new Variant('s', 'x')]]])]);
    refused(() => decodeMessage(Buffer.concat([wrongType, Buffer.alloc((8 - (wrongType.length % 8)) % 8)])), /header field 5 is "s", not "u"/);
    const noReplySerial = marshal('yyyyuua(yv)', [0x6c, 2, 0, 1, 0, 1, []]);
    refused(() => decodeMessage(noReplySerial), /without the header fields it requires/);
    const fds = marshal('yyyyuua(yv)', [0x6c, 2, 0, 1, 0, 1, [[9, new Variant('u', 1)]]]);
    refused(() => decodeMessage(Buffer.concat([fds, Buffer.alloc((8 - (fds.length % 8)) % 8)])), /unix fds/);
    // a body longer than its signature's values
    const long = marshal('yyyyuua(yv)', [0x6c, 2, 0, 1, 8, 1, [[5, new Variant('u', 1)], [8, new Variant('g', 'u')]]]);
    refused(() => decodeMessage(Buffer.concat([long, Buffer.alloc((8 - (long.length % 8)) % 8), Buffer.alloc(8)])), /body of 8 bytes holds 4 bytes/);
  });

  it('ignores a message type it does not know', () => {
    const unknown = marshal('yyyyuua(yv)', [0x6c, 9, 0, 1, 0, 1, []]);
    expect(decodeMessage(unknown)).toBeNull();
  });

  it('splits a signature into complete types', () => {
    expect(splitSignature('sa{sv}as(iay)')).toEqual(['s', 'a{sv}', 'as', '(iay)']);
  });
});
