// Local names are answered by pvdns itself with zero upstream packets:
// localhost (RFC 6761 §6.3), invalid (§6.4) and the RFC 6303 locally served
// zones — the default PvD's fake server proves nothing was forwarded.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

describe('local names', () => {
  const up = new FakeUpstream();
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.26');
    pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    expect(up.seen).toHaveLength(0);
    await pvdns.stop();
    await up.stop();
  });

  it.each([
    ['localhost', 'A', '127.0.0.1'],
    ['LocalHost', 'AAAA', '::1'],
    ['printer.localhost', 'A', '127.0.0.1'],
    ['a.b.localhost', 'AAAA', '::1'],
  ])('answers %s %s with the loopback address', async (name, type, address) => {
    const r = await ask(pvdns.dns, name, type);
    expect(r.packet.header.rcode).toBe(0);
    expect(r.packet.header.aa).toBe(1);
    expect(r.packet.answers.map((x) => [x.name, x.address])).toEqual([[name, address]]);
  });

  it('answers other types of localhost with NODATA and the zone SOA', async () => {
    const r = await ask(pvdns.dns, 'localhost', 'MX');
    expect(r.packet.header.rcode).toBe(0);
    expect(r.packet.answers).toHaveLength(0);
    expect(r.packet.authorities[0]).toMatchObject({ name: 'localhost', type: Packet.TYPE.SOA, admin: 'nobody.invalid' });
  });

  it('answers invalid and names under it with NXDOMAIN', async () => {
    for (const name of ['invalid', 'www.example.invalid']) {
      const r = await ask(pvdns.dns, name, 'A');
      expect(r.packet.header.rcode).toBe(3);
      expect(r.packet.authorities[0]).toMatchObject({ name: 'invalid', type: Packet.TYPE.SOA });
    }
  });

  it.each([
    ['4.3.2.10.in-addr.arpa', '10.in-addr.arpa'],
    ['1.1.168.192.in-addr.arpa', '168.192.in-addr.arpa'],
    ['9.9.31.172.in-addr.arpa', '31.172.in-addr.arpa'],
    ['1.1.254.169.in-addr.arpa', '254.169.in-addr.arpa'],
    ['1.0.0.100.in-addr.arpa'.replace('0.0.100', '0.64.100'), '64.100.in-addr.arpa'],
    [`1.${'0.'.repeat(29)}d.f.ip6.arpa`, 'd.f.ip6.arpa'],
    [`1.${'0.'.repeat(28)}8.e.f.ip6.arpa`, '8.e.f.ip6.arpa'],
    ['1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', '8.b.d.0.1.0.0.2.ip6.arpa'],
  ])('answers %s with NXDOMAIN from the empty zone %s (RFC 6303 §3)', async (name, zone) => {
    const r = await ask(pvdns.dns, name, 'PTR');
    expect(r.packet.header.rcode).toBe(3);
    expect(r.packet.header.aa).toBe(1);
    expect(r.packet.authorities[0]).toMatchObject({ name: zone, type: Packet.TYPE.SOA, primary: zone, admin: 'nobody.invalid', minimum: 10800 });
  });

  it('answers SOA and NS at an empty zone apex', async () => {
    const s = await ask(pvdns.dns, '10.in-addr.arpa', 'SOA');
    expect(s.packet.answers[0]).toMatchObject({ type: Packet.TYPE.SOA, primary: '10.in-addr.arpa', serial: 1 });
    const n = await ask(pvdns.dns, '10.in-addr.arpa', 'NS');
    expect(n.packet.answers[0]).toMatchObject({ type: Packet.TYPE.NS, ns: '10.in-addr.arpa' });
  });

  it('maps the loopback addresses back to localhost', async () => {
    for (const name of ['1.0.0.127.in-addr.arpa', `1.${'0.'.repeat(31)}ip6.arpa`]) {
      const r = await ask(pvdns.dns, name, 'PTR');
      expect(r.packet.answers[0]).toMatchObject({ type: Packet.TYPE.PTR, domain: 'localhost' });
    }
  });
});
