// Implicit PvDs from the host's own tools (src/pvd/sources/host.ts), fed the
// recorded outputs of resolvectl and nmcli in test/fixtures/host/.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { linkPvd, parseNmcli, parseResolvectl, readHostLinks, type RunTool } from '../../src/pvd/sources/host.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { parseServer, type UpstreamServer } from '../../src/upstream/server.js';

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'host', name), 'utf8');

describe('systemd-resolved (resolvectl)', () => {
  const links = parseResolvectl(fixture('resolvectl-dns.txt'), fixture('resolvectl-domain.txt'), fixture('resolvectl-default-route.txt'), fixture('resolvectl-dnsovertls.txt'));

  it('makes one link per "Link N (ifname)" line, with the servers a wrapped line carries on, leaving out the global settings', () => {
    expect(links.map((l) => l.ifname)).toEqual(['enp0s31f6', 'wlp2s0', 'wg0', 'tun0']);
    expect(links[0]).toEqual({
      ifname: 'enp0s31f6',
      servers: ['192.168.178.1', 'fd00::b2f2:8ff:fe12:3456', 'fe80::b2f2:8ff:fe12:3456%2', '2001:db8:1::53'],
      domains: ['fritz.box'],
      defaultRoute: true,
      dnsOverTls: 'no',
    });
  });

  it("turns a VPN's routing domains into zones, and its default-route setting into default", () => {
    expect(links[2]).toEqual({ ifname: 'wg0', servers: ['10.8.0.1'], domains: ['corp.example.com', '8.10.in-addr.arpa'], defaultRoute: false, dnsOverTls: 'opportunistic' });
    // "~." makes a link take names nobody routes elsewhere, whatever default-route says.
    expect(links[3]).toMatchObject({ ifname: 'tun0', domains: ['.', 'lab.example'], defaultRoute: true });
  });

  it('gives PvD objects the schema takes: IPv6 bracketed, a link-local zone named after the link, a port kept, "~." not a zone, the encryption of DNSOverTLS', () => {
    const pvds = links.filter((l) => l.servers.length > 0).map((l) => pvdSpecSchema.parse(linkPvd(l)));
    expect(pvds.map((p) => [p.identifier, p.dnsServers, p.dnsZones, p.default, p.encryption])).toEqual([
      ['enp0s31f6', ['192.168.178.1', '[fd00::b2f2:8ff:fe12:3456]', '[fe80::b2f2:8ff:fe12:3456%enp0s31f6]', '[2001:db8:1::53]'], ['fritz.box'], true, 'off'],
      ['wg0', ['10.8.0.1'], ['corp.example.com', '8.10.in-addr.arpa'], false, 'opportunistic'],
      // DNSOverTLS=yes: the named server kept as resolved prints it; the plain one over TLS on its own port, as resolved asks it.
      ['tun0', ['tls://10.9.0.53:5353', '1.1.1.1:853#cloudflare-dns.com'], ['lab.example'], true, 'strict'],
    ]);
    expect(pvds[1]!.interface).toBe('wg0');
  });
});

describe('systemd-resolved 252 (resolvectl, recorded)', () => {
  // Printed by /opt/resolved's resolvectl 252 against a running systemd-resolved 252 (resolved-harness),
  // after `resolvectl dns vpn0 10.1.2.3#dns.test 10.1.2.4:5353#x.test 10.1.2.5 fe80::1%vpn0#ll.test
  // [fe80::2]:5353%vpn0#ll2.test` and `resolvectl dns wifi0 10.9.9.9`: 252 prints a link's link-local
  // server without its zone, and each link's DNS over TLS mode in effect, the global one where it has none.
  const dns = 'Global: 127.0.0.1\nLink 2 (vpn0p):\nLink 3 (vpn0): 10.1.2.3#dns.test 10.1.2.4:5353#x.test 10.1.2.5 fe80::1#ll.test [fe80::2]:5353#ll2.test\nLink 4 (wifi0p):\nLink 5 (wifi0): 10.9.9.9\n';
  const domain = 'Global:\nLink 2 (vpn0p):\nLink 3 (vpn0):\nLink 4 (wifi0p):\nLink 5 (wifi0):\n';
  const dot = (global: string, vpn0: string): string => `Global: ${global}\nLink 2 (vpn0p): ${global}\nLink 3 (vpn0): ${vpn0}\nLink 4 (wifi0p): ${global}\nLink 5 (wifi0): ${global}\n`;
  const read = (modes: string): Array<[string, unknown, unknown]> =>
    parseResolvectl(dns, domain, '', modes)
      .filter((l) => l.servers.length > 0)
      .map((l) => pvdSpecSchema.parse(linkPvd(l)))
      .map((p) => [p.identifier, p.encryption, p.dnsServers]);
  const vpn0 = ['10.1.2.3#dns.test', '10.1.2.4:5353#x.test', '10.1.2.5', '[fe80::1%vpn0]#ll.test', '[fe80::2%vpn0]:5353#ll2.test'];

  it('makes `resolvectl dnsovertls vpn0 yes` strict for that link alone, every server kept with its name and zone', () => {
    expect(read(dot('no', 'yes'))).toEqual([
      ['vpn0', 'strict', vpn0],
      ['wifi0', 'off', ['10.9.9.9']],
      // The namespace's foreign resolv.conf (nameserver 127.0.0.1): resolved's global server.
      ['system', 'off', ['127.0.0.1']],
    ]);
  });

  it("takes resolved's global mode for a link without its own (DNSOverTLS= in resolved.conf), and a link's own over it", () => {
    expect(read(dot('opportunistic', 'opportunistic'))).toEqual([
      ['vpn0', 'opportunistic', vpn0],
      ['wifi0', 'opportunistic', ['10.9.9.9']],
      ['system', 'opportunistic', ['127.0.0.1']],
    ]);
    // vpn0's own "no" over the global yes; its named servers make TLS worth a try (opportunistic).
    expect(read(dot('yes', 'no'))).toEqual([
      ['vpn0', 'opportunistic', vpn0],
      ['wifi0', 'strict', ['10.9.9.9']],
      ['system', 'strict', ['127.0.0.1']],
    ]);
    // A resolvectl that prints a link without its mode: the global line applies.
    expect(parseResolvectl(dns, domain, '', 'Global: yes\nLink 3 (vpn0):\n').map((l) => l.dnsOverTls)).toEqual(['yes', 'yes', 'yes', 'yes', 'yes']);
    // Nothing printed at all: unset, which is off, but for a link with named servers.
    expect(read('')).toEqual([
      ['vpn0', 'opportunistic', vpn0],
      ['wifi0', 'off', ['10.9.9.9']],
      ['system', 'off', ['127.0.0.1']],
    ]);
  });
});

describe("systemd-resolved 252's global settings (resolvectl, recorded)", () => {
  // Printed by /opt/resolved's resolvectl 252 (resolved-harness) with resolved.conf's
  // DNS=10.77.9.9#dns.test 10.77.9.8, Domains=~glob.test search.test, DNSOverTLS=yes, and
  // `resolvectl dns wifi0 127.0.0.10 10.1.1.1`, `resolvectl default-route wifi0 yes`. resolved lists
  // wifi0's loopback server under lo's index, so resolvectl prints it on the Global line as well.
  const dns = 'Global: 10.77.9.9#dns.test 10.77.9.8 127.0.0.10\nLink 2 (wifi0p):\nLink 3 (wifi0): 127.0.0.10 10.1.1.1\n';
  const domain = 'Global: search.test ~glob.test\nLink 2 (wifi0p):\nLink 3 (wifi0):\n';
  const route = 'Global\n       Protocols: -LLMNR -mDNS +DNSOverTLS DNSSEC=no/unsupported\nresolv.conf mode: foreign\n      DNS Servers 10.77.9.9#dns.test 10.77.9.8 127.0.0.10\n       DNS Domain search.test ~glob.test\nLink 2 (wifi0p): no\nLink 3 (wifi0): yes\n';
  const dot = (global: string): string => `Global: ${global}\nLink 2 (wifi0p): ${global}\nLink 3 (wifi0): ${global}\n`;
  const view = (modes: string, d = dns): unknown =>
    parseResolvectl(d, domain, route, modes)
      .filter((l) => l.servers.length > 0)
      .map((l) => pvdSpecSchema.parse(linkPvd(l)))
      .map((p) => [p.identifier, p.interface ?? null, p.encryption, p.dnsServers, p.dnsZones, p.default]);

  it('makes the global servers the `system` PvD, a default on no interface, with DNSOverTLS=yes strict and nothing in the clear', () => {
    expect(view(dot('yes'))).toEqual([
      ['wifi0', 'wifi0', 'strict', ['127.0.0.10', '10.1.1.1'], [], true],
      // wifi0's loopback server is taken out of the global ones; the rest kept as written.
      ['system', null, 'strict', ['10.77.9.9#dns.test', '10.77.9.8'], ['search.test', 'glob.test'], true],
    ]);
    // Strict: each asked over TLS on 853 only, the named one authenticated by its name.
    const system = parseResolvectl(dns, domain, route, dot('yes')).at(-1)!;
    const servers = pvdSpecSchema.parse(linkPvd(system)).dnsServers.map((t) => parseServer(t, 'strict') as UpstreamServer);
    expect(servers.map((x) => [x.transport, x.port, x.authName, x.authenticate, x.fallback])).toEqual([
      ['tls', 853, 'dns.test', true, null],
      ['tls', 853, null, true, null],
    ]);
    expect(system).toEqual({ ifname: 'system', servers: ['10.77.9.9#dns.test', '10.77.9.8'], domains: ['search.test', 'glob.test'], defaultRoute: true, global: true, dnsOverTls: 'yes' });
  });

  it('global only (no link with servers): the `system` PvD alone; with DNSOverTLS=no, a named server is tried over TLS (opportunistic)', () => {
    const only = 'Global: 10.77.9.9#dns.test 10.77.9.8\nLink 2 (wifi0p):\nLink 3 (wifi0):\n';
    expect(view(dot('yes'), only)).toEqual([['system', null, 'strict', ['10.77.9.9#dns.test', '10.77.9.8'], ['search.test', 'glob.test'], true]]);
    expect(view(dot('no'), only)).toEqual([['system', null, 'opportunistic', ['10.77.9.9#dns.test', '10.77.9.8'], ['search.test', 'glob.test'], true]]);
  });

  it('takes a loopback server out of the global ones only as often as links print it, and never a global one that is no loopback', () => {
    // A foreign resolv.conf's 127.0.0.1 and wifi0's own 127.0.0.1: both under lo, printed twice (measured).
    const both = 'Global: 9.9.9.9 127.0.0.1 127.0.0.1\nLink 3 (wifi0): 127.0.0.1 9.9.9.9\n';
    expect(parseResolvectl(both, '', '', '').map((l) => [l.ifname, l.servers])).toEqual([
      ['wifi0', ['127.0.0.1', '9.9.9.9']],
      ['system', ['9.9.9.9', '127.0.0.1']],
    ]);
    // No global server: no `system` link (resolv.conf's stands in, as before).
    expect(parseResolvectl('Global:\nLink 3 (wifi0): 127.0.0.10\n', '', '', 'Global: yes\n').map((l) => l.ifname)).toEqual(['wifi0']);
    expect(parseResolvectl('Global: 127.0.0.10\nLink 3 (wifi0): 127.0.0.10\n', '', '', '').map((l) => l.ifname)).toEqual(['wifi0']);
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

  it("reads connection.dns-over-tls as nmcli prints it, terse or not (-1 default, 0 no, 1 opportunistic, 2 yes)", () => {
    const show = 'GENERAL.DEVICE:eth1\nGENERAL.CON-PATH:/a/1\nIP4.DNS[1]:192.0.2.1\n';
    const mode = (printed: string): string | undefined => parseNmcli(show, new Map([['/a/1', printed]]))[0]!.dnsOverTls;
    expect(['connection.dns-over-tls:yes', 'connection.dns-over-tls:2 (yes)', 'connection.dns-over-tls:opportunistic', 'connection.dns-over-tls:0 (no)', 'connection.dns-over-tls:-1 (default)', 'connection.dns-over-tls:default'].map(mode)).toEqual([
      'yes',
      'yes',
      'opportunistic',
      'no',
      undefined,
      undefined,
    ]);
    expect(parseNmcli(show)[0]!.dnsOverTls).toBeUndefined();
  });

  it('takes a device whose search domains are all routing domains (IP4.SEARCHES, "~x") for a split-DNS link: zones, not a default', () => {
    expect(links[1]).toEqual({ ifname: 'wg0', servers: ['10.8.0.1'], domains: ['corp.example.com', '8.10.in-addr.arpa'], defaultRoute: false });
    expect(pvdSpecSchema.parse(linkPvd(links[0]!)).dnsZones).toEqual(['fritz.box']);
  });
});

describe('readHostLinks', () => {
  const tools = (available: Record<string, string>): RunTool => (cmd, args) => Promise.resolve(available[`${cmd} ${args.at(-1)}`] ?? null);

  it('asks systemd-resolved first', async () => {
    const resolvectl = { 'resolvectl dns': fixture('resolvectl-dns.txt'), 'resolvectl domain': fixture('resolvectl-domain.txt'), 'resolvectl dnsovertls': fixture('resolvectl-dnsovertls.txt') };
    const r = await readHostLinks(tools({ ...resolvectl, 'nmcli show': fixture('nmcli-device-show.txt') }));
    expect(r?.tool).toBe('resolvectl');
    expect(r?.links.map((l) => [l.ifname, l.dnsOverTls])).toEqual([
      ['enp0s31f6', 'no'],
      ['wg0', 'opportunistic'],
      ['tun0', 'yes'],
    ]);
    // A resolvectl that cannot say the modes is no reading: a link requiring DNS over TLS would be asked in the clear.
    const noModes = { ...resolvectl, 'resolvectl dnsovertls': undefined } as unknown as Record<string, string>;
    expect((await readHostLinks(tools({ ...noModes, 'nmcli show': fixture('nmcli-device-show.txt') })))?.tool).toBe('nmcli');
  });

  it("asks nmcli for each active connection's connection.dns-over-tls (by GENERAL.CON-PATH), and makes it the encryption", async () => {
    const show = fixture('nmcli-device-show.txt').replace('GENERAL.DEVICE:enp0s31f6\n', 'GENERAL.DEVICE:enp0s31f6\nGENERAL.CON-PATH:/org/freedesktop/NetworkManager/ActiveConnection/1\n').replace('GENERAL.DEVICE:wg0\n', 'GENERAL.DEVICE:wg0\nGENERAL.CON-PATH:/org/freedesktop/NetworkManager/ActiveConnection/4\n');
    const asked: string[][] = [];
    const run: RunTool = (cmd, args) => {
      asked.push([cmd, ...args]);
      if (cmd !== 'nmcli') return Promise.resolve(null);
      if (args.at(-1) === 'show') return Promise.resolve(show);
      return Promise.resolve({ '/org/freedesktop/NetworkManager/ActiveConnection/1': 'connection.dns-over-tls:yes\n', '/org/freedesktop/NetworkManager/ActiveConnection/4': 'connection.dns-over-tls:default\n' }[args.at(-1)!] ?? null);
    };
    const r = await readHostLinks(run);
    expect(r?.links.map((l) => [l.ifname, l.dnsOverTls])).toEqual([
      ['enp0s31f6', 'yes'],
      ['wg0', undefined],
    ]);
    expect(asked).toContainEqual(['nmcli', '-t', '-f', 'connection.dns-over-tls', 'connection', 'show', 'apath', '/org/freedesktop/NetworkManager/ActiveConnection/1']);
    expect(r!.links.map((l) => pvdSpecSchema.parse(linkPvd(l)).encryption)).toEqual(['strict', 'off']);
  });

  it('falls back to NetworkManager, and to nothing (resolv.conf) when neither tool is there', async () => {
    expect((await readHostLinks(tools({ 'nmcli show': fixture('nmcli-device-show.txt') })))?.tool).toBe('nmcli');
    expect(await readHostLinks(tools({}))).toBeNull();
    // resolved running without any DNS, global or a link's, says nothing either.
    expect(await readHostLinks(tools({ 'resolvectl dns': 'Global:\nLink 2 (eth0):\n', 'resolvectl domain': 'Global:\n', 'resolvectl dnsovertls': 'Global: no\n' }))).toBeNull();
    // Global servers only (resolved.conf's DNS=): the `system` link, with the global mode.
    const global = await readHostLinks(tools({ 'resolvectl dns': 'Global: 9.9.9.9#dns.quad9.net\nLink 2 (eth0):\n', 'resolvectl domain': 'Global:\n', 'resolvectl dnsovertls': 'Global: yes\nLink 2 (eth0): yes\n' }));
    expect(global?.links).toEqual([{ ifname: 'system', servers: ['9.9.9.9#dns.quad9.net'], domains: [], defaultRoute: true, global: true, dnsOverTls: 'yes' }]);
  });
});
