// NetworkManager's D-Bus properties → the host's links (nmLinks in
// src/pvd/sources/networkmanager.ts): the same reading parseNmcli gives of
// `nmcli device show`, from the values the D-Bus client hands over (a{sv}
// unwrapped to objects, ay to Buffers).

import { describe, expect, it } from 'vitest';
import { nmLinks, type NmDeviceProperties } from '../../src/pvd/sources/networkmanager.js';
import { linkPvd } from '../../src/pvd/sources/host.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';

const v6 = (text: string): Buffer => {
  // Only what the tests need: full groups and one "::".
  const [head, tail] = text.includes('::') ? text.split('::') : [text, ''];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
};

const ip = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  NameserverData: [],
  Nameservers: [],
  Domains: [],
  Searches: [],
  DnsPriority: 100,
  Gateway: '',
  ...over,
});

const wifi: NmDeviceProperties = {
  device: { Interface: 'wlp2s0', IpInterface: 'wlp2s0', State: 100, Ip4Config: '/org/freedesktop/NetworkManager/IP4Config/3', Ip6Config: '/org/freedesktop/NetworkManager/IP6Config/3' },
  ip4: ip({ NameserverData: [{ address: '192.168.1.1' }], Nameservers: [0x0101a8c0], Domains: ['Home.Example'], Gateway: '192.168.1.1' }),
  ip6: ip({ Nameservers: [v6('fd00::1'), v6('fe80::1')], Searches: ['home.example'], Gateway: 'fe80::1' }),
};

const wg: NmDeviceProperties = {
  device: { Interface: 'wg0', IpInterface: 'wg0', State: 100, Ip4Config: '/org/freedesktop/NetworkManager/IP4Config/9', Ip6Config: '/' },
  ip4: ip({ NameserverData: [{ address: '10.8.0.1' }], Searches: ['~corp.example.com', '~8.10.in-addr.arpa'], DnsPriority: -50 }),
  ip6: null,
};

describe('NetworkManager (D-Bus) properties → links', () => {
  it('reads a Wi-Fi device: IPv4 servers from NameserverData (not the deprecated Nameservers), IPv6 from 16-octet Nameservers, domains lower case, the default route from its gateway', () => {
    expect(nmLinks([wifi])).toEqual([
      { ifname: 'wlp2s0', servers: ['192.168.1.1', 'fd00::1', 'fe80::1'], domains: ['home.example'], defaultRoute: true, dnsPriority: 100 },
    ]);
  });

  it("makes a VPN's routing-only domains its zones, no default route, and keeps NM's negative priority", () => {
    expect(nmLinks([wifi, wg])[1]).toEqual({ ifname: 'wg0', servers: ['10.8.0.1'], domains: ['corp.example.com', '8.10.in-addr.arpa'], defaultRoute: false, dnsPriority: -50 });
  });

  it('gives a device with a gateway but only routing domains no default route, and any device with "~." the default route', () => {
    const routingOnly = { ...wg, ip4: ip({ NameserverData: [{ address: '10.8.0.1' }], Searches: ['~corp.example.com'], Gateway: '10.8.0.254' }) };
    expect(nmLinks([routingOnly])[0]!.defaultRoute).toBe(false);
    const mixed = { ...wg, ip4: ip({ NameserverData: [{ address: '10.8.0.1' }], Searches: ['~corp.example.com', 'corp.example.com'], Gateway: '10.8.0.254' }) };
    expect(nmLinks([mixed])[0]).toMatchObject({ domains: ['corp.example.com'], defaultRoute: true });
    const all = { ...wg, ip4: ip({ NameserverData: [{ address: '10.8.0.1' }], Searches: ['~.', '~corp.example.com'] }) };
    expect(nmLinks([all])[0]).toMatchObject({ domains: ['.', 'corp.example.com'], defaultRoute: true });
  });

  it('leaves out a device without servers, without configurations, or going down (deactivating, disconnected) though NM has not cleared its DNS yet', () => {
    const lo = { device: { Interface: 'lo', IpInterface: 'lo', State: 100 }, ip4: ip(), ip6: ip() };
    const bare = { device: { Interface: 'eth1', IpInterface: '', State: 30 }, ip4: null, ip6: null };
    const leaving = { ...wg, device: { ...wg.device, State: 110 } };
    expect(nmLinks([lo, bare, leaving, wifi]).map((l) => l.ifname)).toEqual(['wlp2s0']);
  });

  it('names the link after IpInterface where NM has one (ppp0 for a modem), else Interface', () => {
    const modem = { device: { Interface: 'cdc-wdm0', IpInterface: 'ppp0', State: 100 }, ip4: ip({ NameserverData: [{ address: '10.64.64.64' }] }), ip6: null };
    const noIp = { ...modem, device: { Interface: 'enp0s31f6', IpInterface: '', State: 100 } };
    expect(nmLinks([modem, noIp]).map((l) => l.ifname)).toEqual(['ppp0', 'enp0s31f6']);
  });

  it('takes the lower DNS priority of the families that have servers, and ignores what is not what NM sends', () => {
    const both = { ...wifi, ip4: ip({ ...wifi.ip4, DnsPriority: 100 }), ip6: ip({ ...wifi.ip6, DnsPriority: 50 }) };
    expect(nmLinks([both])[0]!.dnsPriority).toBe(50);
    const v4only = { ...wifi, ip6: ip({ DnsPriority: -10 }) };
    expect(nmLinks([v4only])[0]!.dnsPriority).toBe(100);
    const odd = {
      device: { Interface: 'eth9', State: 100 },
      ip4: { NameserverData: [{ address: 7 }, 'x', null, { address: '192.0.2.9' }], Searches: 'corp', Domains: [1, 'a.example'], DnsPriority: '5', Gateway: 3 },
      ip6: { Nameservers: [Buffer.alloc(4), 'fd00::1'] },
    };
    expect(nmLinks([odd])).toEqual([{ ifname: 'eth9', servers: ['192.0.2.9'], domains: ['a.example'], defaultRoute: false }]);
  });

  it("makes the applied connection's connection.dns-over-tls (-1 default, 0 no, 1 opportunistic, 2 yes) the PvD's encryption", () => {
    const withDot = (v: unknown): NmDeviceProperties => ({ ...wifi, connection: { id: 'Home', 'dns-over-tls': v } });
    const modes = [2, 1, 0, -1, undefined].map((v) => nmLinks([withDot(v)])[0]!.dnsOverTls);
    expect(modes).toEqual(['yes', 'opportunistic', 'no', undefined, undefined]);
    const encryption = [2, 1, 0, -1].map((v) => pvdSpecSchema.parse(linkPvd(nmLinks([withDot(v)])[0]!)).encryption);
    expect(encryption).toEqual(['strict', 'opportunistic', 'off', 'off']);
    // Not read (NM refused, no applied connection): the default.
    expect(nmLinks([{ ...wifi, connection: null }])[0]!.dnsOverTls).toBeUndefined();
  });

  it('gives PvD objects the schema takes: an IPv6 link-local server scoped to its link', () => {
    const pvds = nmLinks([wifi, wg]).map((l) => pvdSpecSchema.parse(linkPvd(l)));
    expect(pvds.map((p) => [p.identifier, p.dnsServers, p.dnsZones, p.default])).toEqual([
      ['wlp2s0', ['192.168.1.1', '[fd00::1]', '[fe80::1%wlp2s0]'], ['home.example'], true],
      ['wg0', ['10.8.0.1'], ['corp.example.com', '8.10.in-addr.arpa'], false],
    ]);
  });
});
