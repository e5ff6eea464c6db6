// Implicit PvDs from the host's own tools (src/pvd/sources/host.ts), fed the
// recorded outputs of resolvectl and nmcli in test/fixtures/host/.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { linkPvd, parseNmcli, parseResolvectl, readHostLinks, type RunTool } from '../../src/pvd/sources/host.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'host', name), 'utf8');

describe('systemd-resolved (resolvectl)', () => {
  const links = parseResolvectl(fixture('resolvectl-dns.txt'), fixture('resolvectl-domain.txt'), fixture('resolvectl-default-route.txt'));

  it('makes one link per "Link N (ifname)" line, with the servers a wrapped line carries on, leaving out the global settings', () => {
    expect(links.map((l) => l.ifname)).toEqual(['enp0s31f6', 'wlp2s0', 'wg0', 'tun0']);
    expect(links[0]).toEqual({
      ifname: 'enp0s31f6',
      servers: ['192.168.178.1', 'fd00::b2f2:8ff:fe12:3456', 'fe80::b2f2:8ff:fe12:3456%2', '2001:db8:1::53'],
      domains: ['fritz.box'],
      defaultRoute: true,
    });
  });

  it("turns a VPN's routing domains into zones, and its default-route setting into default", () => {
    expect(links[2]).toEqual({ ifname: 'wg0', servers: ['10.8.0.1'], domains: ['corp.example.com', '8.10.in-addr.arpa'], defaultRoute: false });
    // "~." makes a link take names nobody routes elsewhere, whatever default-route says.
    expect(links[3]).toMatchObject({ ifname: 'tun0', domains: ['.', 'lab.example'], defaultRoute: true });
  });

  it('gives PvD objects the schema takes: IPv6 bracketed, a link-local zone named after the link, a port kept, DNS over TLS left out, "~." not a zone', () => {
    const pvds = links.filter((l) => l.servers.length > 0).map((l) => pvdSpecSchema.parse(linkPvd(l)));
    expect(pvds.map((p) => [p.identifier, p.dnsServers, p.dnsZones, p.default])).toEqual([
      ['enp0s31f6', ['192.168.178.1', '[fd00::b2f2:8ff:fe12:3456]', '[fe80::b2f2:8ff:fe12:3456%enp0s31f6]', '[2001:db8:1::53]'], ['fritz.box'], true],
      ['wg0', ['10.8.0.1'], ['corp.example.com', '8.10.in-addr.arpa'], false],
      ['tun0', ['10.9.0.53:5353'], ['lab.example'], true],
    ]);
    expect(pvds[1]!.interface).toBe('wg0');
  });
});

describe('NetworkManager (nmcli -t)', () => {
  const links = parseNmcli(fixture('nmcli-device-show.txt'));

  it('reads each device with DNS servers, its gateway making it a default', () => {
    expect(links.map((l) => l.ifname)).toEqual(['enp0s31f6', 'wg0']);
    expect(links[0]).toEqual({ ifname: 'enp0s31f6', servers: ['192.168.178.1', 'fd00::b2f2:8ff:fe12:3456'], domains: ['fritz.box'], defaultRoute: true });
    // Where a version escapes the colons of terse output, they are read back.
    expect(parseNmcli('GENERAL.DEVICE:eth1\nIP4.GATEWAY:10.0.0.1\nIP6.DNS[1]:fd00\\:\\:53\n')[0]!.servers).toEqual(['fd00::53']);
  });

  it('takes a device whose search domains are all routing domains (IP4.SEARCHES, "~x") for a split-DNS link: zones, not a default', () => {
    expect(links[1]).toEqual({ ifname: 'wg0', servers: ['10.8.0.1'], domains: ['corp.example.com', '8.10.in-addr.arpa'], defaultRoute: false });
    expect(pvdSpecSchema.parse(linkPvd(links[0]!)).dnsZones).toEqual(['fritz.box']);
  });
});

describe('readHostLinks', () => {
  const tools = (available: Record<string, string>): RunTool => (cmd, args) => Promise.resolve(available[`${cmd} ${args.at(-1)}`] ?? null);

  it('asks systemd-resolved first', async () => {
    const r = await readHostLinks(tools({ 'resolvectl dns': fixture('resolvectl-dns.txt'), 'resolvectl domain': fixture('resolvectl-domain.txt'), 'nmcli show': fixture('nmcli-device-show.txt') }));
    expect(r?.tool).toBe('resolvectl');
    expect(r?.links.map((l) => l.ifname)).toEqual(['enp0s31f6', 'wg0', 'tun0']);
  });

  it('falls back to NetworkManager, and to nothing (resolv.conf) when neither tool is there', async () => {
    expect((await readHostLinks(tools({ 'nmcli show': fixture('nmcli-device-show.txt') })))?.tool).toBe('nmcli');
    expect(await readHostLinks(tools({}))).toBeNull();
    // resolved running without any link DNS (all in Global) says nothing either.
    expect(await readHostLinks(tools({ 'resolvectl dns': 'Global: 192.0.2.53\nLink 2 (eth0):\n', 'resolvectl domain': 'Global:\n' }))).toBeNull();
  });
});
