#!/usr/bin/env node
// How long `pvdns check-config` takes as the number of PvDs grows (issue 14:
// validating 16,000 PvDs must take under 2 s). In a temporary folder it writes
// configurations with N PvDs under `pvds:` and a configuration whose
// pvdSources.directory holds N PvD files, runs `dist/cli.js check-config` on
// each (a fresh process, as ExecStartPre would) and prints a table.
//
//   node bench/check-config-scale.mjs [--sizes 1000,4000,16000] [--timeout S] [--runs R]
//
// Build first (npm run build). Plain ESM, Node built-ins only. A figure, not
// a test: the machine and its load decide the numbers.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli.js');

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,4000,16000' },
    timeout: { type: 'string', default: '120' },
    runs: { type: 'string', default: '1' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const timeoutMs = Number(values.timeout) * 1000;
const runs = Number(values.runs);

/** pvd is the i-th PvD: its own server, zone and /24 (a reverse zone each); every 100th a default. */
function pvd(i) {
  const net = `10.${(i >> 8) & 255}.${i & 255}`;
  return {
    identifier: `pvd-${i}.example`,
    dnsServers: [`${net}.1`],
    dnsZones: [`zone-${i}.example`],
    prefixes: [`${net}.0/24`],
    ...(i % 100 === 0 ? { default: true, priority: 100 + i } : { noInternet: true }),
  };
}

// As a user (or ExecStartPre) runs it: dist/cli.js through its first line, with its V8 flags, on this node.
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };

const base = { listen: ['127.0.0.1:5399'], http: { listen: null }, pvdSources: { host: false } };

/** time runs check-config on `file` and returns the median seconds, or a string saying why not. */
function time(file, expect) {
  const took = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    const p = spawnSync(CLI, ['check-config', file], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 30, env });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (p.error?.code === 'ETIMEDOUT' || p.signal) return `> ${timeoutMs / 1000} s`;
    if (p.status !== 0) return `exit ${p.status}: ${(p.stderr || p.stdout).split('\n')[0]}`;
    const listed = (p.stdout.match(/^ {2}pvd-\d+\.example /gm) ?? []).length;
    if (listed !== expect) return `listed ${listed} of ${expect} PvDs`;
    took.push(s);
  }
  took.sort((a, b) => a - b);
  return took[Math.floor(took.length / 2)];
}

const tmp = mkdtempSync(join(os.tmpdir(), 'pvdns-scale-'));
const rows = [];
try {
  for (const n of sizes) {
    const pvds = Array.from({ length: n }, (_, i) => pvd(i));
    const inline = join(tmp, `pvds-${n}.json`);
    writeFileSync(inline, JSON.stringify({ ...base, pvds }));
    rows.push([`config pvds: ${n}`, time(inline, n)]);

    const dir = join(tmp, `pvd.d-${n}`);
    mkdirSync(dir);
    pvds.forEach((p, i) => writeFileSync(join(dir, `pvd-${String(i).padStart(6, '0')}.json`), JSON.stringify(p, null, 2)));
    const withDir = join(tmp, `dir-${n}.json`);
    writeFileSync(withDir, JSON.stringify({ ...base, pvdSources: { host: false, directory: dir } }));
    rows.push([`pvdSources.directory: ${n} files`, time(withDir, n)]);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const fmt = (v) => (typeof v === 'number' ? `${v.toFixed(2)} s` : v);
const w = Math.max(...rows.map(([k]) => k.length), 'input'.length);
console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}, median of ${runs} run(s) of check-config\n`);
console.log(`| ${'input'.padEnd(w)} | check-config |`);
console.log(`|${'-'.repeat(w + 2)}|--------------|`);
for (const [k, v] of rows) console.log(`| ${k.padEnd(w)} | ${fmt(v).padStart(12)} |`);
