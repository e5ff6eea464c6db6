// Limits against floods: a per-client rate limit (access.rateLimit, REFUSED
// or dropped beyond it) and a bound on upstream queries in flight
// (upstream.maxInflight, SERVFAIL at once beyond it, not remembered as a
// failure). Fake upstream on 127.0.0.58.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { metricSum } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

describe('access.rateLimit', () => {
  let refusing: Running;
  let dropping: Running;

  beforeAll(async () => {
    // 0.5 qps: the bucket refills one token in 2 s, so a slow machine changes the counts little.
    refusing = await startPvdns({ access: { allow: ['127.0.0.0/8'], rateLimit: { qps: 0.5, burst: 5 } } });
    dropping = await startPvdns({ access: { allow: ['127.0.0.0/8'], rateLimit: { qps: 2, burst: 5, action: 'drop' } } });
  });
  afterAll(async () => {
    await refusing.stop();
    await dropping.stop();
  });

  it('answers a burst, then REFUSED with EDE 18 beyond the rate, per client address', async () => {
    const rcodes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await ask(refusing.dns, 'localhost', 'A');
      rcodes.push(r.packet.header.rcode);
      if (r.packet.header.rcode === 5) expect(ede(r.packet)).toMatchObject({ infoCode: 18, extraText: 'client over access.rateLimit' });
    }
    const answered = rcodes.filter((c) => c === 0).length;
    expect(answered).toBeGreaterThanOrEqual(5);
    expect(answered).toBeLessThanOrEqual(7); // the burst, and what 0.5 qps refills meanwhile
    expect(rcodes.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    // Another client has a bucket of its own.
    expect((await ask(refusing.dns, 'localhost', 'A', { from: '127.0.0.2' })).packet.header.rcode).toBe(0);
    expect(await metricSum(refusing.http, 'pvdns_ratelimited_total')).toBe(20 - answered);
  });

  it("drops a client's queries beyond the rate with action: drop", async () => {
    let answered = 0;
    let silent = 0;
    for (let i = 0; i < 10; i++) {
      try {
        await ask(dropping.dns, 'localhost', 'A', { timeoutMs: 150 });
        answered++;
      } catch {
        silent++;
      }
    }
    expect(answered).toBeGreaterThanOrEqual(5);
    expect(silent).toBeGreaterThanOrEqual(3);
  });
});

describe('upstream.maxInflight', () => {
  const slow = new FakeUpstream(async (q) => {
    await new Promise((r) => setTimeout(r, 400));
    return answer(q, [a(q, '192.0.2.58')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await slow.start('127.0.0.58');
    pvdns = await startPvdns({ upstream: { timeoutMs: 2000, attempts: 1, maxInflight: 5 }, pvds: [{ identifier: 'lan', dnsServers: [slow.address], default: true }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await slow.stop();
  });

  it('answers SERVFAIL at once beyond maxInflight, counts it, and does not remember it as a failure', async () => {
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => ask(pvdns.dns, `flood${i}.example`, 'A', { timeoutMs: 3000 }).then((r) => ({ r, ms: Date.now() - started }))));
    const ok = replies.filter(({ r }) => r.packet.header.rcode === 0);
    const shed = replies.filter(({ r }) => r.packet.header.rcode === 2);
    expect(ok).toHaveLength(5);
    expect(shed).toHaveLength(15);
    for (const { r, ms } of shed) {
      expect(ede(r.packet)?.extraText).toBe('pvdns: 5 upstream queries in flight (upstream.maxInflight)');
      expect(ms).toBeLessThan(390); // at once, not after the slow upstream's 400 ms
    }
    // Only the five in flight reached the server (a slow first answer may draw a retransmission of one).
    expect(new Set(slow.seen.map((x) => x.name)).size).toBe(5);
    expect(await metricSum(pvdns.http, 'pvdns_queries_shed_total')).toBe(15);
    // A shed name is asked upstream the next time: no failure cache entry holds it.
    const name = (shed[0]!.r.packet.questions[0]!.name);
    expect((await ask(pvdns.dns, name, 'A', { timeoutMs: 3000 })).packet.header.rcode).toBe(0);
  });

  it('does not fail a shed query over to the next default PvD: it would be shed there too', async () => {
    const second = await new FakeUpstream((q) => answer(q, [a(q, '192.0.2.59')])).start('127.0.0.59');
    const two = await startPvdns({
      upstream: { timeoutMs: 2000, attempts: 1, maxInflight: 5 },
      pvds: [
        { identifier: 'first', dnsServers: [slow.address], default: true, priority: 10 },
        { identifier: 'second', dnsServers: [second.address], default: true, priority: 20 },
      ],
    });
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => ask(two.dns, `over${i}.example`, 'A', { timeoutMs: 3000 })));
      expect(replies.filter((r) => r.packet.header.rcode === 2)).toHaveLength(15);
      expect(second.seen).toHaveLength(0);
      expect(await metricSum(two.http, 'pvdns_queries_shed_total')).toBe(15);
    } finally {
      await two.stop();
      await second.stop();
    }
  });
});
