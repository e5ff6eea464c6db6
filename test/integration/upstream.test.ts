// Forwarding to a PvD's servers: RFC 5452 answer matching (forged replies
// ignored, the real one used), random source ports and IDs, byte-exact
// passthrough, the PvD's source address, and failing over between the
// servers of one PvD.

import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

describe('forged replies (RFC 5452 §9.1)', () => {
  const forger = dgram.createSocket('udp4');
  const up = new FakeUpstream(async (q, { seen }) => {
    const forged = (mutate: (p: Packet) => void): Buffer => {
      const p = answer(q, [a(q, '6.6.6.6')]);
      mutate(p);
      return p.toBuffer();
    };
    // From the real server's own address and port: the socket lets them in, the checks must not.
    up.sendFrom(forged((p) => (p.header.id = (q.header.id + 1) & 0xffff)), seen.port);
    up.sendFrom(forged((p) => (p.questions[0] = { ...p.questions[0]!, name: 'evil.example' })), seen.port);
    up.sendFrom(forged((p) => (p.questions[0] = { ...p.questions[0]!, type: Packet.TYPE.AAAA })), seen.port);
    up.sendFrom(forged((p) => (p.header.qr = 0)), seen.port);
    up.sendFrom(Buffer.from('garbage that is no DNS message'), seen.port);
    // From elsewhere, with everything else right.
    forger.send(forged(() => undefined), seen.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 150));
    return answer(q, [a(q, '192.0.2.1')]);
  });
  let pvdns: Running;

  beforeAll(async () => {
    await new Promise<void>((r) => forger.bind({ address: '127.0.0.35', port: 0 }, () => r()));
    await up.start('127.0.0.34');
    pvdns = await startPvdns({ upstream: { timeoutMs: 2000, attempts: 1 }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
    forger.close();
  });

  it('ignores replies with a wrong ID, name, type, direction or source and uses the real one', async () => {
    for (const name of ['bank.example', 'mail.example', 'cdn.example']) {
      const r = await ask(pvdns.dns, name, 'A');
      expect(r.packet.header.rcode).toBe(0);
      expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.1']);
    }
    expect(up.seen).toHaveLength(3);
  });
});

describe('upstream queries', () => {
  const up = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.1')]));
  const silent = new FakeUpstream(() => null);
  const exotic = new FakeUpstream((q) => rawAnswer(q));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.36');
    await silent.start('127.0.0.37');
    await exotic.start('127.0.0.38');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 300, attempts: 3 },
      pvds: [
        { identifier: 'wifi', dnsServers: [up.address], default: true, sourceAddress: '127.0.0.39' },
        { identifier: 'flaky', dnsServers: [silent.address, up.address], dnsZones: ['flaky.example'] },
        { identifier: 'odd', dnsServers: [exotic.address], dnsZones: ['odd.example'] },
        { identifier: 'gone', dnsServers: ['127.0.0.39:9'], dnsZones: ['gone.example'] },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([up.stop(), silent.stop(), exotic.stop()]);
  });

  it('uses unpredictable source ports and IDs (RFC 5452 §9.2)', async () => {
    up.seen.length = 0;
    const n = 512;
    for (let i = 0; i < n; i += 32) {
      await Promise.all(Array.from({ length: 32 }, (_, j) => ask(pvdns.dns, `r${i + j}.example`, 'A')));
    }
    // Sockets are shared by at most 32 queries each (see src/upstream/udp.ts), so at least n/32 ports.
    const uses = new Map<number, number>();
    for (const s of up.seen) uses.set(s.port, (uses.get(s.port) ?? 0) + 1);
    // A retired socket's port may be drawn again by a later socket (a birthday collision among
    // ~20 draws from the ephemeral range), so one port may carry two sockets' queries, never more.
    const counts = [...uses.values()];
    expect(uses.size).toBeGreaterThanOrEqual(n / 32 - 1);
    expect(counts.filter((c) => c > 32).length).toBeLessThanOrEqual(1);
    expect(Math.max(...counts)).toBeLessThanOrEqual(64);
    // Ports spread over the ephemeral range rather than counting up from its start.
    const ports = [...uses.keys()].sort((x, y) => x - y);
    expect(ports.at(-1)! - ports[0]!).toBeGreaterThan(8000);
    const ids = up.seen.map((s) => s.id);
    expect(new Set(ids).size).toBeGreaterThan(n * 0.95);
    // A coarse spread test: 8 buckets of the ID space, chi-square well under what a biased source gives.
    const buckets = new Array(8).fill(0);
    for (const id of ids) buckets[id >> 13]++;
    const expected = ids.length / 8;
    const chi2 = buckets.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(30); // p ≈ 1e-4 for 7 degrees of freedom
  });

  it('keeps answering one query at a time while its sockets are retired and replaced', async () => {
    up.seen.length = 0;
    for (let i = 0; i < 100; i++) {
      const r = await ask(pvdns.dns, `seq${i}.example`, 'A');
      expect(r.packet.header.rcode, `seq${i}`).toBe(0);
    }
    expect(new Set(up.seen.map((s) => s.port)).size).toBeGreaterThanOrEqual(3); // 32 queries a socket at most
  });

  it('sends a PvD\'s queries from its sourceAddress', async () => {
    up.seen.length = 0;
    await ask(pvdns.dns, 'src.example', 'A');
    expect(up.seen[0]?.from).toBe('127.0.0.39');
  });

  it('asks the next server of the PvD when one times out', async () => {
    up.seen.length = 0;
    silent.seen.length = 0;
    const r = await ask(pvdns.dns, 'www.flaky.example', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.1']);
    expect(silent.names()).toEqual(['www.flaky.example']);
    expect(up.names()).toEqual(['www.flaky.example']);
  });

  it('fails fast with EDE 23 when nobody listens at the server (ICMP port unreachable)', async () => {
    const started = Date.now();
    const r = await ask(pvdns.dns, 'x.gone.example', 'A');
    expect(r.packet.header.rcode).toBe(2);
    expect(ede(r.packet)).toEqual({ ednsCode: 15, infoCode: 23, extraText: 'pvd gone: all servers unreachable (127.0.0.39:9 connection refused)' });
    expect(Date.now() - started).toBeLessThan(250); // well under upstream.timeoutMs
  });

  it('passes records of unknown and DNSSEC types through byte for byte', async () => {
    const r = await ask(pvdns.dns, 'blob.odd.example', 65280, { edns: false });
    const expected = rawAnswer(Packet.parse(Buffer.from(exotic.seen.at(-1)!.raw)));
    // Everything after the header is the upstream's own octets: question, answers, authority.
    expect(r.raw.subarray(12).toString('hex')).toBe(expected.subarray(12).toString('hex'));
    expect(r.raw.readUInt16BE(6)).toBe(2);
  });
});

/**
 * rawAnswer writes, by hand, a reply with an unknown-type record (opaque
 * octets, including a dot inside a label of its owner name) and an RRSIG,
 * compressed against the question.
 */
function rawAnswer(q: Packet): Buffer {
  const question = q.questions[0]!;
  const parts: Buffer[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.header.id, 0);
  header.writeUInt16BE(0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(2, 6);
  parts.push(header);
  const labels = question.name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  parts.push(...labels, Buffer.from([0]), Buffer.from([question.type >> 8, question.type & 0xff, 0, 1]));
  const rdata = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x2e, 0x5c, 0x00, 0x80]);
  // Owner: a label with a dot inside ("a.b") under the question name (pointer to offset 12).
  parts.push(Buffer.from([3, 0x61, 0x2e, 0x62, 0xc0, 12, 0xff, 0x00, 0, 1, 0, 0, 0x0e, 0x10, 0, rdata.length]), rdata);
  const sig = Buffer.from('00ff0d0300000e106a000000690000003039' + '0461626364' + '00' + 'deadbeef', 'hex');
  parts.push(Buffer.from([0xc0, 12, 0, 46, 0, 1, 0, 0, 0x0e, 0x10, 0, sig.length]), sig);
  return Buffer.concat(parts);
}
