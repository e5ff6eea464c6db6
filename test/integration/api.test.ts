// The control API under /v1 through real HTTP (global fetch) against a
// running pvdns: PvDs listed, announced, updated and withdrawn (and what that
// does to DNS routing and to the cache), Translate Name, cache flushes, the
// Server-Sent Events stream, the bearer token and the loopback rule, and the
// PvD change metrics. Fake upstreams on 127.0.0.100–119 record which PvD's
// servers were asked.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Api } from '../../src/http/api.js';
import type { PvdView } from '../../src/pvd/view.js';
import { ask, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { call, del, eventually, EventStream, flush, getPvd, ISO, listPvds, put, resolve } from '../helpers/http.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

/** The fake upstreams' answer: A and AAAA per name; a name under "rfc5952" gets AAAA records in long form. */
const LONG_AAAA = ['2001:0DB8:0000:0000:0001:0000:0000:0001', '2001:db8:0:1:1:1:1:1', '2001:0:0:1:0:0:0:1', 'FE80:0000:0000:0000:0000:0000:0000:0000'];
function responder(v4: string): (q: Packet) => Packet {
  return (q) => {
    const question = q.questions[0]!;
    if (question.type === Packet.TYPE.AAAA) {
      const addresses = question.name.toLowerCase().startsWith('rfc5952') ? LONG_AAAA : ['2001:db8::53'];
      return answer(
        q,
        addresses.map((address) => ({ name: question.name, type: Packet.TYPE.AAAA, class: 1, ttl: 300, address }) as Resource),
      );
    }
    return answer(q, [a(q, v4, 300)]);
  };
}

const addresses = (r: Awaited<ReturnType<typeof ask>>): string[] => r.packet.answers.map((x) => x.address as string);

// ---------------------------------------------------------------- PvDs, PUT, DELETE, resolve, flush

describe('control API (/v1)', () => {
  const wifi = new FakeUpstream(responder('192.0.2.1'));
  const corp = new FakeUpstream(responder('10.8.0.1'));
  const dead = new FakeUpstream(() => null); // never answers
  let pvdns: Running;
  let base: string;

  const corpSpec = {
    identifier: 'corp.example',
    dnsServers: [] as string[],
    dnsZones: ['corp.example'],
    noInternet: true,
    dns64: 'off', // no RFC 7050 discovery query: these tests count the queries the server sees
  };

  beforeAll(async () => {
    await wifi.start('127.0.0.100');
    await corp.start('127.0.0.101');
    await dead.start('127.0.0.102');
    corpSpec.dnsServers = [corp.address];
    pvdns = await startPvdns({
      upstream: { timeoutMs: 300, attempts: 1 },
      pvds: [
        { identifier: 'wifi', dnsServers: [wifi.address], priority: 10 },
        { identifier: 'lab.example', dnsServers: [dead.address], dnsZones: ['lab.example'], noInternet: true },
      ],
    });
    base = pvdns.http;
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), corp.stop(), dead.stop()]);
  });
  beforeEach(() => {
    for (const u of [wifi, corp, dead]) u.seen.length = 0;
  });

  describe('GET /v1/pvds', () => {
    it('lists the PvDs in order with their state; servers not asked yet are untested', async () => {
      const r = await call<{ pvds: PvdView[] }>(base, 'GET', '/v1/pvds');
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.body.pvds.map((p) => p.identifier)).toEqual(['wifi', 'lab.example']);
      expect(r.body.pvds[0]).toEqual({
        identifier: 'wifi',
        source: 'config',
        origin: null,
        default: true,
        priority: 10,
        noInternet: false,
        // Every key a PvD is configured with shows, defaults included (issue 18).
        rebindProtection: false,
        captivePortal: null,
        dns64Synthesize: false,
        dnsZones: [],
        prefixes: [],
        expires: null,
        sourceAddress: null,
        sourceAddressPresent: null,
        interface: null,
        localNetwork: false,
        encryption: 'off',
        servers: [
          { address: wifi.address, state: 'untested', rttMs: null, since: null, lastError: null, probesPaused: false, transport: 'udp', authName: null, encryption: null, authenticated: null, encryptionError: null, fallback: null, learned: 'config', verified: null },
        ],
        listen: [],
        cleartextServers: [],
        captiveCleartext: false,
        // A PvD written by hand: no DDR unless it says ddr: true.
        ddr: { state: 'off', designated: [], rejected: [], lastError: null, checkedAt: null, nextCheckAt: null },
        captive: null,
        captiveState: 'unknown',
        userPortalUrl: null,
        venueInfoUrl: null,
        captiveSince: expect.stringMatching(ISO),
        captiveReason: null,
        portalAddresses: [],
        captiveApiError: null,
        pref64: null,
        dns64: 'off',
        pref64Source: null,
        pref64NextCheck: null,
        pref64Error: null,
        cacheEntries: 0,
      });
      expect(r.body.pvds[1]).toMatchObject({ identifier: 'lab.example', source: 'config', default: false, noInternet: true, dnsZones: ['lab.example'] });
    });

    it('finds one PvD by id case-insensitively and with a trailing dot', async () => {
      const exact = await getPvd(base, 'lab.example');
      expect(exact.status).toBe(200);
      for (const id of ['LAB.Example', 'lab.example.', 'Lab.EXAMPLE.']) {
        const r = await getPvd(base, id);
        expect(r.status, id).toBe(200);
        expect(r.body, id).toEqual(exact.body);
      }
      expect((await getPvd(base, 'WiFi')).body.identifier).toBe('wifi');
    });

    it('shows a server operational after an answer and suspect after a failure, and counts cache entries', async () => {
      await ask(pvdns.dns, 'one.example.org', 'A');
      await ask(pvdns.dns, 'two.example.org', 'A');
      await ask(pvdns.dns, 'two.example.org', 'A'); // a hit: no new entry
      const before = Date.now();
      const w = (await getPvd(base, 'wifi')).body;
      expect(w.cacheEntries).toBe(2);
      const s = w.servers[0]!;
      expect(s.state).toBe('operational');
      expect(typeof s.rttMs).toBe('number');
      expect(s.rttMs).toBeGreaterThanOrEqual(0);
      expect(s.since).toMatch(ISO);
      expect(Date.parse(s.since!)).toBeLessThanOrEqual(before);
      expect(Date.parse(s.since!)).toBeGreaterThan(before - 60_000);
      expect(s.lastError).toBeNull();

      const r = await ask(pvdns.dns, 'db.lab.example', 'A');
      expect(r.packet.header.rcode).toBe(2);
      const lab = (await getPvd(base, 'lab.example')).body;
      expect(lab.servers[0]).toMatchObject({ address: dead.address, state: 'suspect', rttMs: null });
      expect(lab.servers[0]!.since).toMatch(ISO);
      expect(lab.servers[0]!.lastError).toEqual(expect.any(String));
      expect(lab.cacheEntries).toBe(0); // SERVFAIL is not cached
      expect((await getPvd(base, 'wifi')).body.cacheEntries).toBe(2); // other PvDs unaffected
    });

    it('answers an unknown PvD with a 404 JSON error', async () => {
      const r = await getPvd(base, 'nope.example');
      expect(r.status).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.body.error).toMatch(/nope\.example/);
    });

    it('refuses a method a path does not take with 405 and a JSON error', async () => {
      for (const [method, path] of [
        ['POST', '/v1/pvds'],
        ['DELETE', '/v1/pvds'],
        ['POST', '/v1/pvds/wifi'],
        ['PATCH', '/v1/pvds/wifi'],
        ['POST', '/v1/resolve?name=x.example'],
        ['GET', '/v1/cache/flush'],
        ['POST', '/v1/events'],
      ] as const) {
        const r = await call<{ error: string }>(base, method, path);
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.body.error, `${method} ${path}`).toMatch(/method not allowed/);
      }
      expect(await listPvds(base)).toHaveLength(2); // nothing was created or removed
    });

    it('answers a malformed percent-encoding in the PvD id with a 4xx JSON error, not a 500', async () => {
      const r = await call<{ error: string }>(base, 'GET', '/v1/pvds/%E0%A4%A');
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.body.error).toEqual(expect.any(String));
    });
  });

  describe('PUT /v1/pvds/{id}', () => {
    it('announces a new PvD (201), answers the same again "unchanged" (200) and a change "updated" (200), keeping its cache', async () => {
      const created = await put(base, 'corp.example', corpSpec);
      expect(created.status).toBe(201);
      expect(created.body.result).toBe('announced');
      expect(created.body.pvd).toMatchObject({
        identifier: 'corp.example',
        source: 'api',
        default: false,
        noInternet: true,
        priority: 100,
        dnsZones: ['corp.example'],
        expires: null,
        servers: [
          { address: corp.address, state: 'untested', rttMs: null, since: null, lastError: null, probesPaused: false, transport: 'udp', authName: null, encryption: null, authenticated: null, encryptionError: null, fallback: null, learned: 'api', verified: null },
        ],
        cacheEntries: 0,
      });
      expect((await listPvds(base)).map((p) => p.identifier)).toEqual(['wifi', 'lab.example', 'corp.example']);
      expect((await getPvd(base, 'corp.example')).body).toEqual(created.body.pvd);

      const again = await put(base, 'corp.example', corpSpec);
      expect(again.status).toBe(200);
      expect(again.body.result).toBe('unchanged');

      // A cached answer in the PvD...
      expect(addresses(await ask(pvdns.dns, 'www.corp.example', 'A'))).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['www.corp.example']);
      expect((await getPvd(base, 'corp.example')).body.cacheEntries).toBe(1);

      const changed = await put(base, 'corp.example', { ...corpSpec, dnsZones: ['corp.example', 'corp2.example'], priority: 50 });
      expect(changed.status).toBe(200);
      expect(changed.body.result).toBe('updated');
      expect(changed.body.pvd).toMatchObject({ identifier: 'corp.example', source: 'api', priority: 50, dnsZones: ['corp.example', 'corp2.example'], cacheEntries: 1 });
      expect((await getPvd(base, 'corp.example')).body).toMatchObject({ priority: 50, dnsZones: ['corp.example', 'corp2.example'] });

      // ...is still a hit after the update, and the new zone routes to it at once.
      expect(addresses(await ask(pvdns.dns, 'www.corp.example', 'A'))).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['www.corp.example']);
      expect(addresses(await ask(pvdns.dns, 'www.corp2.example', 'A'))).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['www.corp.example', 'www.corp2.example']);
      expect(wifi.seen).toHaveLength(0);

      expect((await del(base, 'corp.example')).status).toBe(200);
    });

    it('takes the identifier from the path when the body has none', async () => {
      const r = await put(base, 'pathonly.example', { dnsServers: [corp.address], noInternet: true });
      expect(r.status).toBe(201);
      expect(r.body.pvd).toMatchObject({ identifier: 'pathonly.example', source: 'api' });
      expect((await del(base, 'pathonly.example')).status).toBe(200);
    });

    it('accepts an RFC 8801 PvD object, ignoring unknown keys and vendor-* sub-dictionaries', async () => {
      const expires = new Date(Date.now() + 86_400_000).toISOString();
      const r = await put(base, 'isp.example', {
        identifier: 'isp.example.',
        expires,
        prefixes: ['2001:db8:1::/48'],
        noInternet: true,
        dnsZones: ['isp.example'],
        dnsServers: [corp.address],
        hFlag: true,
        'x-experimental': [1, 2, 3],
        'vendor-acme': { tier: 'gold', nested: { on: true } },
      });
      expect(r.status).toBe(201);
      expect(r.body.result).toBe('announced');
      const got = await getPvd(base, 'ISP.example');
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ source: 'api', expires, prefixes: ['2001:db8:1::/48'], dnsZones: ['isp.example'], noInternet: true });
      expect(got.body.servers.map((s) => s.address)).toEqual([corp.address]);

      // Its zone and the reverse zone of its prefix route to it.
      expect(addresses(await ask(pvdns.dns, 'www.isp.example', 'A'))).toEqual(['10.8.0.1']);
      await ask(pvdns.dns, `1.${'0.'.repeat(19)}1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa`, 'PTR');
      expect(corp.names()).toEqual(['www.isp.example', `1.${'0.'.repeat(19)}1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa`]);
      expect(wifi.seen).toHaveLength(0);

      expect((await del(base, 'isp.example')).status).toBe(200);
    });

    describe('a refused PUT changes nothing', () => {
      // dns64 off: its discovery would change the PvD's view while these tests compare snapshots.
      const keep = { identifier: 'keep.example', dnsServers: [] as string[], dnsZones: ['keep.example'], noInternet: true, dns64: 'off' };
      let snapshot: PvdView[];

      beforeAll(async () => {
        keep.dnsServers = [corp.address];
        expect((await put(base, 'keep.example', keep)).status).toBe(201);
      });
      afterAll(async () => {
        await del(base, 'keep.example');
      });
      beforeEach(async () => {
        snapshot = await listPvds(base);
      });
      const unchanged = async (): Promise<void> => {
        expect(await listPvds(base)).toEqual(snapshot);
      };

      it('400 when the identifier in the body is not the one in the path', async () => {
        const r = await put(base, 'keep.example', { ...keep, identifier: 'other.example' });
        expect(r.status).toBe(400);
        expect(r.body.error).toMatch(/^identifier: /);
        expect(r.body.error).toMatch(/other\.example/);
        await unchanged();
        // The identifier matches case-insensitively and without the trailing dot (RFC 8801 §3.4).
        const same = await put(base, 'keep.example', { ...keep, identifier: 'keep.example.' });
        expect(same.status).toBe(200);
        expect((await put(base, 'keep.example', keep)).status).toBe(200);
      });

      it('400 for a body that is not JSON, or not a JSON object', async () => {
        const r = await call<{ error: string }>(base, 'PUT', '/v1/pvds/keep.example', { raw: '{"identifier": "keep.example", ', token: TEST_TOKEN });
        expect(r.status).toBe(400);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        expect(r.body.error).toMatch(/JSON/);
        for (const raw of ['[]', 'null', '"keep.example"', '']) {
          const x = await call<{ error: string }>(base, 'PUT', '/v1/pvds/keep.example', { raw, token: TEST_TOKEN });
          expect(x.status, raw).toBe(400);
          expect(x.body.error, raw).toEqual(expect.any(String));
        }
        await unchanged();
      });

      it('400 naming the field that is wrong', async () => {
        const cases: Array<[unknown, RegExp]> = [
          [{ ...keep, dnsServers: ['not-an-address'] }, /^dnsServers\[0\]: /],
          [{ ...keep, dnsServers: [corp.address, '127.0.0.1:0'] }, /^dnsServers\[1\]: /],
          [{ ...keep, dnsZones: ['ok.example', 'bad..example'] }, /^dnsZones\[1\]: /],
          [{ ...keep, dnsZones: ['foo.localhost'] }, /^dnsZones\[0\]: .*RFC 6761/],
          [{ ...keep, prefixes: ['10.0.0.0/33'] }, /^prefixes\[0\]: /],
          [{ ...keep, priority: -1 }, /^priority: /],
          [{ ...keep, noInternet: 'yes' }, /^noInternet: /],
          [{ ...keep, noInternet: true, default: true }, /^default: /],
          [{ ...keep, expires: 'tomorrow' }, /^expires: /],
          [{ ...keep, dns64: '64:ff9b::/95' }, /^dns64: /],
          [{ ...keep, captivePortal: 'http://portal.example/' }, /^captivePortal: /],
        ];
        for (const [body, error] of cases) {
          const r = await put(base, 'keep.example', body);
          expect(r.status, JSON.stringify(body)).toBe(400);
          expect(r.body.error, JSON.stringify(body)).toMatch(error);
        }
        await unchanged();
      });

      it('400 naming an unknown key of a PvD object', async () => {
        const r = await put(base, 'keep.example', { ...keep, dnsServer: [corp.address] });
        expect(r.status).toBe(400);
        expect(r.body.error).toMatch(/dnsServer/);
        expect(r.body.error).toMatch(/unknown key/);
        await unchanged();
      });

      it('400 when expires has passed, for a new PvD and for an existing one', async () => {
        const past = '2020-01-01T00:00:00Z';
        const r = await put(base, 'keep.example', { ...keep, expires: past });
        expect(r.status).toBe(400);
        expect(r.body.error).toMatch(/^expires: /);
        const fresh = await put(base, 'gone.example', { identifier: 'gone.example', dnsServers: [corp.address], expires: past });
        expect(fresh.status).toBe(400);
        expect((await getPvd(base, 'gone.example')).status).toBe(404);
        await unchanged();
      });

      it('400 for a server that is pvdns itself, as the configuration refuses it (queries would loop)', async () => {
        const self = `${pvdns.dns.host}:${pvdns.dns.port}`;
        const existing = await put(base, 'keep.example', { ...keep, dnsServers: [corp.address, self] });
        const fresh = await put(base, 'loop.example', { identifier: 'loop.example', dnsServers: [self], dnsZones: ['loop.example'], noInternet: true });
        try {
          expect(existing.status).toBe(400);
          expect(existing.body.error).toMatch(/^dnsServers\[1\]: .*loop/);
          expect(fresh.status).toBe(400);
          expect(fresh.body.error).toMatch(/^dnsServers\[0\]: .*loop/);
          await unchanged();
        } finally {
          // No query is ever sent to these zones; put things back if the PUTs were taken.
          if (existing.status < 300) await put(base, 'keep.example', keep);
          if (fresh.status < 300) await del(base, 'loop.example');
        }
      });

      it('409 for a PvD that comes from the configuration', async () => {
        for (const id of ['wifi', 'WIFI.', 'lab.example']) {
          const r = await put(base, id, { dnsServers: [corp.address], noInternet: true });
          expect(r.status, id).toBe(409);
          expect(r.body.error, id).toMatch(/config/);
        }
        await unchanged();
      });

      it('413 for a body over 64 KiB', async () => {
        // Valid in every other way: an RFC 8801 object with a large unknown key.
        const big = { ...keep, expires: new Date(Date.now() + 86_400_000).toISOString(), prefixes: [], 'x-pad': 'x'.repeat(70_000) };
        const r = await put(base, 'keep.example', big);
        expect(r.status).toBe(413);
        expect(r.body.error).toEqual(expect.any(String));
        await unchanged();
      });

      it('413 for a body over 64 KiB sent without a Content-Length (chunked)', async () => {
        const text = JSON.stringify({ ...keep, expires: new Date(Date.now() + 86_400_000).toISOString(), prefixes: [], 'x-pad': 'x'.repeat(70_000) });
        const chunks = [text.slice(0, 30_000), text.slice(30_000, 60_000), text.slice(60_000)];
        const body = new ReadableStream<Uint8Array>({
          pull(ctl) {
            const c = chunks.shift();
            if (c === undefined) ctl.close();
            else ctl.enqueue(new TextEncoder().encode(c));
          },
        });
        let status: number | string;
        try {
          const res = await fetch(`${base}/v1/pvds/keep.example`, {
            method: 'PUT',
            body,
            duplex: 'half',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_TOKEN}` },
          } as RequestInit);
          status = res.status;
          await res.text();
        } catch (err) {
          status = `request failed: ${String((err as Error).cause ?? err)}`;
        }
        expect(status).toBe(413);
        await unchanged();
      });
    });
  });

  describe('routing by PvDs announced and withdrawn through the API', () => {
    it('routes an announced PvD zone to its servers at once, and back to the default PvD after DELETE, its cache entries gone', async () => {
      expect((await put(base, 'corp.example', corpSpec)).status).toBe(201);
      expect(addresses(await ask(pvdns.dns, 'app.corp.example', 'A'))).toEqual(['10.8.0.1']);
      expect(addresses(await ask(pvdns.dns, 'app.corp.example', 'AAAA'))).toEqual(['2001:db8::53']);
      expect(corp.names()).toEqual(['app.corp.example', 'app.corp.example']);
      expect(wifi.seen).toHaveLength(0);
      await ask(pvdns.dns, 'www.example.net', 'A');
      expect(wifi.names()).toEqual(['www.example.net']);

      const wifiEntries = (await getPvd(base, 'wifi')).body.cacheEntries;
      expect(wifiEntries).toBeGreaterThan(0);
      expect((await getPvd(base, 'corp.example')).body.cacheEntries).toBe(2);

      const gone = await del(base, 'Corp.Example.');
      expect(gone.status).toBe(200);
      expect(gone.body).toEqual({ withdrawn: 'corp.example' });
      expect((await getPvd(base, 'corp.example')).status).toBe(404);
      expect((await listPvds(base)).map((p) => p.identifier)).toEqual(['wifi', 'lab.example']);
      expect((await getPvd(base, 'wifi')).body.cacheEntries).toBe(wifiEntries);

      // The same question now goes to the default PvD, not to the withdrawn one (and not from its cache).
      expect(addresses(await ask(pvdns.dns, 'app.corp.example', 'A'))).toEqual(['192.0.2.1']);
      expect(wifi.names()).toEqual(['www.example.net', 'app.corp.example']);
      expect(corp.seen).toHaveLength(2);

      // Every entry left in the cache belongs to a PvD that is still there.
      const pvds = await listPvds(base);
      const total = pvds.reduce((n, p) => n + p.cacheEntries, 0);
      const f = await flush(base);
      expect(f.status).toBe(200);
      expect(f.body.flushed).toBe(total);
    });

    it('answers DELETE of an unknown PvD 404 and of a configured one 409, leaving it there', async () => {
      const unknown = await del(base, 'nope.example');
      expect(unknown.status).toBe(404);
      expect(unknown.body.error).toMatch(/nope\.example/);
      for (const id of ['wifi', 'LAB.example.']) {
        const r = await del(base, id);
        expect(r.status, id).toBe(409);
        expect(r.body.error, id).toMatch(/config/);
      }
      expect((await listPvds(base)).map((p) => p.identifier)).toEqual(['wifi', 'lab.example']);
      // The configured zone still routes to its PvD.
      await ask(pvdns.dns, 'x.lab.example', 'A');
      expect(new Set(dead.names())).toEqual(new Set(['x.lab.example'])); // asked (and asked again: it is silent)
      expect(wifi.seen).toHaveLength(0);
    });

    it('withdraws an API PvD by itself when its expires time comes; its names then route elsewhere', async () => {
      const expires = new Date(Date.now() + 1000).toISOString();
      const r = await put(base, 'temp.example', { identifier: 'temp.example', dnsServers: [corp.address], dnsZones: ['temp.example'], noInternet: true, expires });
      expect(r.status).toBe(201);
      expect(r.body.pvd!.expires).toBe(expires);
      expect(addresses(await ask(pvdns.dns, 'a.temp.example', 'A'))).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['a.temp.example']);

      await eventually('temp.example to expire', async () => (await getPvd(base, 'temp.example')).status === 404, 5000);
      expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(expires));
      expect((await listPvds(base)).map((p) => p.identifier)).toEqual(['wifi', 'lab.example']);

      expect(addresses(await ask(pvdns.dns, 'a.temp.example', 'A'))).toEqual(['192.0.2.1']);
      expect(wifi.names()).toEqual(['a.temp.example']);
      expect(corp.seen).toHaveLength(1);
    });

    it('keeps a PvD whose expires a later PUT moved on, or removed', async () => {
      const soon = new Date(Date.now() + 600).toISOString();
      const later = new Date(Date.now() + 3_600_000).toISOString();
      const lease = { identifier: 'lease.example', dnsServers: [corp.address], noInternet: true };
      expect((await put(base, 'lease.example', { ...lease, expires: soon })).status).toBe(201);
      expect((await put(base, 'renew.example', { ...lease, identifier: 'renew.example', expires: soon })).status).toBe(201);
      const moved = await put(base, 'lease.example', { ...lease, expires: later });
      expect(moved.body).toMatchObject({ result: 'updated', pvd: { expires: later } });
      const removed = await put(base, 'renew.example', { ...lease, identifier: 'renew.example' });
      expect(removed.body).toMatchObject({ result: 'updated', pvd: { expires: null } });
      // Well past the first expiry time, with a marker PvD that does expire to know the timers ran.
      expect((await put(base, 'marker.example', { ...lease, identifier: 'marker.example', expires: new Date(Date.now() + 900).toISOString() })).status).toBe(201);
      await eventually('marker.example to expire', async () => (await getPvd(base, 'marker.example')).status === 404, 5000);
      expect((await getPvd(base, 'lease.example')).body).toMatchObject({ identifier: 'lease.example', expires: later });
      expect((await getPvd(base, 'renew.example')).body).toMatchObject({ identifier: 'renew.example', expires: null });
      expect((await del(base, 'lease.example')).status).toBe(200);
      expect((await del(base, 'renew.example')).status).toBe(200);
    });
  });

  describe('GET /v1/resolve', () => {
    beforeAll(async () => {
      expect((await put(base, 'corp.example', corpSpec)).status).toBe(201);
    });
    afterAll(async () => {
      await del(base, 'corp.example');
    });

    it('resolves a routed name, says which PvD and server answered, and is cached the second time', async () => {
      const r = await resolve(base, 'name=www.example.com&type=A');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({
        pvd: 'wifi',
        name: 'www.example.com',
        type: 'A',
        rcode: 'NOERROR',
        answers: [{ name: 'www.example.com', type: 'A', ttl: 300, data: '192.0.2.1' }],
        cached: false,
        synthesized: false,
        captive: false,
        server: wifi.address,
        ede: null,
      });
      const again = await resolve(base, 'name=WWW.example.com.&type=a');
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({ pvd: 'wifi', type: 'A', rcode: 'NOERROR', cached: true });
      expect(again.body.answers.map((x) => x.data)).toEqual(['192.0.2.1']);
      expect(wifi.names()).toEqual(['www.example.com']);

      // A name a PvD claims is answered there; type defaults to A.
      const c = await resolve(base, 'name=git.corp.example');
      expect(c.body).toMatchObject({ pvd: 'corp.example', type: 'A', rcode: 'NOERROR', server: corp.address, cached: false });
      expect(c.body.answers.map((x) => x.data)).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['git.corp.example']);
      expect(wifi.names()).toEqual(['www.example.com']);
    });

    it('with pvd= asks exactly that PvD, even for a name another PvD claims', async () => {
      const r = await resolve(base, 'name=db.lab.example&type=A&pvd=WIFI');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ pvd: 'wifi', rcode: 'NOERROR', server: wifi.address });
      expect(r.body.answers.map((x) => x.data)).toEqual(['192.0.2.1']);
      expect(wifi.names()).toEqual(['db.lab.example']);
      expect(dead.seen).toHaveLength(0);

      const c = await resolve(base, 'name=www.example.com&type=A&pvd=corp.example');
      expect(c.body).toMatchObject({ pvd: 'corp.example', server: corp.address });
      expect(c.body.answers.map((x) => x.data)).toEqual(['10.8.0.1']);
      expect(corp.names()).toEqual(['www.example.com']);
    });

    it('with pvd= does not fall back when that PvD fails: SERVFAIL with an extended error naming it', async () => {
      const r = await resolve(base, 'name=www.example.org&type=A&pvd=lab.example');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ pvd: 'lab.example', rcode: 'SERVFAIL', answers: [] });
      expect(r.body.ede).toEqual({ code: 22, text: expect.stringMatching(/^pvd lab\.example: /) });
      // The dead server may already be known as down (then it is not even asked): either way nobody else is.
      expect(dead.names().filter((n) => n !== 'www.example.org')).toEqual([]);
      expect(wifi.seen).toHaveLength(0);
      expect(corp.seen).toHaveLength(0);
    });

    it('answers localhost itself, with pvd null', async () => {
      const r = await resolve(base, 'name=localhost&type=A');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ pvd: null, rcode: 'NOERROR', server: null });
      expect(r.body.answers).toEqual([{ name: 'localhost', type: 'A', ttl: expect.any(Number), data: '127.0.0.1' }]);
      const six = await resolve(base, 'name=localhost&type=AAAA&pvd=wifi');
      expect(six.body).toMatchObject({ pvd: null, rcode: 'NOERROR' });
      expect(six.body.answers.map((x) => x.data)).toEqual(['::1']);
      expect([...wifi.seen, ...corp.seen, ...dead.seen]).toHaveLength(0);
    });

    it('writes AAAA data in RFC 5952 text form', async () => {
      const r = await resolve(base, 'name=rfc5952.example&type=AAAA');
      expect(r.status).toBe(200);
      expect(r.body.rcode).toBe('NOERROR');
      expect(r.body.answers.map((x) => [x.type, x.data])).toEqual([
        ['AAAA', '2001:db8::1:0:0:1'], // the first of two equal runs of zeros, lower case, no leading zeros
        ['AAAA', '2001:db8:0:1:1:1:1:1'], // one zero field is not shortened
        ['AAAA', '2001:0:0:1::1'], // the longest run of zeros
        ['AAAA', 'fe80::'],
      ]);
    });

    it('refuses zone transfers as over DNS (REFUSED, EDE 21), with pvd= too, asking no PvD', async () => {
      for (const query of ['name=corp.example&type=AXFR', 'name=corp.example&type=ixfr', 'name=corp.example&type=252&pvd=corp.example', 'name=example.com&type=AXFR&pvd=wifi']) {
        const r = await resolve(base, query);
        // 200 as for every DNS answer: the request was understood, and DNS's word is REFUSED.
        expect(r.status, query).toBe(200);
        expect(r.body, query).toMatchObject({ pvd: null, rcode: 'REFUSED', answers: [], cached: false, server: null });
        expect(r.body.ede, query).toEqual({ code: 21, text: 'zone transfers are not served by a resolver' });
      }
      // Never forwarded, nor failed over to another PvD.
      expect([...wifi.seen, ...corp.seen, ...dead.seen]).toHaveLength(0);
    });

    it('refuses bad questions with a 400 JSON error and an unknown PvD with 404', async () => {
      const cases: Array<[string, number, RegExp]> = [
        ['name=www.example.com&type=BOGUS', 400, /type/],
        ['name=www.example.com&type=0', 400, /type/],
        ['name=www.example.com&type=65536', 400, /type/],
        [`name=${'a'.repeat(64)}.example`, 400, /name/],
        ['name=a..example', 400, /name/],
        ['type=A', 400, /name/],
        ['name=&type=A', 400, /name/],
        ['name=www.example.com&pvd=nope.example', 404, /nope\.example/],
      ];
      for (const [query, status, error] of cases) {
        const r = await resolve(base, query);
        expect(r.status, query).toBe(status);
        expect(r.headers.get('content-type'), query).toMatch(/^application\/json/);
        expect(r.body.error, query).toMatch(error);
      }
      expect([...wifi.seen, ...corp.seen, ...dead.seen]).toHaveLength(0);
    });
  });

  describe('POST /v1/cache/flush', () => {
    beforeAll(async () => {
      expect((await put(base, 'corp.example', corpSpec)).status).toBe(201);
    });
    afterAll(async () => {
      await del(base, 'corp.example');
    });

    it('flushes one PvD: only its entries go, and its next query goes upstream again', async () => {
      await ask(pvdns.dns, 'f1.example', 'A');
      await ask(pvdns.dns, 'f1.corp.example', 'A');
      await ask(pvdns.dns, 'f2.corp.example', 'A');
      const wifiEntries = (await getPvd(base, 'wifi')).body.cacheEntries;
      expect(wifiEntries).toBeGreaterThan(0);
      expect((await getPvd(base, 'corp.example')).body.cacheEntries).toBe(2);

      const r = await flush(base, '?pvd=CORP.example.');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ flushed: 2, pvd: 'corp.example' });
      expect((await getPvd(base, 'corp.example')).body.cacheEntries).toBe(0);
      expect((await getPvd(base, 'wifi')).body.cacheEntries).toBe(wifiEntries);

      await ask(pvdns.dns, 'f1.corp.example', 'A');
      expect(corp.names()).toEqual(['f1.corp.example', 'f2.corp.example', 'f1.corp.example']);
      await ask(pvdns.dns, 'f1.example', 'A'); // still cached in wifi
      expect(wifi.names()).toEqual(['f1.example']);
    });

    it('flushes everything', async () => {
      await ask(pvdns.dns, 'g1.example', 'A');
      await ask(pvdns.dns, 'g1.corp.example', 'A');
      const before = await listPvds(base);
      const total = before.reduce((n, p) => n + p.cacheEntries, 0);
      expect(total).toBeGreaterThanOrEqual(2);

      const r = await flush(base);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ flushed: total, pvd: null });
      for (const p of await listPvds(base)) expect(p.cacheEntries, p.identifier).toBe(0);

      await ask(pvdns.dns, 'g1.example', 'A');
      await ask(pvdns.dns, 'g1.corp.example', 'A');
      expect(wifi.names()).toEqual(['g1.example', 'g1.example']);
      expect(corp.names()).toEqual(['g1.corp.example', 'g1.corp.example']);
    });

    it('answers an unknown PvD with 404 and flushes nothing', async () => {
      await ask(pvdns.dns, 'h1.example', 'A');
      const before = (await getPvd(base, 'wifi')).body.cacheEntries;
      expect(before).toBeGreaterThan(0);
      const r = await flush(base, '?pvd=nope.example');
      expect(r.status).toBe(404);
      expect(r.body.error).toMatch(/nope\.example/);
      expect((await getPvd(base, 'wifi')).body.cacheEntries).toBe(before);
    });
  });
});

// ---------------------------------------------------------------- events

describe('GET /v1/events', () => {
  const wifi = new FakeUpstream(responder('192.0.2.1'));
  const dead = new FakeUpstream(() => null);
  let pvdns: Running;
  const streams: EventStream[] = [];

  beforeAll(async () => {
    await wifi.start('127.0.0.103');
    await dead.start('127.0.0.104');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 300, attempts: 1 },
      pvds: [
        { identifier: 'wifi', dnsServers: [wifi.address] },
        { identifier: 'vpn.example', dnsServers: [dead.address], dnsZones: ['vpn.example'], noInternet: true },
      ],
    });
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await pvdns.stop();
    await Promise.all([wifi.stop(), dead.stop()]);
  });

  const open = async (): Promise<EventStream> => {
    const s = await EventStream.open(pvdns.http);
    streams.push(s);
    return s;
  };

  it('sends the current PvDs, then every change in order, and upstream-changed when a server changes state', async () => {
    const s = await open();
    expect(s.response.status).toBe(200);
    expect(s.response.headers.get('content-type')).toMatch(/^text\/event-stream/);

    const views = await listPvds(pvdns.http);
    for (const view of views) {
      const e = await s.next();
      expect(e.event).toBe('pvd-announced');
      expect(e.data).toEqual(view);
    }

    const spec = { identifier: 'api.example', dnsServers: [wifi.address], dnsZones: ['api.example'], noInternet: true, dns64: 'off' };
    const created = await put(pvdns.http, 'api.example', spec);
    expect(created.status).toBe(201);
    expect((await put(pvdns.http, 'api.example', spec)).body.result).toBe('unchanged'); // no event
    const updated = await put(pvdns.http, 'api.example', { ...spec, priority: 7 });
    expect(updated.body.result).toBe('updated');
    await ask(pvdns.dns, 'www.example.com', 'A'); // wifi's server: untested → operational
    await ask(pvdns.dns, 'www.vpn.example', 'A'); // vpn's server: untested → suspect
    expect((await del(pvdns.http, 'api.example')).status).toBe(200);

    const announced = await s.next();
    expect(announced.event).toBe('pvd-announced');
    expect(announced.data).toEqual(created.body.pvd);

    const upd = await s.next();
    expect(upd.event).toBe('pvd-updated');
    // It says what changed, by the keys the PvD is written with.
    expect(upd.data).toMatchObject({ identifier: 'api.example', source: 'api', priority: 7, changed: ['priority'] });

    // Each names the server that changed, and how.
    const up = await s.next();
    expect(up.event).toBe('upstream-changed');
    expect(up.data).toMatchObject({ identifier: 'wifi', servers: [{ address: wifi.address, state: 'operational' }] });
    expect(up.data).toMatchObject({ change: { kind: 'server-state', server: wifi.address, why: `${wifi.address}: untested → operational` } });

    const down = await s.next();
    expect(down.event).toBe('upstream-changed');
    expect(down.data).toMatchObject({ identifier: 'vpn.example', servers: [{ address: dead.address, state: 'suspect' }] });
    expect(down.data).toMatchObject({ change: { kind: 'server-state', server: dead.address, why: `${dead.address}: untested → suspect` } });

    const withdrawn = await s.next();
    expect(withdrawn.event).toBe('pvd-withdrawn');
    expect(withdrawn.data).toMatchObject({ identifier: 'api.example', source: 'api', reason: 'withdrawn' });

    // A second answer from a server already operational changes nothing.
    await ask(pvdns.dns, 'other.example.com', 'A');
    // An expiring PvD goes with reason "expired".
    const expires = new Date(Date.now() + 800).toISOString();
    expect((await put(pvdns.http, 'short.example', { identifier: 'short.example', dnsServers: [wifi.address], noInternet: true, expires, dns64: 'off' })).status).toBe(201);
    const short = await s.next();
    expect(short.event).toBe('pvd-announced');
    expect(short.data).toMatchObject({ identifier: 'short.example', expires });
    const expired = await s.next(5000);
    expect(expired.event).toBe('pvd-withdrawn');
    expect(expired.data).toMatchObject({ identifier: 'short.example', reason: 'expired' });
    expect(s.pending).toBe(0);
    s.close();
  });

  it('gives each new subscriber the PvDs as they are now, and lets go of a stream the client closed', async () => {
    expect((await put(pvdns.http, 'late.example', { identifier: 'late.example', dnsServers: [wifi.address], noInternet: true, dns64: 'off' })).status).toBe(201);
    const s = await open();
    const names: string[] = [];
    for (let i = 0; i < 3; i++) {
      const e = await s.next();
      expect(e.event).toBe('pvd-announced');
      names.push((e.data as PvdView).identifier);
    }
    expect(names).toEqual(['wifi', 'vpn.example', 'late.example']);
    expect(s.pending).toBe(0);
    s.close();
    // Closed streams are released: the server does not keep writing to them.
    await eventually('closed streams to be released', () => pvdns.app.events.subscribers === 0, 5000);
    expect((await del(pvdns.http, 'late.example')).status).toBe(200);
  });

  it('refuses a subscriber over the limit with 503 and takes one again once a stream closes', async () => {
    const many: EventStream[] = [];
    try {
      for (;;) {
        const s = await EventStream.open(pvdns.http);
        if (s.response.status !== 200) {
          expect(s.response.status).toBe(503);
          expect(s.response.headers.get('content-type')).toMatch(/^application\/json/);
          expect(((await s.response.json()) as { error: string }).error).toMatch(/subscribers/);
          break;
        }
        many.push(s);
        expect(many.length).toBeLessThanOrEqual(1000);
      }
      expect(many.length).toBeGreaterThan(0);
      many.pop()!.close();
      await eventually('a closed stream to be released', () => pvdns.app.events.subscribers === many.length, 5000);
      const again = await EventStream.open(pvdns.http);
      many.push(again);
      expect(again.response.status).toBe(200);
      expect((await again.next()).event).toBe('pvd-announced');
    } finally {
      for (const s of many) s.close();
    }
    await eventually('every stream to be released', () => pvdns.app.events.subscribers === 0, 5000);
  });
});

// ---------------------------------------------------------------- other sources

describe('PvDs from files and from the host are not the API\'s to change', () => {
  let pvdns: Running;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pvdns-api-'));
    mkdirSync(join(dir, 'pvds'));
    // Servers on 127.0.0.108: never asked here (no query is made), only listed.
    writeFileSync(join(dir, 'pvds', 'vpn.json'), JSON.stringify({ identifier: 'file.example', dnsServers: ['127.0.0.108'], dnsZones: ['file.example'], noInternet: true }));
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.108\n');
    pvdns = await startPvdns({
      pvdSources: { directory: join(dir, 'pvds'), host: true, resolvConf: join(dir, 'resolv.conf') },
      pvds: [{ identifier: 'wifi', dnsServers: ['127.0.0.108'] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers PUT and DELETE of a file or host PvD with 409, and leaves it as it was', async () => {
    const before = await listPvds(pvdns.http);
    expect(before.map((p) => [p.identifier, p.source])).toEqual([
      ['wifi', 'config'],
      ['system', 'host'],
      ['file.example', 'file'],
    ]);
    for (const [id, source] of [
      ['file.example', 'file'],
      ['FILE.example.', 'file'],
      ['system', 'host'],
    ]) {
      const p = await put(pvdns.http, id!, { dnsServers: ['127.0.0.109'], noInternet: true });
      expect(p.status, id).toBe(409);
      expect(p.body.error, id).toMatch(source!);
      const d = await del(pvdns.http, id!);
      expect(d.status, id).toBe(409);
      expect(d.body.error, id).toMatch(source!);
    }
    // As they were (their DNS64 discovery may have moved on meanwhile: not what this is about).
    const shape = (p: PvdView): unknown[] => [p.identifier, p.source, p.servers.map((s) => s.address), p.dnsZones, p.noInternet, p.default];
    expect((await listPvds(pvdns.http)).map(shape)).toEqual(before.map(shape));
  });
});

// ---------------------------------------------------------------- security

describe('bearer token and loopback rule', () => {
  const TOKEN = 'correct-horse-battery-staple-42';
  const wifi = new FakeUpstream(responder('192.0.2.1'));
  let pvdns: Running;
  let base: string;

  beforeAll(async () => {
    await wifi.start('127.0.0.105');
    pvdns = await startPvdns({
      http: { listen: '127.0.0.1:0', token: TOKEN },
      pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }],
    });
    base = pvdns.http;
  });
  afterAll(async () => {
    await pvdns.stop();
    await wifi.stop();
  });

  const spec = (): Record<string, unknown> => ({ identifier: 'tok.example', dnsServers: [wifi.address], dnsZones: ['tok.example'], noInternet: true });

  it('refuses changes without the token or with a wrong one (401), and takes them with it', async () => {
    const none = await put(base, 'tok.example', spec());
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toMatch(/^application\/json/);
    expect(none.body.error).toMatch(/Bearer/);
    const wrong = await put(base, 'tok.example', spec(), 'not-the-right-token-at-all');
    expect(wrong.status).toBe(401);
    const basic = await call<{ error: string }>(base, 'PUT', '/v1/pvds/tok.example', { body: spec(), auth: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    const prefix = await put(base, 'tok.example', spec(), TOKEN.slice(0, -1));
    expect(prefix.status).toBe(401);
    expect((await getPvd(base, 'tok.example')).status).toBe(404);

    const right = await put(base, 'tok.example', spec(), TOKEN);
    expect(right.status).toBe(201);
    // The auth scheme is case-insensitive (RFC 9110 §11.1).
    const lower = await call<{ result: string }>(base, 'PUT', '/v1/pvds/tok.example', { body: spec(), auth: `bearer ${TOKEN}` });
    expect(lower.status).toBe(200);
    expect(lower.body.result).toBe('unchanged');

    await ask(pvdns.dns, 'www.tok.example', 'A');
    expect((await del(base, 'tok.example')).status).toBe(401);
    expect((await del(base, 'tok.example', 'wrong-token-wrong-token')).status).toBe(401);
    expect((await getPvd(base, 'tok.example')).status).toBe(200);

    expect((await flush(base)).status).toBe(401);
    expect((await flush(base, '?pvd=tok.example', 'wrong-token-wrong-token')).status).toBe(401);
    expect((await getPvd(base, 'tok.example')).body.cacheEntries).toBe(1);
    const f = await flush(base, '?pvd=tok.example', TOKEN);
    expect(f.status).toBe(200);
    expect(f.body).toEqual({ flushed: 1, pvd: 'tok.example' });

    const gone = await del(base, 'tok.example', TOKEN);
    expect(gone.status).toBe(200);
    expect((await getPvd(base, 'tok.example')).status).toBe(404);
  });

  it('takes any token the configuration accepts from a client that sends it', async () => {
    const spaced = 'correct horse battery staple';
    let other: Running;
    try {
      other = await startPvdns({ http: { listen: '127.0.0.1:0', token: spaced }, pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }] });
    } catch (err) {
      // Refusing such a token when the configuration is read would do as well.
      expect(String(err)).toMatch(/token/);
      return;
    }
    try {
      const r = await put(other.http, 'tok.example', spec(), spaced);
      expect(r.status).toBe(201);
    } finally {
      await other.stop();
    }
  });

  it('needs no token to read', async () => {
    expect((await call(base, 'GET', '/v1/pvds')).status).toBe(200);
    expect((await getPvd(base, 'wifi')).status).toBe(200);
    const r = await resolve(base, 'name=read.example&type=A');
    expect(r.status).toBe(200);
    expect(r.body.answers.map((x) => x.data)).toEqual(['192.0.2.1']);
    const s = await EventStream.open(base);
    try {
      expect(s.response.status).toBe(200);
      expect((await s.next()).event).toBe('pvd-announced');
    } finally {
      s.close();
    }
  });
});

describe('without a token, the API takes no changes from anyone', () => {
  const wifi = new FakeUpstream(responder('192.0.2.1'));
  let pvdns: Running;
  let api: Api;

  beforeAll(async () => {
    await wifi.start('127.0.0.106');
    pvdns = await startPvdns({ http: { listen: '127.0.0.1:0' }, pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }] });
    // The API as pvdns wires it, driven with requests whose peer address a test chooses.
    api = new Api(pvdns.app['apiDeps']());
  });
  afterAll(async () => {
    await pvdns.stop();
    await wifi.stop();
  });

  interface Captured {
    status: number;
    headers: Record<string, unknown>;
    body: string;
  }

  /** drive runs one request through the API from `remoteAddress` and returns what the response received. */
  async function drive(method: string, path: string, remoteAddress: string, body?: unknown): Promise<Captured & { json: { error?: string; [k: string]: unknown } }> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = Readable.from(text === undefined ? [] : [Buffer.from(text)]) as unknown as http.IncomingMessage;
    Object.assign(req, {
      method,
      url: path,
      headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) },
      socket: { remoteAddress },
    });
    const out: Captured = { status: 0, headers: {}, body: '' };
    let ended = false;
    let sent = false;
    const res = {
      get headersSent() {
        return sent;
      },
      setHeader(name: string, value: unknown) {
        out.headers[name.toLowerCase()] = value;
      },
      writeHead(status: number, headers?: Record<string, unknown>) {
        out.status = status;
        for (const [k, v] of Object.entries(headers ?? {})) out.headers[k.toLowerCase()] = v;
        sent = true;
        return this;
      },
      write(chunk: string) {
        out.body += chunk;
        return true;
      },
      end(chunk?: string) {
        if (chunk !== undefined) out.body += chunk;
        ended = true;
        return this;
      },
      on() {
        return this;
      },
    } as unknown as http.ServerResponse;
    const handled = await api.handle(req, res, new URL(path, 'http://pvdns'));
    expect(handled).toBe(true);
    expect(ended).toBe(true);
    return { ...out, json: JSON.parse(out.body) as { error?: string } };
  }

  const spec = { identifier: 'remote.example', dnsServers: ['127.0.0.106:53'], noInternet: true };

  it('refuses every change with 403 and says how to allow them, from loopback too', async () => {
    // Over real loopback HTTP: being local proves nothing (any process, any web page can reach 127.0.0.1).
    const r = await call<{ error: string }>(pvdns.http, 'PUT', '/v1/pvds/remote.example', { body: spec }); // no Authorization
    expect(r.status).toBe(403);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.body.error).toMatch(/http\.token or http\.tokenFile/);
    expect((await put(pvdns.http, 'remote.example', spec, 'some-token-that-means-nothing')).status).toBe(403);
    expect((await getPvd(pvdns.http, 'remote.example')).status).toBe(404);
    expect((await call(pvdns.http, 'DELETE', '/v1/pvds/wifi')).status).toBe(403);
    expect((await getPvd(pvdns.http, 'wifi')).status).toBe(200);

    await ask(pvdns.dns, 'cached.example', 'A');
    expect((await call(pvdns.http, 'POST', '/v1/cache/flush')).status).toBe(403);
    expect((await getPvd(pvdns.http, 'wifi')).body.cacheEntries).toBe(1);

    // Whatever the peer address.
    for (const from of ['127.0.0.1', '::ffff:127.0.0.1', '::1', '192.0.2.1', '2001:db8::1']) {
      expect((await drive('PUT', '/v1/pvds/remote.example', from, spec)).status, from).toBe(403);
      expect((await drive('DELETE', '/v1/pvds/wifi', from)).status, from).toBe(403);
      expect((await drive('POST', '/v1/cache/flush', from)).status, from).toBe(403);
    }
    expect((await getPvd(pvdns.http, 'wifi')).body.cacheEntries).toBe(1);
  });

  it('still answers reads', async () => {
    const g = await drive('GET', '/v1/pvds/wifi', '127.0.0.1');
    expect(g.status).toBe(200);
    expect(g.json.identifier).toBe('wifi');
    expect((await listPvds(pvdns.http)).map((p) => p.identifier)).toEqual(['wifi']);
  });
});

// ---------------------------------------------------------------- metrics

describe('PvD change metrics', () => {
  const wifi = new FakeUpstream(responder('192.0.2.1'));
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.0.107');
    pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await wifi.stop();
  });

  it('counts announcements, updates, withdrawals and expiries by source, and the PvDs attached', async () => {
    const base = pvdns.http;
    const spec = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ identifier: id, dnsServers: [wifi.address], noInternet: true, ...extra });
    expect((await put(base, 'a.example', spec('a.example'))).status).toBe(201);
    expect((await put(base, 'a.example', spec('a.example'))).status).toBe(200); // unchanged: not counted
    expect((await put(base, 'a.example', spec('a.example', { priority: 1 }))).status).toBe(200);
    expect((await put(base, 'b.example', spec('b.example'))).status).toBe(201);
    expect((await put(base, 'bad.example', spec('bad.example', { dnsServers: ['nope'] }))).status).toBe(400); // refused: not counted
    expect((await put(base, 'wifi', spec('wifi'))).status).toBe(409);
    expect((await del(base, 'a.example')).status).toBe(200);
    expect((await put(base, 'c.example', spec('c.example', { expires: new Date(Date.now() + 500).toISOString() }))).status).toBe(201);
    await eventually('c.example to expire', async () => (await getPvd(base, 'c.example')).status === 404, 5000);

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      return line === undefined ? NaN : Number(line.slice(series.length + 1));
    };
    expect(value('pvdns_pvd_changes_total{kind="announced",source="config"}')).toBe(1);
    expect(value('pvdns_pvd_changes_total{kind="announced",source="api"}')).toBe(3);
    expect(value('pvdns_pvd_changes_total{kind="updated",source="api"}')).toBe(1);
    expect(value('pvdns_pvd_changes_total{kind="withdrawn",source="api"}')).toBe(1);
    expect(value('pvdns_pvd_changes_total{kind="expired",source="api"}')).toBe(1);
    expect(value('pvdns_pvds')).toBe(2); // wifi and b.example
    expect(text).toMatch(/^# TYPE pvdns_pvd_changes_total counter$/m);
    expect(text).toMatch(/^# TYPE pvdns_pvds gauge$/m);
  });
});
