// PvD files are applied promptly even while a file keeps being rewritten:
// a writer rewrites one file every 30 ms for 2 s, each version with its own
// server and zone, in place (truncated, then written in three chunks with a
// pause between them, so pvdns can read it half-written) or by rename (a
// temporary file renamed over it). The time from each complete write to
// the registry holding that version (or a later one) is measured from the
// registry's own events, so it is exact; the figures are printed. No
// half-written version may ever be applied or reported as a bad file.

import { closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { App } from '../../src/app.js';
import { configSchema } from '../../src/config/schema.js';
import type { PvdView } from '../../src/pvd/view.js';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';

/** Each upstream answers A queries with the address 192.0.2.<last octet of its own address>. */
function upstream(host: string): FakeUpstream {
  const octet = host.split('.').at(-1)!;
  return new FakeUpstream((q) => answer(q, [a(q, `192.0.2.${octet}`, 300)]));
}

const wifi = upstream('127.0.0.140');
const vpnA = upstream('127.0.0.141');
const vpnB = upstream('127.0.0.142');
const all = [wifi, vpnA, vpnB];

/** How long the writer writes, and how often. */
const RUN_MS = 2000;
const EVERY_MS = 30;
/** The targets: 100 ms (issue 15), with room for a loaded 2-core CI machine in the worst case. */
const P50_MS = 100;
const WORST_MS = 250;

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

describe('PvD files are applied within 100 ms of a complete write, even while rewritten every 30 ms', () => {
  const dirs: string[] = [];
  let app: App | null = null;

  beforeAll(async () => {
    await wifi.start('127.0.0.140');
    await vpnA.start('127.0.0.141');
    await vpnB.start('127.0.0.142');
  });
  afterEach(async () => {
    await app?.stop();
    app = null;
  });
  afterAll(async () => {
    await Promise.all(all.map((u) => u.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** version is the i-th content of the file: its own zone, and its server alternating between the two upstreams. */
  const version = (i: number): { identifier: string; dnsServers: string[]; dnsZones: string[]; noInternet: boolean } => ({
    identifier: 'vpn.example',
    dnsServers: [i % 2 === 0 ? vpnA.address : vpnB.address],
    dnsZones: [`v${i}.example`],
    noInternet: true,
  });

  /** versionOf says which version the registry's PvD is, by its zone. */
  const versionOf = (zones: readonly string[]): number => {
    const m = /^v(\d+)\.example$/.exec(zones[0] ?? '');
    if (!m || zones.length !== 1) throw new Error(`not a complete version: ${JSON.stringify(zones)}`);
    return Number(m[1]);
  };

  it.each(['in place', 'by rename'] as const)('rewritten %s', async (how) => {
    const dir = mkdtempSync(join(tmpdir(), `pvdns-prompt-${process.pid}-`));
    dirs.push(dir);
    const file = join(dir, 'vpn.json');
    writeFileSync(file, JSON.stringify(version(0), null, 2));
    const logs: LogLine[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
    const cfg = configSchema.parse({
      listen: ['127.0.0.1:0'],
      http: { listen: '127.0.0.1:0' },
      log: { level: 'info' },
      upstream: { timeoutMs: 1000, attempts: 2 },
      pvdSources: { host: false, directory: dir },
      captive: { probeIntervalS: 0 },
      pvds: [{ identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10 }],
    });
    app = new App(cfg, { configFile: null, log });
    await app.start();
    const { dns, http } = app.addresses();

    // Every version the registry takes, and when: what a query is routed by from then on.
    const applied: Array<{ v: number; at: number }> = [];
    const problems: string[] = [];
    const pvds = app.pvds;
    pvds.on('changed', () => {
      const p = pvds.get('vpn.example');
      if (p === undefined) return void problems.push('the PvD was withdrawn');
      try {
        applied.push({ v: versionOf(p.dnsZones), at: performance.now() });
      } catch (err) {
        problems.push((err as Error).message);
      }
    });

    // The writer: a version every EVERY_MS (from its start, so a slow write does not slow the pace).
    const written: number[] = [0]; // when each version's write was complete; version 0 was there at start
    const started = performance.now();
    for (let i = 1; performance.now() - started < RUN_MS; i++) {
      const text = JSON.stringify(version(i), null, 2);
      if (how === 'in place') {
        // As a program writing without a temporary file: truncated, then written in three chunks
        // with pauses of 0 to 12 ms (so the file is whole for as little as 6 ms of the 30), so
        // pvdns's reads fall between them.
        const fd = openSync(file, 'w');
        const third = Math.ceil(text.length / 3);
        for (let at = 0; at < text.length; at += third) {
          writeSync(fd, text.slice(at, at + third));
          if (at + third < text.length) await sleep((i % 4) * 4);
        }
        closeSync(fd);
      } else {
        writeFileSync(join(dir, '.vpn.json.tmp'), text);
        renameSync(join(dir, '.vpn.json.tmp'), file);
      }
      written[i] = performance.now();
      await sleep(Math.max(0, started + (i + 1) * EVERY_MS - performance.now()));
    }
    const last = written.length - 1;
    const deadline = performance.now() + 3000;
    while (applied.at(-1)?.v !== last && performance.now() < deadline) await sleep(10);

    // Each version's lag: from its complete write to the registry holding it or a later one.
    const lags = written.slice(1).map((t, k) => {
      const seen = applied.find((x) => x.v >= k + 1 && x.at >= t);
      return seen === undefined ? Infinity : seen.at - t;
    });
    const sorted = [...lags].sort((x, y) => x - y);
    const p50 = sorted[Math.floor(sorted.length / 2)]!;
    const p90 = sorted[Math.floor(sorted.length * 0.9)]!;
    const worst = sorted.at(-1)!;
    console.log(
      `PvD file rewritten ${how} every ${EVERY_MS} ms for ${RUN_MS} ms: ${last} versions, ${applied.length} applied; ` +
        `lag from complete write to applied: p50 ${p50.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms, worst ${worst.toFixed(1)} ms`,
    );

    // Never a half-written version, never one withdrawn, never one older than the one before.
    expect(problems).toEqual([]);
    const order = applied.map((x) => x.v);
    expect(order).toEqual([...order].sort((x, y) => x - y));
    // Nothing reported: every version written was good; a half-written one was read again, not said.
    expect(logs.filter((l) => l.level >= 40).map((l) => `${l.msg}: ${String(l.error)}`)).toEqual([]);
    expect(applied.at(-1)?.v).toBe(last);
    expect(p50).toBeLessThanOrEqual(P50_MS);
    expect(worst).toBeLessThanOrEqual(WORST_MS);

    // What a user sees: the API and the routing hold the last version.
    const view = (await (await fetch(`http://${http!.label}/v1/pvds/vpn.example`)).json()) as PvdView;
    expect(view.dnsZones).toEqual([`v${last}.example`]);
    expect(view.servers.map((s) => s.address)).toEqual(version(last).dnsServers);
    const r = await ask({ host: dns[0]!.host, port: dns[0]!.port }, `db.v${last}.example`, 'A');
    expect(r.packet.answers[0]?.address).toBe(last % 2 === 0 ? '192.0.2.141' : '192.0.2.142');
    expect(wifi.names()).not.toContain(`db.v${last}.example`);
  });
});
