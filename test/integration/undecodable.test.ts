// An upstream reply whose names cannot be decoded — a compression pointer
// that loops, in an owner name or inside a CNAME's RDATA — is refused as a
// forgery would be (parseResponse): the client gets SERVFAIL, never the
// reply, and nothing of it is cached, so once the server answers properly
// the right answer comes. Timings are left to the upstream settings: the
// test waits for outcomes, not for a number of milliseconds.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const ptr = (off: number): Buffer => Buffer.from([0xc0 | (off >> 8), off & 0xff]);

/**
 * looping answers the raw query `raw` with one record whose owner points at
 * itself ('owner'), or a CNAME whose target points at itself ('cname').
 */
function looping(raw: Buffer, kind: 'owner' | 'cname'): Buffer {
  let off = 12;
  while (raw[off] !== 0) off += raw[off]! + 1;
  const qEnd = off + 5;
  const head = Buffer.from(raw.subarray(0, 12));
  head.writeUInt16BE(0x8180, 2); // QR RD RA, NOERROR
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(1, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const owner = kind === 'owner' ? ptr(qEnd) : ptr(12);
  const rdata = kind === 'owner' ? Buffer.from([192, 0, 2, 66]) : Buffer.concat([Buffer.from([1, 0x78]), ptr(qEnd + 12)]);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(kind === 'owner' ? 1 : 5, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(300, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([head, raw.subarray(12, qEnd), owner, fixed, rdata]);
}

describe('an upstream reply with a compression-pointer loop', () => {
  let mode: 'owner' | 'cname' | 'good' = 'owner';
  const up = new FakeUpstream((q, { raw }) => (mode === 'good' ? answer(q, [a(q, '192.0.2.44')]) : looping(raw, mode)));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.181');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 200, attempts: 2, probeIntervalMs: 50, probeMaxIntervalMs: 200 },
      pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  const cacheEntries = async (): Promise<number> => ((await (await fetch(`${pvdns.http}/v1/pvds/wifi`)).json()) as { cacheEntries: number }).cacheEntries;

  it('is not passed on: the client gets SERVFAIL, not NOERROR, and nothing is cached', async () => {
    for (const [kind, name] of [
      ['owner', 'loop.example'],
      ['cname', 'cname-loop.example'],
    ] as const) {
      mode = kind;
      const r = await ask(pvdns.dns, name, 'A', { timeoutMs: 8000 });
      expect(r.packet.header.rcode, name).toBe(2);
      expect(r.packet.answers, name).toEqual([]);
      expect(up.names(), name).toContain(name); // it was asked, and answered, wrongly
    }
    expect(await cacheEntries()).toBe(0);
  });

  it('is not cached: once the server answers properly, the right answer comes', async () => {
    mode = 'good';
    // The failure may be remembered for a moment (failure cache, the server's health); it is
    // never answered with anything but SERVFAIL or the right address.
    const until = Date.now() + 10_000;
    for (;;) {
      const r = await ask(pvdns.dns, 'loop.example', 'A', { timeoutMs: 8000 });
      if (r.packet.header.rcode === 0) {
        expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.44']);
        break;
      }
      expect(r.packet.header.rcode).toBe(2);
      expect(r.packet.answers).toEqual([]);
      if (Date.now() > until) throw new Error('no good answer within 10 s of the server being fixed');
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(await cacheEntries()).toBe(1);
  });
});
