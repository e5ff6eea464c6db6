// The Router Advertisement parser (src/pvd/sources/ra-wire.ts): RFC 4861
// §6.1.2's checks, each option pvdns reads, the PvD option with its nested
// options and inner header (RFC 8801 §3.1), one RA built by scapy, and
// malformed packets answered with one line, never an exception.

import { describe, expect, it } from 'vitest';
import { parseRouterAdvertisement, type RouterAdvertisement } from '../../src/pvd/sources/ra-wire.js';
import { dnssl, header, option, pio, pref64, pvd, ra, rdnss } from '../helpers/ra-packets.js';

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
    expect(r.options).toEqual({ rdnss: [], dnssl: [], prefixes: [], pref64: [] });
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
