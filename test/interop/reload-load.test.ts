// Reload and restart under load, measured by Debian's dnsperf: 20 SIGHUPs
// (each with a changed configuration) during a steady run lose no query;
// SIGTERM during load answers or cleanly drops what is in flight and exits 0.
//
//   dnsperf ─▶ pvdns 127.0.0.98 ─▶ nsd 127.0.0.97 (load.test, with a wildcard: every name answers)

import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsperf, requirePrograms, startNsd, startPvdnsCli, type Nsd, type PvdnsCli } from './servers.js';

const ZONE = ['$ORIGIN load.test.', '$TTL 60', '@ SOA ns hostmaster 1 3600 600 86400 60', '@ NS ns', 'ns A 127.0.0.97', '* A 192.0.2.7', ''].join('\n');

let nsd: Nsd | undefined;
const started: PvdnsCli[] = [];

/** queries: a mix of names answered from the cache after the first time and names never seen. */
function queries(n: number): string {
  return Array.from({ length: n }, (_, i) => (i % 2 ? `hot${i % 50}.load.test A` : `cold${i}-${Math.random().toString(36).slice(2, 7)}.load.test A`)).join('\n') + '\n';
}

async function pvdns(): Promise<PvdnsCli> {
  const p = await startPvdnsCli(`
listen: ["127.0.0.98:0"]
http: { listen: null }
log: { level: info }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
captive: { probeIntervalS: 0 }
cache: { maxTtl: 3600 }
upstream: { timeoutMs: 1000, attempts: 1 }
pvds:
  - identifier: lan
    dnsServers: ["${nsd!.host}:${nsd!.port}"]
    default: true
    dns64: "off"
`);
  started.push(p);
  return p;
}

beforeAll(async () => {
  requirePrograms('dnsperf', 'nsd', 'nsd-checkconf', 'nsd-control');
  nsd = await startNsd({ 'load.test': ZONE }, '127.0.0.97');
});
afterAll(async () => {
  await Promise.all([...started.map((p) => p.stop()), nsd?.stop()]);
});

describe('reload and restart under load', () => {
  it('loses no query across 20 SIGHUPs during a steady dnsperf run', async () => {
    const p = await pvdns();
    const conf = readFileSync(p.configFile, 'utf8');
    const run = dnsperf(p, queries(20_000), ['-l', '6', '-Q', '2000', '-q', '50', '-t', '3']);
    for (let i = 1; i <= 20; i++) {
      await new Promise((r) => setTimeout(r, 250));
      // Each reload changes something: the cache limit, so the cache is made anew.
      writeFileSync(p.configFile, conf.replace('maxTtl: 3600', `maxTtl: ${3600 + i}`));
      p.signal('SIGHUP');
    }
    const r = await run;
    const reloads = p.logLines().filter((l) => l.msg === 'configuration reloaded').length;
    expect(reloads, p.logs()).toBe(20);
    expect(r.completed, r.text).toBeGreaterThan(5000);
    expect(r.lost, r.text).toBe(0);
    console.log(`[reload] 20 SIGHUPs: ${r.sent} sent, ${r.completed} completed, ${r.lost} lost, ${r.qps} qps`);
  }, 60_000);

  it('exits 0 on SIGTERM during load, answering or dropping what is in flight', async () => {
    const p = await pvdns();
    const run = dnsperf(p, queries(20_000), ['-l', '4', '-Q', '3000', '-q', '100', '-t', '2']);
    await new Promise((r) => setTimeout(r, 1500));
    p.signal('SIGTERM');
    const exit = await p.waitExit(5000);
    expect(exit, p.logs()).toEqual({ code: 0, signal: null });
    const r = await run;
    expect(r.completed, r.text).toBeGreaterThan(1000);
    console.log(`[reload] SIGTERM at 1.5 s: ${r.completed} completed, ${r.lost} lost after the exit`);
  }, 60_000);
});
