// A lossy network is not a dead network (issue 13): through real sockets,
// fake upstreams that drop packets at random, never answer one name, answer
// late, send garbage or answer from the wrong port, and truncate with no TCP
// behind. What a user would notice: every query that can be answered within
// its budget is; one silent name fails alone and leaves its server up; a
// failure is held briefly and once per upstream exchange, however many
// clients waited on it.
//
// Fake upstreams live on 127.0.0.130–139 only.

import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { metricSum } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A small deterministic generator (mulberry32), so a lossy run is the same run every time. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ServerView {
  address: string;
  state: string;
  lastError: string | null;
}

async function serverState(run: Running, pvd: string): Promise<ServerView> {
  const res = await fetch(`${run.http}/v1/pvds/${encodeURIComponent(pvd)}`);
  return ((await res.json()) as { servers: ServerView[] }).servers[0]!;
}

const nameOf = (q: Packet): string => q.questions[0]!.name.toLowerCase();

describe('a server behind a link that loses 40 % of its packets', () => {
  const random = seeded(13);
  // Each datagram, query or reply, is lost with probability 0.4 (so 36 % of exchanges succeed).
  const up = new FakeUpstream((q) => (random() < 0.4 || random() < 0.4 ? null : answer(q, [a(q, '192.0.2.40', 0)])));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.130');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 3000, attempts: 3 }, pvds: [{ identifier: 'lossy', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('answers every query, retransmitting with a fresh ID, and never takes the server for dead', async () => {
    const names = Array.from({ length: 120 }, (_, i) => `lossy${i}.example`);
    const rcodes: number[] = [];
    const started = performance.now();
    for (let i = 0; i < names.length; i += 20) {
      const batch = await Promise.all(names.slice(i, i + 20).map((n) => ask(pvdns.dns, n, 'A', { timeoutMs: 4000 })));
      for (const r of batch) rcodes.push(r.packet.header.rcode);
      expect((await serverState(pvdns, 'lossy')).state).not.toBe('down');
    }
    const retried = new Set(up.seen.filter((s, i) => up.seen.findIndex((t) => t.name === s.name) !== i).map((s) => s.name)).size;
    console.log(
      `[lossy] 40 % loss each way: ${rcodes.filter((r) => r === 0).length}/${names.length} answered in ${((performance.now() - started) / 1000).toFixed(1)} s, ` +
        `${up.seen.length} upstream packets, ${retried} names sent more than once`,
    );
    expect(rcodes.filter((r) => r !== 0)).toEqual([]);
    // Each try had its own ID.
    const ids = up.seen.filter((s) => s.name === up.seen[0]!.name).map((s) => s.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(retried).toBeGreaterThan(30);
    expect(await metricSum(pvdns.http, 'pvdns_upstream_up')).toBe(1);
  });
});

describe('a server that never answers one name', () => {
  const silent = new Set(['void.example']);
  const up = new FakeUpstream((q) => (silent.has(nameOf(q)) ? null : answer(q, [a(q, '192.0.2.41')])));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.131');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 1200, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('fails that name alone: other names asked meanwhile are answered at once, and the server stays up', async () => {
    const lookups = [ask(pvdns.dns, 'void.example', 'A', { timeoutMs: 3000 }), ask(pvdns.dns, 'void.example', 'AAAA', { timeoutMs: 3000 })];
    const others: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t = performance.now();
      const r = await ask(pvdns.dns, `other${i}.example`, 'A');
      expect(r.packet.header.rcode, `other${i}`).toBe(0);
      others.push(performance.now() - t);
      await sleep(20);
    }
    const [va, vaaaa] = await Promise.all(lookups);
    for (const r of [va!, vaaaa!]) {
      expect(r.packet.header.rcode).toBe(2);
      expect(ede(r.packet)?.extraText).toBe(`pvd wifi: all servers unreachable (${up.address} timeout)`);
    }
    expect(Math.max(...others)).toBeLessThan(100);
    expect((await serverState(pvdns, 'wifi')).state).toBe('operational');
  });

  it('holds the failed name one second, and asks again after', async () => {
    const held = await ask(pvdns.dns, 'void.example', 'A');
    expect(ede(held.packet)?.infoCode).toBe(13);
    expect(ede(held.packet)?.extraText).toMatch(/\[cached for 1 s\]$/);
    await sleep(1050);
    silent.delete('void.example');
    const fixed = await ask(pvdns.dns, 'void.example', 'A');
    expect(fixed.packet.answers.map((x) => x.address)).toEqual(['192.0.2.41']);
  });
});

describe('one lost packet for a name asked ten times a second', () => {
  let lost = 0;
  const up = new FakeUpstream((q) => {
    if (nameOf(q) === 'popular.example' && lost === 0) {
      lost++;
      return null;
    }
    return answer(q, [a(q, '192.0.2.42', 1)]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.132');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 3000, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    await ask(pvdns.dns, 'warm.example', 'A'); // an RTT is known: the RTO is short
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('costs those clients one retransmission timeout, and no failure at all', async () => {
    const replies: Array<{ rcode: number; ms: number }> = [];
    const started = performance.now();
    const pending: Array<Promise<void>> = [];
    for (let i = 0; i < 20; i++) {
      pending.push(ask(pvdns.dns, 'popular.example', 'A').then((r) => void replies.push({ rcode: r.packet.header.rcode, ms: performance.now() - started })));
      await sleep(100);
    }
    await Promise.all(pending);
    expect(lost).toBe(1);
    expect(replies.map((r) => r.rcode)).toEqual(Array(20).fill(0));
    expect(Math.min(...replies.map((r) => r.ms))).toBeLessThan(300);
  });
});

describe('garbage and wrong-port replies before the real one', () => {
  const wrongPort = dgram.createSocket('udp4');
  const up: FakeUpstream = new FakeUpstream(async (q, { seen }) => {
    const id = q.header.id;
    // Garbage with the right ID, a reply with the right ID from another port, then the answer.
    const garbage = Buffer.from([id >> 8, id & 0xff, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0xc0, 0x0c]);
    up.sendFrom(garbage, seen.port);
    wrongPort.send(answer(q, [a(q, '198.51.100.66')]).toBuffer(), seen.port, '127.0.0.1');
    await sleep(20);
    return answer(q, [a(q, '192.0.2.43')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await new Promise<void>((r) => wrongPort.bind({ address: '127.0.0.133', port: 0 }, () => r()));
    await up.start('127.0.0.133');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 3000, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
    wrongPort.close();
  });

  it('ignores them, answers every query, and holds nothing against the server', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await ask(pvdns.dns, `g${i}.example`, 'A');
      expect(r.packet.answers.map((x) => x.address), `g${i}`).toEqual(['192.0.2.43']);
    }
    expect(await serverState(pvdns, 'wifi')).toMatchObject({ state: 'operational', lastError: null });
  });
});

describe('a truncated answer whose TCP retry is refused', () => {
  const up = new FakeUpstream((q, { transport }) => (nameOf(q) === 'big.example' && transport === 'udp' ? answer(q, [], { tc: true }) : answer(q, [a(q, '192.0.2.44')])));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.134');
    // Nobody takes TCP there any more: connections are refused.
    await new Promise<void>((r) => (up as unknown as { tcp: { close(cb: () => void): void } }).tcp.close(() => r()));
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 2000, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('fails that name with an EDE that says TCP, and leaves the server up for every other name', async () => {
    for (let round = 0; round < 3; round++) {
      const big = await ask(pvdns.dns, `big.example`, 'A');
      expect(big.packet.header.rcode).toBe(2);
      if (round === 0) expect(ede(big.packet)?.extraText).toBe(`pvd wifi: all servers unreachable (${up.address} tcp connection refused)`);
      for (let i = 0; i < 5; i++) expect((await ask(pvdns.dns, `small${round}-${i}.example`, 'A')).packet.header.rcode).toBe(0);
      await sleep(1050); // past the failure cache
    }
    expect((await serverState(pvdns, 'wifi')).state).toBe('operational');
    expect(await metricSum(pvdns.http, 'pvdns_upstream_up')).toBe(1);
  });
});

describe('a name that fails while ten clients wait on it', () => {
  const up = new FakeUpstream(async (q) => {
    await sleep(100);
    return nameOf(q) === 'broken.example' ? answer(q, [], { rcode: 2 }) : answer(q, [a(q, '192.0.2.45')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.135');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 3000, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('is one failure of one exchange: held one second, not 2^10', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => ask(pvdns.dns, 'broken.example', 'A')));
    for (const r of all) expect(r.packet.header.rcode).toBe(2);
    expect(up.names().filter((n) => n === 'broken.example')).toHaveLength(1); // coalesced
    const held = await ask(pvdns.dns, 'broken.example', 'A');
    expect(ede(held.packet)?.extraText).toMatch(/\[cached for 1 s\]$/);
  });
});

describe('an answer that comes after the query was sent again', () => {
  // The first try of each name is answered after 150 ms; later tries never.
  const first = new Set<string>();
  const up = new FakeUpstream(async (q) => {
    const n = nameOf(q);
    if (n === 'warm.example') return answer(q, [a(q, '192.0.2.46')]);
    if (first.has(n)) return null;
    first.add(n);
    await sleep(150);
    return answer(q, [a(q, '192.0.2.46')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.136');
    pvdns = await startPvdns({ upstream: { timeoutMs: 1500, queryTimeoutMs: 3000, attempts: 3 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    await ask(pvdns.dns, 'warm.example', 'A');
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('is taken: the earlier tries stay outstanding within the budget', async () => {
    const t = performance.now();
    const r = await ask(pvdns.dns, 'late.example', 'A');
    const ms = performance.now() - t;
    expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.46']);
    expect(up.names().filter((n) => n === 'late.example').length).toBeGreaterThan(1); // sent again meanwhile
    expect(ms).toBeLessThan(400);
  });
});
