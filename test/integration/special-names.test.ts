// Special-use names never leave as they must not: fake upstreams record every
// query, so each test proves both who was asked and that nobody else was.
//   lan       (interface eth0, the local network)   ─▶ 127.0.40.1
//   vpn       (interface tun0, the default route)   ─▶ 127.0.40.2
//   printers  (claims printers.local)               ─▶ 127.0.40.3
//   lab       (claims lab.test)                     ─▶ 127.0.40.4
// .local and the link-local reverse zones (RFC 6762), test. (RFC 6761 §6.2)
// and resolver.arpa (RFC 9462) reach nobody unless claimed; home.arpa (RFC
// 8375) reaches the local network only, never the VPN that has the default route.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { EDE } from '../../src/dns/constants.js';
import { ask, ede, Packet } from '../helpers/client.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { getPvd, resolve } from '../helpers/http.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

const SVCB = 64;
const DS = 43;
const NXDOMAIN = 3;

describe('special-use names', () => {
  const lan = new FakeUpstream();
  const vpn = new FakeUpstream();
  const printers = new FakeUpstream();
  const lab = new FakeUpstream();
  const all = [lan, vpn, printers, lab];
  let pvdns: Running;
  const config = (forwardTestNames: boolean) => ({
    forwardTestNames,
    pvds: [
      { identifier: 'lan', interface: 'eth0', dnsServers: [lan.address], priority: 20 },
      { identifier: 'vpn', interface: 'tun0', dnsServers: [vpn.address], priority: 10, listen: ['127.0.40.6:0'] },
      { identifier: 'printers', dnsServers: [printers.address], dnsZones: ['printers.local'], default: false },
      { identifier: 'lab', dnsServers: [lab.address], dnsZones: ['lab.test'], default: false },
    ],
  });

  beforeAll(async () => {
    await lan.start('127.0.40.1');
    await vpn.start('127.0.40.2');
    await printers.start('127.0.40.3');
    await lab.start('127.0.40.4');
    pvdns = await startPvdns(config(false));
  });
  afterEach(() => {
    for (const u of all) u.seen.length = 0;
  });
  afterAll(async () => {
    await pvdns.stop();
    for (const u of all) await u.stop();
  });

  const seen = () => all.map((u) => u.names());

  it.each([
    ['printer.local', 'A'],
    ['Ink-Jet._pdl-datastream._tcp.local', 'PTR'],
    ['local', 'SOA'],
    ['34.12.254.169.in-addr.arpa', 'PTR'],
    [`1.${'0.'.repeat(15)}0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa`, 'PTR'],
    ['1.0.0.0.b.e.f.ip6.arpa', 'PTR'],
  ])('%s %s: NXDOMAIN with EDE 21 saying pvdns does not do mDNS, and no upstream packet', async (name, type) => {
    const r = await ask(pvdns.dns, name, type);
    expect(r.packet.header.rcode).toBe(NXDOMAIN);
    expect(r.packet.header.aa).toBe(1);
    expect(ede(r.packet)).toMatchObject({ infoCode: EDE.NOT_SUPPORTED, extraText: expect.stringContaining('multicast DNS') });
    expect(ede(r.packet)!.extraText).toContain('RFC 6762');
    expect(seen()).toEqual([[], [], [], []]);
  });

  it('a .local zone a PvD lists in dnsZones goes to it, and only there', async () => {
    const r = await ask(pvdns.dns, 'hp.printers.local', 'A');
    expect(r.packet.header.rcode).toBe(0);
    expect(seen()).toEqual([[], [], ['hp.printers.local'], []]);
  });

  it('home.arpa goes to the local network, not to the VPN that has the default route', async () => {
    await ask(pvdns.dns, 'www.example.org', 'A');
    const r = await ask(pvdns.dns, 'nas.home.arpa', 'A');
    expect(r.packet.header.rcode).toBe(0);
    expect(seen()).toEqual([['nas.home.arpa'], ['www.example.org'], [], []]);
  });

  it('resolver.arpa is answered here: _dns.resolver.arpa SVCB is NODATA (no designation), other names too', async () => {
    for (const [name, type] of [['_dns.resolver.arpa', SVCB], ['resolver.arpa', 'A'], ['x._dns.resolver.arpa', 'AAAA']] as const) {
      const r = await ask(pvdns.dns, name, type);
      expect(r.packet.header.rcode).toBe(0);
      expect(r.packet.answers).toHaveLength(0);
      expect(r.packet.authorities[0]).toMatchObject({ name: 'resolver.arpa', type: Packet.TYPE.SOA });
    }
    expect(seen()).toEqual([[], [], [], []]);
  });

  it('test. is NXDOMAIN with an EDE unless claimed; a PvD that claims a zone under it gets it', async () => {
    const r = await ask(pvdns.dns, 'www.example.test', 'A');
    expect(r.packet.header.rcode).toBe(NXDOMAIN);
    expect(ede(r.packet)).toMatchObject({ infoCode: EDE.OTHER, extraText: expect.stringContaining('RFC 6761 §6.2') });
    expect((await ask(pvdns.dns, 'db.lab.test', 'A')).packet.header.rcode).toBe(0);
    expect(seen()).toEqual([[], [], [], ['db.lab.test']]);
  });

  it('/v1/resolve forced into a PvD: home.arpa only into a local network PvD, .local into none', async () => {
    const intoVpn = await resolve(pvdns.http, 'name=nas.home.arpa&type=A&pvd=vpn');
    expect(intoVpn.body).toMatchObject({ rcode: 'NXDOMAIN', ede: { code: EDE.NO_REACHABLE_AUTHORITY } });
    expect((await resolve(pvdns.http, 'name=nas.local&type=A&pvd=lan')).body).toMatchObject({ rcode: 'NXDOMAIN', ede: { code: EDE.NOT_SUPPORTED } });
    expect((await resolve(pvdns.http, 'name=tv.home.arpa&type=A&pvd=lan')).body).toMatchObject({ rcode: 'NOERROR', pvd: 'lan' });
    expect(seen()).toEqual([['tv.home.arpa'], [], [], []]);
  });

  it("the VPN's own listener (pvds[].listen) gets no .local, home.arpa or test. name to its servers", async () => {
    const bound = (await getPvd(pvdns.http, 'vpn')).body.listen[0]!.bound!;
    const listener = { host: '127.0.40.6', port: Number(bound.split(':').at(-1)) };
    for (const name of ['nas.local', 'nas.home.arpa', 'www.example.test']) {
      expect((await ask(listener, name, 'A')).packet.header.rcode).toBe(NXDOMAIN);
    }
    expect((await ask(listener, 'pinned.example.org', 'A')).packet.header.rcode).toBe(0);
    expect(seen()).toEqual([[], ['pinned.example.org'], [], []]);
  });

  it('the API view shows which PvDs are the local network', async () => {
    const r = await fetch(`${pvdns.http}/v1/pvds`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    const { pvds } = (await r.json()) as { pvds: Array<{ identifier: string; localNetwork: boolean }> };
    expect(pvds.map((p) => [p.identifier, p.localNetwork])).toEqual([
      ['lan', true],
      ['vpn', false],
      ['printers', false],
      ['lab', false],
    ]);
  });

  it('forwardTestNames: true (on reload) sends unclaimed test names to the default route', async () => {
    await pvdns.app.reload(configSchema.parse({ ...config(true), listen: ['127.0.0.1:0'], http: { listen: null }, log: { level: 'silent' }, pvdSources: { host: false }, captive: { probeIntervalS: 0 } }));
    try {
      expect((await ask(pvdns.dns, 'www.example.test', 'A')).packet.header.rcode).toBe(0);
      expect(seen()).toEqual([[], ['www.example.test'], [], []]);
    } finally {
      await pvdns.app.reload(configSchema.parse({ ...config(false), listen: ['127.0.0.1:0'], http: { listen: null }, log: { level: 'silent' }, pvdSources: { host: false }, captive: { probeIntervalS: 0 } }));
    }
  });
});

describe('home.arpa with no local network PvD', () => {
  const vpn = new FakeUpstream();
  let pvdns: Running;

  beforeAll(async () => {
    await vpn.start('127.0.40.5');
    pvdns = await startPvdns({ pvds: [{ identifier: 'vpn', interface: 'wg0', dnsServers: [vpn.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await vpn.stop();
  });

  it('is NXDOMAIN with EDE 22, never sent to the default route', async () => {
    const r = await ask(pvdns.dns, 'nas.home.arpa', 'A');
    expect(r.packet.header.rcode).toBe(NXDOMAIN);
    expect(ede(r.packet)).toMatchObject({ infoCode: EDE.NO_REACHABLE_AUTHORITY, extraText: expect.stringContaining('RFC 8375') });
    expect(r.packet.authorities[0]).toMatchObject({ name: 'home.arpa', type: Packet.TYPE.SOA, minimum: 60 });
    expect(vpn.names()).toEqual([]);
  });

  it('except DS home.arpa with DO, the arpa zone\'s proof of an insecure delegation (RFC 8375 §4 item 4B)', async () => {
    await ask(pvdns.dns, 'home.arpa', DS, { edns: { do: true } });
    expect(vpn.names()).toEqual(['home.arpa']);
  });
});
