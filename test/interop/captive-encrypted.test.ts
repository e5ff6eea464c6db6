// Captive portals in front of encrypted DNS (issue 17, part 3), against real
// servers nobody here wrote: dnsmasq as the networks' resolvers (rewriting
// every name to the portal until the user logs in), an RFC 8908 API over
// HTTPS, and Unbound serving DNS over TLS and HTTPS as the networks'
// designated resolver (RFC 9463), which the portal keeps out of reach until
// the login: it is only started then.
//
//   dig ─▶ pvdns 127.0.32.10 ─┬─ hotel (default; strict; API https://portal.hotel.test:8443/api)
//                             │     designated tls://127.0.32.2#dns.test ─▶ unbound 127.0.32.2 :853 :443 (from the login on)
//                             │     cleartext 127.0.32.1:53 ─▶ dnsmasq: --address=/#/127.0.32.3, later a forwarder to nsd
//                             ├─ cafe  (pvd=cafe; opportunistic; no API) designated tls://127.0.32.2#dns.test
//                             │     cleartext 127.0.32.4:53 ─▶ dnsmasq: --address=/#/127.0.32.3, later a forwarder to nsd
//                             └─ inn   (pvd=inn; strict; no API) designated https://127.0.32.2/dns-query#dns.test,
//                                   cleartext 127.0.32.4:53 (cafe's network)
//   127.0.32.3:8443  the RFC 8908 API (a throwaway CA), captive: true until the login
//   127.0.32.5       nsd: the Internet as seen in the clear once logged in
//
// Markers tell who answered: where.test TXT is "encrypted" from Unbound and
// "cleartext" from nsd; www.example.test is 192.0.2.81 from Unbound, 192.0.2.80
// from nsd and the portal's address from a rewriting dnsmasq. dnsmasq's query
// log is every name pvdns sent in the clear.

import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import type { TranslateResult } from '../../src/resolve/translate.js';
import { eventually as waitFor, EventStream, getPvd, resolve as resolveIn, type SseEvent } from '../helpers/http.js';
import { dig, requirePrograms, startDnsmasq, startNsd, startPvdnsCli, type Dnsmasq, type Nsd, type PvdnsCli } from './servers.js';
import { encryptedDnsMissing, startEncryptedUnbound, testPki, type EncryptedUnbound, type TestPki } from './tls-harness.js';

const PVDNS = '127.0.32.10';
const HOTEL_DNS = '127.0.32.1';
const ENCRYPTED = '127.0.32.2';
const PORTAL = '127.0.32.3';
const CAFE_DNS = '127.0.32.4';
const INTERNET = '127.0.32.5';
const API = 'https://portal.hotel.test:8443/api';
const LOGIN = 'https://portal.hotel.test:8443/login';
const PROBE_INTERVAL_S = 2;
/**
 * A login is seen at the first clean probe round, which has the API read at once (RFC 8908 §6): within two
 * rounds (the network may stop rewriting just after one began) and a margin for the API read and the first
 * encrypted question.
 */
const LOGIN_BOUND_MS = 2 * PROBE_INTERVAL_S * 1000 + 2000;

const ROOT_ZONE = [
  '$ORIGIN .',
  '$TTL 300',
  '. SOA ns.root.test. hostmaster.root.test. 1 3600 600 86400 300',
  '. NS ns.root.test.',
  `ns.root.test. A ${INTERNET}`,
  'canary.test. A 192.0.2.53',
  'www.example.test. A 192.0.2.80',
  'where.test. TXT "cleartext"',
  `portal.hotel.test. A ${PORTAL}`,
  '',
].join('\n');

/** dnsmasq as a portal: every name is the portal, for 5 minutes (its default TTL of 0 would keep any answer out of a cache anyway). */
const REWRITE = [`--address=/#/${PORTAL}`, '--local-ttl=300'];
/** A probe name: one or two random labels of 12–15 letters and digits starting with "p" (src/captive/evidence.ts). */
const PROBE = /^p[a-z0-9]{11,14}(\.p[a-z0-9]{11,14})?$/;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const missing = encryptedDnsMissing();

describe.skipIf(missing !== null)(`a captive portal in front of encrypted DNS${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let pki: TestPki;
  let nsd: Nsd | undefined;
  let hotelDns: Dnsmasq | undefined;
  let cafeDns: Dnsmasq | undefined;
  let unbound: EncryptedUnbound | undefined;
  let api: https.Server | undefined;
  let apiDoc: Record<string, unknown> = { captive: true, 'user-portal-url': LOGIN };
  let pvdns: PvdnsCli | undefined;
  let events: EventStream | undefined;
  const seen: SseEvent[] = [];

  const pvd = async (id: string): Promise<PvdView> => (await getPvd(pvdns!.http!, id)).body;
  const resolve = async (query: string): Promise<TranslateResult> => (await resolveIn(pvdns!.http!, query)).body;
  const eventually = (what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> => waitFor(what, check, timeoutMs, () => pvdns!.logs());
  /** metric is one sample of pvdns's /metrics with these labels (in any order), 0 when absent. */
  const metric = async (name: string, labels: Record<string, string>): Promise<number> => {
    const text = await (await fetch(`${pvdns!.http}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
      if (m?.[1] !== name) continue;
      const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
    }
    return 0;
  };
  /** nextEvent waits for an event on /v1/events that `match` likes, keeping what it read. */
  const nextEvent = async (match: (e: SseEvent) => boolean, timeoutMs: number): Promise<SseEvent> => {
    const hit = seen.find(match);
    if (hit) return hit;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await events!.next(Math.max(1, deadline - Date.now()));
      seen.push(e);
      if (match(e)) return e;
    }
  };
  const restored = (id: string) => (e: SseEvent): boolean => {
    const d = e.data as PvdView & { change?: { kind: string } };
    return e.event === 'upstream-changed' && d.identifier === id && d.change?.kind === 'encryption-restored';
  };

  /** restartAsForwarderOf restarts a network's dnsmasq in place with other arguments. */
  const restartAsForwarderOf = async (d: Dnsmasq, args: string[]): Promise<Dnsmasq> => {
    await d.stop();
    return startDnsmasq(args, d.host, d.port);
  };
  /** restartAsForwarder lets the user through a network: its resolver becomes a forwarder to the Internet (nsd). */
  const restartAsForwarder = (d: Dnsmasq): Promise<Dnsmasq> => restartAsForwarderOf(d, [`--server=${nsd!.host}#${nsd!.port}`]);
  /** startUnbound starts the networks' designated resolver: the portal lets it be reached. */
  const startUnbound = (): Promise<EncryptedUnbound> =>
    startEncryptedUnbound({
      hosts: [ENCRYPTED],
      leaf: pki.leaves.resolver!,
      localZones: {
        'where.test': ['where.test. 300 IN TXT "encrypted"'],
        'canary.test': ['canary.test. 300 IN A 192.0.2.53'],
        'example.test': ['www.example.test. 300 IN A 192.0.2.81'],
      },
    });

  beforeAll(async () => {
    requirePrograms('dig', 'unbound', 'unbound-checkconf', 'dnsmasq', 'nsd', 'nsd-checkconf', 'nsd-control', 'openssl');
    pki = await testPki({ resolver: { dns: ['dns.test'], ips: [ENCRYPTED] }, portal: { dns: ['portal.hotel.test'] } });
    nsd = await startNsd({ '.': ROOT_ZONE }, INTERNET);
    hotelDns = await startDnsmasq(REWRITE, HOTEL_DNS, 53);
    cafeDns = await startDnsmasq(REWRITE, CAFE_DNS, 53);
    api = https.createServer(pki.leaves.portal!.pem, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/captive+json', 'cache-control': 'private' });
      res.end(JSON.stringify(apiDoc));
    });
    await new Promise<void>((r, j) => {
      api!.once('error', j);
      api!.listen(8443, PORTAL, r);
    });
    const pvdYaml = (id: string, extra: string): string => `  - identifier: ${id}\n    dns64: "off"\n${extra}`;
    pvdns = await startPvdnsCli(
      `
listen: ["${PVDNS}:0"]
http: { listen: "${PVDNS}:0" }
log: { level: debug }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
tls: { caFile: "${pki.caFile}" }
# A down server is probed again only after 30 s: only the captive portal's opening can bring it back sooner.
upstream: { timeoutMs: 1000, attempts: 2, probeIntervalMs: 30000, probeMaxIntervalMs: 30000 }
captive: { probeIntervalS: ${PROBE_INTERVAL_S}, canary: { name: canary.test, addresses: ["192.0.2.53"] } }
pvds:
${pvdYaml('hotel', `    dnsServers: ["${HOTEL_DNS}"]\n    designatedResolvers: ["tls://${ENCRYPTED}#dns.test"]\n    encryption: strict\n    captivePortal: "${API}"\n    default: true\n    priority: 10\n`)}
${pvdYaml('cafe', `    dnsServers: ["${CAFE_DNS}"]\n    designatedResolvers: ["tls://${ENCRYPTED}#dns.test"]\n    encryption: opportunistic\n    default: false\n`)}
${pvdYaml('inn', `    dnsServers: ["${CAFE_DNS}"]\n    designatedResolvers: ["https://${ENCRYPTED}/dns-query#dns.test"]\n    encryption: strict\n    default: false\n`)}
`,
      // The RFC 8908 API's certificate is checked by node's own trust (captive/api.ts).
      { NODE_EXTRA_CA_CERTS: pki.caFile },
    );
    events = await EventStream.open(pvdns.http!);
    for (const id of ['hotel', 'cafe', 'inn']) await eventually(`${id} to be found captive`, async () => (await pvd(id)).captiveState === 'captive');
    // The portal's address is learned from the probes (inn has no API to name it).
    await eventually('the probes to learn the portal address', async () => (await pvd('inn')).portalAddresses.includes(PORTAL));
  });

  afterAll(async () => {
    events?.close();
    await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
    api?.closeAllConnections();
    await Promise.all([pvdns?.stop(), hotelDns?.stop(), cafeDns?.stop(), unbound?.stop(), nsd?.stop()]);
    pki?.remove();
  });

  describe('strict encryption while captive', () => {
    it("resolves the portal's names through the cleartext server, to the portal", async () => {
      for (const name of ['portal.hotel.test', 'cdn.portal.hotel.test']) {
        const r = await dig(pvdns!, [name, 'A']);
        expect(r.status, r.text).toBe('NOERROR');
        expect(r.answer.map((a) => a.data), r.text).toEqual([PORTAL]);
      }
      const r = await resolve('name=portal.hotel.test&type=A');
      expect(r).toMatchObject({ pvd: 'hotel', captive: true, cached: false, server: `${HOTEL_DNS}:53` });
    });

    it('answers every other name SERVFAIL with EDE 23 saying where to log in', async () => {
      const text = `pvd hotel: captive portal, log in at ${LOGIN} (encryption: strict sends nothing else in the clear)`;
      for (const name of ['www.example.test', 'where.test']) {
        const d = await dig(pvdns!, [name, name === 'where.test' ? 'TXT' : 'A']);
        expect(d.status, d.text).toBe('SERVFAIL');
        expect(d.ede, d.text).toBe(`23 (Network Error): (${text})`);
      }
      expect(await resolve('name=www.example.test&type=A')).toMatchObject({ pvd: 'hotel', rcode: 'SERVFAIL', ede: { code: 23, text }, cached: false });
      // Without an RFC 8908 API, the user is sent to the address the portal's answers pointed at.
      expect((await resolve('name=www.example.test&type=A&pvd=inn')).ede).toEqual({
        code: 23,
        text: `pvd inn: captive portal, log in at http://${PORTAL}/ (encryption: strict sends nothing else in the clear)`,
      });
    });

    it('sends nothing in the clear but the portal names, the probes and the canary', async () => {
      const names = (await hotelDns!.queries()).map((q) => q.name).filter((n) => n !== 'localhost'); // localhost: the launcher's readiness check
      expect(names).toContain('portal.hotel.test');
      expect(names).toContain('canary.test');
      expect(names.filter((n) => PROBE.test(n)).length).toBeGreaterThanOrEqual(2); // a round's two names that cannot exist
      expect(names.filter((n) => !PROBE.test(n) && !['portal.hotel.test', 'cdn.portal.hotel.test', 'canary.test'].includes(n))).toEqual([]);
    });

    it('shows it in /v1/pvds and the metrics', async () => {
      const v = await pvd('hotel');
      expect(v).toMatchObject({ captive: true, captiveState: 'captive', encryption: 'strict', captiveCleartext: false, userPortalUrl: LOGIN, cacheEntries: 0 });
      expect(v.cleartextServers.map((s) => s.address)).toEqual([`${HOTEL_DNS}:53`]);
      expect(v.servers[0]).toMatchObject({ address: `tls://${ENCRYPTED}:853#dns.test`, learned: 'config', verified: true }); // written in the config: learned there (an RA's would be dnr)
      expect(await metric('pvdns_captive_queries_total', { pvd: 'hotel', action: 'refused' })).toBeGreaterThanOrEqual(3);
      expect(await metric('pvdns_captive_queries_total', { pvd: 'hotel', action: 'portal' })).toBeGreaterThanOrEqual(3);
      expect(await metric('pvdns_captive_queries_total', { pvd: 'hotel', action: 'cleartext' })).toBe(0);
    });
  });

  describe('opportunistic encryption while captive', () => {
    it('sends other names to the cleartext server, flagged captive and never cached', async () => {
      for (let i = 0; i < 2; i++) {
        const r = await resolve('name=www.example.test&type=A&pvd=cafe');
        expect(r).toMatchObject({ pvd: 'cafe', captive: true, cached: false, server: `${CAFE_DNS}:53` });
        expect(r.answers.map((a) => a.data)).toEqual([PORTAL]);
      }
      // Both questions reached the network: neither answer was kept.
      expect((await cafeDns!.queries()).filter((q) => q.name === 'www.example.test')).toHaveLength(2);
      expect(await pvd('cafe')).toMatchObject({ captive: true, encryption: 'opportunistic', captiveCleartext: true, cacheEntries: 0 });
      expect(await metric('pvdns_captive_queries_total', { pvd: 'cafe', action: 'cleartext' })).toBeGreaterThanOrEqual(2);
      expect(await metric('pvdns_encryption_downgrades_total', { pvd: 'cafe', reason: 'captive' })).toBe(1);
    });
  });

  describe('the user logs in', () => {
    it('hotel (strict, RFC 8908 API): the encrypted resolver answers within a probe round or two, with an encryption-restored event', async () => {
      // The user logs in: the API says so, the network stops rewriting DNS and lets the designated resolver be reached.
      unbound = await startUnbound(); // (started first: its start-up is not pvdns's time)
      const loginAt = performance.now();
      apiDoc = { captive: false, 'seconds-remaining': 3600 };
      hotelDns = await restartAsForwarder(hotelDns!);
      let first: Awaited<ReturnType<typeof dig>> | undefined;
      while (performance.now() - loginAt < LOGIN_BOUND_MS + 3000) {
        const d = await dig(pvdns!, ['where.test', 'TXT', '+time=1']).catch(() => undefined);
        if (d?.status === 'NOERROR') {
          first = d;
          break;
        }
        // Until pvdns sees the login, strict still refuses (and says where to log in).
        if (d) expect(d.ede, d.text).toMatch(/captive portal, log in at/);
        await sleep(100);
      }
      const ms = performance.now() - loginAt;
      console.log(`captive-encrypted: hotel (strict, API): login → first encrypted answer ${(ms / 1000).toFixed(1)} s`);
      expect(first, pvdns!.logs()).toBeDefined();
      expect(first!.answer.map((a) => a.data)).toEqual(['"encrypted"']);
      expect(ms).toBeLessThanOrEqual(LOGIN_BOUND_MS);
      const ev = await nextEvent(restored('hotel'), 5000);
      expect((ev.data as { change: unknown }).change).toMatchObject({ kind: 'encryption-restored', ok: true, server: `tls://${ENCRYPTED}:853#dns.test`, ms: expect.any(Number) });
      const r = await resolve('name=www.example.test&type=A');
      expect(r).toMatchObject({ pvd: 'hotel', captive: false, server: `tls://${ENCRYPTED}:853#dns.test`, rcode: 'NOERROR' });
      expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.81']);
      // Kept again now that the network is open.
      expect(await resolve('name=www.example.test&type=A')).toMatchObject({ cached: true });
      expect(await pvd('hotel')).toMatchObject({ captive: false, captiveState: 'open', captiveCleartext: false });
      // Nothing but probes, the canary and the portal's name (the API) went to the forwarder after the login.
      const clear = (await hotelDns!.queries()).map((q) => q.name).filter((n) => n !== 'localhost' && !PROBE.test(n));
      expect(clear.filter((n) => n !== 'canary.test' && n !== 'portal.hotel.test')).toEqual([]);
    }, 30_000);

    it('cafe (opportunistic, probes only) and inn (strict, DoH): back to encrypted within a probe round or two', async () => {
      cafeDns = await restartAsForwarder(cafeDns!);
      const loginAt = performance.now();
      await nextEvent(restored('cafe'), 10_000);
      const ms = performance.now() - loginAt;
      console.log(`captive-encrypted: cafe (opportunistic, probes every ${PROBE_INTERVAL_S} s): login → encryption restored ${(ms / 1000).toFixed(1)} s`);
      expect(ms).toBeLessThanOrEqual(3 * PROBE_INTERVAL_S * 1000 + 2000);
      const r = await resolve('name=www.example.test&type=A&pvd=cafe');
      expect(r).toMatchObject({ pvd: 'cafe', captive: false, server: `tls://${ENCRYPTED}:853#dns.test` });
      expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.81']);
      expect(await pvd('cafe')).toMatchObject({ captive: false, captiveCleartext: false });
      await nextEvent(restored('inn'), 10_000);
      const inn = await resolve('name=where.test&type=TXT&pvd=inn');
      expect(inn).toMatchObject({ pvd: 'inn', rcode: 'NOERROR', server: `https://${ENCRYPTED}/dns-query#dns.test` });
      expect(inn.answers.map((a) => a.data)).toEqual(['"encrypted"']);
    }, 30_000);
  });

  describe('the session runs out and the user logs in again', () => {
    it('cafe: its designated resolver, down behind the portal, is asked again at once after the login (not after its 30 s probe backoff)', async () => {
      // The portal closes again: the designated resolver is out of reach, the resolver rewrites every name.
      await unbound!.stop();
      unbound = undefined;
      cafeDns = await restartAsForwarderOf(cafeDns!, REWRITE);
      // Asked before the probes notice: the designated resolver fails, and is down (not probed again for 30 s);
      // the opportunistic server's fallback gets the portal's answer, which may be cached (cafe is not captive yet).
      const early = await resolve('name=www2.example.test&type=A&pvd=cafe');
      expect(early.answers.map((a) => a.data)).toEqual([PORTAL]);
      expect((await pvd('cafe')).servers[0]).toMatchObject({ address: `tls://${ENCRYPTED}:853#dns.test`, state: 'down', lastError: 'connection refused' });
      expect(await metric('pvdns_encryption_downgrades_total', { pvd: 'cafe', reason: 'designated-down' })).toBe(1);
      await eventually('cafe to be captive again', async () => (await pvd('cafe')).captiveState === 'captive');
      expect((await pvd('cafe')).servers[0]).toMatchObject({ state: 'down' });
      seen.length = 0;
      unbound = await startUnbound();
      cafeDns = await restartAsForwarder(cafeDns!);
      const loginAt = performance.now();
      const ev = await nextEvent(restored('cafe'), 10_000);
      const ms = performance.now() - loginAt;
      console.log(`captive-encrypted: cafe again (designated resolver down behind the portal): login → encryption restored ${(ms / 1000).toFixed(1)} s`);
      expect((ev.data as { change: unknown }).change).toMatchObject({ ok: true, server: `tls://${ENCRYPTED}:853#dns.test` });
      expect(ms).toBeLessThanOrEqual(3 * PROBE_INTERVAL_S * 1000 + 2000);
      // The portal's answers are gone from the cache: names are asked again, of the encrypted resolver.
      const after = await resolve('name=www.example.test&type=A&pvd=cafe');
      expect(after).toMatchObject({ pvd: 'cafe', captive: false, cached: false, server: `tls://${ENCRYPTED}:853#dns.test` });
      expect(after.answers.map((a) => a.data)).toEqual(['192.0.2.81']);
      expect(await resolve('name=www2.example.test&type=A&pvd=cafe')).toMatchObject({ rcode: 'NXDOMAIN', cached: false, server: `tls://${ENCRYPTED}:853#dns.test` });
    }, 30_000);

    it('cafe: a network that opens but still blocks encryption is not said to be encrypted again', async () => {
      await unbound!.stop();
      unbound = undefined;
      cafeDns = await restartAsForwarderOf(cafeDns!, REWRITE);
      await eventually('cafe to be captive again', async () => (await pvd('cafe')).captiveState === 'captive');
      seen.length = 0;
      // The portal lets the user through, but DNS over TLS stays blocked: opportunistic falls back to the clear.
      cafeDns = await restartAsForwarder(cafeDns!);
      const ev = await nextEvent(restored('cafe'), 10_000);
      expect((ev.data as { change: unknown }).change).toMatchObject({
        kind: 'encryption-restored',
        ok: false,
        server: null,
        why: expect.stringMatching(/^captive portal opened, but tls:\/\/127\.0\.32\.4:853 answered in the clear \(encryption failed: connection refused\)$/),
      });
      const r = await resolve('name=www.example.test&type=A&pvd=cafe');
      expect(r).toMatchObject({ pvd: 'cafe', captive: false, server: `tls://${CAFE_DNS}:853` });
      expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.80']);
      expect((await pvd('cafe')).servers.find((s) => s.address === `tls://${CAFE_DNS}:853`)).toMatchObject({ encryption: 'cleartext' });
    }, 30_000);
  });
});
