// Which PvD owns a name (src/resolve/routes.ts) and which reverse zones a
// prefix owns (src/pvd/reverse.ts).

import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { wireKey } from '../../src/dns/name.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { reverseZones } from '../../src/pvd/reverse.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { RouteTable } from '../../src/resolve/routes.js';

let order = 0;
/** pvd builds a PvD the way configuration does; declaration order is the call order unless given. */
function pvd(spec: Record<string, unknown>, at = order++): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ dnsServers: ['192.0.2.53'], ...spec }), 'config', at);
}

/** route: who answers `name` — the PvD ids in order, the zone, and whether pvdns answers it itself. */
function route(table: RouteTable, name: string) {
  const r = table.match(wireKey(name));
  return { pvds: r.pvds.map((p) => p.id), zone: r.zone, local: r.local };
}

describe('RouteTable', () => {
  describe('longest-suffix match over dnsZones', () => {
    const table = new RouteTable([
      pvd({ identifier: 'wifi', default: true }),
      pvd({ identifier: 'vpn', dnsZones: ['Example.COM'], default: false }),
      pvd({ identifier: 'corp', dnsZones: ['corp.example.com.'], noInternet: true }),
      pvd({ identifier: 'lab', dnsZones: ['lab.corp.example.com'], noInternet: true }),
    ]);

    it.each([
      ['example.com', 'vpn', 'example.com'],
      ['www.example.com', 'vpn', 'example.com'],
      ['corp.example.com', 'corp', 'corp.example.com'],
      ['a.corp.example.com', 'corp', 'corp.example.com'],
      ['A.B.CORP.Example.Com', 'corp', 'corp.example.com'], // RFC 4343: names compare without case
      ['lab.corp.example.com', 'lab', 'lab.corp.example.com'],
      ['x.lab.corp.example.com', 'lab', 'lab.corp.example.com'],
      ['notcorp.example.com', 'vpn', 'example.com'], // a suffix only at a label boundary
      ['corp.example.com.evil.example', 'wifi', null],
      ['www.example.org', 'wifi', null],
      ['com', 'wifi', null],
    ])('%s → %s (zone %s, shown normalized)', (name, owner, zone) => {
      const r = route(table, name);
      expect(r.pvds).toEqual([owner]);
      expect(r.zone).toBe(zone);
      expect(r.local).toBeNull();
    });

    it('a claimed name goes only to its claimants, never also to the defaults (no leak)', () => {
      expect(route(table, 'db.corp.example.com').pvds).not.toContain('wifi');
    });
  });

  it('matches at label boundaries only: notcorp.example.com is not in corp.example.com', () => {
    const table = new RouteTable([pvd({ identifier: 'wifi' }), pvd({ identifier: 'corp', dnsZones: ['corp.example.com'], noInternet: true })]);
    expect(route(table, 'notcorp.example.com').pvds).toEqual(['wifi']);
    expect(route(table, 'xcorp.example.com').zone).toBeNull();
    expect(route(table, 'host.corp.example.com').pvds).toEqual(['corp']);
    // A label containing a dot is one label, not two.
    expect(route(table, 'host\\.corp.example.com').pvds).toEqual(['wifi']);
  });

  it('orders several PvDs claiming one zone by priority, then declaration order', () => {
    const pvds = [
      pvd({ identifier: 'p50a', dnsZones: ['shared.example'], priority: 50 }, 0),
      pvd({ identifier: 'p10a', dnsZones: ['shared.example'], priority: 10 }, 1),
      pvd({ identifier: 'p50b', dnsZones: ['shared.example'], priority: 50 }, 2),
      pvd({ identifier: 'p10b', dnsZones: ['SHARED.example.'], priority: 10 }, 3),
      pvd({ identifier: 'other', dnsZones: ['other.example'], priority: 1 }, 4),
    ];
    const want = ['p10a', 'p10b', 'p50a', 'p50b'];
    expect(route(new RouteTable(pvds), 'x.shared.example').pvds).toEqual(want);
    // The order the registry happens to list them in does not matter.
    expect(route(new RouteTable([...pvds].reverse()), 'x.shared.example').pvds).toEqual(want);
  });

  it('lists a PvD once for a zone it claims twice (by name and by prefix)', () => {
    const table = new RouteTable([pvd({ identifier: 'lan', dnsZones: ['10.in-addr.arpa'], prefixes: ['10.0.0.0/8'] })]);
    expect(route(table, '1.2.3.10.in-addr.arpa').pvds).toEqual(['lan']);
  });

  describe('default route', () => {
    const table = new RouteTable([
      pvd({ identifier: 'implicit-default', priority: 50 }, 0),
      pvd({ identifier: 'vpn', noInternet: true }, 1),
      // The schema refuses default: true without servers; the route table would skip such a PvD anyway.
      pvdFromSpec({ ...pvdSpecSchema.parse({ identifier: 'serverless' }), default: true, priority: 1 }, 'config', 2),
      pvd({ identifier: 'cell', default: true, priority: 20 }, 3),
      pvd({ identifier: 'not-default', default: false, priority: 0 }, 4),
      pvd({ identifier: 'wifi', default: true, priority: 20 }, 5),
    ]);

    it('holds the default PvDs with servers, not noInternet ones (RFC 8801 §4.3), by priority then order', () => {
      expect(table.defaultRoute.pvds.map((p) => p.id)).toEqual(['cell', 'wifi', 'implicit-default']);
    });

    it('is where unclaimed names go', () => {
      expect(route(table, 'www.example.org')).toEqual({ pvds: ['cell', 'wifi', 'implicit-default'], zone: null, local: null });
    });

    it('is empty when no PvD may serve the Internet', () => {
      const none = new RouteTable([pvd({ identifier: 'vpn', noInternet: true }), pvd({ identifier: 'off', default: false })]);
      expect(route(none, 'www.example.org').pvds).toEqual([]);
    });
  });

  describe('special-use names are always answered locally (RFC 6761 §6.3, §6.4)', () => {
    const wifi = pvd({ identifier: 'wifi', default: true });
    // The schema refuses these claims; a PvD that got one anyway must not win.
    const greedy = { ...pvd({ identifier: 'greedy', priority: 0, default: false }), dnsZones: ['localhost', 'invalid'] } as Pvd;
    const table = new RouteTable([wifi, greedy]);

    it.each([
      ['localhost', 'localhost'],
      ['LocalHost', 'localhost'],
      ['foo.localhost', 'localhost'],
      ['a.b.localhost', 'localhost'],
      ['invalid', 'invalid'],
      ['x.invalid', 'invalid'],
      ['a.b.INVALID', 'invalid'],
    ])('%s → %s', (name, kind) => {
      const r = route(table, name);
      expect(r.local).toBe(kind);
      expect(r.pvds).toEqual([]);
    });

    it('names that only end in those letters are not special', () => {
      expect(route(table, 'mylocalhost').local).toBeNull();
      expect(route(table, 'notinvalid').pvds).toEqual(['wifi']);
      expect(route(table, 'localhost.example').pvds).toEqual(['wifi']);
    });
  });

  describe('RFC 6303 locally served zones', () => {
    const table = new RouteTable([pvd({ identifier: 'wifi', default: true })]);

    it.each([
      ['10.in-addr.arpa', '10.in-addr.arpa'],
      ['4.3.2.10.in-addr.arpa', '10.in-addr.arpa'],
      ['1.0.16.172.in-addr.arpa', '16.172.in-addr.arpa'],
      ['1.0.31.172.in-addr.arpa', '31.172.in-addr.arpa'],
      ['5.1.168.192.in-addr.arpa', '168.192.in-addr.arpa'],
      ['1.0.64.100.in-addr.arpa', '64.100.in-addr.arpa'], // RFC 7793: 100.64.0.0/10
      ['1.0.127.100.in-addr.arpa', '127.100.in-addr.arpa'],
      ['1.0.0.127.in-addr.arpa', '127.in-addr.arpa'],
      ['1.2.0.192.in-addr.arpa', '2.0.192.in-addr.arpa'],
      ['1.100.51.198.in-addr.arpa', '100.51.198.in-addr.arpa'],
      ['1.113.0.203.in-addr.arpa', '113.0.203.in-addr.arpa'],
      ['0.0.0.0.in-addr.arpa', '0.in-addr.arpa'],
      ['255.255.255.255.in-addr.arpa', '255.255.255.255.in-addr.arpa'],
      [`1.${'0.'.repeat(31)}ip6.arpa`, `1.${'0.'.repeat(31)}ip6.arpa`],
      [`${'0.'.repeat(32)}ip6.arpa`, `${'0.'.repeat(32)}ip6.arpa`],
      ['1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', 'd.f.ip6.arpa'],
      ['1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', '8.b.d.0.1.0.0.2.ip6.arpa'],
    ])('%s is answered locally from %s', (name, zone) => {
      const r = route(table, name);
      expect(r.local).toBe('empty');
      expect(r.pvds).toEqual([]);
      expect(r.zone).toBe(zone);
    });

    it.each([
      '1.0.15.172.in-addr.arpa', // 172.15 is public
      '1.0.32.172.in-addr.arpa', // 172.32 is public
      '1.0.63.100.in-addr.arpa', // 100.63 is public
      '1.0.128.100.in-addr.arpa',
      '1.1.168.193.in-addr.arpa',
      '8.8.8.8.in-addr.arpa',
      '1.0.0.0.c.f.ip6.arpa', // fc00::/8 is not in RFC 6303's list
      '1.0.0.0.9.b.d.0.1.0.0.2.ip6.arpa', // 2001:db9::
      'in-addr.arpa',
    ])('%s is not a local zone: it goes to the defaults', (name) => {
      const r = route(table, name);
      expect(r.local).toBeNull();
      expect(r.pvds).toEqual(['wifi']);
    });
  });

  describe('a PvD that owns the address space gets its PTR queries', () => {
    const table = new RouteTable([
      pvd({ identifier: 'wifi', default: true }),
      pvd({ identifier: 'home', prefixes: ['192.168.1.0/24'] }), // longer than 168.192.in-addr.arpa
      pvd({ identifier: 'vpn10', prefixes: ['10.0.0.0/8'], noInternet: true }), // the same zone: a tie
      pvd({ identifier: 'big192', prefixes: ['192.0.0.0/8'] }), // shorter than 168.192.in-addr.arpa
      pvd({ identifier: 'ula', prefixes: ['fd00::/8'] }), // d.f.ip6.arpa: a tie
      pvd({ identifier: 'lab', prefixes: ['172.20.16.0/20'] }),
    ]);

    it.each([
      ['5.1.168.192.in-addr.arpa', ['home'], null],
      ['5.2.168.192.in-addr.arpa', [], 'empty'], // the rest of 192.168/16 stays local
      ['4.3.2.10.in-addr.arpa', ['vpn10'], null], // tie: the PvD wins
      ['10.in-addr.arpa', ['vpn10'], null],
      ['5.4.3.192.in-addr.arpa', ['big192'], null],
      ['5.2.0.192.in-addr.arpa', [], 'empty'], // 2.0.192 is longer than the PvD's 192
      ['5.5.168.192.in-addr.arpa', [], 'empty'], // shorter PvD zone loses to 168.192
      ['1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', ['ula'], null],
      ['5.0.17.20.172.in-addr.arpa', ['lab'], null],
      ['5.0.31.20.172.in-addr.arpa', ['lab'], null],
      ['5.0.15.20.172.in-addr.arpa', [], 'empty'], // outside 172.20.16.0/20, inside 20.172.in-addr.arpa
      ['5.0.32.20.172.in-addr.arpa', [], 'empty'],
    ])('%s → %j (local %s)', (name, pvds, local) => {
      const r = route(table, name);
      expect(r.pvds).toEqual(pvds);
      expect(r.local).toBe(local);
    });
  });

  it('the link-local reverse zones are not RFC 6303 empty zones but multicast DNS names (RFC 6762 §4)', () => {
    const table = new RouteTable([pvd({ identifier: 'wifi', default: true })]);
    for (const name of ['1.0.254.169.in-addr.arpa', '1.0.0.0.8.e.f.ip6.arpa', '1.0.0.0.b.e.f.ip6.arpa']) expect(route(table, name).local).toBe('mdns');
  });

  it('claims() lists the zones PvDs own', () => {
    const table = new RouteTable([pvd({ identifier: 'corp', dnsZones: ['corp.example.com'], prefixes: ['10.0.0.0/8'] })]);
    expect(table.claims()).toEqual(
      expect.arrayContaining([
        { zone: 'corp.example.com', pvds: ['corp'] },
        { zone: '10.in-addr.arpa', pvds: ['corp'] },
      ]),
    );
    expect(table.claims()).toHaveLength(2);
  });
});

describe('reverseZones (RFC 1035 §3.5, RFC 3596 §2.5, RFC 2317)', () => {
  const zones = (cidr: string): string[] => {
    const [addr, len] = ipaddr.parseCIDR(cidr);
    return reverseZones(addr, len);
  };
  const range = (from: number, to: number, suffix: string): string[] =>
    Array.from({ length: to - from + 1 }, (_, i) => `${from + i}.${suffix}`);

  it.each<[string, string[]]>([
    ['10.0.0.0/8', ['10.in-addr.arpa']],
    ['10.1.2.3/8', ['10.in-addr.arpa']], // host bits do not matter
    ['192.168.1.0/24', ['1.168.192.in-addr.arpa']],
    ['192.0.2.1/32', ['1.2.0.192.in-addr.arpa']],
    ['172.20.16.0/20', range(16, 31, '20.172.in-addr.arpa')],
    ['172.16.0.0/12', range(16, 31, '172.in-addr.arpa')],
    ['192.0.2.128/25', range(128, 255, '2.0.192.in-addr.arpa')],
    ['192.0.2.0/25', range(0, 127, '2.0.192.in-addr.arpa')],
    ['100.64.0.0/10', range(64, 127, '100.in-addr.arpa')],
    ['0.0.0.0/0', ['in-addr.arpa']],
    ['2001:db8::/32', ['8.b.d.0.1.0.0.2.ip6.arpa']],
    ['2001:db8::/30', ['8', '9', 'a', 'b'].map((n) => `${n}.b.d.0.1.0.0.2.ip6.arpa`)],
    ['2001:db8:ab00::/40', ['b.a.8.b.d.0.1.0.0.2.ip6.arpa']],
    ['fd00::/7', ['c.f.ip6.arpa', 'd.f.ip6.arpa']],
    ['fd00::/8', ['d.f.ip6.arpa']],
    ['fe80::/10', ['8.e.f.ip6.arpa', '9.e.f.ip6.arpa', 'a.e.f.ip6.arpa', 'b.e.f.ip6.arpa']],
    ['::/0', ['ip6.arpa']],
    ['2001:db8::1/128', [`1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`]],
  ])('%s', (cidr, want) => {
    expect(zones(cidr)).toEqual(want);
  });

  it('a PvD owns the reverse zones of all its prefixes', () => {
    const p = pvd({ identifier: 'lan', prefixes: ['192.168.1.0/24', '2001:db8::/30'] });
    expect([...p.reverseZones].sort()).toEqual(['1.168.192.in-addr.arpa', ...['8', '9', 'a', 'b'].map((n) => `${n}.b.d.0.1.0.0.2.ip6.arpa`)].sort());
  });
});
