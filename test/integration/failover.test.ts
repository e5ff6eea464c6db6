// Upstream health and failover through real sockets: fake upstreams that
// black-hole, refuse (nobody listening: ICMP port unreachable), answer
// slowly, answer SERVFAIL, and come back. What a user would notice is
// measured: a dead server costs the first query after its death one
// retransmission timeout (adaptive, at most upstream.timeoutMs) and later
// queries nothing; a server is down only when it answers nothing to five
// queries over two seconds, and even then real queries still reach it, one
// at a time, while probes test it with growing gaps; the first answer brings
// it back and releases the queries waiting for it; a PvD whose servers
// refuse answers SERVFAIL at once with an EDE naming it, and no other PvD
// hears its names; failures are cached per PvD, briefly; serve-stale answers
// only from the PvD's own expired entries; a TCP upstream connection is
// reused and pipelined.
//
// Fake upstreams live on 127.0.0.150–179 only. Times are performance.now()
// and every bound is generous: "well under timeoutMs" is < timeoutMs / 3.

import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pvdFromSpec } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { ask, ede, Packet, type Reply } from '../helpers/client.js';
import { a, answer, FakeUpstream, soa, type Responder, type Seen } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';
import { MIN_RTO_MS } from '../../src/upstream/health.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A probe is pvdns's ". NS" question to a down server. */
const isProbe = (s: Seen): boolean => s.name === '' && s.type === Packet.TYPE.NS;

/**
 * Upstream is a FakeUpstream whose behaviour a test can switch at any time,
 * stamping (performance.now()) when each query arrived.
 */
class Upstream {
  readonly fake: FakeUpstream;
  readonly at = new Map<Seen, number>();

  constructor(
    readonly host: string,
    public behaviour: Responder,
  ) {
    this.fake = new FakeUpstream((q, ctx) => {
      this.at.set(ctx.seen, performance.now());
      return this.behaviour(q, ctx);
    });
  }

  /** start listens, on the same port as before when it ran already ("comes back"). */
  async start(): Promise<this> {
    await this.fake.start(this.host, this.fake.port);
    return this;
  }

  /** stop closes the sockets: UDP queries to it now draw ICMP port unreachable. */
  stop(): Promise<void> {
    return this.fake.stop();
  }

  get address(): string {
    return this.fake.address;
  }

  /** queries lists the client names it was asked, probes left out. */
  queries(): string[] {
    return this.fake.seen.filter((s) => !isProbe(s)).map((s) => s.name.toLowerCase());
  }

  /** probes lists when each probe arrived. */
  probes(): number[] {
    return this.fake.seen.filter(isProbe).map((s) => this.at.get(s)!);
  }

  /** closeTcp drops the TCP connection a query came in on (the fake keeps its sockets private). */
  closeTcp(seen: Seen): void {
    for (const s of (this.fake as unknown as { sockets: Set<net.Socket> }).sockets) if (s.remotePort === seen.port) s.destroy();
  }
}

const answers =
  (address: string, ttl = 300): Responder =>
  (q) =>
    answer(q, [a(q, address, ttl)]);
const blackHole: Responder = () => null;
const servfail: Responder = (q) => answer(q, [], { rcode: 2 });

/** timed asks and measures how long the answer took. */
async function timed(server: Running['dns'], name: string, type: string = 'A'): Promise<{ r: Reply; ms: number }> {
  const t = performance.now();
  const r = await ask(server, name, type, { timeoutMs: 5000 });
  return { r, ms: performance.now() - t };
}

const addresses = (r: Reply): Array<string | undefined> => r.packet.answers.map((x) => x.address);

interface ServerView {
  address: string;
  state: string;
  rttMs: number | null;
  since: string | null;
  lastError: string | null;
  probesPaused: boolean;
}

/** servers is GET /v1/pvds/{id}'s servers[]. */
async function servers(run: Running, pvd: string): Promise<ServerView[]> {
  const res = await fetch(`${run.http}/v1/pvds/${encodeURIComponent(pvd)}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { servers: ServerView[] }).servers;
}

async function stateOf(run: Running, pvd: string, address: string): Promise<ServerView> {
  const s = (await servers(run, pvd)).find((x) => x.address === address);
  if (!s) throw new Error(`no server ${address} in pvd ${pvd}`);
  return s;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** scrape reads GET /metrics into samples. */
async function scrape(run: Running): Promise<Sample[]> {
  const text = await (await fetch(`${run.http}/metrics`)).text();
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** metric is the value of the sample with these labels (a missing series counts 0). */
function metric(samples: Sample[], name: string, labels: Record<string, string>): number {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}

function hasSeries(samples: Sample[], name: string, labels: Record<string, string>): boolean {
  return samples.some((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
}

/** until polls `cond` every 20 ms for up to `ms`; returns whether it came true. */
async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return true;
    await sleep(20);
  }
  return cond();
}

describe('a PvD whose primary server dies (black-holes)', () => {
  const TIMEOUT = 450;
  const A = new Upstream('127.0.0.150', answers('192.0.2.1'));
  const B = new Upstream('127.0.0.151', answers('192.0.2.2'));
  let pvdns: Running;

  beforeAll(async () => {
    await A.start();
    await B.start();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, attempts: 3, probeIntervalMs: 1000, probeMaxIntervalMs: 60_000 },
      pvds: [{ identifier: 'wifi', dnsServers: [A.address, B.address] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([A.stop(), B.stop()]);
  });

  it('asks the first server while it answers', async () => {
    const r = await ask(pvdns.dns, 'warm.example', 'A');
    expect(addresses(r)).toEqual(['192.0.2.1']);
    expect(A.queries()).toEqual(['warm.example']);
    expect(B.queries()).toEqual([]);
    expect((await stateOf(pvdns, 'wifi', A.address)).state).toBe('operational');
    expect((await stateOf(pvdns, 'wifi', B.address)).state).toBe('untested');
  });

  it('answers the first query after it dies from the next server within one retransmission timeout, and the next 20 without touching it', async () => {
    A.behaviour = blackHole;
    const first = await timed(pvdns.dns, 'first.example');
    expect(first.r.packet.header.rcode).toBe(0);
    expect(addresses(first.r)).toEqual(['192.0.2.2']);
    expect(A.queries()).toEqual(['warm.example', 'first.example']); // A was asked, and waited for
    // One RTO: A answered in well under a millisecond, so its RTO is the floor, far below timeoutMs.
    expect(first.ms).toBeGreaterThanOrEqual(MIN_RTO_MS - 10);
    expect(first.ms).toBeLessThan(TIMEOUT + 250);

    const seenByA = A.fake.seen.length;
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = await timed(pvdns.dns, `miss${i}.example`);
      expect(t.r.packet.header.rcode, `miss${i}`).toBe(0);
      expect(addresses(t.r), `miss${i}`).toEqual(['192.0.2.2']);
      times.push(t.ms);
    }
    const mean = times.reduce((s, x) => s + x, 0) / times.length;
    console.log(
      `[failover] timeoutMs ${TIMEOUT}, RTO floor ${MIN_RTO_MS}: first query after the server died ${first.ms.toFixed(1)} ms; ` +
        `next 20 misses mean ${mean.toFixed(2)} ms, max ${Math.max(...times).toFixed(2)} ms`,
    );
    expect(A.fake.seen.length).toBe(seenByA); // not one of them, and no probe either: A is only suspect
    expect(B.queries()).toEqual(['first.example', ...times.map((_, i) => `miss${i}.example`)]);
    for (const ms of times) expect(ms).toBeLessThan(TIMEOUT / 3);
  });

  it('shows the dead server suspect (one timeout) and the other operational', async () => {
    const [sa, sb] = await servers(pvdns, 'wifi');
    expect(sa).toMatchObject({ address: A.address, state: 'suspect', lastError: 'timeout' });
    expect(sb).toMatchObject({ address: B.address, state: 'operational', lastError: null });
    expect(typeof sb!.rttMs).toBe('number');
    expect(Math.abs(Date.now() - Date.parse(sa!.since!))).toBeLessThan(60_000); // when it turned suspect
    const m = await scrape(pvdns);
    expect(metric(m, 'pvdns_upstream_errors_total', { pvd: 'wifi', server: A.address, reason: 'timeout' })).toBe(1);
    // A suspect server may still be asked: up until it is down.
    expect(metric(m, 'pvdns_upstream_up', { pvd: 'wifi', server: A.address })).toBe(1);
    expect(metric(m, 'pvdns_upstream_up', { pvd: 'wifi', server: B.address })).toBe(1);
  });
});

describe('a PvD with two healthy servers', () => {
  // C is first and slow; D is fast. A SERVFAIL from C for one name makes
  // pvdns ask D once, so both are operational with an RTT known, D's smaller.
  const C = new Upstream('127.0.0.152', async (q) => {
    await sleep(40);
    return q.questions[0]!.name === 'bootstrap.example' ? answer(q, [], { rcode: 2 }) : answer(q, [a(q, '192.0.2.3')]);
  });
  const D = new Upstream('127.0.0.153', answers('192.0.2.4'));
  let pvdns: Running;

  beforeAll(async () => {
    await C.start();
    await D.start();
    pvdns = await startPvdns({ upstream: { timeoutMs: 400, attempts: 3 }, pvds: [{ identifier: 'home', dnsServers: [C.address, D.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([C.stop(), D.stop()]);
  });

  it('keeps asking its primary while it answers, even when another server is faster (no churn)', async () => {
    const boot = await ask(pvdns.dns, 'bootstrap.example', 'A');
    expect(addresses(boot)).toEqual(['192.0.2.4']); // C said SERVFAIL, D answered
    const [sc, sd] = await servers(pvdns, 'home');
    expect(sc).toMatchObject({ state: 'operational' });
    expect(sd).toMatchObject({ state: 'operational' });
    expect(sc!.rttMs!).toBeGreaterThan(sd!.rttMs!);

    for (let i = 0; i < 30; i++) {
      const r = await ask(pvdns.dns, `steady${i}.example`, 'A');
      expect(addresses(r), `steady${i}`).toEqual(['192.0.2.3']);
    }
    expect(D.queries()).toEqual(['bootstrap.example']);
    expect(C.queries()).toHaveLength(31);
  });
});

describe('a refusing server (nobody listens: ICMP port unreachable)', () => {
  const TIMEOUT = 400;
  const E = new Upstream('127.0.0.154', answers('192.0.2.5'));
  const F = new Upstream('127.0.0.155', answers('192.0.2.6'));
  let pvdns: Running;

  beforeAll(async () => {
    await E.start();
    await F.start();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, attempts: 3, probeIntervalMs: 10_000, probeMaxIntervalMs: 60_000 },
      pvds: [{ identifier: 'office', dnsServers: [E.address, F.address] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([E.stop(), F.stop()]);
  });

  it('is down after one refusal, and the query is answered by the next server without waiting', async () => {
    expect(addresses(await ask(pvdns.dns, 'warm.example', 'A'))).toEqual(['192.0.2.5']);
    await E.stop();
    const t = await timed(pvdns.dns, 'after.example');
    expect(addresses(t.r)).toEqual(['192.0.2.6']);
    expect(t.ms).toBeLessThan(TIMEOUT / 3);
    const [se, sf] = await servers(pvdns, 'office');
    expect(se).toMatchObject({ address: E.address, state: 'down', lastError: 'connection refused', probesPaused: false });
    expect(sf).toMatchObject({ address: F.address, state: 'operational' });
    const m = await scrape(pvdns);
    expect(metric(m, 'pvdns_upstream_up', { pvd: 'office', server: E.address })).toBe(0);
    expect(metric(m, 'pvdns_upstream_up', { pvd: 'office', server: F.address })).toBe(1);
    expect(metric(m, 'pvdns_upstream_errors_total', { pvd: 'office', server: E.address, reason: 'unreachable' })).toBe(1);
    // Later queries go to F at once.
    for (let i = 0; i < 5; i++) expect((await timed(pvdns.dns, `later${i}.example`)).ms).toBeLessThan(TIMEOUT / 3);
  });

  it('answers SERVFAIL with EDE 23 "connection refused" at once when every server refuses', async () => {
    await F.stop();
    const t = await timed(pvdns.dns, 'none.example');
    expect(t.r.packet.header.rcode).toBe(2);
    expect(t.ms).toBeLessThan(TIMEOUT / 3);
    expect(ede(t.r.packet)?.infoCode).toBe(23);
    expect(ede(t.r.packet)?.extraText).toMatch(/^pvd office: .*connection refused/);
    // Both are known down now, and still asked (down is not dark): each refuses at once.
    expect((await servers(pvdns, 'office')).map((s) => s.state)).toEqual(['down', 'down']);
    const again = await timed(pvdns.dns, 'none2.example');
    expect(again.r.packet.header.rcode).toBe(2);
    expect(again.ms).toBeLessThan(TIMEOUT / 3);
    expect(ede(again.r.packet)).toMatchObject({
      infoCode: 23,
      extraText: `pvd office: all servers unreachable (${E.address} connection refused; ${F.address} connection refused)`,
    });
  });
});

describe('a server that stops answering everything', () => {
  const TIMEOUT = 300;
  const BUDGET = 700;
  const PROBE = 100;
  const PROBE_MAX = 800;
  const G = new Upstream('127.0.0.156', answers('192.0.2.7'));
  let pvdns: Running;

  beforeAll(async () => {
    await G.start();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, queryTimeoutMs: BUDGET, attempts: 3, probeIntervalMs: PROBE, probeMaxIntervalMs: PROBE_MAX },
      pvds: [{ identifier: 'cafe', dnsServers: [G.address] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await G.stop();
  });

  it('is suspect while a few queries go unanswered, and down once five went unanswered over two seconds', async () => {
    expect(addresses(await ask(pvdns.dns, 'warm.example', 'A'))).toEqual(['192.0.2.7']);
    G.behaviour = blackHole;
    const t0 = performance.now();
    const four = await Promise.all(Array.from({ length: 4 }, (_, i) => timed(pvdns.dns, `d${i}.example`)));
    for (const t of four) {
      expect(t.r.packet.header.rcode).toBe(2);
      expect(t.ms).toBeGreaterThanOrEqual(BUDGET - 50); // the whole budget, retransmitting meanwhile
      expect(t.ms).toBeLessThan(BUDGET + 250);
      expect(ede(t.r.packet)).toMatchObject({ infoCode: 22, extraText: `pvd cafe: all servers unreachable (${G.address} timeout)` });
    }
    expect(G.queries().filter((n) => n === 'd0.example').length).toBeGreaterThan(1); // sent again within the budget
    expect(await stateOf(pvdns, 'cafe', G.address)).toMatchObject({ state: 'suspect', lastError: 'timeout' });
    expect(metric(await scrape(pvdns), 'pvdns_upstream_up', { pvd: 'cafe', server: G.address })).toBe(1);
    let i = 0;
    while ((await stateOf(pvdns, 'cafe', G.address)).state !== 'down' && performance.now() - t0 < 6000) await timed(pvdns.dns, `e${i++}.example`);
    expect(await stateOf(pvdns, 'cafe', G.address)).toMatchObject({ state: 'down', lastError: 'timeout' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(metric(await scrape(pvdns), 'pvdns_upstream_up', { pvd: 'cafe', server: G.address })).toBe(0);
  });

  it('probes it with ". NS" one at a time while no query does, the gap doubling up to the maximum', async () => {
    const from = G.probes().length;
    expect(await until(() => G.probes().length >= from + 5, 5000)).toBe(true);
    const probes = G.probes().slice(from);
    // Each probe waits its gap for an answer, then the next goes with the gap doubled: 100, 200, 400, 800, 800.
    const gaps = probes.slice(1, 5).map((p, k) => p - probes[k]!);
    console.log(`[failover] probe gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`);
    expect(gaps[1]! - gaps[0]!).toBeGreaterThan(50);
    expect(gaps[2]! - gaps[1]!).toBeGreaterThan(100);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(PROBE - 20);
    for (const g of gaps) expect(g).toBeLessThan(PROBE_MAX + 200);
  });

  it('still gets real queries, one at a time, the others waiting their turn', async () => {
    const before = G.fake.seen.length;
    const six = await Promise.all(Array.from({ length: 6 }, (_, i) => timed(pvdns.dns, `q${i}.example`)));
    for (const t of six) expect(t.r.packet.header.rcode).toBe(2);
    const arrivals = G.fake.seen
      .slice(before)
      .filter((x) => !isProbe(x))
      .map((x) => G.at.get(x)!);
    expect(arrivals.length).toBeGreaterThan(0);
    // One at a time: each try went only after the one before had waited its RTO — or had given up
    // at its budget's end, when the next query takes the turn at once (they all end together here).
    const quick = arrivals.slice(1).filter((t, k) => t - arrivals[k]! < MIN_RTO_MS - 15);
    expect(quick.length).toBeLessThanOrEqual(1);
    expect(arrivals.length).toBeLessThan(6 * 8); // far fewer than six queries retransmitting freely
  });

  it('is used again on its first answer, and the queries waiting for it are answered at once', async () => {
    const waiting = Promise.all(Array.from({ length: 5 }, (_, i) => timed(pvdns.dns, `back${i}.example`)));
    await sleep(100);
    const backAt = performance.now();
    G.behaviour = answers('192.0.2.7');
    const answered = await waiting;
    const done = performance.now();
    for (const t of answered) expect(addresses(t.r)).toEqual(['192.0.2.7']);
    console.log(`[failover] all 5 waiting queries answered ${(done - backAt).toFixed(0)} ms after the server came back`);
    expect(done - backAt).toBeLessThan(TIMEOUT + 200); // within one try's wait
    expect(await stateOf(pvdns, 'cafe', G.address)).toMatchObject({ state: 'operational', lastError: null });
    expect(metric(await scrape(pvdns), 'pvdns_upstream_up', { pvd: 'cafe', server: G.address })).toBe(1);
  });
});

describe('a burst lost at a server that answers other queries', () => {
  const TIMEOUT = 300;
  const W = new Upstream('127.0.0.176', answers('192.0.2.60'));
  const X = new Upstream('127.0.0.177', answers('192.0.2.61'));
  let pvdns: Running;

  beforeAll(async () => {
    await W.start();
    await X.start();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, attempts: 3, probeIntervalMs: 100, probeMaxIntervalMs: 800 },
      pvds: [{ identifier: 'busy', dnsServers: [W.address, X.address] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([W.stop(), X.stop()]);
  });

  it('leaves it suspect, not down, and answers the burst from the other server within one retransmission timeout', async () => {
    expect(addresses(await ask(pvdns.dns, 'warm.example', 'A'))).toEqual(['192.0.2.60']);
    W.behaviour = blackHole;
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => timed(pvdns.dns, `burst${i}.example`)));
    for (const t of burst) {
      expect(addresses(t.r)).toEqual(['192.0.2.61']);
      expect(t.ms).toBeLessThan(TIMEOUT + 250);
    }
    expect((await stateOf(pvdns, 'busy', W.address)).state).toBe('suspect');
    expect(metric(await scrape(pvdns), 'pvdns_upstream_up', { pvd: 'busy', server: W.address })).toBe(1);
    expect(W.probes()).toEqual([]); // suspect servers are not probed
  });
});

describe('a PvD whose servers are all dead', () => {
  const TIMEOUT = 300;
  const BUDGET = 600;
  const I = new Upstream('127.0.0.158', answers('192.0.2.10'));
  const J = new Upstream('127.0.0.159', answers('192.0.2.11'));
  const K = new Upstream('127.0.0.160', answers('192.0.2.12'));
  const L = new Upstream('127.0.0.161', blackHole);
  const M = new Upstream('127.0.0.162', blackHole);
  let pvdns: Running;

  beforeAll(async () => {
    for (const u of [I, J, K, L, M]) await u.start();
    // I and J listen no more: their ports draw ICMP port unreachable.
    await I.stop();
    await J.stop();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, queryTimeoutMs: BUDGET, attempts: 3, probeIntervalMs: 10_000, probeMaxIntervalMs: 60_000 },
      pvds: [
        { identifier: 'corp', dnsServers: [I.address, J.address], dnsZones: ['corp.example'], default: false },
        { identifier: 'lab', dnsServers: [L.address, M.address], dnsZones: ['lab.example'], default: false },
        { identifier: 'home', dnsServers: [K.address], default: true },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([K.stop(), L.stop(), M.stop()]);
  });

  it('answers its names SERVFAIL at once with EDE 23 naming it when its servers refuse, asking them again each time', async () => {
    const first = await timed(pvdns.dns, 'a.corp.example');
    expect(first.r.packet.header.rcode).toBe(2);
    expect(first.ms).toBeLessThan(TIMEOUT / 3);
    expect(ede(first.r.packet)).toMatchObject({
      infoCode: 23,
      extraText: `pvd corp: all servers unreachable (${I.address} connection refused; ${J.address} connection refused)`,
    });
    for (const name of ['b.corp.example', 'c.corp.example', 'www.corp.example']) {
      const t = await timed(pvdns.dns, name);
      expect(t.r.packet.header.rcode, name).toBe(2);
      expect(t.ms, name).toBeLessThan(TIMEOUT / 3);
      expect(ede(t.r.packet), name).toMatchObject({
        infoCode: 23,
        extraText: `pvd corp: all servers unreachable (${I.address} connection refused; ${J.address} connection refused)`,
      });
    }
    expect((await servers(pvdns, 'corp')).map((s) => s.state)).toEqual(['down', 'down']);
    expect(K.fake.seen).toHaveLength(0); // the default PvD never hears a corp name
  });

  it('answers SERVFAIL with EDE 22 naming it when its servers are silent, after the query budget', async () => {
    const dying = await Promise.all([timed(pvdns.dns, 'x1.lab.example'), timed(pvdns.dns, 'x2.lab.example')]);
    for (const t of dying) {
      expect(t.r.packet.header.rcode).toBe(2);
      expect(t.ms).toBeGreaterThanOrEqual(BUDGET - 50);
      expect(t.ms).toBeLessThan(BUDGET + 250);
      expect(ede(t.r.packet)).toMatchObject({ infoCode: 22, extraText: `pvd lab: all servers unreachable (${L.address} timeout; ${M.address} timeout)` });
    }
    expect(K.fake.seen).toHaveLength(0);
  });
});

describe('default routing past a dead PvD', () => {
  const TIMEOUT = 300;
  const BUDGET = 500;
  const N = new Upstream('127.0.0.163', blackHole);
  const O = new Upstream('127.0.0.164', answers('192.0.2.20'));
  let pvdns: Running;

  beforeAll(async () => {
    await N.start();
    await O.start();
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, queryTimeoutMs: BUDGET, attempts: 3, probeIntervalMs: 10_000, probeMaxIntervalMs: 60_000 },
      pvds: [
        { identifier: 'first', dnsServers: [N.address], default: true, priority: 10 },
        { identifier: 'second', dnsServers: [O.address], default: true, priority: 20 },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([N.stop(), O.stop()]);
  });

  it('sends unclaimed names straight to the next default PvD once the first is known down', async () => {
    // Until then each name waits the first PvD's budget, then the next default PvD answers it.
    let i = 0;
    while ((await stateOf(pvdns, 'first', N.address)).state !== 'down' && i < 12) {
      const t = await timed(pvdns.dns, `one${i++}.example`);
      expect(addresses(t.r)).toEqual(['192.0.2.20']);
      expect(t.ms).toBeLessThan(BUDGET + 250);
    }
    expect((await stateOf(pvdns, 'first', N.address)).state).toBe('down');
    const asked = N.queries().length;
    for (let k = 0; k < 20; k++) {
      const t = await timed(pvdns.dns, `after${k}.example`);
      expect(addresses(t.r), `after${k}`).toEqual(['192.0.2.20']);
      expect(t.ms, `after${k}`).toBeLessThan(TIMEOUT / 3);
    }
    expect(N.queries()).toHaveLength(asked);
  });

  it('answers SERVFAIL, naming a PvD, when every default PvD is down', async () => {
    await O.stop();
    for (const name of ['gone1.example', 'gone2.example']) {
      const t = await timed(pvdns.dns, name);
      expect(t.r.packet.header.rcode, name).toBe(2);
      expect(t.ms, name).toBeLessThan(BUDGET + 250); // the first PvD's down server still gets its try
      expect(ede(t.r.packet)?.extraText, name).toMatch(/^pvd (first|second): .*unreachable/);
    }
  });
});

describe('failure cache', () => {
  let now = Date.UTC(2026, 10, 25, 12);
  const clock = (): number => now;
  const TIMEOUT = 300;
  const failing = new Set<string>();
  // Successes carry TTL 0 so they are not cached: every miss reaches the server.
  const P = new Upstream('127.0.0.165', (q) => (failing.has(q.questions[0]!.name.toLowerCase()) ? answer(q, [], { rcode: 2 }) : answer(q, [a(q, '192.0.2.30', 0)])));
  const Q = new Upstream('127.0.0.166', answers('192.0.2.31', 0));
  const R = new Upstream('127.0.0.167', blackHole);
  let pvdns: Running;

  beforeAll(async () => {
    await P.start();
    await Q.start();
    await R.start();
    pvdns = await startPvdns(
      {
        upstream: { timeoutMs: TIMEOUT, queryTimeoutMs: 600, attempts: 3, probeIntervalMs: 10_000, probeMaxIntervalMs: 60_000 },
        pvds: [
          { identifier: 'flaky', dnsServers: [P.address], default: true },
          { identifier: 'other', dnsServers: [Q.address], default: false },
          { identifier: 'void', dnsServers: [R.address], dnsZones: ['void.example'], default: false },
        ],
      },
      { clock },
    );
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([P.stop(), Q.stop(), R.stop()]);
  });

  const askedFor = (name: string): number => P.queries().filter((n) => n === name).length;

  it('answers a question that just failed SERVFAIL with EDE 13 without asking, for 1 s, 1 s, then 2 s at most', async () => {
    failing.add('bad.example');
    const first = await ask(pvdns.dns, 'bad.example', 'A');
    expect(first.packet.header.rcode).toBe(2);
    expect(ede(first.packet)).toMatchObject({ infoCode: 22, extraText: `pvd flaky: all servers failed (${P.address} answered SERVFAIL)` });
    expect(askedFor('bad.example')).toBe(1);

    const held = await timed(pvdns.dns, 'bad.example');
    expect(held.r.packet.header.rcode).toBe(2);
    expect(ede(held.r.packet)).toMatchObject({ infoCode: 13, extraText: `pvd flaky: all servers failed (${P.address} answered SERVFAIL) [cached for 1 s]` });
    expect(held.ms).toBeLessThan(TIMEOUT / 3);
    expect(askedFor('bad.example')).toBe(1);

    let asked = 1;
    // The second failure comes one second after the first: held one second, as long as it has been seen failing.
    for (const holdS of [1, 1, 2, 2]) {
      now += holdS * 1000 - 1;
      const still = await ask(pvdns.dns, 'bad.example', 'A');
      expect(ede(still.packet)?.infoCode, `held ${holdS} s`).toBe(13);
      expect(ede(still.packet)?.extraText).toMatch(new RegExp(`\\[cached for ${holdS} s\\]$`));
      expect(askedFor('bad.example')).toBe(asked);
      now += 1;
      const again = await ask(pvdns.dns, 'bad.example', 'A');
      expect(ede(again.packet)?.infoCode, `after ${holdS} s`).toBe(22); // asked again, and failed again
      expect(askedFor('bad.example')).toBe(++asked);
    }
    const next = await ask(pvdns.dns, 'bad.example', 'A');
    expect(ede(next.packet)?.extraText).toMatch(/\[cached for 2 s\]$/);
  });

  it('forgets the failure once the question resolves', async () => {
    failing.delete('bad.example');
    now += 8000;
    const ok = await ask(pvdns.dns, 'bad.example', 'A');
    expect(addresses(ok)).toEqual(['192.0.2.30']);
    const before = askedFor('bad.example');
    failing.add('bad.example');
    const failed = await ask(pvdns.dns, 'bad.example', 'A');
    expect(ede(failed.packet)?.infoCode).toBe(22);
    const held = await ask(pvdns.dns, 'bad.example', 'A');
    expect(ede(held.packet)?.extraText).toMatch(/\[cached for 1 s\]$/); // 1 s again, not 2 s
    now += 1000;
    await ask(pvdns.dns, 'bad.example', 'A');
    expect(askedFor('bad.example')).toBe(before + 2);
    failing.delete('bad.example');
  });

  it('keeps failures per PvD: the same name in another PvD is asked', async () => {
    failing.add('shared.example');
    expect(ede((await ask(pvdns.dns, 'shared.example', 'A')).packet)?.infoCode).toBe(22);
    expect(ede((await ask(pvdns.dns, 'shared.example', 'A')).packet)?.infoCode).toBe(13);
    const res = await fetch(`${pvdns.http}/v1/resolve?name=shared.example&type=A&pvd=other`);
    const body = (await res.json()) as { pvd: string; rcode: string; server: string | null; ede: unknown };
    expect(body).toMatchObject({ pvd: 'other', rcode: 'NOERROR', server: Q.address, ede: null });
    expect(Q.queries()).toEqual(['shared.example']);
    // And flaky still holds its own failure.
    expect(ede((await ask(pvdns.dns, 'shared.example', 'A')).packet)?.infoCode).toBe(13);
    expect(askedFor('shared.example')).toBe(1);
  });

  it('holds a name whose only server is silent: the second query is answered at once', async () => {
    const first = await timed(pvdns.dns, 'x.void.example');
    expect(first.r.packet.header.rcode).toBe(2);
    expect(first.ms).toBeGreaterThanOrEqual(600 - 50); // the whole budget
    const second = await timed(pvdns.dns, 'x.void.example');
    expect(second.r.packet.header.rcode).toBe(2);
    expect(ede(second.r.packet)).toMatchObject({ infoCode: 13, extraText: `pvd void: all servers unreachable (${R.address} timeout) [cached for 1 s]` });
    expect(second.ms).toBeLessThan(TIMEOUT / 3);
    expect(new Set(R.queries())).toEqual(new Set(['x.void.example'])); // sent again within the budget, then held
    expect(R.queries().length).toBeGreaterThan(1);
  });
});

describe('serve-stale', () => {
  let now = Date.UTC(2026, 10, 25, 12);
  const clock = (): number => now;
  const advanceS = (s: number): void => {
    now += s * 1000;
  };
  const TIMEOUT = 300;
  let sFails = false;
  const S = new Upstream('127.0.0.168', (q) => {
    if (sFails) return answer(q, [], { rcode: 2 });
    if (q.questions[0]!.name.toLowerCase().startsWith('nx')) return answer(q, [], { rcode: 3, authorities: [soa('example', 60, 60)] });
    return answer(q, [a(q, '192.0.2.40', 60)]);
  });
  const T = new Upstream('127.0.0.169', servfail);
  let pvdns: Running;
  const WIFI = { identifier: 'wifi', dnsServers: [] as string[], default: true, priority: 10 };

  beforeAll(async () => {
    await S.start();
    await T.start();
    WIFI.dnsServers = [S.address];
    pvdns = await startPvdns(
      {
        upstream: { timeoutMs: TIMEOUT, attempts: 3 },
        cache: { serveStale: true },
        pvds: [WIFI, { identifier: 'cell', dnsServers: [T.address], default: true, priority: 20 }],
      },
      { clock },
    );
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([S.stop(), T.stop()]);
  });

  it('answers with the PvD\'s expired answer, TTL 30 and EDE 3, when its server fails', async () => {
    sFails = false;
    const fresh = await ask(pvdns.dns, 'www.example', 'A');
    expect(fresh.packet.answers.map((x) => [x.address, x.ttl])).toEqual([['192.0.2.40', 60]]);
    advanceS(61);
    sFails = true;
    const stale = await ask(pvdns.dns, 'www.example', 'A');
    expect(stale.packet.header.rcode).toBe(0);
    expect(stale.packet.answers.map((x) => [x.address, x.ttl])).toEqual([['192.0.2.40', 30]]);
    expect(ede(stale.packet)?.infoCode).toBe(3);
    expect(ede(stale.packet)?.extraText).toMatch(/^stale answer: pvd wifi: /);
    expect(S.queries().filter((n) => n === 'www.example')).toHaveLength(2); // the server was asked first
    // Within the failure hold-down the stale answer comes without asking.
    const again = await ask(pvdns.dns, 'www.example', 'A');
    expect(again.packet.answers.map((x) => [x.address, x.ttl])).toEqual([['192.0.2.40', 30]]);
    expect(ede(again.packet)?.infoCode).toBe(3);
    expect(S.queries().filter((n) => n === 'www.example')).toHaveLength(2);
    expect(T.queries()).toEqual([]); // answered in wifi: no failover to cell
  });

  it('answers an expired NXDOMAIN stale with EDE 19, for every type of the name', async () => {
    sFails = false;
    expect((await ask(pvdns.dns, 'nx.example', 'A')).packet.header.rcode).toBe(3);
    advanceS(61);
    sFails = true;
    for (const type of ['A', 'AAAA']) {
      const r = await ask(pvdns.dns, 'nx.example', type);
      expect(r.packet.header.rcode, type).toBe(3);
      expect(ede(r.packet)?.infoCode, type).toBe(19);
      expect(r.packet.authorities.map((x) => x.ttl), type).toEqual([30]);
    }
  });

  it('never answers from another PvD\'s expired entries', async () => {
    sFails = false;
    expect(addresses(await ask(pvdns.dns, 'mine.example', 'A'))).toEqual(['192.0.2.40']);
    advanceS(61);
    sFails = true;
    // The same name asked in cell (whose server fails) gets cell's failure, not wifi's stale answer.
    const res = await fetch(`${pvdns.http}/v1/resolve?name=mine.example&type=A&pvd=cell`);
    const body = (await res.json()) as { pvd: string; rcode: string; answers: unknown[]; ede: { code: number } | null };
    expect(body).toMatchObject({ pvd: 'cell', rcode: 'SERVFAIL', answers: [] });
    expect(body.ede?.code).not.toBe(3);
    expect(T.queries()).toContain('mine.example');
  });

  it('serves stale only while the PvD is attached: withdrawn, its expired answers are gone', async () => {
    sFails = false;
    expect(addresses(await ask(pvdns.dns, 'w2.example', 'A'))).toEqual(['192.0.2.40']);
    advanceS(61);
    sFails = true;
    const wifi = pvdns.app.pvds.get('wifi')!;
    expect(pvdns.app.pvds.withdraw('wifi')).toBe(true);
    // Now cell serves the name, and fails: no answer of wifi's.
    const meanwhile = await ask(pvdns.dns, 'w2.example', 'A');
    expect(meanwhile.packet.header.rcode).toBe(2);
    expect(meanwhile.packet.answers).toHaveLength(0);
    expect(ede(meanwhile.packet)?.infoCode).not.toBe(3);
    // wifi comes back (its server still failing): its old entries went with it.
    pvdns.app.pvds.announce(pvdFromSpec(pvdSpecSchema.parse(WIFI), 'config', wifi.order));
    const after = await ask(pvdns.dns, 'w2.example', 'A');
    expect(after.packet.header.rcode).toBe(2);
    expect(after.packet.answers).toHaveLength(0);
    expect(ede(after.packet)?.infoCode).not.toBe(3);
  });
});

describe('serve-stale off', () => {
  let now = Date.UTC(2026, 10, 25, 12);
  const clock = (): number => now;
  let fails = false;
  const S2 = new Upstream('127.0.0.170', (q) => (fails ? answer(q, [], { rcode: 2 }) : answer(q, [a(q, '192.0.2.41', 60)])));
  let pvdns: Running;

  beforeAll(async () => {
    await S2.start();
    pvdns = await startPvdns({ upstream: { timeoutMs: 300, attempts: 3 }, cache: { serveStale: false }, pvds: [{ identifier: 'wifi', dnsServers: [S2.address] }] }, { clock });
  });
  afterAll(async () => {
    await pvdns.stop();
    await S2.stop();
  });

  it('answers SERVFAIL, not the expired answer', async () => {
    expect(addresses(await ask(pvdns.dns, 'www.example', 'A'))).toEqual(['192.0.2.41']);
    now += 61_000;
    fails = true;
    const r = await ask(pvdns.dns, 'www.example', 'A');
    expect(r.packet.header.rcode).toBe(2);
    expect(r.packet.answers).toHaveLength(0);
    expect(ede(r.packet)?.infoCode).toBe(22);
  });
});

describe('TCP to an upstream', () => {
  const TIMEOUT = 1000;
  let pipeArrived = 0;
  let pipelined = false;
  let releasePipe: () => void = () => undefined;
  const pipeGate = new Promise<void>((r) => (releasePipe = r));
  const drops = new Map<string, number>();
  // UDP: always truncated (TC=1, no records); TCP: the whole answer.
  const U = new Upstream('127.0.0.171', async (q, { transport, seen }) => {
    if (transport === 'udp') return answer(q, [], { tc: true });
    const name = q.questions[0]!.name.toLowerCase();
    if (name.startsWith('pipe')) {
      // Hold every answer until all five questions are in: only a pipelining client gets answers.
      if (++pipeArrived === 5) {
        pipelined = true;
        releasePipe();
      }
      await Promise.race([pipeGate, sleep(TIMEOUT * 2)]);
    }
    if (name.startsWith('drop')) {
      const n = (drops.get(name) ?? 0) + 1;
      drops.set(name, n);
      if (name.startsWith('drop-always') || n === 1) {
        U.closeTcp(seen); // close the connection with this query outstanding
        return null;
      }
    }
    return answer(q, [a(q, '192.0.2.50')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await U.start();
    pvdns = await startPvdns({ upstream: { timeoutMs: TIMEOUT, attempts: 3 }, pvds: [{ identifier: 'big', dnsServers: [U.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await U.stop();
  });

  const tcpSeen = (): Seen[] => U.fake.seen.filter((s) => s.transport === 'tcp');

  it('pipelines queries that need TCP on one reused connection', async () => {
    const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => ask(pvdns.dns, `pipe${i}.example`, 'A')));
    for (const r of replies) expect(addresses(r)).toEqual(['192.0.2.50']);
    expect(pipelined).toBe(true); // all five were on the wire before the first answer
    expect(tcpSeen()).toHaveLength(5);
    expect(new Set(tcpSeen().map((s) => s.port)).size).toBe(1);
    // Later queries, one at a time, reuse the same connection.
    for (let i = 0; i < 3; i++) expect(addresses(await ask(pvdns.dns, `seq${i}.example`, 'A'))).toEqual(['192.0.2.50']);
    expect(tcpSeen()).toHaveLength(8);
    expect(new Set(tcpSeen().map((s) => s.port)).size).toBe(1);
    const m = await scrape(pvdns);
    expect(metric(m, 'pvdns_upstream_errors_total', { pvd: 'big', server: U.address, reason: 'truncated' })).toBe(8);
  });

  it('asks once more on a new connection when the server closes with a query outstanding', async () => {
    const t = await timed(pvdns.dns, 'drop-once.example');
    expect(addresses(t.r)).toEqual(['192.0.2.50']);
    expect(t.ms).toBeLessThan(TIMEOUT / 2);
    const asked = tcpSeen().filter((s) => s.name === 'drop-once.example');
    expect(asked).toHaveLength(2);
    expect(new Set(asked.map((s) => s.port)).size).toBe(2);
  });

  it('gives up after that one retry', async () => {
    const t = await timed(pvdns.dns, 'drop-always.example');
    expect(t.r.packet.header.rcode).toBe(2);
    expect(t.ms).toBeLessThan(TIMEOUT / 2);
    expect(tcpSeen().filter((s) => s.name === 'drop-always.example')).toHaveLength(2);
    const m = await scrape(pvdns);
    expect(metric(m, 'pvdns_upstream_errors_total', { pvd: 'big', server: U.address, reason: 'closed' })).toBe(1);
  });
});

describe('upstream metrics', () => {
  const TIMEOUT = 300;
  const V1 = new Upstream('127.0.0.172', blackHole);
  const V2 = new Upstream('127.0.0.173', answers('192.0.2.70'));
  const V3 = new Upstream('127.0.0.174', servfail);
  const V4 = new Upstream('127.0.0.175', (q, { transport }) => (transport === 'udp' ? answer(q, [], { tc: true }) : answer(q, [a(q, '192.0.2.71')])));
  let pvdns: Running;

  beforeAll(async () => {
    for (const v of [V1, V2, V3, V4]) await v.start();
    await V2.stop(); // refuses
    pvdns = await startPvdns({
      upstream: { timeoutMs: TIMEOUT, queryTimeoutMs: 600, attempts: 3, probeIntervalMs: 10_000, probeMaxIntervalMs: 60_000 },
      pvds: [
        { identifier: 'to', dnsServers: [V1.address], dnsZones: ['to.example'], default: false },
        { identifier: 'ref', dnsServers: [V2.address], dnsZones: ['ref.example'], default: false },
        { identifier: 'sf', dnsServers: [V3.address], dnsZones: ['sf.example'], default: false },
        { identifier: 'tc', dnsServers: [V4.address], dnsZones: ['tc.example'], default: false },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([V1.stop(), V3.stop(), V4.stop()]);
  });

  const errors = (m: Sample[], pvd: string, server: string, reason: string): number => metric(m, 'pvdns_upstream_errors_total', { pvd, server, reason });
  const up = (m: Sample[], pvd: string, server: string): number | undefined =>
    hasSeries(m, 'pvdns_upstream_up', { pvd, server }) ? metric(m, 'pvdns_upstream_up', { pvd, server }) : undefined;

  it('counts every unanswered try as a timeout; a few unanswered queries leave the server up', async () => {
    await ask(pvdns.dns, 'a.to.example', 'A');
    let m = await scrape(pvdns);
    const once = errors(m, 'to', V1.address, 'timeout');
    expect(once).toBeGreaterThanOrEqual(2); // retransmitted within the budget
    expect(up(m, 'to', V1.address)).toBe(1);
    await ask(pvdns.dns, 'b.to.example', 'A');
    m = await scrape(pvdns);
    expect(errors(m, 'to', V1.address, 'timeout')).toBeGreaterThan(once);
    expect(up(m, 'to', V1.address)).toBe(1); // suspect: two queries in about a second are no dead server
  });

  it('counts refusals as unreachable, the server down at once', async () => {
    await ask(pvdns.dns, 'a.ref.example', 'A');
    const m = await scrape(pvdns);
    expect(errors(m, 'ref', V2.address, 'unreachable')).toBe(1);
    expect(up(m, 'ref', V2.address)).toBe(0);
  });

  it('counts SERVFAIL answers, the server still up', async () => {
    await ask(pvdns.dns, 'a.sf.example', 'A');
    await ask(pvdns.dns, 'b.sf.example', 'A');
    const m = await scrape(pvdns);
    expect(errors(m, 'sf', V3.address, 'servfail')).toBe(2);
    expect(up(m, 'sf', V3.address)).toBe(1);
  });

  it('counts truncated answers, the server still up', async () => {
    const r = await ask(pvdns.dns, 'a.tc.example', 'A');
    expect(addresses(r)).toEqual(['192.0.2.71']);
    const m = await scrape(pvdns);
    expect(errors(m, 'tc', V4.address, 'truncated')).toBe(1);
    expect(up(m, 'tc', V4.address)).toBe(1);
    // Nothing else was counted against these servers.
    expect(m.filter((x) => x.name === 'pvdns_upstream_errors_total').map((x) => `${x.labels.pvd}/${x.labels.reason}`).sort()).toEqual([
      'ref/unreachable',
      'sf/servfail',
      'tc/truncated',
      'to/timeout',
    ]);
  });
});
