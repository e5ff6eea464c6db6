// Captive-portal detection without a network: how probe answers are judged
// (standards.md §5.5), the RFC 8908 API document (vectors CP1, CP2, CP4),
// and the tracker's states and timing with a scripted PvD and fake timers.

import type DNS from 'dns2';
import { Packet } from 'dns2';
import ipaddr from 'ipaddr.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { errorAnswer, parseResponse, type Answer } from '../../src/dns/answer.js';
import { RCODE } from '../../src/dns/constants.js';
import { readName, wireKey } from '../../src/dns/name.js';
import * as captiveApi from '../../src/captive/api.js';
import { fetchCaptiveApi, parseApiDocument, type CaptiveApiState } from '../../src/captive/api.js';
import { addressesOf, isSpecialAddress, judgeCanary, judgeMissing, probeNames, specialAt } from '../../src/captive/evidence.js';
import { CaptiveTracker, portalHosts, type CaptiveState } from '../../src/captive/tracker.js';
import { createLogger } from '../../src/log.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';

// The RFC 8908 API client as it is, unless a test scripts it.
vi.mock('../../src/captive/api.js', async (importOriginal) => {
  const real = await importOriginal<typeof captiveApi>();
  return { ...real, fetchCaptiveApi: vi.fn(real.fetchCaptiveApi) };
});

const T = Packet.TYPE;

function reply(name: string, o: { rcode?: number; a?: string[]; aaaa?: string[]; type?: number } = {}): Answer {
  const type = o.type ?? T.A;
  const p = new Packet();
  Object.assign(p.header, { id: 1, qr: 1, rd: 1, ra: 1, rcode: o.rcode ?? 0 });
  p.questions.push({ name, type, class: 1 } as DNS.Packet.Question);
  for (const address of o.a ?? []) p.answers.push({ name, type: T.A, class: 1, ttl: 60, address } as DNS.Packet.Resource);
  for (const address of o.aaaa ?? []) p.answers.push({ name, type: T.AAAA, class: 1, ttl: 60, address } as DNS.Packet.Resource);
  const r = parseResponse(p.toBuffer(), { id: 1, nameKey: wireKey(name), qtype: type, qclass: 1 });
  if (!r.ok) throw new Error(r.reason);
  return r.answer;
}

describe('probe evidence', () => {
  it('makes two random names under random top-level labels, different every time', () => {
    const a = probeNames();
    const b = probeNames();
    expect(a).toHaveLength(2);
    expect(a[0]).toMatch(/^[a-z][a-z0-9]{11,14}$/);
    expect(a[1]).toMatch(/^[a-z][a-z0-9]{11,14}\.[a-z][a-z0-9]{11,14}$/);
    expect(a).not.toEqual(b);
  });

  it('takes any address for a name that cannot exist as a rewrite, and its addresses as the portal (H1)', () => {
    expect(judgeMissing('x', reply('x', { a: ['127.0.0.99'] }))).toEqual({ kind: 'rewritten', addresses: ['127.0.0.99'], why: 'x (a name that cannot exist) answered 127.0.0.99' });
    expect(judgeMissing('x', reply('x', { rcode: RCODE.NXDOMAIN }))).toEqual({ kind: 'clean' });
    expect(judgeMissing('x', reply('x', { rcode: RCODE.REFUSED }))).toEqual({ kind: 'clean' });
    expect(judgeMissing('x', reply('x'))).toEqual({ kind: 'clean' }); // NODATA
    expect(judgeMissing('x', errorAnswer(RCODE.SERVFAIL, { code: 22, text: 'pvd hotel: all servers unreachable' })).kind).toBe('unknown');
  });

  it('checks the canary against its known addresses, or without them for a public address (H3, H7)', () => {
    const none = new Set<string>();
    expect(judgeCanary('c', reply('c', { a: ['192.0.2.53'] }), new Set(['192.0.2.53']), none).kind).toBe('clean');
    expect(judgeCanary('c', reply('c', { a: ['127.0.0.99'] }), new Set(['192.0.2.53']), none).kind).toBe('rewritten');
    expect(judgeCanary('c', reply('c', { a: ['93.184.215.14'] }), none, none).kind).toBe('clean');
    expect(judgeCanary('c', reply('c', { a: ['172.16.0.1'] }), none, none).kind).toBe('rewritten');
    expect(judgeCanary('c', reply('c', { a: ['93.184.215.14'] }), none, new Set(['93.184.215.14'])).kind).toBe('rewritten');
    // A network without Internet access may answer NXDOMAIN: no verdict against it.
    expect(judgeCanary('c', reply('c', { rcode: RCODE.NXDOMAIN }), new Set(['192.0.2.53']), none).kind).toBe('clean');
  });

  it.each([
    ['10.1.2.3', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['100.64.0.1', true],
    ['127.0.0.1', true],
    ['169.254.1.1', true],
    ['0.0.0.0', true],
    ['224.0.0.251', true],
    ['198.18.0.1', true],
    ['8.8.8.8', false],
    ['192.0.2.1', false],
    ['fd00::1', true],
    ['fe80::1', true],
    ['::1', true],
    ['::', true],
    ['::ffff:10.0.0.1', true],
    ['2001:db8::1', false],
    ['2606:4700::1111', false],
  ])('%s is special: %s (as text and as octets)', (address, special) => {
    expect(isSpecialAddress(address)).toBe(special);
    const octets = Buffer.from(ipaddr.parse(address).toByteArray());
    expect(specialAt(Buffer.concat([Buffer.alloc(3), octets]), 3, octets.length)).toBe(special);
  });

  it('reads A and AAAA addresses from an answer, AAAA in RFC 5952 form', () => {
    expect(addressesOf(reply('x', { a: ['192.0.2.1'], aaaa: ['2001:DB8:0:0:0:0:0:1'] }))).toEqual(['192.0.2.1', '2001:db8::1']);
  });
});

describe('RFC 8908 API document', () => {
  it('reads captive and the user portal URL (CP1)', () => {
    expect(parseApiDocument('{"captive":true,"user-portal-url":"https://example.org/portal.html"}')).toEqual({
      captive: true,
      userPortalUrl: 'https://example.org/portal.html',
      venueInfoUrl: null,
      secondsRemaining: null,
      canExtendSession: null,
    });
  });

  it('reads seconds-remaining and can-extend-session (CP2), ignoring unknown keys', () => {
    expect(parseApiDocument('{"captive":false,"seconds-remaining":326,"can-extend-session":true,"x-vendor":{}}')).toMatchObject({ captive: false, secondsRemaining: 326, canExtendSession: true });
  });

  it('refuses a document whose captive is not a boolean (CP4), or that is not JSON', () => {
    expect(() => parseApiDocument('{"captive":"yes"}')).toThrow(/not a boolean/);
    expect(() => parseApiDocument('<html>')).toThrow(/not JSON/);
    expect(() => parseApiDocument('[]')).toThrow(/not a JSON object/);
  });

  it('drops a user portal URL that is not https (RFC 8908 §5)', () => {
    expect(parseApiDocument('{"captive":true,"user-portal-url":"http://portal.example/"}').userPortalUrl).toBeNull();
  });
});

// ---------------------------------------------------------------------------

/** A scripted PvD: answers probe names as `mode` says, the canary with 192.0.2.53. */
type Mode = 'normal' | 'portal' | 'nxrewrite' | 'down';

function pvd(spec: Record<string, unknown> = {}): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ identifier: 'hotel', dnsServers: ['127.0.0.1'], ...spec }), 'api', 0);
}

describe('CaptiveTracker', () => {
  let mode: Mode;
  let asked: string[];
  let changes: Array<[CaptiveState, CaptiveState]>;
  let tracker: CaptiveTracker;

  beforeEach(() => {
    vi.useFakeTimers();
    mode = 'normal';
    asked = [];
    changes = [];
    tracker = new CaptiveTracker(
      (_, msg) => {
        const name = readName(msg, 12)!;
        asked.push(name);
        if (mode === 'down') return Promise.resolve(errorAnswer(RCODE.SERVFAIL));
        if (mode === 'portal') return Promise.resolve(reply(name, { a: ['127.0.0.99'] }));
        if (name === 'canary.test') return Promise.resolve(reply(name, { a: ['192.0.2.53'] }));
        if (mode === 'nxrewrite') return Promise.resolve(reply(name, { a: ['198.51.100.7'] }));
        return Promise.resolve(reply(name, { rcode: RCODE.NXDOMAIN }));
      },
      (_, state, previous) => changes.push([state, previous]),
      createLogger('silent'),
      { probeIntervalS: 60, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
    );
  });
  afterEach(() => {
    tracker.close();
    vi.useRealTimers();
  });

  const settle = (ms = 0): Promise<void> => vi.advanceTimersByTimeAsync(ms).then(() => undefined);

  it('sends nothing before start, then probes at once: two impossible names and the canary', async () => {
    const p = pvd();
    tracker.track(p);
    await settle(120_000);
    expect(asked).toEqual([]);
    tracker.start();
    await settle();
    expect(asked).toHaveLength(3);
    expect(asked[2]).toBe('canary.test');
    expect(tracker.view(p)).toMatchObject({ captive: false, captiveState: 'open', portalAddresses: [] });
    expect(changes).toEqual([['open', 'unknown']]);
  });

  it('marks a PvD that answers every name with one address captive, and learns the portal address', async () => {
    mode = 'portal';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(tracker.isCaptive(p)).toBe(true);
    expect(tracker.view(p)).toMatchObject({ captive: true, captiveState: 'captive', portalAddresses: ['127.0.0.99'] });
    expect(tracker.view(p).captiveReason).toMatch(/^DNS rewritten: .* \(a name that cannot exist\) answered 127\.0\.0\.99$/);
    expect([...tracker.counts()][0]!.rewrites).toBe(3);
  });

  it('probes again at once when evidence of a portal came during a round that saw nothing (encrypted servers failing it)', async () => {
    const p = pvd();
    const seen: string[] = [];
    let round = 0;
    const t = new CaptiveTracker(
      (_, msg) => {
        const name = readName(msg, 12)!;
        seen.push(name);
        if (seen.length % 3 === 1) round++;
        // Round 1: the encrypted servers fail it, and say so while it is out; round 2 sees the portal.
        if (round === 1) {
          t.evidence(p);
          return Promise.resolve(errorAnswer(RCODE.SERVFAIL));
        }
        return Promise.resolve(reply(name, { a: ['127.0.0.99'] }));
      },
      () => undefined,
      createLogger('silent'),
      { probeIntervalS: 60, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
    );
    t.start();
    t.track(p);
    await settle();
    expect(seen).toHaveLength(3);
    await settle(1); // the second round comes at once, not after 60 s
    expect(seen).toHaveLength(6);
    expect(t.isCaptive(p)).toBe(true);
    t.close();
  });

  it('marks an NXDOMAIN-rewriting PvD captive too, though its canary is right', async () => {
    mode = 'nxrewrite';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(tracker.view(p)).toMatchObject({ captiveState: 'captive', portalAddresses: ['198.51.100.7'] });
  });

  it('probes every 10 s while captive and every probeIntervalS while open and in use, and opens when probes are clean', async () => {
    mode = 'portal';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(asked).toHaveLength(3);
    await settle(10_000);
    expect(asked).toHaveLength(6);
    mode = 'normal'; // the user logged in
    await settle(10_000);
    expect(tracker.view(p).captiveState).toBe('open');
    expect(changes).toEqual([['captive', 'unknown'], ['open', 'captive']]);
    // In use (an upstream answer in the PvD): the next round comes probeIntervalS later.
    const used = (): unknown => tracker.noteAnswer(p, wireKey('www.example.com'), reply('www.example.com', { a: ['192.0.2.80'] }), false);
    used();
    await settle(59_000);
    expect(asked).toHaveLength(9);
    await settle(1_000);
    expect(asked).toHaveLength(12);
    // Not used since: the round on the clock is skipped, and nothing wakes pvdns until the PvD is used.
    await settle(180_000);
    expect(asked).toHaveLength(12);
    // Used again, more than probeIntervalS after the last round: a round at once.
    used();
    await settle();
    expect(asked).toHaveLength(15);
  });

  it('keeps its state when probes fail (timeouts, SERVFAIL)', async () => {
    mode = 'down';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(tracker.view(p).captiveState).toBe('unknown');
    mode = 'portal';
    tracker.noteAnswer(p, wireKey('www.example.com'), reply('www.example.com', { a: ['192.0.2.80'] }), false); // in use
    await settle(60_000);
    expect(tracker.view(p).captiveState).toBe('captive');
    mode = 'down';
    await settle(10_000);
    expect(tracker.view(p).captiveState).toBe('captive');
  });

  it("takes an answer with the portal's address as a rewrite, and probes at once on a suspicious answer", async () => {
    mode = 'portal';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(tracker.noteAnswer(p, wireKey('www.example.com'), reply('www.example.com', { a: ['127.0.0.99'] }), false)).toBe(true);
    expect(tracker.noteAnswer(p, wireKey('www.example.com'), reply('www.example.com', { a: ['192.0.2.80'] }), false)).toBe(false);
    expect([...tracker.counts()][0]!.rewrites).toBe(4);
    tracker.untrack(p); // its 10 s rechecks would mix with what follows

    mode = 'normal';
    const lan = pvd({ identifier: 'lan' });
    tracker.track(lan);
    await settle();
    asked.length = 0;
    await settle(16_000);
    // A private address for a name the PvD does not own: probe now (not more than once per 15 s).
    tracker.noteAnswer(lan, wireKey('www.example.com'), reply('www.example.com', { a: ['192.168.1.1'] }), false);
    tracker.noteAnswer(lan, wireKey('www.example.org'), reply('www.example.org', { a: ['192.168.1.1'] }), false);
    await settle();
    expect(asked).toHaveLength(3);
    // Its own names may be private: no probe.
    asked.length = 0;
    await settle(16_000);
    tracker.noteAnswer(lan, wireKey('nas.lan.example'), reply('nas.lan.example', { a: ['192.168.1.2'] }), true);
    await settle();
    expect(asked).toHaveLength(0);
    // One public address for three unrelated names (H2): probe.
    for (const n of ['a.one.example', 'b.two.example', 'c.three.example']) tracker.noteAnswer(lan, wireKey(n), reply(n, { a: ['203.0.113.9'] }), false);
    await settle();
    expect(asked).toHaveLength(3);
    expect(tracker.view(lan).captiveState).toBe('open'); // the probes decide, not the heuristic
  });

  it('never probes a noInternet PvD (a split-DNS VPN), says so, and probes it once it offers the Internet', async () => {
    tracker.start();
    const vpn = pvd({ identifier: 'vpn', dnsZones: ['corp.example'], noInternet: true });
    tracker.track(vpn);
    await settle(600_000);
    expect(asked).toEqual([]);
    expect(tracker.view(vpn)).toMatchObject({ captive: null, captiveState: 'unknown', captiveReason: expect.stringMatching(/^not probed: the PvD has noInternet/) });
    // A private answer for a name it does not own is no suspicion worth a probe either.
    tracker.noteAnswer(vpn, wireKey('www.example.com'), reply('www.example.com', { a: ['10.0.0.1'] }), false);
    await settle(20_000);
    expect(asked).toEqual([]);
    const open = pvd({ identifier: 'vpn', dnsZones: ['corp.example'], noInternet: false });
    tracker.track({ ...open, tag: vpn.tag });
    await settle();
    expect(asked).toHaveLength(3);
    expect(tracker.view(vpn)).toMatchObject({ captiveState: 'open', captiveReason: 'probes answered as they should' });
    // Back to noInternet: what the probes found no longer holds, and none go out.
    tracker.track({ ...vpn, tag: vpn.tag });
    await settle(600_000);
    expect(asked).toHaveLength(3);
    expect(tracker.view(vpn)).toMatchObject({ captiveState: 'unknown', captiveReason: expect.stringMatching(/^not probed/) });
  });

  it('sends no probes with probeIntervalS 0', async () => {
    const quiet = new CaptiveTracker(() => Promise.reject(new Error('no')), () => undefined, createLogger('silent'), { probeIntervalS: 0, canary: { name: 'c', addresses: [] } });
    quiet.start();
    quiet.track(pvd());
    await settle(600_000);
    expect(quiet.view(pvd()).captiveState).toBe('unknown');
    quiet.close();
  });

  it("routes the portal's hosts that are the API host or under it, and no other name the network names", () => {
    const api = 'https://capport.hotel.example/api';
    expect(portalHosts(api, ['https://capport.hotel.example/login', 'https://venue.capport.hotel.example/'])).toEqual(['capport.hotel.example', 'venue.capport.hotel.example']);
    expect(portalHosts(api, ['https://login.hotel.example/', 'https://www.bank.example/', 'https://192.0.2.1/'])).toEqual(['capport.hotel.example']);
    expect(portalHosts(`https://${'a'.repeat(64)}.hotel.example/api`, [])).toEqual([]); // no DNS name: routes nowhere
    expect(portalHosts(null, ['https://login.hotel.example/'])).toEqual([]);
  });

  it('needs two rewritten answers in a round: a canary alone that looks wrong proves nothing', async () => {
    const stale = new CaptiveTracker(
      (_, msg) => {
        const name = readName(msg, 12)!;
        return Promise.resolve(name === 'canary.test' ? reply(name, { a: ['192.0.2.99'] }) : reply(name, { rcode: RCODE.NXDOMAIN }));
      },
      () => undefined,
      createLogger('silent'),
      { probeIntervalS: 60, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
    );
    stale.start();
    const p = pvd();
    stale.track(p);
    await settle();
    expect(stale.view(p)).toMatchObject({ captiveState: 'unknown', portalAddresses: [] });
    stale.close();
  });

  it('forgets the portal addresses when the portal opens', async () => {
    mode = 'portal';
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(tracker.view(p).portalAddresses).toEqual(['127.0.0.99']);
    mode = 'normal';
    await settle(10_000);
    expect(tracker.view(p)).toMatchObject({ captiveState: 'open', portalAddresses: [] });
    expect(tracker.noteAnswer(p, wireKey('www.example.com'), reply('www.example.com', { a: ['127.0.0.99'] }), false)).toBe(false);
  });

  it('starts over only when the network changes: a new priority keeps the rounds as they are', async () => {
    tracker.start();
    const p = pvd();
    tracker.track(p);
    await settle();
    expect(asked).toHaveLength(3);
    tracker.track(pvdFromSpec(pvdSpecSchema.parse({ identifier: 'hotel', dnsServers: ['127.0.0.1'], priority: 5 }), 'api', 0, p.tag));
    await settle();
    expect(asked).toHaveLength(3);
    tracker.track(pvdFromSpec(pvdSpecSchema.parse({ identifier: 'hotel', dnsServers: ['127.0.0.2'] }), 'api', 0, p.tag));
    await settle();
    expect(asked).toHaveLength(6);
  });

  it('routes the captive-portal API host to the PvD only while it is captive', async () => {
    const p = pvd({ captivePortal: 'https://Portal.Hotel.example/api' });
    tracker.track(p);
    expect(tracker.hosts(p)).toEqual([]);
    mode = 'portal';
    tracker.start();
    await settle();
    expect(tracker.hosts(p)).toEqual(['portal.hotel.example']);
    expect(tracker.hosts(pvd({ captivePortal: 'urn:ietf:params:capport:unrestricted' }))).toEqual([]);
  });

  it("takes the portal's host and names under it as its own while captive, and no look-alike", async () => {
    const p = pvd({ captivePortal: 'https://portal.hotel.example/api', encryption: 'strict' });
    tracker.track(p);
    const own = (name: string): boolean => tracker.portalName(p, wireKey(name));
    expect(own('portal.hotel.example')).toBe(false); // not captive yet
    mode = 'portal';
    tracker.start();
    await settle();
    expect(tracker.isCaptive(p)).toBe(true);
    expect(own('portal.hotel.example')).toBe(true);
    expect(own('Login.Portal.Hotel.Example.')).toBe(true);
    expect(own('xportal.hotel.example')).toBe(false);
    expect(own('hotel.example')).toBe(false);
    expect(own('portal.hotel.example.evil.test')).toBe(false);
  });

  it("says where to log in: the portal's address its answers pointed at, without an API", async () => {
    const p = pvd();
    tracker.track(p);
    expect(tracker.loginAt(p)).toBeNull();
    mode = 'portal';
    tracker.start();
    await settle();
    expect(tracker.loginAt(p)).toBe('http://127.0.0.99/');
  });

  it('reads the API again at once when DNS stops being rewritten while it says captive (the user logged in, RFC 8908 §6)', async () => {
    const real = (await vi.importActual<typeof captiveApi>('../../src/captive/api.js')).fetchCaptiveApi;
    let doc: CaptiveApiState = { captive: true, userPortalUrl: 'https://portal.hotel.example/login', venueInfoUrl: null, secondsRemaining: null, canExtendSession: null };
    vi.mocked(fetchCaptiveApi).mockImplementation(() => Promise.resolve(doc));
    const fast = new CaptiveTracker(
      (_, msg) => {
        const name = readName(msg, 12)!;
        asked.push(name);
        return Promise.resolve(mode === 'portal' ? reply(name, { a: ['127.0.0.99'] }) : name === 'canary.test' ? reply(name, { a: ['192.0.2.53'] }) : reply(name, { rcode: RCODE.NXDOMAIN }));
      },
      (_, state, previous) => changes.push([state, previous]),
      createLogger('silent'),
      { probeIntervalS: 2, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
    );
    try {
      const reads = (): number => vi.mocked(fetchCaptiveApi).mock.calls.length;
      // A portal that never rewrites DNS: clean probes prove nothing against the API, which is read every 10 s.
      const quiet = pvd({ identifier: 'quiet', captivePortal: 'https://portal.quiet.example/api' });
      fast.track(quiet);
      fast.start();
      await settle(9_000);
      expect(fast.view(quiet).captiveState).toBe('captive');
      expect(reads()).toBe(1);
      fast.untrack(quiet);
      // One that rewrites until the login: the first clean round after rewritten ones reads the API at once.
      mode = 'portal';
      const p = pvd({ captivePortal: 'https://portal.hotel.example/api' });
      fast.track(p);
      await settle(4_100);
      expect(fast.view(p).captiveState).toBe('captive');
      expect(reads()).toBe(2);
      mode = 'normal';
      doc = { ...doc, captive: false };
      await settle(2_000);
      expect(reads()).toBe(3);
      expect(fast.view(p)).toMatchObject({ captiveState: 'open', captiveReason: 'captive-portal API (RFC 8908) says captive: false' });
    } finally {
      fast.close();
      vi.mocked(fetchCaptiveApi).mockImplementation(real);
    }
  });

  it('never probes a PvD without a cleartext server (DNS over HTTPS by host name), and says why its API cannot be read', async () => {
    const p = pvd({ dnsServers: ['https://dns.hotel.example/dns-query'], captivePortal: 'https://portal.hotel.example/api' });
    expect(p.clearServers).toEqual([]);
    tracker.track(p);
    tracker.start();
    await settle(120_000);
    expect(asked).toEqual([]);
    expect(tracker.view(p)).toMatchObject({
      captiveState: 'unknown',
      captiveApiError: 'https://portal.hotel.example/api: portal.hotel.example cannot be looked up: pvd hotel has no cleartext DNS server',
    });
  });
});
