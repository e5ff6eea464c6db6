// Discovery of Designated Resolvers (src/ddr): SVCB records read from
// hand-built wire vectors (RFC 9460 §2.2), the servers they designate (RFC
// 9461), verification against real TLS servers with a throwaway CA (RFC 9462
// §4.2, §4.3), and the DdrTracker with a scripted cleartext server, a
// scripted verifier and fake timers.

import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { errorAnswer, parseResponse, type Answer } from '../../src/dns/answer.js';
import { RCODE, TYPE } from '../../src/dns/constants.js';
import { encodeName, wireKey } from '../../src/dns/name.js';
import { candidatesOf, parseSvcbRdata, readSvcb, type Svcb } from '../../src/ddr/svcb.js';
import { DdrTracker, type Designated } from '../../src/ddr/tracker.js';
import { isPrivateOrLocal, opportunisticProblem, verifyDesignated } from '../../src/ddr/verify.js';
import { createLogger } from '../../src/log.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { parseServer, type UpstreamServer } from '../../src/upstream/server.js';
import { Trust } from '../../src/upstream/trust.js';
import { testPki, type TestPki } from '../helpers/pki.js';

// ------------------------------------------------------------------ wire vectors

type Param = [key: number, value: Buffer];

const alpn = (...ids: string[]): Param => [1, Buffer.concat(ids.map((id) => Buffer.concat([Buffer.from([id.length]), Buffer.from(id, 'latin1')])))];
const port = (p: number): Param => [3, Buffer.from([p >> 8, p & 0xff])];
const ipv4hint = (...a: string[]): Param => [4, Buffer.from(a.flatMap((x) => x.split('.').map(Number)))];
const ipv6hint = (...a: string[]): Param => [6, Buffer.concat(a.map((x) => Buffer.from(x.split(':').flatMap((g) => [parseInt(g || '0', 16) >> 8, parseInt(g || '0', 16) & 0xff]))))];
/** key7 as Unbound 1.17 writes `key7=/dns-query{?dns}`: the template's octets, no length prefix (RFC 9461 §5). */
const key7 = (path: string): Param => [7, Buffer.from(path, 'utf8')];
const mandatory = (...keys: number[]): Param => [0, Buffer.from(keys.flatMap((k) => [k >> 8, k & 0xff]))];

/** rdata builds SVCB RDATA: SvcPriority, TargetName uncompressed, SvcParams as given (in the order given). */
function rdata(priority: number, target: string, params: Param[]): Buffer {
  const parts = [Buffer.from([priority >> 8, priority & 0xff]), encodeName(target)];
  for (const [k, v] of params) parts.push(Buffer.from([k >> 8, k & 0xff, v.length >> 8, v.length & 0xff]), v);
  return Buffer.concat(parts);
}

const QNAME = encodeName('_dns.resolver.arpa');
const SVCB_Q = (() => {
  const m = Buffer.alloc(12 + QNAME.length + 4);
  m.writeUInt16BE(0x0100, 2);
  m.writeUInt16BE(1, 4);
  QNAME.copy(m, 12);
  m.writeUInt16BE(TYPE.SVCB, 12 + QNAME.length);
  m.writeUInt16BE(1, 12 + QNAME.length + 2);
  return m;
})();

/** reply builds an upstream's reply to `_dns.resolver.arpa` SVCB with the records given (owner compressed to the question). */
function reply(records: Array<{ type?: number; ttl: number; rdata: Buffer }>, rcode = 0): Answer {
  const head = Buffer.from(SVCB_Q);
  head.writeUInt16BE(0x8180 | rcode, 2);
  head.writeUInt16BE(records.length, 6);
  const rrs = records.map((r) => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(0xc00c, 0);
    h.writeUInt16BE(r.type ?? TYPE.SVCB, 2);
    h.writeUInt16BE(1, 4);
    h.writeUInt32BE(r.ttl, 6);
    h.writeUInt16BE(r.rdata.length, 10);
    return Buffer.concat([h, r.rdata]);
  });
  const res = parseResponse(Buffer.concat([head, ...rrs]), { id: 0, nameKey: wireKey('_dns.resolver.arpa'), qtype: TYPE.SVCB, qclass: 1 });
  if (!res.ok) throw new Error(res.reason);
  return res.answer;
}

/** The record the interop test's Unbound holds: `1 dns.test. alpn=dot,h2 ipv4hint=127.0.30.2 key7=/dns-query{?dns}`. */
const UNBOUND_LIKE = rdata(1, 'dns.test', [alpn('dot', 'h2'), ipv4hint('127.0.30.2'), key7('/dns-query{?dns}')]);

describe('SVCB records (RFC 9460 §2.2)', () => {
  it("reads a ServiceMode record with alpn, ipv4hint and Unbound's key7 dohpath", () => {
    const r = parseSvcbRdata(UNBOUND_LIKE, 300);
    expect(r).toEqual({ priority: 1, target: 'dns.test', alpn: ['dot', 'h2'], noDefaultAlpn: false, port: null, ipv4hint: ['127.0.30.2'], ipv6hint: [], dohpath: '/dns-query{?dns}', ttl: 300 });
  });

  it('reads port, ipv6hint, no-default-alpn and ignores unknown keys', () => {
    const r = parseSvcbRdata(rdata(2, 'Resolver.Example', [alpn('dot'), [2, Buffer.alloc(0)], port(8853), ipv6hint('2001:db8:0:0:0:0:0:53'), [65000, Buffer.from('x')]]), 60);
    expect(r).toMatchObject({ priority: 2, target: 'resolver.example', alpn: ['dot'], noDefaultAlpn: true, port: 8853, ipv6hint: ['2001:db8::53'] });
  });

  it('skips AliasMode, keys out of order, lengths that do not fit, and unknown mandatory keys, each with a reason', () => {
    expect(parseSvcbRdata(rdata(0, 'dns.test', []), 300)).toMatch(/AliasMode \(priority 0\): not a designated resolver/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [ipv4hint('127.0.30.2'), alpn('dot')]), 300)).toMatch(/keys out of order: key1 follows key4 \(RFC 9460 §2\.2/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [alpn('dot'), alpn('h2')]), 300)).toMatch(/keys out of order/);
    const cut = rdata(1, 'dns.test', [alpn('dot'), ipv4hint('127.0.30.2')]);
    expect(parseSvcbRdata(cut.subarray(0, cut.length - 1), 300)).toMatch(/SVCB record for dns\.test: SvcParam key4 runs past the end of the SvcParams/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [alpn('dot'), [4, Buffer.from([127, 0, 30])]]), 300)).toMatch(/an \"ipv4hint\" SvcParam of length 3/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [mandatory(5), alpn('dot'), [5, Buffer.from('ech')]]), 300)).toMatch(/\"mandatory\" lists key5, which pvdns does not support \(RFC 9460 §8/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [mandatory(3), alpn('dot')]), 300)).toMatch(/\"mandatory\" lists key3, which is absent/);
    expect(parseSvcbRdata(rdata(1, 'dns.test', [mandatory(1, 4), alpn('dot'), ipv4hint('127.0.30.2')]), 300)).toMatchObject({ target: 'dns.test' });
    // A compressed TargetName (a pointer) is malformed: it must be uncompressed (§2.2).
    expect(parseSvcbRdata(Buffer.from([0, 1, 0xc0, 0x0c]), 300)).toMatch(/compressed or malformed/);
    expect(parseSvcbRdata(rdata(1, '.', [alpn('dot')]), 300)).toMatch(/names no resolver/);
  });

  it('reads the records of an answer sorted by SvcPriority, skipping the bad ones and other types', () => {
    const a = reply([
      { ttl: 300, rdata: rdata(2, 'second.test', [alpn('dot'), ipv4hint('127.0.30.3')]) },
      { ttl: 300, rdata: rdata(0, 'alias.test', []) },
      { type: TYPE.A, ttl: 300, rdata: Buffer.from([127, 0, 30, 9]) },
      { ttl: 120, rdata: UNBOUND_LIKE },
    ]);
    const r = readSvcb(SVCB_Q, a);
    expect(r.records.map((x) => [x.priority, x.target, x.ttl])).toEqual([
      [1, 'dns.test', 120],
      [2, 'second.test', 300],
    ]);
    expect(r.skipped).toEqual([expect.stringMatching(/alias\.test is AliasMode/)]);
  });
});

describe('candidate servers (RFC 9461)', () => {
  const rec = (over: Partial<Svcb>): Svcb => ({ priority: 1, target: 'dns.test', alpn: ['dot', 'h2'], noDefaultAlpn: false, port: null, ipv4hint: ['127.0.30.2'], ipv6hint: [], dohpath: '/dns-query{?dns}', ttl: 300, ...over });

  it('makes DoT on 853 and DoH on 443 at each hint, authenticated by TargetName, the template stripped', () => {
    const { candidates, problems } = candidatesOf(rec({ ipv6hint: ['fd00::53'] }));
    expect(problems).toEqual([]);
    expect(candidates.map((c) => c.server.label)).toEqual([
      'tls://127.0.30.2:853#dns.test',
      'https://127.0.30.2/dns-query#dns.test',
      'tls://[fd00::53]:853#dns.test',
      'https://[fd00::53]/dns-query#dns.test',
    ]);
    const [dot, doh] = candidates;
    expect(dot!.server).toMatchObject({ transport: 'tls', host: '127.0.30.2', port: 853, authName: 'dns.test', authenticate: true, fallback: null });
    expect(doh!.server).toMatchObject({ transport: 'https', host: '127.0.30.2', port: 443, path: '/dns-query', authName: 'dns.test', authenticate: true, fallback: null });
    // The same objects the transports take, as a PvD written by hand would have them.
    expect(dot!.server).toEqual(parseServer('tls://127.0.30.2:853#dns.test', 'strict'));
  });

  it('uses the port for both protocols; h3 only beside h2; no DoH without dohpath; resolved addresses without hints', () => {
    expect(candidatesOf(rec({ port: 8853, alpn: ['h2', 'dot'] })).candidates.map((c) => c.server.label)).toEqual(['https://127.0.30.2:8853/dns-query#dns.test', 'tls://127.0.30.2:8853#dns.test']);
    const h3 = candidatesOf(rec({ alpn: ['h3'] }));
    expect(h3.candidates).toEqual([]);
    expect(h3.problems).toEqual([expect.stringMatching(/no protocol pvdns speaks \(alpn h3/)]);
    const noPath = candidatesOf(rec({ alpn: ['h2'], dohpath: null }));
    expect(noPath.problems).toEqual([expect.stringMatching(/alpn h2 without dohpath/)]);
    expect(candidatesOf(rec({ alpn: ['h2'], dohpath: '/q{?name}' })).problems).toEqual([expect.stringMatching(/no "dns" variable/)]);
    expect(candidatesOf(rec({ ipv4hint: [], alpn: ['dot'] }), ['192.0.2.53']).candidates.map((c) => c.server.label)).toEqual(['tls://192.0.2.53:853#dns.test']);
    expect(candidatesOf(rec({ ipv4hint: [], alpn: ['dot'] })).problems).toEqual([expect.stringMatching(/no address/)]);
  });
});

// ------------------------------------------------------------------ verification

describe('verification (RFC 9462 §4.2, §4.3)', () => {
  let pki: TestPki<'good' | 'noIp' | 'wrongName' | 'unknown'>;
  const servers: tls.Server[] = [];
  const trust = new Trust();
  const ports: Record<string, number> = {};

  beforeAll(async () => {
    pki = await testPki({
      good: { dns: ['dns.test'], ips: ['127.0.30.1'] },
      noIp: { dns: ['dns.test'] },
      wrongName: { dns: ['other.test'], ips: ['127.0.30.1'] },
      unknown: { dns: ['dns.test'], ips: ['127.0.30.1'], unknownCa: true },
    });
    trust.setExtra(pki.caPem);
    for (const name of ['good', 'noIp', 'wrongName', 'unknown'] as const) {
      const srv = tls.createServer({ ...pki.leaves[name].pem, ALPNProtocols: ['dot', 'h2'] }, (s) => s.end());
      await new Promise<void>((r) => srv.listen(0, '127.0.30.2', r));
      ports[name] = (srv.address() as { port: number }).port;
      servers.push(srv);
    }
  }, 30_000);
  afterAll(async () => {
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
    pki?.remove();
  });

  const cand = (name: string, transport: 'tls' | 'https' = 'tls'): UpstreamServer =>
    parseServer(transport === 'tls' ? `tls://127.0.30.2:${ports[name]}#dns.test` : `https://127.0.30.2:${ports[name]}/dns-query#dns.test`, 'strict') as UpstreamServer;
  const clear = (addr: string): UpstreamServer => parseServer(addr, 'off') as UpstreamServer;

  it('accepts a certificate that chains to the CA, is for TargetName and names the cleartext resolver', async () => {
    expect(await verifyDesignated(cand('good'), clear('127.0.30.1'), { trust })).toBeNull();
    expect(await verifyDesignated(cand('good', 'https'), clear('127.0.30.1:53'), { trust })).toBeNull();
  });

  it('says in one line why a certificate does not verify', async () => {
    expect(await verifyDesignated(cand('good'), clear('127.0.30.3'), { trust })).toBe('certificate for dns.test does not cover 127.0.30.3 (RFC 9462 §4.2)');
    expect(await verifyDesignated(cand('noIp'), clear('127.0.30.1'), { trust })).toBe('certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)');
    expect(await verifyDesignated(cand('wrongName'), clear('127.0.30.1'), { trust })).toMatch(/name mismatch: expected dns\.test \(certificate is for other\.test, 127\.0\.30\.1\)/);
    expect(await verifyDesignated(cand('unknown'), clear('127.0.30.1'), { trust })).toMatch(/unknown authority/);
    const refused = parseServer('tls://127.0.30.2:1#dns.test', 'strict') as UpstreamServer;
    expect(await verifyDesignated(refused, clear('127.0.30.1'), { trust })).toBe('tls://127.0.30.2:1#dns.test: connection refused');
  });

  it('allows opportunistic discovery only with encryption opportunistic, a private or local address, and the same address', () => {
    const same = parseServer('tls://192.168.1.1:853#dns.test', 'strict') as UpstreamServer;
    expect(opportunisticProblem(same, clear('192.168.1.1'), 'opportunistic')).toBeNull();
    expect(opportunisticProblem(same, clear('192.168.1.1'), null)).toMatch(/needs encryption: opportunistic/);
    expect(opportunisticProblem(same, clear('192.168.1.1'), 'strict')).toMatch(/needs encryption: opportunistic/);
    expect(opportunisticProblem(same, clear('192.168.1.2'), 'opportunistic')).toMatch(/192\.168\.1\.1 differs from 192\.168\.1\.2/);
    const pub = parseServer('tls://192.0.2.1:853#dns.test', 'strict') as UpstreamServer;
    expect(opportunisticProblem(pub, clear('192.0.2.1'), 'opportunistic')).toMatch(/192\.0\.2\.1 is not a private or local address/);
    expect(['10.1.2.3', '172.16.0.1', '192.168.0.1', 'fd12::1', 'fe80::1', '169.254.1.1', '127.0.30.1', '::1'].every(isPrivateOrLocal)).toBe(true);
    expect(['192.0.2.1', '8.8.8.8', '2001:db8::1', '100.64.0.1'].some(isPrivateOrLocal)).toBe(false);
  });
});

// ------------------------------------------------------------------ the tracker

function pvd(spec: Record<string, unknown> = {}, tag?: number): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ identifier: 'home', dnsServers: ['127.0.30.1'], ddr: true, ...spec }), 'api', 0, tag);
}

describe('DdrTracker', () => {
  let answers: Map<string, () => Answer>;
  let verdicts: Map<string, string | null>;
  let asked: string[];
  let changes: Array<{ designated: string[]; why: string }>;
  let tracker: DdrTracker;
  let now: number;

  beforeEach(() => {
    vi.useFakeTimers();
    now = 1_000_000;
    vi.setSystemTime(now);
    answers = new Map([['127.0.30.1:53', () => reply([{ ttl: 300, rdata: UNBOUND_LIKE }])]]);
    verdicts = new Map();
    asked = [];
    changes = [];
    tracker = new DdrTracker({
      askServer: (_p, server) => {
        asked.push(server.label);
        const a = answers.get(server.label);
        return Promise.resolve(a ? a() : errorAnswer(RCODE.SERVFAIL));
      },
      verify: (_p, candidate) => Promise.resolve(verdicts.has(candidate.label) ? verdicts.get(candidate.label)! : null),
      onChange: (_p, designated: readonly Designated[], why) => changes.push({ designated: designated.map((d) => `${d.server.label} ${d.discovery}`), why }),
      log: createLogger('silent'),
      now: () => Date.now(),
    });
  });
  afterEach(() => {
    tracker.close();
    vi.useRealTimers();
  });

  const settle = async (ms = 0): Promise<void> => {
    await vi.advanceTimersByTimeAsync(ms);
  };

  it('asks nothing before start, then designates the verified DoT and DoH servers of the SVCB record', async () => {
    const home = pvd();
    tracker.track(home);
    await settle(60_000);
    expect(asked).toEqual([]);
    expect(tracker.view(home).state).toBe('checking');
    tracker.start();
    await settle();
    expect(asked).toEqual(['127.0.30.1:53']);
    expect(changes).toEqual([{ designated: ['tls://127.0.30.2:853#dns.test verified', 'https://127.0.30.2/dns-query#dns.test verified'], why: 'verified: dns.test covers 127.0.30.1' }]);
    const view = tracker.view(home);
    expect(view).toMatchObject({ state: 'verified', rejected: [], lastError: null });
    expect(view.designated[0]).toEqual({ address: 'tls://127.0.30.2:853#dns.test', transport: 'tls', authName: 'dns.test', discovery: 'verified', from: '127.0.30.1:53' });
    expect(tracker.designated(home)[0]!.expiresAt).toBe(now + 60_000 + 300_000);
    expect(view.nextCheckAt).toBe(new Date(now + 60_000 + 300_000).toISOString());
    expect([...tracker.counts()].map((c) => [c.result, c.value])).toEqual([['verified', 1]]);
  });

  it('re-checks when the TTL runs out and empties the list when the record is gone', async () => {
    const home = pvd();
    tracker.track(home);
    tracker.start();
    await settle();
    answers.set('127.0.30.1:53', () => reply([], RCODE.NXDOMAIN));
    await settle(299_000);
    expect(asked).toHaveLength(1);
    await settle(1_000);
    expect(asked).toHaveLength(2);
    expect(changes.at(-1)).toEqual({ designated: [], why: 'SVCB TTL ran out and _dns.resolver.arpa no longer answers' });
    expect(tracker.view(home).state).toBe('none');
    // NXDOMAIN: back-off from 30 s, doubling.
    await settle(30_000);
    expect(asked).toHaveLength(3);
    await settle(59_000);
    expect(asked).toHaveLength(3);
    await settle(1_000);
    expect(asked).toHaveLength(4);
  });

  it('clamps a short TTL to 5 s and backs off after failures, keeping designations until they expire', async () => {
    answers.set('127.0.30.1:53', () => reply([{ ttl: 1, rdata: UNBOUND_LIKE }]));
    const home = pvd();
    tracker.track(home);
    tracker.start();
    await settle();
    expect(tracker.view(home).nextCheckAt).toBe(new Date(now + 5_000).toISOString());
    answers.delete('127.0.30.1:53'); // SERVFAIL from now on
    await settle(5_000);
    expect(asked).toHaveLength(2);
    // Expired (TTL 1 s): dropped; the failure says so.
    expect(changes.at(-1)).toEqual({ designated: [], why: 'SVCB TTL ran out and _dns.resolver.arpa could not be asked: 127.0.30.1:53: SERVFAIL' });
    expect(tracker.view(home)).toMatchObject({ state: 'error', lastError: '127.0.30.1:53: SERVFAIL' });
    await settle(30_000);
    expect(asked).toHaveLength(3);
    await settle(60_000);
    expect(asked).toHaveLength(4);
    expect([...tracker.counts()].map((c) => [c.result, c.value])).toEqual([
      ['verified', 1],
      ['error', 3],
    ]);
  });

  it('keeps only verified servers unless the PvD is opportunistic, and §4.3 needs a private address equal to the resolver', async () => {
    // The DoT server fails the IP check; DoH verifies.
    verdicts.set('tls://127.0.30.2:853#dns.test', 'certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)');
    const home = pvd();
    tracker.track(home);
    tracker.start();
    await settle();
    expect(changes.at(-1)!.designated).toEqual(['https://127.0.30.2/dns-query#dns.test verified']);
    expect(tracker.view(home).rejected).toEqual([{ address: 'tls://127.0.30.2:853#dns.test', reason: 'certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)' }]);

    // Nothing verifies; strict: unverified, nothing used.
    verdicts.set('https://127.0.30.2/dns-query#dns.test', 'certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)');
    const strict = pvd({ identifier: 'strict', encryption: 'strict' });
    tracker.track(strict);
    await settle(1_000); // a PvD announced while running is asked a second later
    await settle();
    expect(tracker.view(strict)).toMatchObject({ state: 'unverified', designated: [] });

    // Opportunistic, but the designated resolver is at another address: rejected, with §4.3's reason.
    const opp = pvd({ identifier: 'opp', encryption: 'opportunistic' });
    tracker.track(opp);
    await settle(1_000); // a PvD announced while running is asked a second later
    await settle();
    expect(tracker.view(opp).state).toBe('unverified');
    expect(tracker.view(opp).rejected[0]!.reason).toMatch(/does not cover 127\.0\.30\.1 \(RFC 9462 §4\.2\); 127\.0\.30\.2 differs from 127\.0\.30\.1: opportunistic discovery is not allowed \(RFC 9462 §4\.3\)/);

    // Opportunistic, same (loopback) address: used without the IP check, unauthenticated with the cleartext fallback.
    answers.set('127.0.30.1:53', () => reply([{ ttl: 300, rdata: rdata(1, 'dns.test', [alpn('dot'), port(8853), ipv4hint('127.0.30.1')]) }]));
    verdicts.set('tls://127.0.30.1:8853#dns.test', 'certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)');
    const local = pvd({ identifier: 'local', encryption: 'opportunistic' });
    tracker.track(local);
    await settle(1_000); // a PvD announced while running is asked a second later
    await settle();
    expect(tracker.view(local)).toMatchObject({ state: 'opportunistic', designated: [{ address: 'tls://127.0.30.1:8853', discovery: 'opportunistic', authName: 'dns.test' }] });
    expect(tracker.designated(local)[0]!.server).toMatchObject({ authenticate: false, fallback: { label: '127.0.30.1:53' } });
    expect(changes.at(-1)!.why).toMatch(/^opportunistic: dns\.test at 127\.0\.30\.1/);
    // An opportunistic PvD already speaks unauthenticated TLS to its own address on 853: that designation adds nothing.
    answers.set('127.0.30.1:53', () => reply([{ ttl: 300, rdata: rdata(1, 'dns.test', [alpn('dot'), ipv4hint('127.0.30.1')]) }]));
    verdicts.set('tls://127.0.30.1:853#dns.test', 'certificate for dns.test does not cover 127.0.30.1 (RFC 9462 §4.2)');
    const own = pvd({ identifier: 'own', encryption: 'opportunistic' });
    expect(own.servers.map((s) => s.label)).toEqual(['tls://127.0.30.1:853']);
    tracker.track(own);
    await settle(1_000);
    await settle();
    expect(tracker.view(own)).toMatchObject({ state: 'unverified', designated: [], rejected: [{ address: 'tls://127.0.30.1:853', reason: "already one of the PvD's own servers" }] });
  });

  it('orders by SvcPriority, then server order; skips malformed records with a reason', async () => {
    answers.set('127.0.30.1:53', () =>
      reply([
        { ttl: 300, rdata: rdata(5, 'late.test', [alpn('dot'), ipv4hint('127.0.30.5')]) },
        { ttl: 300, rdata: rdata(1, 'bad.test', [ipv4hint('127.0.30.9'), alpn('dot')]) },
      ]),
    );
    answers.set('127.0.30.3:53', () => reply([{ ttl: 300, rdata: rdata(2, 'early.test', [alpn('dot'), ipv4hint('127.0.30.6')]) }]));
    const home = pvd({ dnsServers: ['127.0.30.1', '127.0.30.3'] });
    tracker.track(home);
    tracker.start();
    await settle();
    expect(tracker.view(home).designated.map((d) => [d.address, d.from])).toEqual([
      ['tls://127.0.30.6:853#early.test', '127.0.30.3:53'],
      ['tls://127.0.30.5:853#late.test', '127.0.30.1:53'],
    ]);
    expect(tracker.view(home).rejected).toEqual([{ address: '127.0.30.1:53', reason: expect.stringMatching(/bad\.test: keys out of order/) }]);
  });

  it('starts over a second after the cleartext servers change, and not for other updates', async () => {
    const home = pvd({}, 900);
    tracker.track(home);
    tracker.start();
    await settle();
    expect(changes).toHaveLength(1);
    tracker.track(pvd({ priority: 5 }, 900));
    await settle();
    expect(asked).toHaveLength(1);
    answers.set('127.0.30.4:53', () => reply([], RCODE.NXDOMAIN));
    const moved = pvd({ dnsServers: ['127.0.30.4'] }, 900);
    tracker.track(moved);
    expect(changes.at(-1)).toEqual({ designated: [], why: "the PvD's cleartext servers, encryption or source address changed: discovering again" });
    await settle(999);
    expect(asked).toEqual(['127.0.30.1:53']); // not within the first second of the change
    await settle(1);
    expect(asked).toEqual(['127.0.30.1:53', '127.0.30.4:53']);
    expect(tracker.view(moved).state).toBe('none');
    tracker.track(pvd({ dnsServers: ['127.0.30.4'], ddr: false }, 900));
    expect(tracker.view(moved).state).toBe('off');
  });

  it('rechecks at once, but not within 5 s of the last check', async () => {
    const home = pvd();
    tracker.track(home);
    tracker.start();
    await settle(10_000);
    tracker.recheck(home, 'captive portal opened');
    await settle();
    expect(asked).toHaveLength(2);
    tracker.recheck(home, 'again');
    await settle(4_000);
    expect(asked).toHaveLength(2);
    await settle(1_000);
    expect(asked).toHaveLength(3);
  });

  it('resolves TargetName through the same cleartext server when the record has no hints', async () => {
    answers.set('127.0.30.1:53', () => reply([{ ttl: 300, rdata: rdata(1, 'dns.test', [alpn('dot')]) }]));
    const seen: string[] = [];
    const t = new DdrTracker({
      askServer: (_p, server, msg) => {
        const qtype = msg.readUInt16BE(msg.length - 4);
        seen.push(`${server.label} ${qtype}`);
        if (qtype === TYPE.SVCB) return Promise.resolve(answers.get('127.0.30.1:53')!());
        if (qtype !== TYPE.A) return Promise.resolve(errorAnswer(RCODE.NOERROR));
        const head = Buffer.from(msg);
        head.writeUInt16BE(0x8180, 2);
        head.writeUInt16BE(1, 6);
        const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 127, 0, 30, 7]);
        const r = parseResponse(Buffer.concat([head, rr]), { id: 0, nameKey: wireKey('dns.test'), qtype: TYPE.A, qclass: 1 });
        if (!r.ok) throw new Error(r.reason);
        return Promise.resolve(r.answer);
      },
      verify: () => Promise.resolve(null),
      onChange: () => undefined,
      log: createLogger('silent'),
    });
    const home = pvd();
    t.track(home);
    t.start();
    await settle();
    expect(seen).toEqual(['127.0.30.1:53 64', '127.0.30.1:53 1', '127.0.30.1:53 28']);
    expect(t.view(home).designated.map((d) => d.address)).toEqual(['tls://127.0.30.7:853#dns.test']);
    t.close();
  });
});
