// Discovery of Designated Resolvers (RFC 9462, src/ddr) against Debian's
// Unbound 1.17: cleartext Unbounds whose local data holds the
// `_dns.resolver.arpa` SVCB record (written with Unbound's "key7" for
// dohpath), and Unbounds serving DoT and DoH with certificates from a
// throwaway CA (tls.caFile). Each PvD's zone has a marker name (m.ID.test)
// whose TXT says which server answered: "clear" or "encrypted".
//
//   dig ─▶ pvdns 127.0.30.10
//     verified  127.0.30.1 (SVCB → dns.test @127.0.30.2, dot+h2)   ─▶ unbound 127.0.30.2 :853 :443 (SAN dns.test, 127.0.30.1, .6)
//     noip      127.0.30.3 (SVCB → dns.test @127.0.30.4, dot)      ─▶ unbound 127.0.30.4 :853 (SAN dns.test, 127.0.30.4 only)
//     noip-opp  the same, encryption: opportunistic (§4.3: the address differs → rejected)
//     opp       127.0.30.5, encryption: opportunistic (SVCB → dns.test @127.0.30.5, h2) ─▶ the same unbound's :443 (SAN dns.test only)
//     ttl       127.0.30.6 (SVCB TTL 5 → 127.0.30.2, dot); restarted without the record
//     dies      127.0.30.7 (SVCB TTL 5 → dns.test @127.0.30.8, dot) ─▶ unbound 127.0.30.8, then stopped

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import { eventually, getPvd } from '../helpers/http.js';
import { TEST_TOKEN } from '../helpers/pvdns.js';
import { dig, requirePrograms, startPvdnsCli, type PvdnsCli } from './servers.js';
import { encryptedDnsMissing, startEncryptedUnbound, testPki, type EncryptedUnbound, type Leaf, type TestPki } from './tls-harness.js';

const PVDNS = '127.0.30.10';
const C_VERIFIED = '127.0.30.1';
const E_GOOD = '127.0.30.2';
const C_NOIP = '127.0.30.3';
const E_NOIP = '127.0.30.4';
const OPP = '127.0.30.5';
const C_TTL = '127.0.30.6';
const C_DIES = '127.0.30.7';
const E_DIES = '127.0.30.8';

const missing = encryptedDnsMissing();

const svcb = (ttl: number, params: string): string => `_dns.resolver.arpa. ${ttl} IN SVCB 1 dns.test. ${params}`;
const marker = (id: string, text: string): Record<string, string[]> => ({ [`${id}.test`]: [`m.${id}.test. 0 IN TXT "${text}"`] });

describe.skipIf(missing !== null)(`DDR against Unbound${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let pki: TestPki<'good' | 'noIp' | 'nameOnly' | 'dies'>;
  const unbounds = new Set<EncryptedUnbound>();
  let pvdns: PvdnsCli | undefined;
  let cTtl: EncryptedUnbound;
  let eDies: EncryptedUnbound;

  const clearUnbound = (host: string, records: string[], id: string): Promise<EncryptedUnbound> =>
    startEncryptedUnbound({
      hosts: [host],
      leaf: pki.leaves.good,
      tls: false,
      https: false,
      cleartext: true,
      // Without records, resolver.arpa is still a static zone here: _dns.resolver.arpa is NXDOMAIN.
      localZones: { 'resolver.arpa': records, ...marker(id, 'clear') },
    });
  const encryptedUnbound = (host: string, leaf: Leaf, ids: string[], https = true): Promise<EncryptedUnbound> =>
    startEncryptedUnbound({ hosts: [host], leaf, https, localZones: Object.assign({}, ...ids.map((id) => marker(id, 'encrypted'))) as Record<string, string[]> });

  beforeAll(async () => {
    requirePrograms('dig', 'unbound', 'unbound-checkconf', 'openssl');
    pki = await testPki({
      good: { dns: ['dns.test'], ips: [C_VERIFIED, C_TTL] },
      noIp: { dns: ['dns.test'], ips: [E_NOIP] },
      nameOnly: { dns: ['dns.test'] },
      dies: { dns: ['dns.test'], ips: [C_DIES] },
    });
    const started = await Promise.all([
      clearUnbound(C_VERIFIED, [svcb(300, `alpn=dot,h2 ipv4hint=${E_GOOD} key7=/dns-query{?dns}`)], 'verified'),
      encryptedUnbound(E_GOOD, pki.leaves.good, ['verified', 'ttl']),
      startEncryptedUnbound({
        hosts: [C_NOIP],
        leaf: pki.leaves.good,
        tls: false,
        https: false,
        cleartext: true,
        localZones: { 'resolver.arpa': [svcb(300, `alpn=dot ipv4hint=${E_NOIP}`)], ...marker('noip', 'clear'), ...marker('noip-opp', 'clear') },
      }),
      encryptedUnbound(E_NOIP, pki.leaves.noIp, ['noip', 'noip-opp'], false),
      // One Unbound in the clear on :53 and DoH on :443 at the same address, its certificate for dns.test only.
      startEncryptedUnbound({
        hosts: [OPP],
        leaf: pki.leaves.nameOnly,
        tls: false,
        cleartext: true,
        localZones: { 'resolver.arpa': [svcb(300, `alpn=h2 ipv4hint=${OPP} key7=/dns-query{?dns}`)], ...marker('opp', 'same unbound') },
      }),
      clearUnbound(C_TTL, [svcb(5, `alpn=dot ipv4hint=${E_GOOD}`)], 'ttl'),
      clearUnbound(C_DIES, [svcb(5, `alpn=dot ipv4hint=${E_DIES}`)], 'dies'),
      encryptedUnbound(E_DIES, pki.leaves.dies, ['dies'], false),
    ]);
    for (const u of started) unbounds.add(u);
    cTtl = started[5];
    eDies = started[7];
    const pvd = (id: string, server: string, extra = ''): string =>
      `  - identifier: ${id}\n    dnsServers: ["${server}"]\n    dnsZones: [${id}.test]\n    noInternet: true\n    dns64: "off"\n    ddr: true\n${extra}`;
    // dns64, captive probes and the cache off: every query upstream is one a test asked, answered fresh.
    pvdns = await startPvdnsCli(`
listen: ["${PVDNS}:0"]
http: { listen: "${PVDNS}:0", token: "${TEST_TOKEN}" }
log: { level: debug }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
captive: { probeIntervalS: 0 }
cache: { maxEntries: 0 }
tls: { caFile: "${pki.caFile}" }
upstream: { timeoutMs: 1000, attempts: 3, queryTimeoutMs: 4000 }
pvds:
${pvd('verified', C_VERIFIED)}
${pvd('noip', C_NOIP)}
${pvd('noip-opp', C_NOIP, '    encryption: opportunistic\n')}
${pvd('opp', OPP, '    encryption: opportunistic\n')}
${pvd('ttl', C_TTL)}
${pvd('dies', C_DIES)}
`);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([pvdns?.stop(), ...[...unbounds].map((u) => u.stop())]);
    pki?.remove();
  });

  const context = (): string =>
    `${[...unbounds]
      .filter((s) => s.exited())
      .map((s) => `\n  !! ${s.name} ${s.host} is no longer running${s.logs()}`)
      .join('')}${pvdns?.logs() ?? ''}`;
  const ddrOf = async (id: string): Promise<PvdView['ddr']> => {
    const r = await getPvd(pvdns!.http!, id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.ddr;
  };
  const waitState = async (id: string, ok: (d: PvdView['ddr']) => boolean, what: string, ms = 10_000): Promise<PvdView['ddr']> => {
    let last: PvdView['ddr'] | undefined;
    await eventually(`${id}: ${what}`, async () => ok((last = await ddrOf(id))), ms, () => `${JSON.stringify(last)}${context()}`);
    return last!;
  };
  /** marker asks pvdns for the PvD's marker name: "clear" or "encrypted" says which server answered. */
  const markerOf = async (id: string): Promise<string> => {
    const r = await dig(pvdns!, ['+time=6', `m.${id}.test`, 'TXT']);
    expect(r.status, `${r.text}${context()}`).toBe('NOERROR');
    return r.answer.map((a) => a.data.replace(/"/g, '')).join();
  };
  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const text = await (await fetch(`${pvdns!.http}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
    }
    return sum;
  }

  it('Unbound serves the SVCB record written with key7 as RFC 9461 dohpath (key 7)', async () => {
    const r = await dig({ host: C_VERIFIED, port: 53 }, ['_dns.resolver.arpa', 'SVCB']);
    expect(r.status, r.text).toBe('NOERROR');
    expect(r.answer[0]?.data).toBe(`1 dns.test. alpn="dot,h2" ipv4hint=${E_GOOD} key7="/dns-query{?dns}"`);
  });

  it('(a) upgrades to the verified designated resolver: the marker comes from the encrypted Unbound over DoT', async () => {
    const ddr = await waitState('verified', (d) => d.state === 'verified', 'verified designation');
    expect(ddr.designated).toEqual([
      { address: `tls://${E_GOOD}:853#dns.test`, transport: 'tls', authName: 'dns.test', discovery: 'verified', from: `${C_VERIFIED}:53` },
      { address: `https://${E_GOOD}/dns-query#dns.test`, transport: 'https', authName: 'dns.test', discovery: 'verified', from: `${C_VERIFIED}:53` },
    ]);
    expect(ddr.rejected).toEqual([]);
    const before = await metric('pvdns_upstream_requests_total', { pvd: 'verified', transport: 'tls' });
    expect(await markerOf('verified')).toBe('encrypted');
    expect(await metric('pvdns_upstream_requests_total', { pvd: 'verified', transport: 'tls' })).toBeGreaterThan(before);
    expect(await metric('pvdns_ddr_discoveries_total', { pvd: 'verified', result: 'verified' })).toBeGreaterThanOrEqual(1);
    const line = pvdns!.logLines().find((l) => l.msg === 'designated resolvers changed' && l.pvd === 'verified');
    expect(line?.why).toBe(`verified: dns.test covers ${C_VERIFIED}`);
  });

  it('(b) a certificate without the resolver\'s address is not used; opportunistic discovery only at the same private or local address', async () => {
    const strict = await waitState('noip', (d) => d.state === 'unverified', 'unverified');
    expect(strict.designated).toEqual([]);
    expect(strict.rejected).toEqual([{ address: `tls://${E_NOIP}:853#dns.test`, reason: `certificate for dns.test does not cover ${C_NOIP} (RFC 9462 §4.2)` }]);
    expect(await markerOf('noip')).toBe('clear');
    expect(await metric('pvdns_ddr_discoveries_total', { pvd: 'noip', result: 'rejected' })).toBeGreaterThanOrEqual(1);

    // encryption: opportunistic, but the designated resolver is at another address than the cleartext one (§4.3).
    const oppElsewhere = await waitState('noip-opp', (d) => d.state === 'unverified', 'unverified');
    expect(oppElsewhere.rejected).toEqual([
      {
        address: `tls://${E_NOIP}:853#dns.test`,
        reason: `certificate for dns.test does not cover ${C_NOIP} (RFC 9462 §4.2); ${E_NOIP} differs from ${C_NOIP}: opportunistic discovery is not allowed (RFC 9462 §4.3)`,
      },
    ]);

    // encryption: opportunistic, DoH at the cleartext resolver's own loopback address: used without the address check.
    const opp = await waitState('opp', (d) => d.state === 'opportunistic', 'opportunistic');
    expect(opp.designated).toEqual([{ address: `https://${OPP}/dns-query`, transport: 'https', authName: 'dns.test', discovery: 'opportunistic', from: `${OPP}:53` }]);
    const before = await metric('pvdns_upstream_requests_total', { pvd: 'opp', transport: 'https' });
    expect(await markerOf('opp')).toBe('same unbound');
    expect(await metric('pvdns_upstream_requests_total', { pvd: 'opp', transport: 'https' })).toBeGreaterThan(before);
  });

  it('(c) when the SVCB TTL runs out and the record is gone, goes back to the PvD\'s own server', async () => {
    await waitState('ttl', (d) => d.state === 'verified', 'verified designation');
    expect(await markerOf('ttl')).toBe('encrypted');
    // The cleartext Unbound again, without the record: restarted just after a check, so the next (5 s on) finds it running.
    const checked = (await ddrOf('ttl')).checkedAt;
    await waitState('ttl', (d) => d.checkedAt !== checked, 'the next check', 10_000);
    unbounds.delete(cTtl);
    await cTtl.stop();
    unbounds.add(await clearUnbound(C_TTL, [], 'ttl'));
    const after = await waitState('ttl', (d) => d.designated.length === 0 && d.state !== 'verified', 'designation gone', 15_000);
    expect(after.state).toBe('none');
    expect(await markerOf('ttl')).toBe('clear');
    const whys = pvdns!
      .logLines()
      .filter((l) => l.msg === 'designated resolvers changed' && l.pvd === 'ttl')
      .map((l) => l.why);
    expect(whys.at(-1)).toBe('SVCB TTL ran out and _dns.resolver.arpa no longer answers');
  });

  it('(d) when the designated resolver dies, queries go to the PvD\'s own cleartext server, then the designation is dropped', async () => {
    await waitState('dies', (d) => d.state === 'verified', 'verified designation');
    expect(await markerOf('dies')).toBe('encrypted');
    unbounds.delete(eDies);
    await eDies.stop();
    // At once, through the pool: the designated server fails, the PvD's own answers (never another PvD's: only it has m.dies.test).
    expect(await markerOf('dies')).toBe('clear');
    // When the TTL runs out, verification fails and the designation goes.
    const after = await waitState('dies', (d) => d.designated.length === 0, 'designation dropped', 15_000);
    expect(after.state).toBe('unverified');
    expect(after.rejected).toEqual([{ address: `tls://${E_DIES}:853#dns.test`, reason: `tls://${E_DIES}:853#dns.test: connection refused` }]);
    expect(await markerOf('dies')).toBe('clear');
  });
});
