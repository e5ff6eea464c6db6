// A random-name flood, measured on the pvdns process itself: every name is a
// miss, half of them for a PvD whose server takes a second to answer, so
// upstream.maxInflight is reached. pvdns's resident memory stays bounded and
// levels off (the cache and the in-flight bound hold what it keeps), the excess is answered
// SERVFAIL at once and counted (pvdns_queries_shed_total), and a client asking
// an ordinary name keeps getting its answer.
//
//   dnsperf ─▶ pvdns 127.0.0.95 ─┬▶ nsd 127.0.0.94 (flood.test, a wildcard: every name answers)
//                                └▶ 127.0.0.93 (slow.test: answers after a second)

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { metricSum } from '../helpers/http.js';
import { dnsperf, requirePrograms, startNsd, startPvdnsCli, type Nsd, type PvdnsCli } from './servers.js';

const ZONE = ['$ORIGIN flood.test.', '$TTL 3600', '@ SOA ns hostmaster 1 3600 600 86400 3600', '@ NS ns', 'ns A 127.0.0.94', '* A 192.0.2.9', ''].join('\n');
const MAX_ENTRIES = 20_000;
const MAX_INFLIGHT = 2_000;
const FLOOD_S = 20;

let nsd: Nsd | undefined;
let pvdns: PvdnsCli | undefined;
let slow: FakeUpstream | undefined;

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) / 1024;
}

beforeAll(async () => {
  requirePrograms('dnsperf', 'nsd', 'nsd-checkconf', 'nsd-control');
  nsd = await startNsd({ 'flood.test': ZONE }, '127.0.0.94');
  slow = await new FakeUpstream(async (q) => {
    await new Promise((r) => setTimeout(r, 1000));
    return answer(q, [a(q, '192.0.2.10')]);
  }).start('127.0.0.93');
  pvdns = await startPvdnsCli(`
listen: ["127.0.0.95:0"]
http: { listen: "127.0.0.95:0" }
log: { level: info }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
captive: { probeIntervalS: 0 }
cache: { maxEntries: ${MAX_ENTRIES} }
upstream: { timeoutMs: 1500, attempts: 1, maxInflight: ${MAX_INFLIGHT} }
pvds:
  - identifier: lan
    dnsServers: ["${nsd.host}:${nsd.port}"]
    default: true
    dns64: "off"
  - identifier: slow
    dnsServers: ["${slow.address}"]
    dnsZones: ["slow.test"]
    default: false
    dns64: "off"
`);
}, 60_000);

afterAll(async () => {
  await Promise.all([pvdns?.stop(), nsd?.stop(), slow?.stop()]);
});

describe('a random-name flood', () => {
  it('keeps memory bounded, sheds the excess with a count, and still answers an ordinary client', async () => {
    const p = pvdns!;
    const at = { host: p.host, port: p.port };
    expect((await ask(at, 'steady.flood.test')).packet.answers[0]?.address).toBe('192.0.2.9');
    const baseMiB = rssMiB(p.pid);

    // Unique names, every other one under slow.test.
    const tag = Math.random().toString(36).slice(2, 8);
    const names = Array.from({ length: 1_200_000 }, (_, i) => `r${i}-${tag}.${i % 2 ? 'slow' : 'flood'}.test A`).join('\n') + '\n';
    const run = dnsperf(p, names, ['-n', '1', '-l', String(FLOOD_S), '-q', '10000', '-c', '4', '-t', '3']);

    const samples: number[] = [];
    let asked = 0;
    let answered = 0;
    const until = Date.now() + FLOOD_S * 1000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      samples.push(rssMiB(p.pid));
      asked++;
      // An ordinary client: a stub's retries (three tries, one second each).
      for (let tries = 0; tries < 3; tries++) {
        const r = await ask(at, 'steady.flood.test', 'A', { timeoutMs: 1000 }).catch(() => null);
        if (r !== null) {
          if (r.packet.answers[0]?.address === '192.0.2.9') answered++;
          break;
        }
      }
    }
    const r = await run;
    const shed = await metricSum(pvdns!.http!, 'pvdns_queries_shed_total');
    const cached = await metricSum(pvdns!.http!, 'pvdns_cache_entries');
    const peakMiB = Math.max(...samples);
    console.log(
      `[flood] ${r.sent} sent, ${r.completed} answered (${r.qps} qps), ${shed} shed; cache ${cached} entries; ` +
        `RSS ${baseMiB.toFixed(0)} MiB before, peak ${peakMiB.toFixed(0)} MiB; ordinary client ${answered}/${asked}`,
    );

    const trace = `RSS samples (MiB): ${samples.map((s) => s.toFixed(0)).join(' ')}`;
    expect(r.sent, r.text).toBeGreaterThan(100_000);
    expect(cached).toBeLessThanOrEqual(MAX_ENTRIES);
    expect(shed, 'the slow PvD held maxInflight queries, so some were shed').toBeGreaterThan(0);
    expect(shed, 'each shed query counted once').toBeLessThanOrEqual(r.completed);
    // Bounded: growing by 256 MiB over the run's ~1 million queries would take a leak of
    // ~250 bytes a query (measured here: ~120 MiB above the idle process, most of it the
    // V8 heap's high-water mark, which it keeps resident and raises in steps).
    expect(peakMiB - baseMiB, trace).toBeLessThan(256);
    // And not running away at the end: V8 raises its heap in steps of up to ~30 MiB, so only
    // a climb faster than that over the last two seconds counts.
    const last = samples.slice(-4);
    expect(Math.max(...last) - Math.min(...last), trace).toBeLessThan(48);
    expect(answered / asked).toBeGreaterThanOrEqual(0.9);
    expect(p.logLines().filter((l) => l.level === 50 || l.level === 60), p.logs()).toEqual([]);
  }, 120_000);
});
