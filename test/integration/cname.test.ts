// A CNAME chain that leaves one PvD's answer for a name another PvD claims is
// finished in the PvD that claims it (resolve/cname-stage.ts): the first
// PvD's word on the target is dropped, the target is asked of its owner only
// — never of the first PvD — and a chain that keeps crossing PvDs ends in
// SERVFAIL, not a hang. A target nobody claims stays with the PvD that
// answered, and a query forced into one PvD is never chased out of it.
//
// corp (127.0.0.182) claims corp.example; wifi (127.0.0.183) is the default
// PvD and claims home.example (its LAN's names). Each lies about the other's
// names in its CNAME answers.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ask, ede, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { a, answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const CNAME = Packet.TYPE.CNAME;
const AAAA = Packet.TYPE.AAAA;

const cname = (name: string, target: string): Resource => ({ name, type: CNAME, class: 1, ttl: 300, domain: target }) as Resource;
const aaaa = (name: string, address: string): Resource => ({ name, type: AAAA, class: 1, ttl: 300, address }) as Resource;

/** chainTo answers with a CNAME to `target` and the upstream's own (made up) address for it. */
function chainTo(q: Packet, target: string, lie: string): Packet {
  const name = q.questions[0]!.name;
  const type = q.questions[0]!.type;
  return answer(q, [cname(name, target), type === AAAA ? aaaa(target, '2001:db8::66') : a(q, lie, 300, target)]);
}

const corp = new FakeUpstream((q) => {
  const name = q.questions[0]!.name.toLowerCase();
  const type = q.questions[0]!.type;
  if (name === 'host.corp.example' || name === 'host2.corp.example') {
    return type === Packet.TYPE.A ? answer(q, [a(q, '10.8.1.7')]) : answer(q, [], { authorities: [soa('corp.example', 300, 300)] });
  }
  if (name === 'a.corp.example') return chainTo(q, 'printer.home.example', '10.99.99.99');
  if (name === 'c.corp.example') return chainTo(q, 'cdn.public.example', '198.51.100.7');
  if (name === 'loop1.corp.example') return chainTo(q, 'loop2.home.example', '10.99.99.98');
  return answer(q, [], { rcode: 3, authorities: [soa('corp.example', 300, 300)] });
});

const wifi = new FakeUpstream((q) => {
  const name = q.questions[0]!.name.toLowerCase();
  if (name === 'www.public.example') return chainTo(q, 'host.corp.example', '1.2.3.4');
  if (name === 'cd.public.example') return chainTo(q, 'host2.corp.example', '1.2.3.5');
  if (name === 'nx.public.example') return chainTo(q, 'gone.corp.example', '1.2.3.6');
  if (name === 'printer.home.example') return answer(q, [a(q, '192.168.1.50')]);
  if (name === 'loop2.home.example') return chainTo(q, 'loop1.corp.example', '1.2.3.7');
  if (name === 'lh.public.example') return chainTo(q, 'db.localhost', '203.0.113.9');
  return answer(q, [a(q, '198.51.100.99')]);
});

let pvdns: Running;

beforeAll(async () => {
  await corp.start('127.0.0.182');
  await wifi.start('127.0.0.183');
  pvdns = await startPvdns({
    upstream: { timeoutMs: 300, attempts: 2 },
    pvds: [
      { identifier: 'corp', dnsServers: [corp.address], dnsZones: ['corp.example'], noInternet: true },
      { identifier: 'wifi', dnsServers: [wifi.address], dnsZones: ['home.example'], default: true },
    ],
  });
});
afterAll(async () => {
  await pvdns.stop();
  await Promise.all([corp.stop(), wifi.stop()]);
});
beforeEach(() => {
  corp.seen.length = 0;
  wifi.seen.length = 0;
});

/** chain renders a reply's answer section as "name TYPE data" lines. */
const chain = (p: Packet): string[] =>
  p.answers.map((r) => `${r.name.toLowerCase()} ${r.type === CNAME ? 'CNAME' : r.type === AAAA ? 'AAAA' : r.type === Packet.TYPE.A ? 'A' : r.type} ${(r.domain ?? r.address ?? '').toLowerCase()}`);

describe('a CNAME into a name another PvD claims', () => {
  it("is finished in the target's PvD: its address, not the first PvD's, and the target asked of its owner only", async () => {
    const r = await ask(pvdns.dns, 'www.public.example', 'A');
    expect(r.packet.header.rcode).toBe(0);
    expect(chain(r.packet)).toEqual(['www.public.example CNAME host.corp.example', 'host.corp.example A 10.8.1.7']);
    expect(JSON.stringify(r.packet.answers)).not.toContain('1.2.3.4'); // the Wi-Fi's word on corp's name is gone
    expect(corp.names()).toEqual(['host.corp.example']);
    expect(wifi.names()).toEqual(['www.public.example']); // the Wi-Fi never heard the target asked
  });

  it('the other way round: a corp answer pointing into the LAN is finished by the LAN, and corp is not asked for it', async () => {
    const r = await ask(pvdns.dns, 'a.corp.example', 'A', { tcp: true });
    expect(chain(r.packet)).toEqual(['a.corp.example CNAME printer.home.example', 'printer.home.example A 192.168.1.50']);
    expect(corp.names()).toEqual(['a.corp.example']);
    expect(wifi.names()).toEqual(['printer.home.example']);
  });

  it("keeps each PvD's own answers in its cache: asked again, nothing goes upstream and the answer is the same", async () => {
    const r = await ask(pvdns.dns, 'www.public.example', 'A');
    expect(chain(r.packet)).toEqual(['www.public.example CNAME host.corp.example', 'host.corp.example A 10.8.1.7']);
    expect(corp.seen).toHaveLength(0);
    expect(wifi.seen).toHaveLength(0);
    const pvds = (await (await fetch(`${pvdns.http}/v1/pvds`)).json()) as { pvds: Array<{ identifier: string; cacheEntries: number }> };
    // wifi: www.public.example and printer.home.example; corp: host.corp.example and a.corp.example.
    expect(Object.fromEntries(pvds.pvds.map((p) => [p.identifier, p.cacheEntries]))).toEqual({ corp: 2, wifi: 2 });
  });

  it("takes the target's RCODE and negative answer (RFC 6604): NODATA and NXDOMAIN from the owner", async () => {
    const nodata = await ask(pvdns.dns, 'www.public.example', 'AAAA');
    expect(nodata.packet.header.rcode).toBe(0);
    expect(chain(nodata.packet)).toEqual(['www.public.example CNAME host.corp.example']);
    expect(nodata.packet.authorities.map((r) => r.name)).toEqual(['corp.example']);
    const nx = await ask(pvdns.dns, 'nx.public.example', 'A');
    expect(nx.packet.header.rcode).toBe(3);
    expect(chain(nx.packet)).toEqual(['nx.public.example CNAME gone.corp.example']);
    expect(corp.names()).toEqual(['host.corp.example', 'gone.corp.example']);
    expect(wifi.names()).toEqual(['www.public.example', 'nx.public.example']);
  });

  it("asks the target with the client's CD bit", async () => {
    const r = await ask(pvdns.dns, 'cd.public.example', 'A', { cd: true });
    expect(chain(r.packet)).toEqual(['cd.public.example CNAME host2.corp.example', 'host2.corp.example A 10.8.1.7']);
    expect(corp.seen.map((s) => [s.name, s.raw.readUInt16BE(2) & 0x0010])).toEqual([['host2.corp.example', 0x0010]]);
  });

  it('ends a chain that keeps crossing PvDs (a loop) with SERVFAIL, at once, each PvD asked once', async () => {
    const started = Date.now();
    const r = await ask(pvdns.dns, 'loop1.corp.example', 'A', { timeoutMs: 3000 });
    expect(r.packet.header.rcode).toBe(2);
    expect(ede(r.packet)?.extraText).toMatch(/CNAME chain .*loop across PvDs/);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(corp.names()).toEqual(['loop1.corp.example']);
    expect(wifi.names()).toEqual(['loop2.home.example']);
  });
});

describe('a CNAME into a name pvdns answers itself', () => {
  it('is answered by pvdns (RFC 6761 §6.3: localhost is loopback), whatever the upstream said', async () => {
    const r = await ask(pvdns.dns, 'lh.public.example', 'A');
    expect(chain(r.packet)).toEqual(['lh.public.example CNAME db.localhost', 'db.localhost A 127.0.0.1']);
    expect(wifi.names()).toEqual(['lh.public.example']);
    expect(corp.seen).toHaveLength(0);
  });
});

describe('a CNAME that stays', () => {
  it('into a name nobody claims: the answering PvD resolved it, and nobody else is asked', async () => {
    const r = await ask(pvdns.dns, 'c.corp.example', 'A');
    expect(chain(r.packet)).toEqual(['c.corp.example CNAME cdn.public.example', 'cdn.public.example A 198.51.100.7']);
    expect(corp.names()).toEqual(['c.corp.example']);
    expect(wifi.seen).toHaveLength(0);
  });

  it('in a query forced into one PvD (Translate Name): that PvD\'s answer as it is', async () => {
    const res = (await (await fetch(`${pvdns.http}/v1/resolve?name=www.public.example&type=A&pvd=wifi`)).json()) as {
      pvd: string;
      answers: Array<{ name: string; type: string; data: string }>;
    };
    expect(res.pvd).toBe('wifi');
    expect(res.answers.map((x) => x.data.replace(/\.$/, ''))).toEqual(['host.corp.example', '1.2.3.4']);
    expect(corp.seen).toHaveLength(0);
  });
});
