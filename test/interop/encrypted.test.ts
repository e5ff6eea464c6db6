// pvdns's encrypted upstreams (DESIGN.md "Encrypted DNS", issue 16) against
// a real DNS over TLS and DNS over HTTPS server nobody here wrote: Debian's
// Unbound with certificates from a throwaway CA (tls.caFile), asked with
// Debian's dig first so a failure says whether Unbound or pvdns is at fault.
//
//   dig ─▶ pvdns 127.0.18.1 ─┬─ dot       tls://127.0.18.2#dns.test             ─▶ unbound 127.0.18.2 :853 :443
//                            ├─ dotr      127.0.18.2#dns.test (resolved's form)  ─▶     (local data)
//                            ├─ doh       https://127.0.18.2/dns-query#dns.test  ─▶
//                            ├─ addr      127.0.18.2 (strict: TLS, the address authenticated)
//                            ├─ big, bigdoh  DoT, DoH to 127.0.18.2: answers larger than 1232 octets
//                            ├─ slow      tls://127.0.18.8#dns.test (slow.test)  ─▶ the same unbound ─▶ slow server 127.0.18.7
//                            ├─ slowdoh   https://127.0.18.8/dns-query#dns.test  ─▶ the same
//                            ├─ badname   tls://127.0.18.3#dns.test ─▶ unbound, certificate for wrong.test
//                            ├─ stale     tls://127.0.18.4#dns.test ─▶ unbound, certificate expired in 2020
//                            ├─ untrusted[-doh] tls://, https://127.0.18.5…#dns.test ─▶ unbound, certificate from an unknown CA
//                            ├─ opp       127.0.18.6, opportunistic ─▶ nothing on :853; unbound cleartext on :53
//                            └─ off       127.0.18.6#dns.test, encryption off ─▶ the same, on :53
//
// A recording listener on port 53 of every address that serves only
// encrypted DNS notes any packet sent in the clear: strict mode must send none.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import { ask } from '../helpers/client.js';
import { getPvd } from '../helpers/http.js';
import { TEST_TOKEN } from '../helpers/pvdns.js';
import { dig, requirePrograms, startPvdnsCli, type DigResult, type PvdnsCli } from './servers.js';
import {
  addressFor,
  connectionsTo,
  DOH_PORT,
  DOT_PORT,
  encryptedDnsMissing,
  killConnections,
  startEncryptedUnbound,
  startRecorder,
  startSlowServer,
  testPki,
  type EncryptedUnbound,
  type Recorder,
  type SlowServer,
  type TestPki,
} from './tls-harness.js';

const PVDNS = '127.0.18.1';
const GOOD = '127.0.18.2';
const WRONG = '127.0.18.3';
const EXPIRED = '127.0.18.4';
const UNKNOWN = '127.0.18.5';
const CLEAR = '127.0.18.6';
const SLOW = '127.0.18.7';
const PIPE = '127.0.18.8';
/** How long the slow server holds back an answer for a name starting with "slow". */
const SLOW_MS = 800;
/** Makes names unique to this run: neither unbound's cache nor pvdns's answers them. */
const RUN = `r${process.pid}`;

const missing = encryptedDnsMissing();

describe.skipIf(missing !== null)(`pvdns with DoT and DoH servers against Unbound${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let pki: TestPki;
  let slow: SlowServer | undefined;
  const unbounds: EncryptedUnbound[] = [];
  let clear: EncryptedUnbound;
  const recorders = new Map<string, Recorder>();
  let pvdns: PvdnsCli | undefined;

  beforeAll(async () => {
    requirePrograms('dig', 'unbound', 'unbound-checkconf', 'openssl', 'ss');
    pki = await testPki({
      good: { dns: ['dns.test'], ips: [GOOD, PIPE] },
      wrongName: { dns: ['wrong.test'], ips: [WRONG] },
      expired: { dns: ['dns.test'], ips: [EXPIRED], expired: true },
      unknownCa: { dns: ['dns.test'], ips: [UNKNOWN], unknownCa: true },
    });
    slow = await startSlowServer(SLOW, SLOW_MS);
    const www = (zone: string, a: string): Record<string, string[]> => ({ [zone]: [`www.${zone}. 300 IN A ${a}`] });
    const big = (zone: string): Record<string, string[]> => ({
      [zone]: Array.from({ length: 6 }, (_, i) => `big.${zone}. 300 IN TXT "part ${i} ${'abcdefghij'.repeat(24)}"`),
    });
    const [good, wrong, expired, unknown, clearOne] = await Promise.all([
      startEncryptedUnbound({
        hosts: [GOOD, PIPE],
        leaf: pki.leaves.good!,
        localZones: {
          ...www('dot.test', '192.0.2.10'),
          ...www('dotr.test', '192.0.2.11'),
          ...www('doh.test', '192.0.2.12'),
          ...www('addr.test', '192.0.2.13'),
          // Six TXT records of 250 octets: more than a 1232-octet UDP answer holds, nothing for a stream.
          ...big('big.test'),
          ...big('bigdoh.test'),
        },
        forwardZones: { 'slow.test': slow, 'slowdoh.test': slow },
      }),
      startEncryptedUnbound({ hosts: [WRONG], leaf: pki.leaves.wrongName!, https: false, localZones: www('badname.test', '192.0.2.30') }),
      startEncryptedUnbound({ hosts: [EXPIRED], leaf: pki.leaves.expired!, https: false, localZones: www('stale.test', '192.0.2.31') }),
      startEncryptedUnbound({ hosts: [UNKNOWN], leaf: pki.leaves.unknownCa!, localZones: { ...www('untrusted.test', '192.0.2.32'), ...www('untrusted-doh.test', '192.0.2.33') } }),
      startEncryptedUnbound({
        hosts: [CLEAR],
        leaf: pki.leaves.good!,
        tls: false,
        https: false,
        cleartext: true,
        localZones: { ...www('opp.test', '192.0.2.60'), ...www('off.test', '192.0.2.70') },
      }),
    ]);
    unbounds.push(good, wrong, expired, unknown, clearOne);
    clear = clearOne;
    for (const host of [GOOD, PIPE, WRONG, EXPIRED, UNKNOWN]) recorders.set(host, await startRecorder(host, 53));
    const pvd = (id: string, servers: string[], extra = ''): string =>
      `  - identifier: ${id}\n    dnsServers: ${JSON.stringify(servers)}\n    dnsZones: [${id}.test]\n    noInternet: true\n    dns64: "off"\n${extra}`;
    // dns64 off and captive probes off: every query upstream is one a test asked.
    pvdns = await startPvdnsCli(`
listen: ["${PVDNS}:0"]
http: { listen: "${PVDNS}:0", token: "${TEST_TOKEN}" }
log: { level: debug }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
captive: { probeIntervalS: 0 }
tls: { caFile: "${pki.caFile}" }
upstream: { timeoutMs: 2500, attempts: 1, queryTimeoutMs: 5000 }
pvds:
${pvd('dot', [`tls://${GOOD}#dns.test`])}
${pvd('dotr', [`${GOOD}#dns.test`])}
${pvd('doh', [`https://${GOOD}/dns-query#dns.test`])}
${pvd('addr', [GOOD], '    encryption: strict\n')}
${pvd('big', [`tls://${GOOD}#dns.test`])}
${pvd('bigdoh', [`https://${GOOD}/dns-query#dns.test`])}
${pvd('slow', [`tls://${PIPE}#dns.test`])}
${pvd('slowdoh', [`https://${PIPE}/dns-query#dns.test`])}
${pvd('badname', [`tls://${WRONG}#dns.test`])}
${pvd('stale', [`tls://${EXPIRED}#dns.test`])}
${pvd('untrusted', [`tls://${UNKNOWN}#dns.test`])}
${pvd('untrusted-doh', [`https://${UNKNOWN}/dns-query#dns.test`])}
${pvd('opp', [CLEAR], '    encryption: opportunistic\n')}
${pvd('off', [`${CLEAR}#dns.test`], '    encryption: "off"\n')}
`);
  });

  afterAll(async () => {
    await Promise.all([pvdns?.stop(), ...unbounds.map((u) => u.stop()), slow?.close(), ...[...recorders.values()].map((r) => r.close())]);
    pki?.remove();
  });

  /** deaths names the servers that are no longer running: a test run after that cannot be trusted. */
  const deaths = (): string =>
    unbounds
      .filter((s) => s.exited())
      .map((s) => `\n  !! ${s.name} ${s.host} is no longer running (${JSON.stringify(s.exited())})${s.logs()}`)
      .join('');
  /** why is the message shown when an assertion on pvdns's answer fails: the command, its output, pvdns's log. */
  const why = (r: DigResult): string => `${r.command}\n${r.text}${deaths()}${pvdns!.logs()}`;
  const askPvdns = (...args: string[]): Promise<DigResult> => dig(pvdns!, ['+time=6', ...args]);
  const server0 = async (id: string): Promise<PvdView['servers'][number]> => {
    const r = await getPvd(pvdns!.http!, id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.servers[0]!;
  };

  /** metric sums the samples of `name` whose labels include `labels` (0 when none). */
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

  describe('Unbound itself, asked with dig (if these fail, the harness or Unbound is at fault, not pvdns)', () => {
    const tlsCa = (): string => `+tls-ca=${pki.caFile}`;

    it('answers over DNS over TLS with a certificate for dns.test from the test CA', async () => {
      const r = await dig({ host: GOOD, port: DOT_PORT }, ['+tls', tlsCa(), '+tls-hostname=dns.test', 'www.dot.test', 'A']);
      expect(r.status, r.text).toBe('NOERROR');
      expect(r.text).toContain('(TLS)');
      expect(r.answer.map((a) => a.data)).toEqual(['192.0.2.10']);
    });

    it('answers over DNS over HTTPS at /dns-query', async () => {
      const r = await dig({ host: GOOD, port: DOH_PORT }, ['+https=/dns-query', tlsCa(), '+tls-hostname=dns.test', 'www.doh.test', 'A']);
      expect(r.status, r.text).toBe('NOERROR');
      expect(r.text).toContain('(HTTPS)');
      expect(r.answer.map((a) => a.data)).toEqual(['192.0.2.12']);
    });

    it('serves the bad certificates: dig answers unverified, and refuses them verified as dns.test', async () => {
      for (const host of [WRONG, EXPIRED, UNKNOWN]) {
        const open = await dig({ host, port: DOT_PORT }, ['+tls', 'localhost', 'A']);
        expect(open.status, `${host}: ${open.text}`).toBe('NOERROR');
        await expect(dig({ host, port: DOT_PORT }, ['+tls', tlsCa(), '+tls-hostname=dns.test', 'localhost', 'A']), host).rejects.toThrow(/no reply/);
      }
      // The wrong-name certificate is otherwise good: verified by its address, dig takes it.
      const byAddress = await dig({ host: WRONG, port: DOT_PORT }, ['+tls', tlsCa(), 'www.badname.test', 'A']);
      expect(byAddress.status, byAddress.text).toBe('NOERROR');
    });
  });

  describe('answers through DoT and DoH', () => {
    const cases: Array<[string, string, 'tls' | 'https', string]> = [
      ['dot', 'tls://ADDR#NAME', 'tls', '192.0.2.10'],
      ['dotr', 'ADDR#NAME', 'tls', '192.0.2.11'],
      ['doh', 'https://ADDR/dns-query#NAME', 'https', '192.0.2.12'],
      ['addr', 'ADDR in a strict PvD (authenticated by the address)', 'tls', '192.0.2.13'],
    ];
    for (const [id, form, transport, address] of cases) {
      it(`${form}: the answer comes, /v1/pvds and the metrics show it encrypted and authenticated`, async () => {
        const r = await askPvdns(`www.${id}.test`, 'A');
        expect(r.status, why(r)).toBe('NOERROR');
        expect(r.answer.map((a) => a.data), why(r)).toEqual([address]);
        const s = await server0(id);
        expect(s, JSON.stringify(s)).toMatchObject({
          transport,
          authName: id === 'addr' ? null : 'dns.test',
          encryption: transport,
          authenticated: true,
          encryptionError: null,
          fallback: null,
          state: 'operational',
        });
        expect(await metric('pvdns_upstream_requests_total', { pvd: id, transport })).toBeGreaterThanOrEqual(1);
        expect(await metric('pvdns_upstream_requests_total', { pvd: id, transport: 'udp' })).toBe(0);
        expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: id, result: 'ok' })).toBe(1);
        expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: id, result: 'failed' })).toBe(0);
      });
    }

    for (const id of ['big', 'bigdoh']) {
      it(`an answer larger than a UDP message comes whole over ${id === 'big' ? 'DoT' : 'DoH'}`, async () => {
        const r = await askPvdns('+tcp', `big.${id}.test`, 'TXT');
        expect(r.status, why(r)).toBe('NOERROR');
        expect(r.answer, why(r)).toHaveLength(6);
        expect(r.msgSize).toBeGreaterThan(1232);
      });
    }
  });

  describe('strict mode fails closed: SERVFAIL with the reason, nothing in the clear', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['badname', 'a certificate for another name', /certificate name mismatch: expected dns\.test \(certificate is for wrong\.test/],
      ['stale', 'an expired certificate', /certificate has expired/],
      ['untrusted', 'a certificate from an unknown CA (DoT)', /certificate signed by an unknown authority/],
      ['untrusted-doh', 'a certificate from an unknown CA (DoH)', /certificate signed by an unknown authority/],
    ];
    for (const [id, what, reason] of cases) {
      it(`${what} → SERVFAIL with an EDE naming the PvD and the reason`, async () => {
        const started = Date.now();
        const r = await askPvdns(`www.${id}.test`, 'A');
        expect(r.status, why(r)).toBe('SERVFAIL');
        expect(r.answer).toEqual([]);
        expect(r.ede, why(r)).toMatch(new RegExp(`pvd ${id}\\b`));
        expect(r.ede, why(r)).toMatch(reason);
        // A certificate refused is known at once: no waiting for a timeout.
        expect(Date.now() - started, why(r)).toBeLessThan(2000);
        const s = await server0(id);
        expect(s.encryption, JSON.stringify(s)).not.toBe('cleartext');
        expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: id, result: 'failed' }), JSON.stringify(s)).toBeGreaterThanOrEqual(1);
        expect(await metric('pvdns_upstream_requests_total', { pvd: id, transport: 'udp' })).toBe(0);
      });
    }
  });

  describe('one connection, pipelined, answered out of order', () => {
    /**
     * burst asks `count` names of `zone` at once, every fifth held back SLOW_MS by the server
     * behind unbound (fewer than the 32 queries unbound works on at once per stream, so unbound
     * itself never stalls the rest), and checks every answer and that the fast ones all came
     * before the first slow one: the stream answered them out of order.
     */
    async function burst(count: number, zone: string): Promise<void> {
      const names = Array.from({ length: count }, (_, i) => (i % 5 === 0 ? `slow${i}-${RUN}.${zone}` : `n${i}-${RUN}.${zone}`));
      const t0 = performance.now();
      const replies = await Promise.all(
        names.map(async (name) => {
          const r = await ask(pvdns!, name, 'A', { timeoutMs: 6000 }).catch((err: Error) => err);
          return { name, r, ms: performance.now() - t0 };
        }),
      );
      const wrong = replies.filter(({ name, r }) => {
        if (r instanceof Error) return true;
        const answers = r.packet.answers.map((a) => (a as { address?: string }).address);
        return r.packet.header.rcode !== 0 || answers.length !== 1 || answers[0] !== addressFor(name);
      });
      // unbounds[0] serves PIPE: its side of the stream is in its log's tail.
      expect(wrong.map(({ name, r }) => `${name}: ${r instanceof Error ? r.message : `rcode ${r.packet.header.rcode} ${JSON.stringify(r.packet.answers)}`}`), `${pvdns!.logs()}${unbounds[0]!.logs()}`).toEqual([]);
      const fast = replies.filter((x) => !x.name.startsWith('slow')).map((x) => x.ms);
      const held = replies.filter((x) => x.name.startsWith('slow')).map((x) => x.ms);
      expect(Math.max(...fast), `fast answers took up to ${Math.max(...fast).toFixed(0)} ms, slow ones from ${Math.min(...held).toFixed(0)} ms`).toBeLessThan(Math.min(...held));
      expect(Math.min(...held)).toBeGreaterThanOrEqual(SLOW_MS - 50);
    }

    it('100 queries at once are all answered right over one TLS connection, the fast ones before the slow ones', async () => {
      await burst(100, 'slow.test');
      expect(await connectionsTo(PIPE, DOT_PORT), 'TCP connections to the DoT server').toBe(1);
      expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: 'slow' }), 'TLS handshakes').toBe(1);
      expect(await metric('pvdns_upstream_requests_total', { pvd: 'slow', transport: 'tls' })).toBe(100);
    });

    it('DoH: 50 queries at once are all answered right over one HTTP/2 connection, the fast ones before the slow ones', async () => {
      await burst(50, 'slowdoh.test');
      expect(await connectionsTo(PIPE, DOH_PORT), 'TCP connections to the DoH server').toBe(1);
      expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: 'slowdoh' }), 'TLS handshakes').toBe(1);
      expect(await metric('pvdns_upstream_requests_total', { pvd: 'slowdoh', transport: 'https' })).toBe(50);
    });

    // The connection is reset under the carrier (ss -K) while unbound still waits on the slow
    // server; the carrier reconnects and asks each outstanding query once more (RFC 7766 §6.2.1.1
    // lets a client retry queries lost with their connection).
    for (const [id, zone, port, label] of [['slow', 'slow.test', DOT_PORT, 'TLS'], ['slowdoh', 'slowdoh.test', DOH_PORT, 'HTTP/2']] as const) {
      it(`a ${label} connection killed with queries in flight: they are asked again on a new one and answered`, async () => {
        const names = Array.from({ length: 10 }, (_, i) => `slowk${i}-${RUN}.${zone}`);
        const pending = Promise.all(names.map((name) => ask(pvdns!, name, 'A', { timeoutMs: 6000 }).catch((err: Error) => err)));
        await new Promise((r) => setTimeout(r, SLOW_MS / 3));
        expect(slow!.received.get(names[0]!.toLowerCase()), 'the queries reached the slow server before the kill').toBeGreaterThanOrEqual(1);
        const before = await metric('pvdns_upstream_tls_handshakes_total', { pvd: id });
        expect(await connectionsTo(PIPE, port), 'connections before the kill').toBe(1);
        await killConnections(PIPE, port);
        const replies = await pending;
        const wrong = replies
          .map((r, i) => [names[i]!, r] as const)
          .filter(([name, r]) => r instanceof Error || r.packet.header.rcode !== 0 || (r.packet.answers[0] as { address?: string } | undefined)?.address !== addressFor(name));
        expect(wrong.map(([name, r]) => `${name}: ${r instanceof Error ? r.message : `rcode ${r.packet.header.rcode}`}`), pvdns!.logs()).toEqual([]);
        expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: id }), 'one new connection').toBe(before + 1);
        expect(await connectionsTo(PIPE, port)).toBe(1);
      });
    }
  });

  describe('opportunistic and off', () => {
    it('opportunistic with nothing on port 853: the answer comes in the clear, and /v1/pvds says so', async () => {
      const r = await askPvdns('www.opp.test', 'A');
      expect(r.status, why(r)).toBe('NOERROR');
      expect(r.answer.map((a) => a.data), why(r)).toEqual(['192.0.2.60']);
      const s = await server0('opp');
      expect(s, JSON.stringify(s)).toMatchObject({ transport: 'tls', encryption: 'cleartext', fallback: `${CLEAR}:53` });
      expect(s.encryptionError, JSON.stringify(s)).toEqual(expect.any(String));
      expect(await metric('pvdns_upstream_requests_total', { pvd: 'opp', transport: 'udp' })).toBeGreaterThanOrEqual(1);
      expect((await clear.queries()).filter((q) => q.name === 'www.opp.test')).toHaveLength(1);
    });

    it('encryption off with ADDR#NAME: asked in the clear on port 53', async () => {
      const r = await askPvdns('www.off.test', 'A');
      expect(r.status, why(r)).toBe('NOERROR');
      expect(r.answer.map((a) => a.data), why(r)).toEqual(['192.0.2.70']);
      const s = await server0('off');
      expect(s, JSON.stringify(s)).toMatchObject({ address: `${CLEAR}:53`, transport: 'udp', encryption: null, fallback: null });
      expect(await metric('pvdns_upstream_requests_total', { pvd: 'off', transport: 'udp' })).toBe(1);
      expect(await metric('pvdns_upstream_tls_handshakes_total', { pvd: 'off' })).toBe(0);
      expect((await clear.queries()).filter((q) => q.name === 'www.off.test')).toHaveLength(1);
    });
  });

  it('after all of it, not one packet reached port 53 of an encrypted-only server', async () => {
    // Give late retries and health probes a moment to show themselves.
    await new Promise((r) => setTimeout(r, 500));
    const seen = [...recorders.entries()].flatMap(([host, rec]) => rec.seen.map((p) => `${p.proto} ${p.from} → ${host}:53 (${p.bytes} octets)`));
    expect(seen, pvdns!.logs()).toEqual([]);
  });
});
