// Back-pressure on GET /v1/events: a subscriber that never reads is dropped
// (and counted) once too much waits for it, while one that reads keeps every
// event. Events are made the ordinary way, by PUT /v1/pvds/{id}.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { EventStream, metricSum, put } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const up = new FakeUpstream();
let pvdns: Running;

beforeAll(async () => {
  await up.start('127.0.0.44');
  pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }] });
});
afterAll(async () => {
  await pvdns.stop();
  await up.stop();
});

/** slowSubscriber subscribes over a raw socket, waits for the stream to start, then never reads again. */
async function slowSubscriber(base: string): Promise<net.Socket> {
  const { hostname, port } = new URL(base);
  const s = net.connect({ host: hostname, port: Number(port) });
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.once('connect', resolve));
  s.write(`GET /v1/events HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  const head = await new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
  expect(head).toMatch(/^HTTP\/1\.1 200/);
  s.pause();
  return s;
}

describe('GET /v1/events back-pressure', () => {
  it('drops a subscriber that does not read, counts it, and keeps the one that reads', async () => {
    const reader = await EventStream.open(pvdns.http);
    expect((await reader.next()).event).toBe('pvd-announced'); // wifi
    const slow = await slowSubscriber(pvdns.http);
    expect(pvdns.app.events.subscribers).toBe(2);

    // Each update of a PvD with 1,000 zones is an event of ~30 KB; the kernel's socket
    // buffers take a few MB for the slow subscriber before pvdns has to hold any.
    const dnsZones = Array.from({ length: 1000 }, (_, i) => `zone-${String(i).padStart(4, '0')}.big.example`);
    const spec = { identifier: 'big.example', dnsServers: [up.address], dnsZones, noInternet: true, dns64: 'off' };
    let sent = 0;
    for (let i = 0; i < 1500 && pvdns.app.events.subscribers > 1; i++) {
      const r = await put(pvdns.http, 'big.example', { ...spec, priority: 1 + (i % 2) });
      expect(r.status).toBeLessThan(300);
      sent++;
    }
    expect(pvdns.app.events.subscribers, 'the subscriber that does not read was never dropped').toBe(1);
    expect(await metricSum(pvdns.http, 'pvdns_events_subscribers_dropped_total')).toBe(1);
    // Its connection is gone: reading again, it finds the stream cut.
    const closed = new Promise<boolean>((resolve) => slow.once('close', () => resolve(true)));
    slow.resume();
    expect(await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))])).toBe(true);

    // The reader has every event, in order.
    for (let i = 0; i < sent; i++) {
      const e = await reader.next();
      expect(e.event).toBe(i === 0 ? 'pvd-announced' : 'pvd-updated');
      expect(e.data).toMatchObject({ identifier: 'big.example', priority: 1 + (i % 2) });
    }
    reader.close();
  }, 60_000);
});
