// DNS64 per PvD against fake upstreams on 127.0.0.60–69:
//
//   cell   (default, priority 20, dns64 auto)      ─▶ a DNS64 resolver: synthesizes from 64:ff9b::/96
//   wifi   (default, priority 10, dns64 auto)      ─▶ a plain resolver: no AAAA for IPv4-only names
//   nat    (zone nat.example, Pref64 2001:db8:64::/96 configured, dns64Synthesize) ─▶ a plain resolver
//
// Pref64 discovery through each PvD's own server, synthesized answers marked
// and kept in their PvD, a prefix change dropping them, and pvdns's own
// synthesis (RFC 6147) including PTR.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { del, eventually, EventStream, getPvd, put, resolve } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const T = Packet.TYPE;
const V4 = '192.0.2.1';
const rr = (name: string, type: number, ttl: number, data: Record<string, unknown>): Resource => ({ name, type, class: 1, ttl, ...data }) as Resource;

/**
 * A resolver's answers: A records for IPv4-only names (v4only*, alias* via a
 * CNAME), real AAAA for dual*, NXDOMAIN for missing*; AAAA of an IPv4-only
 * name is NODATA with an SOA, or — as a DNS64 would — synthesized from
 * `synth` (a function of the IPv4 address).
 */
function resolver(synth: ((v4: string) => string) | null) {
  return (q: Packet): Packet => {
    const { name, type } = q.questions[0]!;
    const n = name.toLowerCase();
    const zone = n.split('.').slice(-2).join('.');
    const nodata = () => answer(q, [], { authorities: [soa(zone, 300, 300)] });
    if (n.startsWith('missing')) return answer(q, [], { rcode: 3, authorities: [soa(zone, 300, 300)] });
    // mapped*: only an IPv4-mapped AAAA and no A; afail*: no AAAA, and the A query fails.
    if (n.startsWith('mapped')) return type === T.AAAA ? answer(q, [rr(name, T.AAAA, 300, { address: '::ffff:c000:201' })]) : nodata();
    if (n.startsWith('afail')) return type === T.A ? answer(q, [], { rcode: 2 }) : nodata();
    if (type === T.PTR) {
      return n === '1.2.0.192.in-addr.arpa' ? answer(q, [rr(name, T.PTR, 300, { domain: 'v4only.example' })]) : answer(q, [], { rcode: 3, authorities: [soa('in-addr.arpa', 300, 300)] });
    }
    const chain = n.startsWith('alias') ? [rr(name, T.CNAME, 120, { domain: `v4only.${zone}` })] : [];
    const owner = chain.length ? `v4only.${zone}` : name;
    if (type === T.A) return answer(q, [...chain, rr(owner, T.A, 3600, { address: V4 })]);
    if (type !== T.AAAA) return nodata();
    if (n.startsWith('dual')) return answer(q, [rr(name, T.AAAA, 300, { address: '2001:db8::1' })]);
    if (synth) return answer(q, [...chain, rr(owner, T.AAAA, 300, { address: synth(V4) })]);
    return chain.length ? answer(q, chain, { authorities: [soa(zone, 300, 300)] }) : nodata();
  };
}

const wkp = (v4: string): string => `64:ff9b::${v4.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join('').replace(/^(....)(....)$/, '$1:$2')}`;
const newPrefix = (v4: string): string => wkp(v4).replace('64:ff9b::', '2001:db8:46::');

describe('DNS64 per PvD', () => {
  const cell = new FakeUpstream(resolver(wkp));
  const wifi = new FakeUpstream(resolver(null));
  const plain = new FakeUpstream(resolver(null));
  let pvdns: Running;

  const cellSpec = { identifier: 'cell', dnsServers: [] as string[], default: true, priority: 20, dns64: 'auto' };

  beforeAll(async () => {
    await cell.start('127.0.0.60');
    await wifi.start('127.0.0.61');
    await plain.start('127.0.0.62');
    cell.dns64Answer = { addresses: ['64:ff9b::c000:aa', '64:ff9b::c000:ab'], ttl: 600 };
    cellSpec.dnsServers = [cell.address];
    pvdns = await startPvdns({
      upstream: { timeoutMs: 400, attempts: 1 },
      pvds: [
        { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10, dns64: 'auto' },
        { identifier: 'nat', dnsServers: [plain.address], dnsZones: ['nat.example'], noInternet: true, dns64: '2001:db8:64::/96', dns64Synthesize: true },
      ],
    });
    expect((await put(pvdns.http, 'cell', cellSpec)).status).toBe(201);
    await eventually('cell to learn its Pref64', async () => (await getPvd(pvdns.http, 'cell')).body.dns64 === 'network');
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([cell.stop(), wifi.stop(), plain.stop()]);
  });
  beforeEach(() => {
    for (const u of [cell, wifi, plain]) u.seen.length = 0;
  });

  describe('Pref64 discovery (RFC 7050)', () => {
    it('asks each PvD with dns64 auto through its own servers only, and shows what it learned', async () => {
      await eventually('wifi to finish discovery', async () => (await getPvd(pvdns.http, 'wifi')).body.dns64 === 'none');
      expect(cell.discoveries).toHaveLength(1);
      expect(wifi.discoveries).toHaveLength(1);
      expect(plain.discoveries).toHaveLength(0); // a configured prefix needs no discovery
      expect(cell.discoveries[0]!.packet.header.rd).toBe(1);
      expect((cell.discoveries[0]!.packet.header as unknown as { cd: number }).cd).toBe(0); // RFC 7050 §3: CD=0

      const c = (await getPvd(pvdns.http, 'cell')).body;
      expect(c).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'network', pref64Source: 'discovery', pref64Error: null });
      // Rediscovery is due 10 s before the 600 s TTL runs out.
      const next = Date.parse(c.pref64NextCheck!) - Date.now();
      expect(next).toBeGreaterThan(580_000);
      expect(next).toBeLessThanOrEqual(590_000);
      expect((await getPvd(pvdns.http, 'wifi')).body).toMatchObject({ pref64: [], dns64: 'none' });
      expect((await getPvd(pvdns.http, 'nat')).body).toMatchObject({ pref64: ['2001:db8:64::/96'], dns64: 'pvdns', pref64Source: 'config' });
    });
  });

  describe('answers synthesized by the network', () => {
    it('marks AAAA answers inside the Pref64 as synthesized and counts them; the same name in another PvD has no AAAA', async () => {
      const viaCell = await resolve(pvdns.http, 'name=v4only.example&type=AAAA&pvd=cell');
      expect(viaCell.body).toMatchObject({ pvd: 'cell', rcode: 'NOERROR', synthesized: true, cached: false });
      expect(viaCell.body.answers.map((x) => x.data)).toEqual(['64:ff9b::c000:201']);
      expect((await resolve(pvdns.http, 'name=v4only.example&type=AAAA&pvd=cell')).body).toMatchObject({ synthesized: true, cached: true });

      // Routed as a DNS client's query is: to wifi, which has no AAAA for it.
      const routed = await ask(pvdns.dns, 'v4only.example', 'AAAA');
      expect(routed.packet.header.rcode).toBe(0);
      expect(routed.packet.answers).toEqual([]);
      expect(wifi.names()).toEqual(['v4only.example']);
      expect((await resolve(pvdns.http, 'name=v4only.example&type=AAAA')).body).toMatchObject({ pvd: 'wifi', synthesized: false, answers: [] });

      // Real AAAA records are not synthesized.
      expect((await resolve(pvdns.http, 'name=dual.example&type=AAAA&pvd=cell')).body).toMatchObject({ synthesized: false });

      const metrics = await (await fetch(`${pvdns.http}/metrics`)).text();
      expect(metrics).toMatch(/^pvdns_dns64_synthesized_total\{pvd="cell"\} 2$/m);
      expect(metrics).not.toMatch(/^pvdns_dns64_synthesized_total\{pvd="wifi"\}/m);
    });

    it('drops synthesized answers when the prefix changes, and says so on the event stream', async () => {
      await resolve(pvdns.http, 'name=v4only.example&type=AAAA&pvd=cell');
      expect((await resolve(pvdns.http, 'name=v4only.example&type=AAAA&pvd=cell')).body.cached).toBe(true);
      const events = await EventStream.open(pvdns.http);
      try {
        for (let i = 0; i < 3; i++) expect((await events.next()).event).toBe('pvd-announced');
        // The network renumbers its NAT64; an update of the PvD makes pvdns ask again at once.
        cell.respond = resolver(newPrefix);
        cell.dns64Answer = { addresses: ['2001:db8:46::c000:aa'], ttl: 600 };
        expect((await put(pvdns.http, 'cell', { ...cellSpec, priority: 21 })).status).toBe(200);
        expect((await events.next()).event).toBe('pvd-updated');
        const changed = await events.next();
        expect(changed.event).toBe('pref64-changed');
        expect(changed.data).toMatchObject({ identifier: 'cell', pref64: ['2001:db8:46::/96'], previousPref64: ['64:ff9b::/96'], dns64: 'network' });
      } finally {
        events.close();
      }
      const after = await resolve(pvdns.http, 'name=v4only.example&type=AAAA&pvd=cell');
      expect(after.body).toMatchObject({ cached: false, synthesized: true });
      expect(after.body.answers.map((x) => x.data)).toEqual(['2001:db8:46::c000:201']);
    });

    it('serves no synthesized answer from the cache once the PvD is withdrawn, nor after it comes back', async () => {
      await resolve(pvdns.http, 'name=gone.example&type=AAAA&pvd=cell');
      expect((await del(pvdns.http, 'cell')).status).toBe(200);
      const r = await ask(pvdns.dns, 'gone.example', 'AAAA');
      expect(r.packet.answers).toEqual([]); // wifi's answer: the cell's synthesized AAAA went with it
      expect((await put(pvdns.http, 'cell', cellSpec)).status).toBe(201);
      await eventually('cell to learn its Pref64 again', async () => (await getPvd(pvdns.http, 'cell')).body.dns64 === 'network');
      expect((await resolve(pvdns.http, 'name=gone.example&type=AAAA&pvd=cell')).body).toMatchObject({ cached: false, synthesized: true });
    });
  });

  describe('synthesis by pvdns (dns64Synthesize, RFC 6147)', () => {
    it('makes AAAA from the A records of a name without AAAA, TTL min(A TTL, SOA TTL), marked synthesized', async () => {
      const r = await ask(pvdns.dns, 'v4only.nat.example', 'AAAA');
      expect(r.packet.header.rcode).toBe(0);
      expect((r.packet.header as unknown as { ad: number }).ad).toBe(0);
      expect(r.packet.answers.map((x) => [x.name, x.type, x.ttl, x.address])).toEqual([['v4only.nat.example', T.AAAA, 300, '2001:db8:64::c000:201']]);
      expect(plain.seen.map((s) => `${s.name} ${s.type}`)).toEqual([`v4only.nat.example ${T.AAAA}`, `v4only.nat.example ${T.A}`]);
      // The second query is a cache hit: nothing more upstream.
      const again = await ask(pvdns.dns, 'v4only.nat.example', 'AAAA');
      expect(again.packet.answers.map((x) => x.address)).toEqual(['2001:db8:64::c000:201']);
      expect(plain.seen).toHaveLength(2);
      expect((await resolve(pvdns.http, 'name=v4only.nat.example&type=AAAA')).body).toMatchObject({ pvd: 'nat', synthesized: true, cached: true });
    });

    it('keeps the CNAME chain (§5.1.5)', async () => {
      const r = await ask(pvdns.dns, 'alias.nat.example', 'AAAA');
      expect(r.packet.answers.map((x) => [x.name, x.type, x.domain ?? x.address])).toEqual([
        ['alias.nat.example', T.CNAME, 'v4only.nat.example'],
        ['v4only.nat.example', T.AAAA, '2001:db8:64::c000:201'],
      ]);
    });

    it('leaves real AAAA records, NXDOMAIN and A answers as they are (§5.1.1, §5.1.2, §5.3.3)', async () => {
      expect((await ask(pvdns.dns, 'dual.nat.example', 'AAAA')).packet.answers.map((x) => x.address)).toEqual(['2001:db8::1']);
      const nx = await ask(pvdns.dns, 'missing.nat.example', 'AAAA');
      expect(nx.packet.header.rcode).toBe(3);
      expect(plain.seen.map((s) => s.type)).toEqual([T.AAAA, T.AAAA]); // no A query behind NXDOMAIN
      // The A answer behind the first synthesis was cached in the PvD like any other, and is served as it is.
      expect((await ask(pvdns.dns, 'v4only.nat.example', 'A')).packet.answers.map((x) => x.address)).toEqual([V4]);
      expect(plain.seen).toHaveLength(2);
    });

    it("answers with the A query's empty result or error when there is nothing to synthesize from (§5.1.6), never an IPv4-mapped AAAA (§5.1.4)", async () => {
      const mapped = await ask(pvdns.dns, 'mapped.nat.example', 'AAAA');
      expect(mapped.packet.header.rcode).toBe(0);
      expect(mapped.packet.answers).toEqual([]);
      // A failed A query is an error, not a NODATA to be cached for the AAAA question.
      for (let i = 0; i < 2; i++) expect((await ask(pvdns.dns, 'afail.nat.example', 'AAAA')).packet.header.rcode).toBe(2);
      expect((await resolve(pvdns.http, 'name=afail.nat.example&type=AAAA')).body.rcode).toBe('SERVFAIL');
    });

    it('does not synthesize for a client that set DO and CD (§5.5)', async () => {
      const r = await ask(pvdns.dns, 'v4only.nat.example', 'AAAA', { edns: { do: true }, cd: true });
      expect(r.packet.header.rcode).toBe(0);
      expect(r.packet.answers).toEqual([]);
    });

    it('answers PTR for an address inside the Pref64 with a CNAME to in-addr.arpa and its PTR (§5.3.1), routed to the PvD', async () => {
      // 2001:db8:64::c000:201 → 1.2.0.192.in-addr.arpa; the Pref64's reverse zone routes to nat.
      const name = `1.0.2.0.0.0.0.c.${'0.'.repeat(12)}4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa`;
      const r = await ask(pvdns.dns, name, 'PTR');
      expect(r.packet.answers.map((x) => [x.name, x.type, x.domain])).toEqual([
        [name, T.CNAME, '1.2.0.192.in-addr.arpa'],
        ['1.2.0.192.in-addr.arpa', T.PTR, 'v4only.example'],
      ]);
      expect(plain.names()).toEqual(['1.2.0.192.in-addr.arpa']);
      expect(wifi.seen).toEqual([]);
      // The well-known addresses are ipv4only.arpa, answered locally (RFC 8880 §7.2.1).
      const wka = `a.a.0.0.0.0.0.c.${'0.'.repeat(12)}4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa`;
      expect((await ask(pvdns.dns, wka, 'PTR')).packet.answers.map((x) => x.domain)).toEqual(['ipv4only.arpa']);
    });
  });

  describe('configuration errors', () => {
    it('refuses a NAT64 prefix RFC 6052 does not allow, naming the field', async () => {
      const r = await put(pvdns.http, 'bad', { identifier: 'bad', dnsServers: [wifi.address], dns64: '2001:db8:0:0:ff00::/96' });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/^dns64: .*bits 64–71/);
    });
  });
});
