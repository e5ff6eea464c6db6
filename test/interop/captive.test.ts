// Captive portals per PvD against real rewriting resolvers:
//
//   dig ─▶ pvdns 127.0.0.94 ─┬─ PvD hotel (default, priority 10) ─▶ dnsmasq 127.0.0.92: --address=/#/127.0.0.95 (every name → the portal),
//        (and its HTTP API)  │                                      later restarted as a plain forwarder to nsd (the user logged in)
//                            ├─ PvD cell  (default, priority 20) ─▶ nsd 127.0.0.91 (the root zone: canary.test, www.example.test)
//                            ├─ PvD isp   (zone isp.test)        ─▶ an NXDOMAIN rewriter (search ads) on 127.0.0.93 (not a default;
//                            │                                      not noInternet, which is never probed)
//                            └─ PvD lobby (zone lobby.test, captivePortal https://portal.lobby.test:8443/api)
//                                                                ─▶ dnsmasq 127.0.0.96: every name → 127.0.0.95, where an
//                                                                   HTTPS server (a throwaway CA) serves the RFC 8908 API

import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import type { TranslateResult } from '../../src/resolve/translate.js';
import { eventually as waitFor, getPvd, resolve as resolveIn } from '../helpers/http.js';
import { answer, FakeUpstream, Packet } from '../helpers/fake-upstream.js';
import type { Resource } from '../helpers/fake-upstream.js';
import { dig, requirePrograms, startDnsmasq, startNsd, startPvdnsCli, testCertificate, withoutTtl, type Dnsmasq, type Nsd, type PvdnsCli } from './servers.js';

const PORTAL = '127.0.0.95';
const AD_SERVER = '198.51.100.7';

const ROOT_ZONE = [
  '$ORIGIN .',
  '$TTL 300',
  '. SOA ns.root.test. hostmaster.root.test. 1 3600 600 86400 300',
  '. NS ns.root.test.',
  'ns.root.test. A 127.0.0.91',
  'canary.test. A 192.0.2.53',
  'www.example.test. A 192.0.2.80',
  '',
].join('\n');

let nsd: Nsd | undefined;
let hotel: Dnsmasq | undefined;
let lobby: Dnsmasq | undefined;
let pvdns: PvdnsCli | undefined;
let api: https.Server | undefined;
let apiDoc = { captive: true, 'user-portal-url': 'https://portal.lobby.test:8443/login' } as Record<string, unknown>;
/** 'truncated': the API server promises 100 octets, sends 6 and closes the connection. */
let apiMode: 'ok' | 'truncated' = 'ok';
const isp = new FakeUpstream((q) => {
  const { name, type } = q.questions[0]!;
  if (name.toLowerCase() === 'www.isp.test' || type !== Packet.TYPE.A) return answer(q, [{ name, type: Packet.TYPE.A, class: 1, ttl: 300, address: '192.0.2.81' } as Resource]);
  return answer(q, [{ name, type: Packet.TYPE.A, class: 1, ttl: 60, address: AD_SERVER } as Resource]); // every other name: an ad server
});

const pvd = async (id: string): Promise<PvdView> => (await getPvd(pvdns!.http!, id)).body;
const resolve = async (query: string): Promise<TranslateResult> => (await resolveIn(pvdns!.http!, query)).body;
/** eventually, with pvdns's logs when it times out. */
const eventually = (what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> =>
  waitFor(what, check, timeoutMs, () => pvdns!.logs());

beforeAll(async () => {
  requirePrograms('dig', 'nsd', 'nsd-checkconf', 'nsd-control', 'dnsmasq', 'openssl');
  nsd = await startNsd({ '.': ROOT_ZONE }, '127.0.0.91');
  hotel = await startDnsmasq([`--address=/#/${PORTAL}`], '127.0.0.92');
  lobby = await startDnsmasq([`--address=/#/${PORTAL}`], '127.0.0.96');
  await isp.start('127.0.0.93');
  const cert = await testCertificate('portal.lobby.test');
  api = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    if (apiMode === 'truncated') {
      res.writeHead(200, { 'content-type': 'application/captive+json', 'content-length': '100' });
      res.write('{"capt');
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/captive+json', 'cache-control': 'private' });
    res.end(JSON.stringify(apiDoc));
  });
  await new Promise<void>((r) => api!.listen(8443, PORTAL, r));
  pvdns = await startPvdnsCli(
    `
listen: ["127.0.0.94:0"]
http: { listen: "127.0.0.94:0" }
log: { level: debug }
pvdSources: { host: false }
upstream: { timeoutMs: 1000, attempts: 1 }
captive: { probeIntervalS: 1, canary: { name: canary.test, addresses: ["192.0.2.53"] } }
pvds:
  - identifier: hotel
    dnsServers: ["${hotel.host}:${hotel.port}"]
    default: true
    priority: 10
    dns64: "off"
  - identifier: cell
    dnsServers: ["${nsd.host}:${nsd.port}"]
    default: true
    priority: 20
    dns64: "off"
  - identifier: isp
    dnsServers: ["${isp.address}"]
    dnsZones: [isp.test]
    default: false
    dns64: "off"
  - identifier: lobby
    dnsServers: ["${lobby.host}:${lobby.port}"]
    dnsZones: [lobby.test]
    default: false
    dns64: "off"
    captivePortal: "https://portal.lobby.test:8443/api"
`,
    { NODE_EXTRA_CA_CERTS: cert.caFile },
  );
  await eventually('hotel to be found captive', async () => (await pvd('hotel')).captiveState === 'captive');
});

afterAll(async () => {
  await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
  await Promise.all([pvdns?.stop(), hotel?.stop(), lobby?.stop(), nsd?.stop(), isp.stop()]);
});

describe('a portal that rewrites every name (dnsmasq --address=/#/)', () => {
  it('is found captive from its probes, with the portal address learned', async () => {
    expect(await pvd('hotel')).toMatchObject({ captive: true, portalAddresses: [PORTAL] });
    await eventually('cell to be found open', async () => (await pvd('cell')).captiveState === 'open');
  });

  it('leaves public names to the open PvD', async () => {
    const r = await dig(pvdns!, ['www.example.test', 'A']);
    expect(withoutTtl(r.answer), r.text).toEqual(['www.example.test. IN A 192.0.2.80']);
    expect(await resolve('name=www.example.test&type=A')).toMatchObject({ pvd: 'cell', captive: false });
  });

  it("shows the portal's answer for pvd=hotel, flagged captive, and keeps none of it", async () => {
    for (let i = 0; i < 2; i++) {
      const r = await resolve('name=www.example.test&type=A&pvd=hotel');
      expect(r).toMatchObject({ pvd: 'hotel', captive: true, cached: false });
      expect(r.answers.map((a) => a.data)).toEqual([PORTAL]);
    }
    expect((await pvd('hotel')).cacheEntries).toBe(0);
  });

  it('is open again once dnsmasq forwards truthfully (the user logged in): cache flushed, real addresses, default routing', async () => {
    const port = hotel!.port;
    await hotel!.stop();
    hotel = await startDnsmasq([`--server=${nsd!.host}#${nsd!.port}`], '127.0.0.92', port);
    await eventually('hotel to be open', async () => (await pvd('hotel')).captiveState === 'open');
    expect((await pvd('hotel')).cacheEntries).toBe(0);
    const r = await resolve('name=www.example.test&type=A');
    expect(r).toMatchObject({ pvd: 'hotel', captive: false });
    expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.80']);
    const d = await dig(pvdns!, ['www.example.test', 'A']);
    expect(withoutTtl(d.answer), d.text).toEqual(['www.example.test. IN A 192.0.2.80']);
  });
});

describe('an NXDOMAIN rewriter (search ads)', () => {
  it('is found captive, with the ad server as its portal address, though its real names are right', async () => {
    await eventually('isp to be found captive', async () => (await pvd('isp')).captiveState === 'captive');
    expect((await pvd('isp')).portalAddresses).toEqual([AD_SERVER]);
    expect((await resolve('name=www.isp.test&type=A')).answers.map((a) => a.data)).toEqual(['192.0.2.81']);
  });
});

describe('the RFC 8908 captive-portal API', () => {
  it('decides the state over the DNS heuristics, and shows the user portal URL', async () => {
    await eventually('lobby to read its API', async () => (await pvd('lobby')).userPortalUrl !== null);
    expect(await pvd('lobby')).toMatchObject({ captive: true, captiveState: 'captive', userPortalUrl: 'https://portal.lobby.test:8443/login', captiveApiError: null });
    expect((await pvd('lobby')).captiveReason).toMatch(/RFC 8908/);
    // The user logs in: the API says so, and pvdns believes it though the resolver still rewrites every name.
    apiDoc = { captive: false, 'seconds-remaining': 600 };
    await eventually('lobby to be open', async () => (await pvd('lobby')).captiveState === 'open');
    expect((await pvd('lobby')).captiveReason).toMatch(/captive: false/);
  });

  it('keeps the last valid state when the API breaks off mid-document, says why, and reads it again later (RFC 8908 §5)', async () => {
    apiMode = 'truncated';
    apiDoc = { captive: true };
    await eventually('the broken read to show', async () => (await pvd('lobby')).captiveApiError !== null, 25_000);
    expect(await pvd('lobby')).toMatchObject({ captiveState: 'open', captiveApiError: expect.stringMatching(/closed before the document was complete/) });
    apiMode = 'ok';
    await eventually('the API to be read again', async () => (await pvd('lobby')).captiveState === 'captive', 25_000);
    expect((await pvd('lobby')).captiveApiError).toBeNull();
  }, 60_000);
});
