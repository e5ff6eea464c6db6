// Routing by namespace: each name goes only to the PvD that owns it (by
// dnsZones or by the reverse zones of its prefixes); names nobody owns go to
// the default PvDs in priority order. Each fake upstream records what it
// was asked, so "no leak" is checked on the other PvDs' servers.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { a, answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

describe('routing by PvD', () => {
  const wifi = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.10')]));
  const corp = new FakeUpstream((q) =>
    q.questions[0]!.type === Packet.TYPE.PTR
      ? answer(q, [{ name: q.questions[0]!.name, type: Packet.TYPE.PTR, class: 1, ttl: 60, domain: 'host.corp.example.com' } as Resource])
      : answer(q, [a(q, '10.8.0.20')]),
  );
  const dead = new FakeUpstream(() => null); // never answers
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.0.21');
    await corp.start('127.0.0.22');
    await dead.start('127.0.0.23');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 300, attempts: 2 },
      pvds: [
        {
          identifier: 'corp.example.com',
          dnsServers: [corp.address],
          dnsZones: ['corp.example.com', 'Intranet.Example'],
          prefixes: ['10.8.0.0/16', '172.20.16.0/20', 'fd00:1234::/32', 'fd00:5678:5600::/39'],
          noInternet: true,
        },
        { identifier: 'lab', dnsServers: [dead.address], dnsZones: ['lab.example'], noInternet: true },
        { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10 },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), corp.stop(), dead.stop()]);
  });

  const clear = (): void => {
    for (const u of [wifi, corp, dead]) u.seen.length = 0;
  };

  it('sends a name under a PvD zone to that PvD only', async () => {
    clear();
    const r = await ask(pvdns.dns, 'git.CORP.example.com', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['10.8.0.20']);
    expect(corp.names()).toEqual(['git.corp.example.com']);
    expect(wifi.seen).toHaveLength(0);
  });

  it('matches zones case-insensitively and on label boundaries', async () => {
    clear();
    await ask(pvdns.dns, 'wiki.intranet.example', 'A');
    await ask(pvdns.dns, 'notcorp.example.com', 'A'); // shares a suffix string, not a zone
    expect(corp.names()).toEqual(['wiki.intranet.example']);
    expect(wifi.names()).toEqual(['notcorp.example.com']);
  });

  it('sends names nobody claims to the default PvD, never to a noInternet one', async () => {
    clear();
    const r = await ask(pvdns.dns, 'www.example.org', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.10']);
    expect(wifi.names()).toEqual(['www.example.org']);
    expect(corp.seen).toHaveLength(0);
    expect(dead.seen).toHaveLength(0);
  });

  it('routes PTR queries by the PvD prefixes, octet-aligned or not', async () => {
    clear();
    for (const name of [
      '5.0.8.10.in-addr.arpa', // 10.8.0.5 in 10.8.0.0/16
      '5.17.20.172.in-addr.arpa', // 172.20.17.5 in 172.20.16.0/20
      `1.${'0.'.repeat(23)}4.3.2.1.0.0.d.f.ip6.arpa`, // fd00:1234::1 in fd00:1234::/32
      `1.${'0.'.repeat(21)}6.5.8.7.6.5.0.0.d.f.ip6.arpa`, // fd00:5678:5601::1 in fd00:5678:5600::/39
    ]) {
      const r = await ask(pvdns.dns, name, 'PTR');
      expect(r.packet.header.rcode, name).toBe(0);
      expect(r.packet.answers[0]?.domain, name).toBe('host.corp.example.com');
    }
    expect(corp.seen).toHaveLength(4);
    expect(wifi.seen).toHaveLength(0);
  });

  it('answers private reverse names outside every PvD prefix locally', async () => {
    clear();
    // 172.20.32.5 is RFC 1918 but outside 172.20.16.0/20; fd00:5678:5800::1 is ULA outside the /39.
    for (const name of ['5.32.20.172.in-addr.arpa', `1.${'0.'.repeat(21)}8.5.8.7.6.5.0.0.d.f.ip6.arpa`]) {
      const r = await ask(pvdns.dns, name, 'PTR');
      expect(r.packet.header.rcode, name).toBe(3);
      expect(r.packet.header.aa).toBe(1);
      expect(r.packet.authorities[0]?.type).toBe(Packet.TYPE.SOA);
    }
    expect([...wifi.seen, ...corp.seen, ...dead.seen]).toHaveLength(0);
  });

  it('answers SERVFAIL naming the PvD when its servers fail, and asks no other PvD', async () => {
    clear();
    const r = await ask(pvdns.dns, 'db.lab.example', 'A');
    expect(r.packet.header.rcode).toBe(2);
    const e = ede(r.packet);
    expect(e?.infoCode).toBe(22);
    expect(e?.extraText).toMatch(/^pvd lab: all servers unreachable/);
    expect(new Set(dead.names())).toEqual(new Set(['db.lab.example'])); // asked again within the budget: it is silent
    expect(wifi.seen).toHaveLength(0);
    expect(corp.seen).toHaveLength(0);
  });

  it('takes the same decision for the A and AAAA queries of one name', async () => {
    clear();
    await Promise.all([ask(pvdns.dns, 'app.corp.example.com', 'A'), ask(pvdns.dns, 'app.corp.example.com', 'AAAA')]);
    await Promise.all([ask(pvdns.dns, 'app.example.net', 'A'), ask(pvdns.dns, 'app.example.net', 'AAAA')]);
    expect(corp.names().sort()).toEqual(['app.corp.example.com', 'app.corp.example.com']);
    expect(wifi.names().sort()).toEqual(['app.example.net', 'app.example.net']);
  });
});

describe('default PvDs in priority order', () => {
  const first = new FakeUpstream((q) => answer(q, [], { rcode: 2 })); // SERVFAIL for everything
  const second = new FakeUpstream((q) => answer(q, [a(q, '198.51.100.7')], { authorities: [soa('example', 60, 60)] }));
  let pvdns: Running;

  beforeAll(async () => {
    await first.start('127.0.0.24');
    await second.start('127.0.0.25');
    pvdns = await startPvdns({
      pvds: [
        { identifier: 'cell', dnsServers: [second.address], priority: 20 },
        { identifier: 'wifi', dnsServers: [first.address], priority: 10 },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([first.stop(), second.stop()]);
  });

  it('asks the preferred default first and the next one when it fails', async () => {
    const r = await ask(pvdns.dns, 'www.example', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['198.51.100.7']);
    expect(first.names()).toEqual(['www.example']);
    expect(second.names()).toEqual(['www.example']);
  });
});
