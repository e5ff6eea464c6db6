// Which clients pvdns serves (src/server/access.ts): everyone outside
// access.allow gets REFUSED, so a wrong decision either locks users out or
// opens the resolver to the network.

import { describe, expect, it } from 'vitest';
import { AccessList } from '../../src/server/access.js';

describe('AccessList', () => {
  const list = new AccessList(['127.0.0.0/8', '::1/128', '192.168.1.0/24', '2001:db8:1::/48', 'fe80::/10']);

  it.each<[string, boolean]>([
    // IPv4 prefixes, edges included
    ['127.0.0.1', true],
    ['127.0.0.53', true],
    ['127.255.255.255', true],
    ['126.255.255.255', false],
    ['128.0.0.0', false],
    ['192.168.1.0', true],
    ['192.168.1.255', true],
    ['192.168.0.255', false],
    ['192.168.2.0', false],
    ['10.0.0.1', false],
    // IPv6 prefixes
    ['::1', true],
    ['::2', false],
    ['::', false],
    ['2001:db8:1::53', true],
    ['2001:db8:1:ffff:ffff:ffff:ffff:ffff', true],
    ['2001:db8:2::1', false],
    ['2001:DB8:1::1', true], // as written by some tools
    ['fe80::1', true],
    ['fe80::1%eth0', true], // scoped, as the socket reports link-local clients
    ['fec0::1', false],
    // IPv4 clients on a dual-stack socket (RFC 4291 §2.5.5.2)
    ['::ffff:127.0.0.1', true],
    ['::ffff:192.168.1.7', true],
    ['::ffff:192.168.2.7', false],
    ['::ffff:10.0.0.1', false],
  ])('%s → %s', (address, allowed) => {
    expect(list.allows(address)).toBe(allowed);
  });

  it('an IPv4 prefix does not admit IPv6 clients, nor an IPv6 prefix IPv4 ones', () => {
    const v4 = new AccessList(['0.0.0.0/0']);
    expect(v4.allows('192.0.2.1')).toBe(true);
    expect(v4.allows('2001:db8::1')).toBe(false);
    expect(v4.allows('::ffff:192.0.2.1')).toBe(true); // a v4 client, however it is written
    const v6 = new AccessList(['::/0']);
    expect(v6.allows('2001:db8::1')).toBe(true);
    expect(v6.allows('192.0.2.1')).toBe(false);
    expect(v6.allows('::ffff:192.0.2.1')).toBe(false);
  });

  it('an IPv4-compatible address (::7f00:1, which Node prints as ::127.0.0.1) is an IPv6 client, not loopback (RFC 4291 §2.5.5.1)', () => {
    const loopback = new AccessList(['127.0.0.0/8', '::1/128']);
    // One address, two spellings: the decision must not depend on the spelling.
    expect(loopback.allows('::7f00:1')).toBe(false);
    expect(loopback.allows('::127.0.0.1')).toBe(false);
  });

  it.each(['', 'garbage', 'localhost', '999.1.1.1', '127.0.0.1.5', '127.0.0.1/8', '::1::1', '[::1]', '127.0.0.1:53'])(
    'refuses the unparseable client address %j',
    (address) => {
      expect(list.allows(address)).toBe(false);
    },
  );

  it('an empty allow list refuses everyone', () => {
    const none = new AccessList([]);
    expect(none.allows('127.0.0.1')).toBe(false);
    expect(none.allows('::1')).toBe(false);
  });

  it('refuses to be built from a bad prefix', () => {
    expect(() => new AccessList(['127.0.0.0/33'])).toThrow();
    expect(() => new AccessList(['localhost'])).toThrow();
  });

  it('gives the same decisions on repeated calls, also after many distinct clients', () => {
    const acl = new AccessList(['127.0.0.0/8', '::1/128']);
    const probes: Array<[string, boolean]> = [
      ['127.0.0.1', true],
      ['192.0.2.1', false],
      ['::1', true],
      ['::ffff:127.0.0.1', true],
      ['garbage', false],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [a, want] of probes) expect(acl.allows(a)).toBe(want);
    }
    // Enough distinct clients to overflow any memo, then the same questions again.
    for (let i = 0; i < 25_000; i++) {
      const a = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      if (acl.allows(a)) throw new Error(`${a} was allowed`);
    }
    for (const [a, want] of probes) expect(acl.allows(a)).toBe(want);
    expect(acl.allows('127.200.0.1')).toBe(true);
  });
});
