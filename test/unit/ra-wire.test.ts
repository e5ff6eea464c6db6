// The Router Advertisement parser (src/pvd/sources/ra-wire.ts): RFC 4861
// §6.1.2's checks, each option pvdns reads, the PvD option with its nested
// options and inner header (RFC 8801 §3.1), the Encrypted DNS option (RFC
// 9463 §6.1) and its SvcParams (RFC 9460 §2.2), one RA built by scapy, and
// malformed packets answered with one line, never an exception.

import { describe, expect, it } from 'vitest';
import { parseRouterAdvertisement, type EncryptedDnsOption, type RouterAdvertisement } from '../../src/pvd/sources/ra-wire.js';
import { alpn, dnr, dnssl, dohpath, header, mandatory, option, pio, port, pref64, pvd, ra, rdnss, svcParam, wireName } from '../helpers/ra-packets.js';

const META = { source: 'fe80::1', hopLimit: 255 };

function parse(payload: Uint8Array, meta = META): RouterAdvertisement {
  const r = parseRouterAdvertisement(payload, meta);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

function problem(payload: Uint8Array, meta = META): string {
  const r = parseRouterAdvertisement(payload, meta);
  if (typeof r !== 'string') throw new Error('parsed, but should not have');
  expect(r).not.toContain('\n');
  return r;
}

describe('parseRouterAdvertisement', () => {
  it('reads the header and an RA without options', () => {
    const r = parse(ra({ routerLifetime: 1800, curHopLimit: 64, managed: true, reachableTimeMs: 30000, retransTimerMs: 1000 }));
    expect(r.header).toEqual({ curHopLimit: 64, managed: true, other: false, routerLifetime: 1800, reachableTimeMs: 30000, retransTimerMs: 1000 });
    expect(r.options).toEqual({ rdnss: [], dnssl: [], prefixes: [], pref64: [], dnr: [] });
    expect(r.pvd).toBeNull();
  });

  it('drops what RFC 4861 §6.1.2 says to drop', () => {
    expect(problem(ra({}), { source: 'fe80::1', hopLimit: 64 })).toMatch(/hop limit 64/);
    expect(problem(ra({}), { source: '2001:db8::1', hopLimit: 255 })).toMatch(/not a link-local/);
    expect(problem(ra({}).subarray(0, 15))).toMatch(/15 octets/);
    const wrongCode = ra({});
    wrongCode[1] = 1;
    expect(problem(wrongCode)).toMatch(/code 1/);
    const ns = ra({});
    ns[0] = 135;
    expect(problem(ns)).toMatch(/type 135/);
    expect(problem(ra({}, [3, 0, 0, 0, 0, 0, 0, 0]))).toMatch(/length 0/);
    expect(problem(ra({}, [25, 3, 0, 0, 0, 0, 0, 0]))).toMatch(/runs past the end/);
    expect(problem(ra({}, [1]))).toMatch(/truncated/);
  });

  it('accepts a scoped link-local source', () => {
    expect(parse(ra({}), { source: 'fe80::1%eth0', hopLimit: 255 }).header.routerLifetime).toBe(1800);
  });

  it('reads RDNSS, DNSSL, PIO and PREF64', () => {
    const r = parse(
      ra(
        {},
        rdnss(600, '2001:db8::53', 'fe80::53'),
        dnssl(900, 'Example.ORG.', 'lab.example.org'),
        pio('2001:db8:1::/64', { valid: 3600, preferred: 1800, autonomous: false }),
        pref64('64:ff9b::/96', 600),
        pref64('2001:db8:64::/48', 16),
      ),
    );
    expect(r.options.rdnss).toEqual([{ lifetime: 600, addresses: ['2001:db8::53', 'fe80::53'] }]);
    expect(r.options.dnssl).toEqual([{ lifetime: 900, domains: ['example.org', 'lab.example.org'] }]);
    expect(r.options.prefixes).toEqual([{ prefix: '2001:db8:1::/64', length: 64, onLink: true, autonomous: false, validLifetime: 3600, preferredLifetime: 1800 }]);
    expect(r.options.pref64).toEqual([
      { lifetime: 600, prefix: '64:ff9b::/96', length: 96 },
      { lifetime: 16, prefix: '2001:db8:64::/48', length: 48 },
    ]);
    expect(r.ignored).toEqual([]);
  });

  it('clears a PIO prefix past its length and keeps infinite lifetimes', () => {
    const r = parse(ra({}, pio('2001:db8:1:2:ffff::/48', { valid: 0xffffffff, preferred: 0xffffffff })));
    expect(r.options.prefixes[0]).toMatchObject({ prefix: '2001:db8:1::/48', validLifetime: 0xffffffff });
  });

  it('ignores options of the wrong length or with undefined codes, and keeps the rest', () => {
    const r = parse(
      ra(
        {},
        option(25, [0, 0, 0, 0, 0, 0]), // RDNSS of length 1
        option(38, [0, 0, ...new Array(20).fill(0)]), // PREF64 of length 3
        pref64('64:ff9b::/96', 600, 6), // PLC 6
        pio('fe80::/64'),
        option(3, [64, 0xc0, 0, 0, 0, 1]), // PIO of length 1
        rdnss(60, '2001:db8::1'),
      ),
    );
    expect(r.options.rdnss).toEqual([{ lifetime: 60, addresses: ['2001:db8::1'] }]);
    expect(r.options.pref64).toEqual([]);
    expect(r.options.prefixes).toEqual([]);
    expect(r.ignored).toHaveLength(5);
    expect(r.ignored.join('\n')).toMatch(/RDNSS option of length 1[\s\S]*PREF64 option of length 3[\s\S]*prefix length code 6[\s\S]*link-local prefix[\s\S]*length 1/);
  });

  it('leaves a DNSSL name that is no host name out, and ignores a compressed one', () => {
    expect(parse(ra({}, dnssl(60, 'ok.example', 'bad!name.example'))).options.dnssl).toEqual([{ lifetime: 60, domains: ['ok.example'] }]);
    const compressed = option(31, [0, 0, 0, 0, 0, 60, 2, 0x6f, 0x6b, 0xc0, 0x0c]);
    const r = parse(ra({}, compressed));
    expect(r.options.dnssl).toEqual([]);
    expect(r.ignored[0]).toMatch(/compression/);
  });

  it('reads the PvD option: flags, delay, sequence, PvD ID and nested options', () => {
    const r = parse(
      ra(
        { routerLifetime: 6000 },
        pio('2001:db8:cafe::/64'),
        pvd('PvD.Example.ORG', { http: true, legacy: true, delay: 1, sequence: 123 }, rdnss(600, '2001:db8:cafe::53', '2001:db8:f00d::53'), pio('2001:db8:f00d::/64')),
      ),
    );
    expect(r.options.prefixes.map((p) => p.prefix)).toEqual(['2001:db8:cafe::/64']);
    expect(r.pvd).toEqual({
      id: 'pvd.example.org',
      http: true,
      legacy: true,
      delay: 1,
      sequence: 123,
      header: null,
      options: {
        rdnss: [{ lifetime: 600, addresses: ['2001:db8:cafe::53', '2001:db8:f00d::53'] }],
        dnssl: [],
        prefixes: [expect.objectContaining({ prefix: '2001:db8:f00d::/64' })],
        pref64: [],
        dnr: [],
      },
    });
  });

  it('reads the inner RA header of a PvD option with the R flag (RFC 8801 §5.2)', () => {
    const r = parse(ra({ routerLifetime: 0 }, pvd('bar.example.org', { header: { routerLifetime: 1600, other: true } }, pio('2001:db8:f00d::/64'), rdnss(60, '2001:db8:f00d::53'))));
    expect(r.header.routerLifetime).toBe(0);
    expect(r.pvd!.header).toMatchObject({ routerLifetime: 1600, other: true });
    expect(r.pvd!.options.rdnss).toHaveLength(1);
    expect(r.pvd!.options.prefixes).toHaveLength(1);
  });

  it('matches the octets of RFC 8801 Figure 2 (example.org, sequence 123, delay 1)', () => {
    const bytes = pvd('example.org', { http: true, delay: 1, sequence: 123 });
    expect(bytes.slice(0, 24)).toEqual([21, 3, 0x80, 1, 0, 123, 7, ...Buffer.from('example'), 3, ...Buffer.from('org'), 0, 0, 0, 0, 0, 0]);
  });

  it('ignores a PvD option inside a PvD option, and a second PvD option', () => {
    const inner = pvd('inner.example', {}, rdnss(60, '2001:db8::2'));
    const r = parse(ra({}, pvd('outer.example', {}, inner, rdnss(60, '2001:db8::1')), pvd('second.example', {})));
    expect(r.pvd!.id).toBe('outer.example');
    expect(r.pvd!.options.rdnss).toEqual([{ lifetime: 60, addresses: ['2001:db8::1'] }]);
    expect(r.ignored).toEqual(['a PvD option inside a PvD option (RFC 8801 §3.2)', 'a second PvD option (RFC 8801 §3.4: only the first counts)']);
  });

  it('drops an RA whose PvD option cannot be read, and ignores a PvD ID that is no host name', () => {
    const bad = pvd('x.example', {}, rdnss(60, '2001:db8::1'));
    bad[bad.length - 23] = 9; // the nested RDNSS's length now runs past the PvD option
    expect(problem(ra({}, bad))).toMatch(/inside the PvD option.*runs past the end/);
    const noRoot = [21, 1, 0, 0, 0, 0, 5, 0x61]; // a label that runs out of the option
    expect(problem(ra({}, noRoot))).toMatch(/PvD ID: a name runs past/);
    const odd = parse(ra({}, pvd('bad_name!.example', {})));
    expect(odd.pvd).toBeNull();
    expect(odd.ignored[0]).toMatch(/PvD ID "bad_name!.example"/);
    const root = parse(ra({}, [21, 1, 0, 0, 0, 0, 0, 0]));
    expect(root.pvd).toBeNull();
    expect(root.ignored[0]).toMatch(/is the root/);
  });

  it('reads an RA built by scapy 2.5', () => {
    // /usr/bin/python3 with scapy 2.5: ICMPv6ND_RA(chlim=64, O=1, routerlifetime=1800)
    // / ICMPv6NDOptSrcLLAddr / ICMPv6NDOptPrefixInfo(2001:db8:cafe::/64, 86400, 14400)
    // / ICMPv6NDOptDNSSL(900, [example.org, lab.example.org]) / ICMPv6NDOptRDNSS(600, [fe80::53, 2001:db8:cafe::53])
    // / Raw(PvD option: H, delay 1, seq 123, example.org, with ICMPv6NDOptRDNSS(600, 2001:db8:f00d::53)
    //   and ICMPv6NDOptPrefixInfo(2001:db8:f00d::/64, 3600, 1800); scapy 2.5 has no PvD option class).
    const hex =
      '860000004048070800000000000000000101020000000001030440c000015180000038400000000020010db8cafe000000000000000000001f05000000000384076578616d706c65036f726700036c6162076578616d706c65036f72670000001905000000000258fe80000000000000000000000000005320010db8cafe00000000000000000053150a8001007b076578616d706c65036f7267000000000000190300000000025820010db8f00d00000000000000000053030440c000000e10000007080000000020010db8f00d00000000000000000000';
    const r = parse(Buffer.from(hex, 'hex'));
    expect(r.header).toMatchObject({ curHopLimit: 64, other: true, managed: false, routerLifetime: 1800 });
    expect(r.options.prefixes).toEqual([{ prefix: '2001:db8:cafe::/64', length: 64, onLink: true, autonomous: true, validLifetime: 86400, preferredLifetime: 14400 }]);
    expect(r.options.dnssl).toEqual([{ lifetime: 900, domains: ['example.org', 'lab.example.org'] }]);
    expect(r.options.rdnss).toEqual([{ lifetime: 600, addresses: ['fe80::53', '2001:db8:cafe::53'] }]);
    expect(r.pvd).toMatchObject({ id: 'example.org', http: true, legacy: false, delay: 1, sequence: 123, header: null });
    expect(r.pvd!.options.rdnss).toEqual([{ lifetime: 600, addresses: ['2001:db8:f00d::53'] }]);
    expect(r.pvd!.options.prefixes).toEqual([{ prefix: '2001:db8:f00d::/64', length: 64, onLink: true, autonomous: true, validLifetime: 3600, preferredLifetime: 1800 }]);
  });

  it('never throws: every truncation and random corruption of an RA is a result or one line', () => {
    const good = ra({}, rdnss(60, '2001:db8::1'), dnssl(60, 'a.example'), pio('2001:db8::/64'), pref64('64:ff9b::/96', 60), pvd('p.example', { header: {} }, rdnss(60, '2001:db8::2'), dnssl(60, 'b.example')));
    for (let n = 0; n <= good.length; n++) expect(() => parseRouterAdvertisement(good.subarray(0, n), META)).not.toThrow();
    let seed = 1;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 3; k++) b[16 + Math.floor(rand() * (b.length - 16))] = Math.floor(rand() * 256);
      const r = parseRouterAdvertisement(b, META);
      if (typeof r === 'string') expect(r).not.toMatch(/[\n\r]/);
    }
    expect(header().length).toBe(16);
  });
});

describe('the Encrypted DNS option (RFC 9463 §6.1)', () => {
  /** The one DNR option an RA carries, or the line its discarding left in `ignored`. */
  function one(opt: number[]): EncryptedDnsOption | string {
    const r = parse(ra({}, opt));
    if (r.options.dnr.length === 1) return r.options.dnr[0]!;
    expect(r.options.dnr).toEqual([]);
    expect(r.ignored).toHaveLength(1);
    expect(r.ignored[0]).not.toMatch(/[\n\r]/);
    return r.ignored[0]!;
  }

  it('reads a DoT resolver written octet by octet, and the builder writes the same octets', () => {
    // prettier-ignore
    const octets = [
      144, 7, 0, 1, // type, length 7 (56 octets), Service Priority 1
      0, 0, 0x07, 0x08, // Lifetime 1800
      0, 13, 3, 0x64, 0x6f, 0x74, 7, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0, // ADN Length 13, "dot.example."
      0, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53, // Addr Length 16, 2001:db8::53
      0, 8, 0, 1, 0, 4, 3, 0x64, 0x6f, 0x74, // SvcParams Length 8: alpn (key 1) = "dot"
      0, 0, 0, 0, 0, // padding to 56
    ];
    expect(dnr('dot.example', { priority: 1, lifetime: 1800, addresses: ['2001:db8::53'], params: [alpn('dot')] })).toEqual(octets);
    expect(one(octets)).toEqual({ priority: 1, lifetime: 1800, adn: 'dot.example', addresses: ['2001:db8::53'], params: { alpn: ['dot'], noDefaultAlpn: false, port: null, dohpath: null, mandatory: [] } });
  });

  it('reads the ADN encoded as RFC 9463 Figure 2 shows ("doh1.example.com")', () => {
    // Figure 2: 0x04 d o h 1 0x07 e x a m p l e 0x03 c o m 0x00 — 18 octets.
    const figure2 = [0x04, ...Buffer.from('doh1'), 0x07, ...Buffer.from('example'), 0x03, ...Buffer.from('com'), 0x00];
    expect(figure2).toHaveLength(18);
    expect(wireName('doh1.example.com')).toEqual(figure2);
    const o = one(dnr('', { adnWire: figure2, addresses: ['2001:db8::1'], params: [alpn('h2'), dohpath('/dns-query{?dns}')] }));
    expect(o).toMatchObject({ adn: 'doh1.example.com' });
  });

  it('writes the vectors of standards.md §6.9 (DoH with port and dohpath; ADN-only)', () => {
    const hex = (b: number[]): string => Buffer.from(b).toString('hex');
    const doh = dnr('doh.example', { priority: 2, lifetime: 1800, addresses: ['2001:db8::53'], params: [alpn('h2'), port(8443), dohpath('/dns-query{?dns}')] });
    expect(hex(doh)).toBe('900a000200000708000d03646f68076578616d706c6500001020010db80000000000000000000000530021000100030268320003000220fb000700102f646e732d71756572797b3f646e737d00000000');
    expect(one(doh)).toMatchObject({ priority: 2, adn: 'doh.example', params: { alpn: ['h2'], port: 8443, dohpath: '/dns-query{?dns}' } });
    const adnOnly = dnr('resolver.example', { priority: 3, lifetime: 600 });
    expect(hex(adnOnly)).toBe('90040003000002580012087265736f6c766572076578616d706c650000000000');
  });

  it('reads a DoH resolver with alpn, port and dohpath, and several addresses in order', () => {
    const o = one(dnr('DoH.Example.NET.', { priority: 10, lifetime: 0xffffffff, addresses: ['2001:db8::1', 'fe80::1'], params: [alpn('h2', 'h3'), port(8443), dohpath('/q{?dns}')] }));
    expect(o).toEqual({ priority: 10, lifetime: 0xffffffff, adn: 'doh.example.net', addresses: ['2001:db8::1', 'fe80::1'], params: { alpn: ['h2', 'h3'], noDefaultAlpn: false, port: 8443, dohpath: '/q{?dns}', mandatory: [] } });
  });

  it('reads lifetime 0 (the resolver MUST no longer be used) as it is, and ADN-only mode (§3.1.6) with no addresses', () => {
    expect(one(dnr('dot.example', { lifetime: 0, addresses: ['2001:db8::53'], params: [alpn('dot')] }))).toMatchObject({ lifetime: 0, addresses: ['2001:db8::53'] });
    expect(one(dnr('resolver.example', { priority: 3 }))).toEqual({ priority: 3, lifetime: 1800, adn: 'resolver.example', addresses: [], params: null });
  });

  it('reads it nested in a PvD option (RFC 8801 §3.1) as the PvD\'s', () => {
    const r = parse(ra({}, pvd('pvd.example', {}, rdnss(600, '2001:db8::53'), dnr('dot.example', { addresses: ['2001:db8::853'], params: [alpn('dot')] }))));
    expect(r.options.dnr).toEqual([]);
    expect(r.pvd!.options.dnr).toEqual([expect.objectContaining({ adn: 'dot.example', addresses: ['2001:db8::853'] })]);
    expect(r.pvd!.options.rdnss).toEqual([{ lifetime: 600, addresses: ['2001:db8::53'] }]);
  });

  it('keeps unknown SvcParams unless mandatory, and a mandatory list of known keys', () => {
    const o = one(dnr('dot.example', { addresses: ['2001:db8::53'], params: [mandatory(1, 3), alpn('dot'), port(8853), svcParam(9, [1, 2])] }));
    expect(o).toMatchObject({ params: { alpn: ['dot'], port: 8853, mandatory: [1, 3] } });
  });

  it('leaves out multicast and loopback addresses (§6.2), and discards the option when none is left (§3.1.8)', () => {
    expect(one(dnr('dot.example', { addresses: ['ff02::1', '2001:db8::53', '::1'], params: [alpn('dot')] }))).toMatchObject({ addresses: ['2001:db8::53'] });
    expect(one(dnr('dot.example', { addresses: ['ff02::1'], params: [alpn('dot')] }))).toMatch(/no usable address/);
  });

  it('discards a malformed option with one line saying why, and keeps the rest of the RA', () => {
    const ok = { addresses: ['2001:db8::53'], params: [alpn('dot')] };
    const cases: Array<[number[], RegExp]> = [
      // Service Priority 0 is SVCB AliasMode
      [dnr('dot.example', { ...ok, priority: 0 }), /Service Priority 0/],
      // no alpn (§3.1.5, §3.1.8)
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [port(853)] }), /without the "alpn"/],
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [] }), /without the "alpn"/],
      // keys out of order (RFC 9460 §2.2)
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [port(853), alpn('dot')] }), /key1 follows key3.*strictly increasing/],
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [alpn('dot'), alpn('h2')] }), /key1 follows key1/],
      // hints are superseded by the addresses (§3.1.8)
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [alpn('dot'), svcParam(6, [...Array(16).fill(1)])] }), /ipv6hint/],
      // a mandatory key pvdns does not know, or one that is absent (RFC 9460 §8)
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [mandatory(9), alpn('dot'), svcParam(9, [])] }), /key9, which pvdns does not support/],
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [mandatory(3), alpn('dot')] }), /key3, which is absent/],
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [mandatory(0), alpn('dot')] }), /lists itself/],
      // malformed values
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [svcParam(1, [5, 0x64])] }), /malformed "alpn"/],
      [dnr('dot.example', { addresses: ['2001:db8::53'], params: [alpn('dot'), svcParam(3, [3])] }), /"port" SvcParam of length 1/],
      [dnr('doh.example', { addresses: ['2001:db8::53'], params: [alpn('h2'), dohpath('dns-query')] }), /"dohpath" "dns-query"/],
      [dnr('doh.example', { addresses: ['2001:db8::53'], params: [alpn('h2'), dohpath('/dns-query')] }), /"dns" variable/],
      // no ADN, a compressed one, one whose length does not match, one that is no host name
      [dnr('', { ...ok, adnWire: [0] }), /the root/],
      [dnr('', { ...ok, adnWire: [] }), /without an ADN/],
      [dnr('', { ...ok, adnWire: [0xc0, 12] }), /compression/],
      [dnr('', { ...ok, adnWire: [...wireName('dot.example'), 0] }), /ends 1 octets before its ADN Length/],
      [dnr('', { ...ok, adnWire: wireName('bad_name!.example') }), /"bad_name!.example"/],
      // an Addr Length that is not a multiple of 16, or 0 with SvcParams after it
      [option(144, [0, 1, 0, 0, 7, 8, 0, 5, ...wireName('a.b'), 0, 8, ...Array(8).fill(1), 0, 0]), /Addr Length 8/],
      [option(144, [0, 1, 0, 0, 7, 8, 0, 5, ...wireName('a.b'), 0, 0, ...alpn('dot').map((x) => x), 0, 0]), /Addr Length 0/],
    ];
    for (const [opt, why] of cases) {
      const r = parse(ra({}, opt, rdnss(60, '2001:db8::1')));
      expect(r.options.dnr, String(why)).toEqual([]);
      expect(r.options.rdnss).toHaveLength(1);
      expect(r.ignored, String(why)).toHaveLength(1);
      expect(r.ignored[0]).toMatch(why);
      expect(r.ignored[0]).not.toMatch(/[\n\r]/);
    }
  });

  it('discards an option whose lengths do not add up to its Length (§6.1)', () => {
    const good = dnr('dot.example', { addresses: ['2001:db8::53'], params: [alpn('dot')] });
    // SvcParams Length one longer than what is there: it runs into the padding and past the alpn
    const longer = [...good];
    longer[2 + 2 + 4 + 2 + 13 + 2 + 16 + 1] = 9;
    expect(one(longer)).toMatch(/SvcParams end in a truncated key|runs past/);
    // Addr Length past the end of the option
    const past = [...good];
    past[2 + 2 + 4 + 2 + 13] = 1;
    expect(one(past)).toMatch(/Addr Length 272 runs past/);
    // one option-length unit more than the data: 8 octets that are not padding
    const padded = [...good, 0, 0, 0, 0, 0, 0, 0, 0];
    padded[1] = padded.length / 8;
    expect(one(padded)).toMatch(/not its padding/);
    // non-zero padding
    const dirty = [...good];
    dirty[dirty.length - 1] = 1;
    expect(one(dirty)).toMatch(/not its padding/);
    // a length of 1: no room for the ADN Length
    expect(one([144, 1, 0, 1, 0, 0, 0, 60])).toMatch(/of length 1/);
  });

  it('never throws on any truncation or corruption of a DNR option', () => {
    const good = ra({}, dnr('doh.example', { addresses: ['2001:db8::1'], params: [mandatory(3), alpn('dot', 'h2'), port(443), dohpath('/dns-query{?dns}')] }), pvd('p.example', {}, dnr('dot.example', { addresses: ['2001:db8::2'], params: [alpn('dot')] })));
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 3; k++) b[16 + 2 + Math.floor(rand() * (b.length - 18))] = Math.floor(rand() * 256);
      const r = parseRouterAdvertisement(b, META);
      if (typeof r === 'string') expect(r).not.toMatch(/[\n\r]/);
      else for (const l of r.ignored) expect(l).not.toMatch(/[\n\r]/);
    }
  });
});
