// Captive portals per PvD against fake upstreams on 127.0.0.70–79:
//
//   hotel (default, priority 10, zone hotel.example) ─▶ a portal's resolver: every name → 10.9.9.9 (until login)
//   cell  (default, priority 20, from the API)       ─▶ a normal resolver
//   corp  (zone corp.example, not a default)         ─▶ a VPN's resolver: private addresses for its own names
//   isp   (zone isp.example, not a default)          ─▶ an NXDOMAIN rewriter (search-ads style)
//
// (Not noInternet: a noInternet PvD is never probed, test/integration/probes.test.ts.)
//
// Detection by probes, demotion from default routing, answers never cached
// while captive, the cache flushed and routing restored when the portal
// opens, and no false alarm for a VPN's private answers.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { del, eventually, EventStream, getPvd, put, resolve } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const T = Packet.TYPE;
const PORTAL = '10.9.9.9';
const AD_SERVER = '198.51.100.7';

/** Real data: a few names with addresses, the canary, NXDOMAIN for the rest. */
const REAL: Record<string, string> = { 'www.example.com': '192.0.2.80', 'canary.test': '192.0.2.53', 'intranet.corp.example': '10.2.3.4', 'www.isp.example': '192.0.2.81' };

function normal(q: Packet): Packet {
  const { name, type } = q.questions[0]!;
  const address = REAL[name.toLowerCase()];
  if (address === undefined) return answer(q, [], { rcode: 3, authorities: [soa('.', 300, 300)] });
  if (type !== T.A) return answer(q, [], { authorities: [soa('.', 300, 300)] });
  return answer(q, [{ name, type: T.A, class: 1, ttl: 300, address } as Resource]);
}

function portal(q: Packet): Packet {
  const { name, type } = q.questions[0]!;
  return type === T.A ? answer(q, [{ name, type: T.A, class: 1, ttl: 60, address: PORTAL } as Resource]) : answer(q, []);
}

function nxRewriter(q: Packet): Packet {
  const r = normal(q);
  const { name, type } = q.questions[0]!;
  if (r.header.rcode !== 3 || type !== T.A) return r;
  return answer(q, [{ name, type: T.A, class: 1, ttl: 60, address: AD_SERVER } as Resource]);
}

describe('captive portals per PvD', () => {
  const hotel = new FakeUpstream(portal);
  const cell = new FakeUpstream(normal);
  const corp = new FakeUpstream(normal);
  const isp = new FakeUpstream(nxRewriter);
  let pvdns: Running;
  const cellSpec = { identifier: 'cell', dnsServers: [] as string[], default: true, priority: 20 };
  const state = async (id: string): Promise<string> => (await getPvd(pvdns.http, id)).body.captiveState;

  beforeAll(async () => {
    await hotel.start('127.0.0.70');
    await cell.start('127.0.0.71');
    await corp.start('127.0.0.72');
    await isp.start('127.0.0.73');
    cellSpec.dnsServers = [cell.address];
    pvdns = await startPvdns({
      captive: { probeIntervalS: 1, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
      pvds: [
        { identifier: 'hotel', dnsServers: [hotel.address], dnsZones: ['hotel.example'], default: true, priority: 10 },
        { identifier: 'corp', dnsServers: [corp.address], dnsZones: ['corp.example'], prefixes: ['10.2.0.0/16'], default: false },
        { identifier: 'isp', dnsServers: [isp.address], dnsZones: ['isp.example'], default: false },
      ],
    });
    expect((await put(pvdns.http, 'cell', cellSpec)).status).toBe(201);
    await eventually('hotel to be found captive', async () => (await state('hotel')) === 'captive');
    await eventually('cell to be found open', async () => (await state('cell')) === 'open');
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([hotel.stop(), cell.stop(), corp.stop(), isp.stop()]);
  });

  it('finds the rewriting PvD captive from its probes, and learns the portal address', async () => {
    const h = (await getPvd(pvdns.http, 'hotel')).body;
    expect(h).toMatchObject({ captive: true, captiveState: 'captive', portalAddresses: [PORTAL] });
    expect(h.captiveReason).toMatch(/^DNS rewritten: /);
    // Probes are two names that cannot exist and the canary, through hotel's own server.
    const probed = hotel.names();
    expect(probed).toContain('canary.test');
    expect(probed.filter((n) => /^p[a-z0-9]{11,14}(\.p[a-z0-9]{11,14})?$/.test(n)).length).toBeGreaterThanOrEqual(2);
  });

  it('does not take a VPN that answers its own names with private addresses for a portal (CPT-4)', async () => {
    await eventually('corp to be probed', async () => (await state('corp')) !== 'unknown');
    const r = await ask(pvdns.dns, 'intranet.corp.example', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['10.2.3.4']);
    expect(await state('corp')).toBe('open');
    expect((await getPvd(pvdns.http, 'corp')).body.captive).toBe(false);
  });

  it('finds an NXDOMAIN-rewriting resolver (search ads) captive, though it answers real names right', async () => {
    await eventually('isp to be found captive', async () => (await state('isp')) === 'captive');
    expect((await getPvd(pvdns.http, 'isp')).body.portalAddresses).toEqual([AD_SERVER]);
  });

  it('sends names nobody claims to the open PvD while hotel is captive', async () => {
    hotel.seen.length = 0;
    const r = await ask(pvdns.dns, 'www.example.com', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.80']);
    expect(hotel.names()).not.toContain('www.example.com');
    expect((await resolve(pvdns.http, 'name=www.example.com&type=A')).body).toMatchObject({ pvd: 'cell', captive: false });
  });

  it("still answers hotel's own names and queries for it, flagged captive and never cached", async () => {
    const own = await ask(pvdns.dns, 'login.hotel.example', 'A');
    expect(own.packet.answers.map((x) => x.address)).toEqual([PORTAL]);
    for (let i = 0; i < 2; i++) {
      const r = await resolve(pvdns.http, 'name=www.example.com&type=A&pvd=hotel');
      expect(r.body).toMatchObject({ pvd: 'hotel', captive: true, cached: false });
      expect(r.body.answers.map((x) => x.data)).toEqual([PORTAL]);
    }
    expect((await getPvd(pvdns.http, 'hotel')).body.cacheEntries).toBe(0);
    const metrics = await (await fetch(`${pvdns.http}/metrics`)).text();
    expect(metrics).toMatch(/^pvdns_captive_portal\{pvd="hotel"\} 1$/m);
    expect(metrics).toMatch(/^pvdns_captive_portal\{pvd="cell"\} 0$/m);
    const rewrites = Number(/^pvdns_captive_rewrites_total\{pvd="hotel"\} (\d+)$/m.exec(metrics)?.[1]);
    expect(rewrites).toBeGreaterThanOrEqual(3);
  });

  it('keeps a captive PvD serving, uncached, when no other default PvD is there', async () => {
    expect((await del(pvdns.http, 'cell')).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const r = await resolve(pvdns.http, 'name=alone.example.com&type=A');
      expect(r.body).toMatchObject({ pvd: 'hotel', captive: true, cached: false });
    }
    expect((await put(pvdns.http, 'cell', cellSpec)).status).toBe(201);
    await eventually('cell to be found open again', async () => (await state('cell')) === 'open');
  });

  it('opens hotel again when the user logs in: an event, its cache flushed, default routing in its priority', async () => {
    const events = await EventStream.open(pvdns.http);
    try {
      for (let i = 0; i < 4; i++) expect((await events.next()).event).toBe('pvd-announced');
      hotel.respond = normal; // logged in: the resolver answers truthfully
      let e = await events.next(8000);
      while (e.event !== 'captive-changed') e = await events.next(8000);
      expect(e.data).toMatchObject({ identifier: 'hotel', captive: false, captiveState: 'open' });
    } finally {
      events.close();
    }
    hotel.seen.length = 0;
    const r = await resolve(pvdns.http, 'name=www.example.com&type=A');
    expect(r.body).toMatchObject({ pvd: 'hotel', captive: false, cached: false });
    expect(r.body.answers.map((x) => x.data)).toEqual(['192.0.2.80']);
    expect((await resolve(pvdns.http, 'name=www.example.com&type=A')).body.cached).toBe(true);
    const metrics = await (await fetch(`${pvdns.http}/metrics`)).text();
    expect(metrics).toMatch(/^pvdns_captive_portal\{pvd="hotel"\} 0$/m);
  });

  it('flushes what hotel cached when it turns captive again, and recognises the portal address in answers', async () => {
    await resolve(pvdns.http, 'name=www.example.com&type=A');
    expect((await getPvd(pvdns.http, 'hotel')).body.cacheEntries).toBeGreaterThan(0);
    hotel.respond = portal; // the session ran out
    await eventually('hotel to be captive again', async () => (await state('hotel')) === 'captive');
    expect((await getPvd(pvdns.http, 'hotel')).body.cacheEntries).toBe(0);
    const r = await resolve(pvdns.http, 'name=www.example.com&type=A&pvd=hotel');
    expect(r.body).toMatchObject({ captive: true, answers: [expect.objectContaining({ data: PORTAL })] });
  });
});
