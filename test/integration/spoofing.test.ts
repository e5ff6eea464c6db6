// Spoofing under load (RFC 5452; the DNSpooq lesson, dnsmasq CVE-2020-25684/5/6):
// while the real upstream answers slowly, thousands of forged replies hit
// pvdns's upstream socket — every ID but the right one from the server's own
// address, the right ID with the wrong name, and the whole right answer from
// other addresses and ports. None is taken; the real answer is. And across
// 10,000 queries the IDs and source ports pvdns uses spread evenly.

import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';
import { PORT_SPAN } from '../../src/upstream/random.js';

const FORGED_IDS = 3000;
const WRONG_NAMES = 100;

describe('a flood of forged replies (RFC 5452 §9)', () => {
  const forgers = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
  let delivered = 0;
  const up = new FakeUpstream(async (q, { seen }) => {
    if (!q.questions[0]!.name.startsWith('target')) return answer(q, [a(q, '192.0.2.1')]);
    const forged = (id: number, name = q.questions[0]!.name): Buffer => {
      const p = answer(q, [a(q, '6.6.6.6', 300, name)]);
      p.header.id = id;
      p.questions[0] = { ...p.questions[0]!, name };
      return p.toBuffer();
    };
    // The right ID with another name: only the question check stops these. (First, while the
    // socket's receive buffer is empty: the flood after it may overflow it, and the kernel drops.)
    for (let i = 0; i < WRONG_NAMES; i++) up.sendFrom(forged(q.header.id, `evil${i}.example`), seen.port);
    // The whole right answer from other sources: a connected socket never sees them.
    for (const f of forgers) for (let i = 0; i < 200; i++) f.send(forged(q.header.id), seen.port, '127.0.0.1');
    // Every other ID (a blind attacker's guesses) from the server's own address and port.
    for (let i = 1; i <= FORGED_IDS; i++) up.sendFrom(forged((q.header.id + i * 17) & 0xffff || 1), seen.port);
    delivered += FORGED_IDS + WRONG_NAMES + 400;
    await new Promise((r) => setTimeout(r, 300)); // the real answer comes late
    return answer(q, [a(q, '192.0.2.99')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await Promise.all(forgers.map((f, i) => new Promise<void>((r) => f.bind({ address: `127.0.0.${45 + i}`, port: 0 }, () => r()))));
    await up.start('127.0.0.44');
    pvdns = await startPvdns({ upstream: { timeoutMs: 3000, attempts: 1 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
    for (const f of forgers) f.close();
  });

  it('takes none of thousands of forged replies and answers with the real one', async () => {
    for (const name of ['target1.example', 'target2.example']) {
      const r = await ask(pvdns.dns, name, 'A', { timeoutMs: 5000 });
      expect(r.packet.header.rcode).toBe(0);
      expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.99']);
    }
    // Every upstream query drew the forgeries (a retransmission while the real answer is late draws them again).
    expect(delivered).toBeGreaterThanOrEqual(2 * (FORGED_IDS + WRONG_NAMES + 400));
    expect(delivered % (FORGED_IDS + WRONG_NAMES + 400)).toBe(0);
    // The right-ID, wrong-name replies reached pvdns and were counted as ignored.
    const metrics = await (await fetch(`${pvdns.http}/metrics`)).text();
    const mismatches = Number(/^pvdns_upstream_errors_total\{pvd="wifi",server="[^"]+",reason="mismatch"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
    expect(mismatches).toBeGreaterThanOrEqual(2 * WRONG_NAMES * 0.5); // UDP on loopback may drop some under the flood
  });

  it('spreads IDs and source ports evenly over 10,000 queries', async () => {
    up.seen.length = 0;
    const n = 10_000;
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => ask(pvdns.dns, `spread${i + j}.example`, 'A', { timeoutMs: 5000 })));
    }
    // Each name at least once (a retransmission under load adds a try with its own ID and port).
    expect(new Set(up.seen.map((s) => s.name)).size).toBe(n);
    const chi2 = (values: number[], buckets: number, of: (v: number) => number): number => {
      const counts = new Array<number>(buckets).fill(0);
      for (const v of values) counts[of(v)]!++;
      const expected = values.length / buckets;
      return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    };
    // 16 buckets, 15 degrees of freedom: 37.7 is p = 0.001.
    expect(chi2(up.seen.map((s) => s.id), 16, (id) => id >> 12)).toBeLessThan(37.7);
    const ports = up.seen.map((s) => s.port);
    const distinct = new Set(ports).size;
    // A socket carries at most 32 queries, so at least n / 32 sockets were used. Each took a random
    // port of the ephemeral range, so a few drew a port an earlier, closed one had (birthday
    // collisions: k² / 2N on average for k sockets over N ports, 1.7 over Linux's default 28,232):
    // allow those, with four standard deviations.
    const sockets = n / 32;
    const collisions = (sockets * sockets) / (2 * PORT_SPAN);
    expect(distinct).toBeGreaterThanOrEqual(sockets - collisions - 4 * Math.sqrt(collisions) - 2);
    const lo = Math.min(...ports);
    const hi = Math.max(...ports);
    expect(hi - lo).toBeGreaterThan(10_000); // spread over the ephemeral range, not counting up
    const unique = [...new Set(ports)];
    expect(chi2(unique, 4, (p) => Math.min(3, Math.floor(((p - lo) / (hi - lo + 1)) * 4)))).toBeLessThan(16.3); // 3 d.f., p = 0.001
  }, 120_000);
});
