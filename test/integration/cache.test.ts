// The PvD-tagged cache through real listeners: hits with TTLs counting down,
// negative caching from the SOA (RFC 2308), isolation between PvDs,
// withdrawal dropping a PvD's entries, and coalescing of identical queries.
// Time is the App's injected clock, so nothing sleeps.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pvdFromSpec } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { ask, opt, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

let now = Date.UTC(2026, 10, 25);
const clock = (): number => now;
const advance = (s: number): void => {
  now += s * 1000;
};

describe('answer cache', () => {
  const wifi = new FakeUpstream((q) => {
    const name = q.questions[0]!.name.toLowerCase();
    if (name.startsWith('nx')) return answer(q, [], { rcode: 3, authorities: [soa('example', 3600, 300)] });
    if (name.startsWith('nosoa')) return answer(q, [], { rcode: 3 });
    if (name.startsWith('nodata') && q.questions[0]!.type === Packet.TYPE.AAAA) return answer(q, [], { authorities: [soa('example', 60, 60)] });
    if (name.startsWith('long')) return answer(q, [a(q, '192.0.2.5', 999_999)]);
    return answer(q, [a(q, '192.0.2.1', 300)]);
  });
  const cell = new FakeUpstream((q) => answer(q, [a(q, '198.51.100.1', 300)]));
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.0.31');
    await cell.start('127.0.0.32');
    pvdns = await startPvdns(
      {
        cache: { maxTtl: 3600 },
        pvds: [
          { identifier: 'wifi', dnsServers: [wifi.address], priority: 10 },
          { identifier: 'cell', dnsServers: [cell.address], priority: 20 },
        ],
      },
      { clock },
    );
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), cell.stop()]);
  });
  beforeEach(() => {
    wifi.seen.length = 0;
    cell.seen.length = 0;
  });

  it('answers a repeated question from cache with its TTL counting down', async () => {
    const first = await ask(pvdns.dns, 'www.example', 'A');
    expect(first.packet.answers[0]?.ttl).toBe(300);
    advance(100);
    const second = await ask(pvdns.dns, 'WWW.example', 'A');
    expect(second.packet.answers[0]?.address).toBe('192.0.2.1');
    expect(second.packet.answers[0]?.ttl).toBe(200);
    expect(second.packet.questions[0]?.name).toBe('WWW.example'); // the client's case, not the cached one
    expect(wifi.seen).toHaveLength(1);
    advance(201);
    await ask(pvdns.dns, 'www.example', 'A');
    expect(wifi.seen).toHaveLength(2); // expired: asked again
  });

  it('caps TTLs at cache.maxTtl', async () => {
    const r = await ask(pvdns.dns, 'long.example', 'A');
    expect(r.packet.answers[0]?.ttl).toBe(3600);
  });

  it('caches NXDOMAIN for min(SOA TTL, MINIMUM), for every type of the name (RFC 2308 §5)', async () => {
    const first = await ask(pvdns.dns, 'nx1.example', 'A');
    expect(first.packet.header.rcode).toBe(3);
    expect(first.packet.authorities[0]?.ttl).toBe(300);
    advance(100);
    const again = await ask(pvdns.dns, 'nx1.example', 'AAAA');
    expect(again.packet.header.rcode).toBe(3);
    expect(again.packet.authorities[0]?.ttl).toBe(200); // RFC 2308 §6: decremented SOA TTL
    expect(wifi.seen).toHaveLength(1);
    advance(201);
    await ask(pvdns.dns, 'nx1.example', 'A');
    expect(wifi.seen).toHaveLength(2);
  });

  it('does not cache a negative answer without an SOA', async () => {
    await ask(pvdns.dns, 'nosoa.example', 'A');
    await ask(pvdns.dns, 'nosoa.example', 'A');
    expect(wifi.seen).toHaveLength(2);
  });

  it('keeps NODATA for one type from hiding another type', async () => {
    const aaaa = await ask(pvdns.dns, 'nodata.example', 'AAAA');
    expect(aaaa.packet.answers).toHaveLength(0);
    const v4 = await ask(pvdns.dns, 'nodata.example', 'A');
    expect(v4.packet.answers[0]?.address).toBe('192.0.2.1');
    await ask(pvdns.dns, 'nodata.example', 'AAAA');
    expect(wifi.names()).toEqual(['nodata.example', 'nodata.example']);
  });

  it('keys on the DO bit (RFC 3225): a DNSSEC query is a different question', async () => {
    await ask(pvdns.dns, 'dnssec.example', 'A', { edns: { do: false } });
    const r = await ask(pvdns.dns, 'dnssec.example', 'A', { edns: { do: true } });
    expect(opt(r.packet)?.doFlag).toBe(true);
    expect(wifi.seen.map((s) => opt(s.packet)?.doFlag)).toEqual([false, true]);
  });

  it('never serves one PvD an answer cached from another, and drops a withdrawn PvD\'s entries', async () => {
    const app = pvdns.app;
    const wifiPvd = app.pvds.get('wifi')!;
    expect((await ask(pvdns.dns, 'iso.example', 'A')).packet.answers[0]?.address).toBe('192.0.2.1');
    expect(app.pvds.withdraw('wifi')).toBe(true);
    // Now cell serves the name: it must ask cell, not reuse wifi's cached answer.
    expect((await ask(pvdns.dns, 'iso.example', 'A')).packet.answers[0]?.address).toBe('198.51.100.1');
    expect(cell.names()).toEqual(['iso.example']);
    // wifi comes back: its old entries went with it, so it is asked afresh,
    // and cell's cached answer is not served in wifi's name either.
    app.pvds.announce(pvdFromSpec(pvdSpecSchema.parse({ identifier: 'wifi', dnsServers: [wifi.address], priority: 10 }), 'config', wifiPvd.order));
    expect((await ask(pvdns.dns, 'iso.example', 'A')).packet.answers[0]?.address).toBe('192.0.2.1');
    expect(wifi.names()).toEqual(['iso.example', 'iso.example']);
  });

  it('lets an NXDOMAIN in one PvD say nothing about another', async () => {
    const app = pvdns.app;
    const wifiPvd = app.pvds.get('wifi')!;
    expect((await ask(pvdns.dns, 'nx2.example', 'A')).packet.header.rcode).toBe(3);
    app.pvds.withdraw('wifi');
    const r = await ask(pvdns.dns, 'nx2.example', 'A');
    expect(r.packet.header.rcode).toBe(0);
    expect(r.packet.answers[0]?.address).toBe('198.51.100.1');
    app.pvds.announce(pvdFromSpec(pvdSpecSchema.parse({ identifier: 'wifi', dnsServers: [wifi.address], priority: 10 }), 'config', wifiPvd.order));
  });
});

describe('coalescing', () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const slow = new FakeUpstream(async (q) => {
    await gate;
    return answer(q, [a(q, '192.0.2.9')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await slow.start('127.0.0.33');
    pvdns = await startPvdns({ upstream: { timeoutMs: 3000, attempts: 1 }, pvds: [{ identifier: 'wifi', dnsServers: [slow.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await slow.stop();
  });

  it('sends one upstream query for many identical queries in flight', async () => {
    const replies = Array.from({ length: 25 }, (_, i) => ask(pvdns.dns, i % 2 ? 'same.example' : 'SAME.example', 'A'));
    await new Promise((r) => setTimeout(r, 200));
    release();
    const all = await Promise.all(replies);
    expect(all.every((r) => r.packet.answers[0]?.address === '192.0.2.9')).toBe(true);
    expect(slow.seen).toHaveLength(1);
  });
});

describe('a PvD withdrawn while its query is in flight', () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const slow = new FakeUpstream(async (q) => {
    await gate;
    return answer(q, [a(q, '192.0.2.44')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await slow.start('127.0.0.34');
    pvdns = await startPvdns({ upstream: { timeoutMs: 3000, attempts: 1 }, pvds: [{ identifier: 'vpn', dnsServers: [slow.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await slow.stop();
  });

  it('still answers the query, but does not cache the late answer', async () => {
    const pending = ask(pvdns.dns, 'late.example', 'A');
    await new Promise((r) => setTimeout(r, 100));
    expect(pvdns.app.pvds.withdraw('vpn')).toBe(true);
    release();
    expect((await pending).packet.answers[0]?.address).toBe('192.0.2.44');
    const flushed = await fetch(`${pvdns.http}/v1/cache/flush`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(await flushed.json()).toEqual({ flushed: 0, pvd: null });
  });
});
