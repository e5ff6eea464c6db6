// A PvD's own listener (pvds[].listen): a stub resolver pointed there gets
// every name resolved in that PvD only — no routing by zone, no fallback to
// the default PvDs, that PvD's cache — while the main listener routes as
// always. The listener follows the PvD: an API-announced PvD binds its
// listener, withdrawing it closes it; a clash or a bind failure names its key.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { del, getPvd, put } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';
import { configSchema } from '../../src/config/schema.js';

const ADDR = '127.0.0.181';

describe('a listener per PvD', () => {
  const wifi = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.10')]));
  const vpn = new FakeUpstream((q) => answer(q, [a(q, '10.8.0.20')]));
  const dead = new FakeUpstream(() => null);
  let pvdns: Running;
  let vpnListener: { host: string; port: number };

  beforeAll(async () => {
    await wifi.start('127.0.0.182');
    await vpn.start('127.0.0.183');
    await dead.start('127.0.0.184');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 200, attempts: 2 },
      pvds: [
        { identifier: 'vpn', dnsServers: [vpn.address], dnsZones: ['corp.example'], noInternet: true, listen: [`${ADDR}:0`] },
        { identifier: 'lab', dnsServers: [dead.address], dnsZones: ['lab.example'], noInternet: true, listen: ['127.0.0.185:0'] },
        { identifier: 'wifi', dnsServers: [wifi.address], default: true },
      ],
    });
    const view = (await getPvd(pvdns.http, 'vpn')).body;
    const bound = view.listen[0]!.bound!;
    vpnListener = { host: ADDR, port: Number(bound.split(':').at(-1)) };
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), vpn.stop(), dead.stop()]);
  });

  it('resolves every name in its PvD only, names it does not claim too, and shows where it is bound', async () => {
    for (const u of [wifi, vpn]) u.seen.length = 0;
    const r = await ask(vpnListener, 'www.example.com', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['10.8.0.20']);
    expect(vpn.names()).toEqual(['www.example.com']);
    expect(wifi.seen).toHaveLength(0);
    // The main listener routes it to the default PvD as always.
    const main = await ask(pvdns.dns, 'www.example.com', 'A');
    expect(main.packet.answers.map((x) => x.address)).toEqual(['192.0.2.10']);
    const view = (await getPvd(pvdns.http, 'vpn')).body;
    expect(view.listen).toEqual([{ address: `${ADDR}:0`, bound: `${ADDR}:${vpnListener.port}`, error: null }]);
  });

  it('answers from its PvD\'s cache', async () => {
    vpn.seen.length = 0;
    await ask(vpnListener, 'cached.example.net', 'A');
    await ask(vpnListener, 'cached.example.net', 'A');
    expect(vpn.names()).toEqual(['cached.example.net']);
  });

  it('does not fall back: its PvD failing is SERVFAIL naming it, and no other PvD is asked', async () => {
    wifi.seen.length = 0;
    const lab = (await getPvd(pvdns.http, 'lab')).body.listen[0]!.bound!;
    const r = await ask({ host: '127.0.0.185', port: Number(lab.split(':').at(-1)) }, 'www.example.org', 'A');
    expect(r.packet.header.rcode).toBe(2);
    expect(ede(r.packet)?.extraText).toMatch(/^pvd lab: /);
    expect(wifi.seen).toHaveLength(0);
  });

  it('follows a PvD announced and withdrawn through the API', async () => {
    const body = { identifier: 'guest', dnsServers: [wifi.address], noInternet: true, listen: ['127.0.0.186:0'] };
    expect((await put(pvdns.http, 'guest', body)).status).toBe(201);
    let bound: string | null = null;
    for (let i = 0; i < 50 && bound === null; i++) {
      bound = (await getPvd(pvdns.http, 'guest')).body.listen[0]?.bound ?? null;
      if (bound === null) await new Promise((r) => setTimeout(r, 20));
    }
    expect(bound).toMatch(/^127\.0\.0\.186:\d+$/);
    const guest = { host: '127.0.0.186', port: Number(bound!.split(':').at(-1)) };
    expect((await ask(guest, 'www.example.com', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.10']);
    expect((await del(pvdns.http, 'guest')).status).toBe(200);
    // Closed: nothing answers there any more.
    let closed = false;
    for (let i = 0; i < 50 && !closed; i++) {
      closed = await ask(guest, 'www.example.com', 'A', { timeoutMs: 200 }).then(
        () => false,
        () => true,
      );
    }
    expect(closed).toBe(true);
  });

  it('refuses a PvD listener on an address another listener takes, naming both keys', () => {
    const r = configSchema.safeParse({
      listen: ['127.0.0.1:5300'],
      pvds: [{ identifier: 'vpn', dnsServers: ['192.0.2.1'], listen: ['127.0.0.1:5300'] }],
    });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]).toMatchObject({ path: ['pvds', 0, 'listen', 0], message: '127.0.0.1:5300 is already listen[0]' });
  });

  it('refuses a server that is a PvD listener: queries would loop', async () => {
    await expect(startPvdns({ pvds: [{ identifier: 'a', dnsServers: ['127.0.0.187:5353'], listen: ['127.0.0.187:5353'] }] })).rejects.toThrow(
      /pvds\[0\]\.dnsServers\[0\]: 127\.0\.0\.187:5353 is pvdns's own listener: queries would loop/,
    );
  });

  it('fails start-up when a configured PvD listener cannot be bound, naming its key', async () => {
    const taken = (await getPvd(pvdns.http, 'vpn')).body.listen[0]!.bound!;
    await expect(
      startPvdns({ pvds: [{ identifier: 'vpn2', dnsServers: [vpn.address], listen: [taken] }] }),
    ).rejects.toThrow(/pvds\[0\]\.listen\[0\]: cannot listen on 127\.0\.0\.181:\d+ \(UDP\): EADDRINUSE/);
  });
});
