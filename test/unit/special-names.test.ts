// Special-use names beyond localhost and invalid (src/resolve/routes.ts,
// src/resolve/local.ts): .local and the link-local reverse zones (RFC 6762),
// home.arpa (RFC 8375), resolver.arpa (RFC 9462), test. (RFC 6761 §6.2) —
// where the route table sends them, and what the local-names stage answers,
// for a client's query and for one forced into a PvD.

import { describe, expect, it } from 'vitest';
import type { Answer } from '../../src/dns/answer.js';
import { EDE, RCODE, TYPE } from '../../src/dns/constants.js';
import { encodeName, wireKey } from '../../src/dns/name.js';
import { parseQuery, questionMessage } from '../../src/dns/query.js';
import { localNetworkOf, pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { LocalNames } from '../../src/resolve/local.js';
import { Query } from '../../src/resolve/query.js';
import { RouteTable, type RouteOptions } from '../../src/resolve/routes.js';

let order = 0;
function pvd(spec: Record<string, unknown>, source: 'config' | 'host' | 'ra' = 'config'): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ dnsServers: ['192.0.2.53'], ...spec }), source, order++);
}

function route(table: RouteTable, name: string) {
  const r = table.match(wireKey(name));
  return { pvds: r.pvds.map((p) => p.id), zone: r.zone, local: r.local };
}

const wifi = pvd({ identifier: 'wlan0', interface: 'wlan0', priority: 20 }, 'host');
const eth = pvd({ identifier: 'eth0', interface: 'eth0', priority: 10 }, 'host');
const vpn = pvd({ identifier: 'tun0', interface: 'tun0', priority: 1 }, 'host');
const cell = pvd({ identifier: 'wwan0', interface: 'wwan0' }, 'host');
const split = pvd({ identifier: 'corp', interface: 'wg0', dnsZones: ['corp.example'], noInternet: true });

describe('.local and the link-local reverse zones (RFC 6762 §3, §4, §22.1)', () => {
  const table = new RouteTable([wifi, vpn]);

  it.each(['local', 'printer.local', 'Ink-Jet._pdl-datastream._tcp.LOCAL', '34.12.254.169.in-addr.arpa', '254.169.in-addr.arpa', '1.0.0.0.8.e.f.ip6.arpa', '9.e.f.ip6.arpa', 'f.f.a.e.f.ip6.arpa', 'b.e.f.ip6.arpa'])(
    '%s is answered here, sent to no PvD',
    (name) => {
      expect(route(table, name)).toMatchObject({ local: 'mdns', pvds: [] });
    },
  );

  it.each(['mylocal', 'local.example', 'c.e.f.ip6.arpa', '255.169.in-addr.arpa'])('%s is not special', (name) => {
    expect(route(table, name).local).toBeNull();
  });

  it('a PvD that lists the zone in dnsZones gets it; a subzone claim takes only the subzone', () => {
    const lan = pvd({ identifier: 'lan', dnsZones: ['local', '254.169.in-addr.arpa'] });
    const printers = pvd({ identifier: 'printers', dnsZones: ['printers.local'] });
    expect(route(new RouteTable([wifi, lan]), 'nas.local')).toEqual({ pvds: ['lan'], zone: 'local', local: null });
    expect(route(new RouteTable([wifi, lan]), '1.2.254.169.in-addr.arpa').pvds).toEqual(['lan']);
    const t = new RouteTable([wifi, printers]);
    expect(route(t, 'hp.printers.local').pvds).toEqual(['printers']);
    expect(route(t, 'nas.local').local).toBe('mdns');
  });

  it('a prefix or a learned zone does not claim them: only dnsZones does', () => {
    const ll = pvd({ identifier: 'll', prefixes: ['169.254.0.0/16', 'fe80::/10'] });
    const t = new RouteTable([wifi, ll], (p) => (p === ll ? ['portal.local'] : []));
    expect(route(t, '1.2.254.169.in-addr.arpa').local).toBe('mdns');
    expect(route(t, '1.0.0.0.a.e.f.ip6.arpa').local).toBe('mdns');
    expect(route(t, 'portal.local').local).toBe('mdns');
  });
});

describe('test. (RFC 6761 §6.2)', () => {
  const lab = pvd({ identifier: 'lab', dnsZones: ['lab.test'], default: false });

  it('is NXDOMAIN here by default; a PvD claiming a zone under it gets that zone', () => {
    const t = new RouteTable([wifi, lab]);
    expect(route(t, 'www.example.test')).toMatchObject({ local: 'test', pvds: [] });
    expect(route(t, 'test')).toMatchObject({ local: 'test', pvds: [] });
    expect(route(t, 'db.lab.test')).toEqual({ pvds: ['lab'], zone: 'lab.test', local: null });
  });

  it('with forwardTestNames, unclaimed test names go to the default PvDs like any name', () => {
    const t = new RouteTable([wifi, lab], undefined, { forwardTestNames: true } satisfies RouteOptions);
    expect(route(t, 'www.example.test')).toEqual({ pvds: ['wlan0'], zone: null, local: null });
    expect(route(t, 'db.lab.test').pvds).toEqual(['lab']);
  });

  it('a captive portal host learned under test. goes to its PvD', () => {
    const t = new RouteTable([wifi], (p) => (p === wifi ? ['portal.hotel.test'] : []));
    expect(route(t, 'portal.hotel.test').pvds).toEqual(['wlan0']);
    expect(route(t, 'other.hotel.test').local).toBe('test');
  });
});

describe('home.arpa (RFC 8375)', () => {
  it('goes to the local network PvDs only — not a VPN, not cellular, not noInternet — by priority', () => {
    const t = new RouteTable([wifi, vpn, cell, split, eth]);
    expect(route(t, 'nas.home.arpa')).toEqual({ pvds: ['eth0', 'wlan0'], zone: 'home.arpa', local: null });
    expect(route(t, 'www.example.org').pvds[0]).toBe('tun0'); // the VPN is the default route for the rest
  });

  it('with no local network PvD it is answered here (NXDOMAIN), never the default route', () => {
    const t = new RouteTable([vpn, cell, pvd({ identifier: 'by-hand' })]);
    expect(route(t, 'nas.home.arpa')).toMatchObject({ local: 'home', pvds: [] });
  });

  it('a PvD on no interface is local only when it says localNetwork: true; localNetwork: false overrides the interface', () => {
    const home = pvd({ identifier: 'home', localNetwork: true });
    const notWifi = pvd({ identifier: 'wlan1', interface: 'wlan1', localNetwork: false });
    expect(route(new RouteTable([vpn, home, notWifi]), 'x.home.arpa').pvds).toEqual(['home']);
  });

  it('a PvD without servers is no route for it', () => {
    const empty = pvd({ identifier: 'eth9', interface: 'eth9', dnsServers: [] });
    expect(route(new RouteTable([empty, vpn]), 'x.home.arpa').local).toBe('home');
  });

  it('a PvD claiming home.arpa (or a zone under it) gets it, whatever its interface', () => {
    const claims = pvd({ identifier: 'vpnhome', interface: 'tun1', dnsZones: ['home.arpa'] });
    expect(route(new RouteTable([wifi, claims]), 'nas.home.arpa').pvds).toEqual(['vpnhome']);
    const lab = pvd({ identifier: 'lab', interface: 'wg1', dnsZones: ['lab.home.arpa'] });
    const t = new RouteTable([wifi, lab]);
    expect(route(t, 'pi.lab.home.arpa').pvds).toEqual(['lab']);
    expect(route(t, 'nas.home.arpa').pvds).toEqual(['wlan0']);
  });

  it.each<[string | null, boolean, boolean]>([
    ['eth0', false, true],
    ['enp3s0', false, true],
    ['wlp2s0', false, true],
    ['br0', false, true],
    ['lo', false, true],
    ['eth0', true, false], // noInternet
    [null, false, false],
    ['tun0', false, false],
    ['tap1', false, false],
    ['wg0', false, false],
    ['ppp0', false, false],
    ['ipsec0', false, false],
    ['tailscale0', false, false],
    ['wwan0', false, false],
    ['wwp0s20f0u6', false, false],
    ['rmnet_data0', false, false],
    ['ccmni0', false, false],
  ])('localNetworkOf(interface %s, noInternet %s) is %s', (iface, noInternet, want) => {
    expect(localNetworkOf({ interface: iface, noInternet })).toBe(want);
  });
});

describe('resolver.arpa (RFC 9462 §6.1, §6.4) and the pinned names', () => {
  it('is answered here whoever claims it, and the schema refuses the claim', () => {
    const greedy = { ...pvd({ identifier: 'greedy', priority: 0 }), dnsZones: ['resolver.arpa', 'x.resolver.arpa', 'a.localhost'] } as Pvd;
    const t = new RouteTable([wifi, greedy]);
    for (const name of ['resolver.arpa', '_dns.resolver.arpa', 'y.x.resolver.arpa']) expect(route(t, name)).toMatchObject({ local: 'resolver', pvds: [] });
    expect(route(t, 'b.a.localhost').local).toBe('localhost');
    expect(t.claims().map((c) => c.zone)).not.toContain('x.resolver.arpa');
    for (const zone of ['resolver.arpa', '_dns.Resolver.ARPA.']) {
      const r = pvdSpecSchema.safeParse({ identifier: 'p', dnsServers: ['192.0.2.1'], dnsZones: [zone] });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]?.message).toContain('is always answered locally (RFC 9462)');
    }
  });
});

/** ask runs one question through LocalNames: the local answer, or 'next' with the route the router would take. */
function ask(table: RouteTable, name: string, type: number, forced: Pvd | null = null): { answer: Answer | null; next: string[] | null } {
  const q = new Query('udp', '127.0.0.1', 0);
  parseQuery(questionMessage(encodeName(name), type), q);
  q.forced = forced;
  let next: string[] | null = null;
  const r = new LocalNames(() => table).handle(q, (qq) => {
    next = qq.route!.pvds.map((p) => p.id);
    return { rcode: -1 } as Answer;
  });
  return { answer: next === null ? (r as Answer) : null, next };
}

describe('the local-names stage', () => {
  const table = new RouteTable([wifi, vpn, pvd({ identifier: 'lan', dnsZones: ['lab.test', 'printers.local'] })]);
  const none = new RouteTable([vpn]);

  it.each<[string, number, number, number | null]>([
    ['printer.local', TYPE.A, RCODE.NXDOMAIN, EDE.NOT_SUPPORTED],
    ['local', TYPE.SOA, RCODE.NXDOMAIN, EDE.NOT_SUPPORTED],
    ['1.1.254.169.in-addr.arpa', TYPE.PTR, RCODE.NXDOMAIN, EDE.NOT_SUPPORTED],
    ['www.example.test', TYPE.A, RCODE.NXDOMAIN, EDE.OTHER],
    ['_dns.resolver.arpa', TYPE.SVCB, RCODE.NOERROR, null],
    ['resolver.arpa', TYPE.A, RCODE.NOERROR, null],
    ['x.y.resolver.arpa', TYPE.AAAA, RCODE.NOERROR, null],
  ])('%s type %i → rcode %i, EDE %s', (name, type, rcode, ede) => {
    const { answer } = ask(table, name, type);
    expect(answer).not.toBeNull();
    expect(answer!.rcode).toBe(rcode);
    expect(answer!.an).toBe(0);
    expect(answer!.ns).toBe(1); // the zone's SOA: a negative answer that can be cached (RFC 2308)
    expect(answer!.ede?.code ?? null).toBe(ede);
  });

  it('the EDE text says why: .local is mDNS, which pvdns does not do', () => {
    expect(ask(table, 'nas.local', TYPE.A).answer!.ede!.text).toMatch(/local is multicast DNS's \(RFC 6762\), which pvdns does not do/);
    expect(ask(none, 'nas.home.arpa', TYPE.A).answer!.ede).toEqual({ code: EDE.NO_REACHABLE_AUTHORITY, text: expect.stringContaining('RFC 8375') });
  });

  it('resolver.arpa answers SOA and NS at its apex (a locally served zone, RFC 6303 §3)', () => {
    expect(ask(table, 'resolver.arpa', TYPE.SOA).answer).toMatchObject({ rcode: RCODE.NOERROR, an: 1 });
    expect(ask(table, 'resolver.arpa', TYPE.NS).answer).toMatchObject({ rcode: RCODE.NOERROR, an: 1 });
  });

  it('home.arpa with no local network PvD: NXDOMAIN with a short negative TTL', () => {
    const a = ask(none, 'nas.home.arpa', TYPE.A).answer!;
    expect(a).toMatchObject({ rcode: RCODE.NXDOMAIN, soaTtl: 60 });
  });

  it('home.arpa DS at the apex is asked as any name (RFC 8375 §4 item 4B), below it not', () => {
    expect(ask(none, 'home.arpa', TYPE.DS).next).toEqual(['tun0']);
    expect(ask(none, 'x.home.arpa', TYPE.DS).answer?.rcode).toBe(RCODE.NXDOMAIN);
    expect(ask(table, 'home.arpa', TYPE.DS).next).toEqual(['wlan0']);
  });

  it('claimed and routed names pass on', () => {
    expect(ask(table, 'hp.printers.local', TYPE.A).next).toEqual(['lan']);
    expect(ask(table, 'db.lab.test', TYPE.A).next).toEqual(['lan']);
    expect(ask(table, 'nas.home.arpa', TYPE.A).next).toEqual(['wlan0']);
  });

  describe('a query forced into one PvD (a per-PvD listener, /v1/resolve?pvd=)', () => {
    const lan = table.match(wireKey('hp.printers.local')).pvds[0]!;

    it('reaches it only for special-use names its route holds', () => {
      expect(ask(table, 'nas.home.arpa', TYPE.A, wifi).next).not.toBeNull();
      expect(ask(table, 'nas.home.arpa', TYPE.A, vpn).answer).toMatchObject({ rcode: RCODE.NXDOMAIN, ede: { code: EDE.NO_REACHABLE_AUTHORITY, text: expect.stringContaining('tun0') } });
      expect(ask(table, 'hp.printers.local', TYPE.A, lan).next).not.toBeNull();
      expect(ask(table, 'hp.printers.local', TYPE.A, wifi).answer?.rcode).toBe(RCODE.NXDOMAIN);
      expect(ask(table, 'nas.local', TYPE.A, lan).answer?.ede?.code).toBe(EDE.NOT_SUPPORTED);
      expect(ask(table, 'x.test', TYPE.A, wifi).answer?.rcode).toBe(RCODE.NXDOMAIN);
      expect(ask(table, '_dns.resolver.arpa', TYPE.SVCB, wifi).answer?.rcode).toBe(RCODE.NOERROR);
    });

    it('still asks it for RFC 6303 zones and ordinary names', () => {
      expect(ask(table, '1.1.168.192.in-addr.arpa', TYPE.PTR, vpn).next).not.toBeNull();
      expect(ask(table, 'www.example.org', TYPE.A, vpn).next).not.toBeNull();
    });
  });
});
