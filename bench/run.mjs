#!/usr/bin/env node
// pvdns benchmark harness: compares pvdns with dnsmasq and unbound as caching
// forwarders in front of the same local authoritative server (nsd), and pvdns
// with unbound (and dnsdist) forwarding misses over DNS over TLS; and what each
// of the three costs left idle, and the memory a flood leaves behind.
//
//   node bench/run.mjs [--duration S] [--names N] [--only pvdns,dnsmasq,unbound,dot]
//
// Everything talks over loopback only. See bench/README.md for how to read the output.
// Plain ESM, Node built-ins only, so it runs without a build step.

import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import {
  closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync,
  readSync, rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import os from 'node:os';
import tls from 'node:tls';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(BENCH_DIR, '..');
const RESULTS_FILE = join(BENCH_DIR, 'results', 'latest.json');
const SOAK_FILE = join(BENCH_DIR, 'results', 'soak.json');
/** pvdns's inspector in the soak (127.0.0.1 only), through which a full GC precedes each sample. */
const SOAK_INSPECTOR_PORT = 9239;

// The authoritative server every forwarder sends its cache misses to.
const UPSTREAM = { host: '127.0.0.10', port: 5310 };
const ZONE = 'bench.test';
const HIT_NAMES = 1000; // h0..h999.bench.test
const TTL = 3600; // long enough that nothing expires during a run

// Cache capacities (names). The misses workload inserts a new name per query,
// 100k-300k per 10 s run, so whether a cache fills during the run matters:
// - pvdns: the maxEntries of the benchmark config.
// - dnsmasq: its maximum (it clamps larger values to 5,000,000; ~550 MB,
//   allocated at start). Once its cache is full of unexpired entries every
//   insert gets very slow: measured here, 10,000 entries (its recommended max)
//   gives ~5k qps on misses, and 200,000 collapses to ~30 qps once full
//   (~9 s in). With 5M it never fills, so misses measure its forwarding path.
// - unbound: sized in bytes (see startUnbound); holds well over 1M names.
const PVDNS_CACHE_ENTRIES = 2_000_000;
const DNSMASQ_CACHE_ENTRIES = 5_000_000;
/** unbound's caches in the throughput runs (see startUnbound); null is its defaults (4m each). */
const UNBOUND_CACHE_BYTES = { msg: '256m', rrset: '512m' };

// The idle workload runs each server as a host daemon is shipped, not as the
// throughput runs set it up: pvdns with its default cache (cacheEntries null:
// no cache.maxEntries in its config), dnsmasq with its documented recommended
// maximum (5,000,000 allocates ~550 MB at start, which is no idle figure),
// unbound with its default msg/rrset cache sizes.
const IDLE_CACHES = {
  pvdns: { cacheEntries: null },
  dnsmasq: { cacheEntries: 10_000 },
  unbound: { cacheBytes: null },
};
/** Seconds between the warm-up and the idle window: the warm-up's last answers and timers settle. */
const IDLE_SETTLE_SECONDS = 5;

// Each forwarder gets its own loopback address, so a leftover process of one
// can never answer for another.
const SERVERS = {
  pvdns: { host: '127.0.0.13', port: 5313, missPrefix: 'pv', cacheEntries: PVDNS_CACHE_ENTRIES, start: startPvdns },
  dnsmasq: { host: '127.0.0.11', port: 5311, missPrefix: 'dm', cacheEntries: DNSMASQ_CACHE_ENTRIES, start: startDnsmasq },
  unbound: { host: '127.0.0.12', port: 5312, missPrefix: 'ub', cacheEntries: null, cacheBytes: UNBOUND_CACHE_BYTES, start: startUnbound },
  // Not a DNS server: Node and pvdns's UDP addon answering each query with itself (bench/node-floor.mjs),
  // measured beside pvdns in the hit-latency run only: the runtime's share of pvdns's tail.
  'node-floor': { host: '127.0.0.14', port: 5314, missPrefix: 'nf', cacheEntries: null, start: startNodeFloor },
};

// The DoT workload (misses through DNS over TLS): each front forwards to one
// Unbound serving DoT (DOT_UPSTREAM, certificate for DOT_NAME from a throwaway
// CA), which forwards to nsd. Its own addresses, clear of the cleartext ones.
const DOT_UPSTREAM = { host: '127.0.19.1', port: 853 };
const DOT_NAME = 'dns.bench';
const DOT_FRONTS = {
  pvdns: { host: '127.0.19.2', port: 5392, missPrefix: 'dpv', start: startPvdnsDot },
  unbound: { host: '127.0.19.3', port: 5393, missPrefix: 'dub', start: startUnboundDot },
  dnsdist: { host: '127.0.19.4', port: 5394, missPrefix: 'ddd', start: startDnsdistDot, optional: 'dnsdist' },
};
/**
 * dnsdist's maxInFlight for its DoT backend: how many queries it may have
 * outstanding on one connection (answered out of order, RFC 7766 §6.2.1.1).
 * Its default, 0, sends one query at a time per connection.
 */
const DNSDIST_MAX_IN_FLIGHT = 200;
/** Unique names asked through each DoT front before its run: connections open, handshakes done. */
const DOT_WARM_NAMES = 2000;

const REQUIRED_TOOLS = ['dnsperf', 'nsd', 'dnsmasq', 'unbound'];
const APT_PACKAGES = ['dnsperf', 'nsd', 'dnsmasq-base', 'unbound'];

class BenchError extends Error {}

// ---------------------------------------------------------------- options

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      names: { type: 'string' },
      only: { type: 'string', default: 'pvdns,dnsmasq,unbound,dot' },
      'dot-fronts': { type: 'string', default: 'pvdns,unbound,dnsdist' },
      'dot-latency-qps': { type: 'string', default: '2000' },
      outstanding: { type: 'string', default: '200' },
      clients: { type: 'string', default: '4' },
      timeout: { type: 'string', default: '3' },
      'latency-qps': { type: 'string', default: '20000' },
      soak: { type: 'string' },
      'soak-qps': { type: 'string', default: '10000' },
      'soak-cache': { type: 'string', default: '100000' },
      interval: { type: 'string', default: '10' },
      'keep-tmp': { type: 'boolean', default: false },
      workloads: { type: 'string', default: 'hits,latency,misses,footprint,idle' },
      'idle-seconds': { type: 'string', default: '60' },
      monitor: { type: 'boolean', default: false },
      'monitor-query': { type: 'string', default: '' },
      subnet: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node bench/run.mjs [--duration S] [--rounds R] [--names N] [--only pvdns,dnsmasq,unbound,dot]\n' +
      '                          [--outstanding Q] [--clients C] [--timeout T] [--keep-tmp]\n' +
      '  --duration     seconds per workload per server (default 10)\n' +
      '  --rounds       rounds over all servers, each round in a rotated order; the\n' +
      '                 report shows each server\'s median round (default 3)\n' +
      '  --names        unique names generated per server for the misses workload\n' +
      '                 (default 300000 x duration; must exceed what a server can answer)\n' +
      '  --only         comma-separated servers to run, in that order; "dot" is the\n' +
      '                 misses-through-DoT workload (--only dot runs it alone)\n' +
      '  --dot-fronts   the forwarders the DoT workload compares (default pvdns,unbound,dnsdist;\n' +
      '                 dnsdist is left out with a note when it is not installed)\n' +
      '  --dot-latency-qps  the fixed rate of the DoT miss-latency run (default 2000)\n' +
      '  --outstanding  dnsperf -q, max queries in flight (default 200)\n' +
      '  --clients      dnsperf -c, number of client sockets (default 4)\n' +
      '  --timeout      dnsperf -t, seconds before a query counts as lost (default 3)\n' +
      '  --latency-qps  the fixed rate of the hit-latency run (default 20000)\n' +
      '  --soak S       instead of the comparison: pvdns alone under a mixed load for S\n' +
      '                 seconds, reporting qps, errors and RSS every --interval seconds\n' +
      '  --soak-qps     the soak\'s UDP rate (default 10000; TCP adds 500)\n' +
      '  --soak-cache   pvdns\'s cache.maxEntries in the soak (default 100000, its default)\n' +
      '  --interval     seconds between soak reports (default 10)\n' +
      '  --workloads    comma-separated workloads of the cleartext servers (default\n' +
      '                 hits,latency,misses,footprint,idle; footprint is pvdns\'s start-up and memory,\n' +
      '                 idle each server\'s CPU, wake-ups and memory left alone, and after a flood;\n' +
      '                 with pvdns and latency, the node floor (bench/node-floor.mjs) joins the rounds)\n' +
      '  --idle-seconds the idle workload\'s windows: idle, and after the flood (default 60)\n' +
      '  --monitor      attach one subscriber to pvdns\'s GET /v1/monitor (the query monitor)\n' +
      '                 for its timed runs, reading everything it is sent: the cost of watching\n' +
      '  --monitor-query  the subscriber\'s query string, e.g. "rate=100000" (default: none,\n' +
      '                 pvdns\'s default of 1000 records/s)\n' +
      '  --subnet A.B.C move nsd and the cleartext servers from 127.0.0.x to A.B.C.x (same last\n' +
      '                 octets), so the bench does not meet others on the default addresses\n' +
      '  --keep-tmp     keep the temp dir (configs, logs) for debugging\n');
    process.exit(0);
  }
  const positiveInt = (name, text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n <= 0) throw new BenchError(`--${name} must be a positive integer, got "${text}"`);
    return n;
  };
  const duration = positiveInt('duration', values.duration);
  const only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of only) {
    if (!SERVERS[name] && name !== 'dot') throw new BenchError(`--only: unknown server "${name}" (known: ${Object.keys(SERVERS).join(', ')}, dot)`);
  }
  if (only.length === 0) throw new BenchError('--only: no server selected');
  const workloads = values.workloads.split(',').map((s) => s.trim()).filter(Boolean);
  for (const w of workloads) {
    if (!['hits', 'latency', 'misses', 'footprint', 'idle'].includes(w)) throw new BenchError(`--workloads: unknown workload "${w}" (known: hits, latency, misses, footprint, idle)`);
  }
  if (values.subnet !== undefined && !/^127\.\d{1,3}\.\d{1,3}$/.test(values.subnet)) throw new BenchError(`--subnet must be the first three octets of a loopback /24, such as 127.0.44 (got "${values.subnet}")`);
  const dotFronts = values['dot-fronts'].split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of dotFronts) {
    if (!DOT_FRONTS[name]) throw new BenchError(`--dot-fronts: unknown forwarder "${name}" (known: ${Object.keys(DOT_FRONTS).join(', ')})`);
  }
  return {
    duration,
    rounds: positiveInt('rounds', values.rounds),
    // ~300k qps of headroom: far above what a single-threaded forwarder does on
    // misses, so the time limit (not the end of the file) ends the run.
    missNames: values.names ? positiveInt('names', values.names) : 300_000 * duration,
    // The cleartext servers; the DoT workload is `dot` (its fronts in dotFronts, [] when not selected).
    only: [...new Set(only)].filter((n) => n !== 'dot'),
    dotFronts: only.includes('dot') ? [...new Set(dotFronts)] : [],
    dotLatencyQps: positiveInt('dot-latency-qps', values['dot-latency-qps']),
    outstanding: positiveInt('outstanding', values.outstanding),
    clients: positiveInt('clients', values.clients),
    timeout: positiveInt('timeout', values.timeout),
    latencyQps: positiveInt('latency-qps', values['latency-qps']),
    soak: values.soak === undefined ? null : positiveInt('soak', values.soak),
    soakQps: positiveInt('soak-qps', values['soak-qps']),
    soakCache: positiveInt('soak-cache', values['soak-cache']),
    interval: positiveInt('interval', values.interval),
    keepTmp: values['keep-tmp'],
    workloads,
    idleSeconds: positiveInt('idle-seconds', values['idle-seconds']),
    monitor: values.monitor ? values['monitor-query'] : null,
    subnet: values.subnet ?? null,
  };
}

// ---------------------------------------------------------------- small utilities

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Progress goes to stderr so that stdout is only the Markdown report. */
const say = (msg) => process.stderr.write(`[bench] ${msg}\n`);

/** Look up an executable like `which`, also in the sbin dirs a non-root PATH lacks. */
function findExecutable(name) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch { /* not here */ }
  }
  return null;
}

/** Last `lines` lines of a (log) file, or '' if it does not exist. */
function tailFile(path, lines = 25) {
  let fd;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Run a short command synchronously and return stdout+stderr (for versions). */
function captureOutput(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

// ---------------------------------------------------------------- tools & install

function missingTools() {
  return REQUIRED_TOOLS.filter((t) => !findExecutable(t));
}

/**
 * Install the tools with apt when we are root. Debian starts the nsd and unbound
 * system services on install; a temporary policy-rc.d (the standard Debian
 * switch) prevents that, because a stock unbound would resolve via the root
 * servers and the benchmark must not send traffic off the machine.
 */
function ensureTools() {
  const missing = missingTools();
  if (missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y ${APT_PACKAGES.join(' ')}`;
  if (process.getuid?.() !== 0) {
    throw new BenchError(`missing tools: ${missing.join(', ')}. Install them (as root): ${cmd}`);
  }
  say(`missing ${missing.join(', ')}; installing: ${cmd}`);
  const policyRcD = '/usr/sbin/policy-rc.d';
  const addedPolicy = !existsSync(policyRcD);
  if (addedPolicy) writeFileSync(policyRcD, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    // apt output goes to stderr: stdout is reserved for the report.
    const r = spawnSync('sh', ['-c', cmd], {
      stdio: ['ignore', 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) throw new BenchError(`"${cmd}" failed (exit ${r.status})`);
  } finally {
    if (addedPolicy) rmSync(policyRcD, { force: true });
  }
  const still = missingTools();
  if (still.length) throw new BenchError(`still missing after apt-get: ${still.join(', ')}`);
}

function collectVersions() {
  const first = (text, re) => text.match(re)?.[1] ?? text.trim().split('\n')[0] ?? 'unknown';
  let pvdns = 'unknown';
  try {
    pvdns = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version;
  } catch { /* keep unknown */ }
  const git = spawnSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  return {
    pvdns,
    pvdnsCommit: git.status === 0 ? git.stdout.trim() : null,
    node: process.version,
    dnsperf: first(captureOutput('dnsperf', ['-h']), /Version\s+(\S+)/),
    nsd: first(captureOutput('nsd', ['-v']), /NSD version\s+(\S+)/),
    dnsmasq: first(captureOutput('dnsmasq', ['--version']), /Dnsmasq version\s+(\S+)/),
    unbound: first(captureOutput('unbound', ['-V']), /Version\s+(\S+)/),
    dnsdist: findExecutable('dnsdist') ? first(captureOutput('dnsdist', ['--version']), /dnsdist\s+(\S+)/) : null,
  };
}

// ---------------------------------------------------------------- processes

/** Every long-running child we started, so cleanup can stop them whatever happens. */
const running = new Set();

/**
 * Start a server. Output goes to files, not pipes: a busy server logging to a
 * pipe would cost this (benchmarking) process CPU, and the files let us show
 * the tail when it fails. `detached` puts it in its own process group: Ctrl-C
 * reaches only us and we stop servers in order, and nsd's worker children can
 * be stopped through the group.
 */
function launch(name, cmd, args, { cwd, tmp, extraLogs = [] }) {
  assertNotAborted();
  const stdoutPath = join(tmp, `${name}.stdout.log`);
  const stderrPath = join(tmp, `${name}.stderr.log`);
  const out = openSync(stdoutPath, 'w');
  const err = openSync(stderrPath, 'w');
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', out, err], detached: true });
  closeSync(out);
  closeSync(err);
  const proc = { name, cmd, args, child, stdoutPath, stderrPath, extraLogs, exit: null };
  proc.done = new Promise((resolveDone) => {
    const finish = (info) => {
      if (proc.exit) return;
      proc.exit = info;
      running.delete(proc);
      resolveDone();
    };
    child.on('exit', (code, signal) => finish({ code, signal }));
    child.on('error', (error) => finish({ error }));
  });
  running.add(proc);
  return proc;
}

function describeExit(exit) {
  if (!exit) return 'still running';
  if (exit.error) return `could not be started: ${exit.error.message}`;
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** A "server X failed" error carrying the tail of everything it wrote. */
function serverError(proc, reason) {
  let msg = `${proc.name} failed: ${reason}\n  command: ${proc.cmd} ${proc.args.join(' ')}`;
  for (const [label, path] of [['stderr', proc.stderrPath], ['stdout', proc.stdoutPath], ...proc.extraLogs]) {
    const tail = tailFile(path);
    if (tail) msg += `\n  --- ${label} (last lines) ---\n${tail.replace(/^/gm, '  | ')}`;
  }
  return new BenchError(msg);
}

function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch { /* group already gone */ }
}

/** SIGTERM, then SIGKILL if it does not go away; then sweep its process group. */
async function stop(proc) {
  const pid = proc.child.pid;
  if (pid === undefined) return;
  if (!proc.exit) {
    try {
      proc.child.kill('SIGTERM');
    } catch { /* already gone */ }
    await Promise.race([proc.done, sleep(5000)]);
    if (!proc.exit) {
      say(`${proc.name} ignored SIGTERM for 5 s; sending SIGKILL`);
      signalGroup(pid, 'SIGKILL');
      await Promise.race([proc.done, sleep(2000)]);
    }
  }
  // Leftover children (e.g. nsd workers) of a process we started.
  signalGroup(pid, 'SIGKILL');
}

/** Run a command to completion (dnsperf), capturing its output; killable by cleanup. */
function runCommand(name, cmd, args, { timeoutMs }) {
  assertNotAborted();
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = { name, child, exit: null };
    running.add(proc);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      say(`${name} did not finish in ${timeoutMs / 1000} s; killing it`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      running.delete(proc);
      rejectRun(new BenchError(`${name}: cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      proc.exit = { code, signal };
      running.delete(proc);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- cleanup

let tmpDir = null;
let keepTmp = false;
let cleaningUp = null;

/** After Ctrl-C the main flow may still be running; it must not start anything new. */
function assertNotAborted() {
  if (cleaningUp) throw new BenchError('aborted');
}

async function cleanup() {
  cleaningUp ??= (async () => {
    await Promise.all([...running].map((p) => (p.child.pid !== undefined && p.stdoutPath ? stop(p) : killNow(p))));
    removeTmp();
  })();
  return cleaningUp;
}

function killNow(proc) {
  try {
    proc.child.kill('SIGKILL');
  } catch { /* gone */ }
}

function removeTmp() {
  if (!tmpDir) return;
  if (keepTmp) {
    say(`kept temp dir ${tmpDir}`);
  } else {
    rmSync(tmpDir, { recursive: true, force: true });
  }
  tmpDir = null;
}

// Last resort if we exit without having awaited cleanup (e.g. a second Ctrl-C):
// synchronous kills only.
process.on('exit', () => {
  for (const p of running) {
    if (p.child.pid !== undefined) {
      if (p.stdoutPath) signalGroup(p.child.pid, 'SIGKILL');
      else killNow(p);
    }
  }
  removeTmp();
});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (cleaningUp) process.exit(130); // second signal: give up waiting
    say(`${sig}: stopping servers and cleaning up`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- a tiny DNS client

/** Encode a standard query with RD set (what a stub resolver sends). */
function encodeQuery(id, name, qtype = 1) {
  const parts = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const label of name.replace(/\.$/, '').split('.')) {
    parts.push(Buffer.from([label.length]), Buffer.from(label, 'ascii'));
  }
  parts.push(Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]));
  return Buffer.concat(parts);
}

function skipName(buf, off) {
  for (;;) {
    const len = buf[off];
    if (len === undefined) throw new Error('truncated name');
    if ((len & 0xc0) === 0xc0) return off + 2; // compression pointer ends the name
    if (len === 0) return off + 1;
    off += len + 1;
  }
}

/** Just enough parsing to check an answer: id, rcode and the A records. */
function parseResponse(buf) {
  const id = buf.readUInt16BE(0);
  const rcode = buf[3] & 0x0f;
  const qdcount = buf.readUInt16BE(4);
  const ancount = buf.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qdcount; i++) off = skipName(buf, off) + 4;
  const addresses = [];
  for (let i = 0; i < ancount; i++) {
    off = skipName(buf, off);
    const type = buf.readUInt16BE(off);
    const rdlength = buf.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (type === 1 && rdlength === 4) addresses.push([...buf.subarray(rdata, rdata + 4)].join('.'));
    off = rdata + rdlength;
  }
  return { id, rcode, addresses };
}

/** One UDP query from a loopback source; rejects on timeout. */
function queryA(host, port, name, timeoutMs = 500) {
  return new Promise((resolveQuery, rejectQuery) => {
    const id = Math.floor(Math.random() * 0x10000);
    const socket = dgram.createSocket('udp4');
    const finish = (fn, value) => {
      clearTimeout(timer);
      socket.close();
      fn(value);
    };
    const timer = setTimeout(() => finish(rejectQuery, new Error('timeout')), timeoutMs);
    socket.on('error', (e) => finish(rejectQuery, e));
    socket.on('message', (msg) => {
      try {
        const r = parseResponse(msg);
        if (r.id === id) finish(resolveQuery, r);
      } catch (e) {
        finish(rejectQuery, e);
      }
    });
    socket.bind({ address: '127.0.0.1', port: 0 }, () => socket.send(encodeQuery(id, name), port, host));
  });
}

/** Poll until the server answers `name` with an A record (any NOERROR when `records` is false), or fail with its log tail. */
async function waitUntilAnswering(proc, host, port, name, timeoutMs, { records = true } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during startup`);
    try {
      const r = await queryA(host, port, name);
      if (r.rcode === 0 && (r.addresses.length || !records)) return;
      last = `answered rcode ${r.rcode} with ${r.addresses.length} A records`;
    } catch (e) {
      last = e.message;
    }
    await sleep(200);
  }
  throw serverError(proc, `no answer for ${name} from ${host}:${port} within ${timeoutMs / 1000} s (${last})`);
}

/** A forwarder that answers wrongly (e.g. NXDOMAIN) would look fast for the wrong reason. */
async function checkAnswer(proc, host, port, name, expected) {
  let r;
  try {
    r = await queryA(host, port, name, 3000);
  } catch (e) {
    throw serverError(proc, `query for ${name} failed: ${e.message}`);
  }
  if (r.rcode !== 0 || !r.addresses.includes(expected)) {
    throw serverError(proc, `wrong answer for ${name}: rcode ${r.rcode}, A [${r.addresses.join(', ')}], expected ${expected}`);
  }
}

// ---------------------------------------------------------------- data files

const hitName = (i) => `h${i}.${ZONE}`;
const hitAddress = (i) => `198.18.${i >> 8}.${i & 0xff}`; // RFC 2544 benchmarking range, data only
const MISS_ADDRESS = '192.0.2.1';

function writeHitsFile(tmp) {
  const path = join(tmp, 'hits.txt');
  const lines = Array.from({ length: HIT_NAMES }, (_, i) => `${hitName(i)} A\n`);
  writeFileSync(path, lines.join(''));
  return path;
}

/**
 * Unique names under the wildcard, with a per-server prefix so one server's run
 * never warms anything for another. Written in chunks: the file is ~100 MB.
 */
function writeMissesFile(tmp, prefix, count) {
  const path = join(tmp, `misses-${prefix}.txt`);
  const fd = openSync(path, 'w');
  try {
    const chunk = 100_000;
    for (let start = 0; start < count; start += chunk) {
      let text = '';
      for (let i = start; i < Math.min(count, start + chunk); i++) text += `${prefix}${i}.miss.${ZONE} A\n`;
      writeSync(fd, text);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

// ---------------------------------------------------------------- nsd (upstream)

function writeNsdConfig(tmp) {
  const zone = [
    `$ORIGIN ${ZONE}.`,
    `$TTL ${TTL}`,
    `@ IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 ${TTL}`,
    '@ IN NS ns',
    `ns IN A ${UPSTREAM.host}`,
    ...Array.from({ length: HIT_NAMES }, (_, i) => `h${i} IN A ${hitAddress(i)}`),
    `*.miss IN A ${MISS_ADDRESS}`,
    '',
  ].join('\n');
  writeFileSync(join(tmp, `${ZONE}.zone`), zone);

  // No request-xfr / notify / allow-notify: nsd never does zone transfers.
  // rrl-* = 0: nsd's response rate limiting defaults to 200 qps per /24, which
  // would throttle the forwarders' cache misses (all from 127.0.0.x).
  const conf = `server:
  ip-address: ${UPSTREAM.host}@${UPSTREAM.port}
  port: ${UPSTREAM.port}
  do-ip4: yes
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${tmp}"
  database: ""
  pidfile: "${tmp}/nsd.pid"
  xfrdfile: "${tmp}/xfrd.state"
  xfrdir: "${tmp}"
  zonelistfile: "${tmp}/zone.list"
  logfile: "${tmp}/nsd.log"
  verbosity: 0
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0

remote-control:
  control-enable: no

zone:
  name: ${ZONE}
  zonefile: "${tmp}/${ZONE}.zone"
`;
  const path = join(tmp, 'nsd.conf');
  writeFileSync(path, conf);
  return path;
}

async function startNsd(tmp) {
  const conf = writeNsdConfig(tmp);
  checkConfig('nsd', 'nsd-checkconf', [conf]);
  const proc = launch('nsd', 'nsd', ['-d', '-c', conf], {
    cwd: tmp, tmp, extraLogs: [['nsd.log', join(tmp, 'nsd.log')]],
  });
  await waitUntilAnswering(proc, UPSTREAM.host, UPSTREAM.port, hitName(0), 10_000);
  await checkAnswer(proc, UPSTREAM.host, UPSTREAM.port, `probe.miss.${ZONE}`, MISS_ADDRESS);
  return proc;
}

/** Run the tool's own config checker when present: clearer errors than a dead daemon. */
function checkConfig(name, checker, args) {
  if (!findExecutable(checker)) return;
  const r = spawnSync(checker, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`${name}: generated config rejected by ${checker}:\n${r.stdout}${r.stderr}`);
}

// ---------------------------------------------------------------- forwarders

function startDnsmasq(tmp, { host, port, cacheEntries }) {
  // --conf-file=/dev/null: ignore /etc/dnsmasq.conf (and its conf-dir) if present.
  // --no-resolv/--no-hosts: only our --server, never /etc/resolv.conf or /etc/hosts.
  // --dns-forward-max: the default of 150 concurrent forwarded queries is below
  //   dnsperf's 200 outstanding; dnsmasq would drop the excess on misses and its
  //   result would measure that limit instead of its speed.
  // --log-facility=<file>: keep its (rare) warnings out of syslog and stderr.
  // --pid-file= (empty): no pid file. No dhcp-* options, so no lease file.
  const log = join(tmp, 'dnsmasq.log');
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    `--server=${UPSTREAM.host}#${UPSTREAM.port}`,
    `--listen-address=${host}`,
    '--bind-interfaces',
    `--port=${port}`,
    `--cache-size=${cacheEntries}`,
    '--dns-forward-max=1000',
    '--user=root',
    '--pid-file=',
    `--log-facility=${log}`,
  ];
  return launch('dnsmasq', 'dnsmasq', args, { cwd: tmp, tmp, extraLogs: [['dnsmasq.log', log]] });
}

function startUnbound(tmp, { host, port, cacheBytes }) {
  // Roughly 1 KB per cached name across both caches, so 256m/512m holds over
  // a million names: like dnsmasq's, unbound's cache does not fill during a run
  // (memory is only used as entries are added). cacheBytes null (the idle
  // workload) leaves both at unbound's defaults.
  // local-zone "test." nodefault: unbound serves test. itself (RFC 6761) as an
  // empty static zone and would answer NXDOMAIN without forwarding.
  // module-config "iterator": no validator, so no DNSSEC, no trust anchor fetches.
  // With a forward-zone for "." it never contacts the root servers.
  const conf = `server:
  verbosity: 0
  use-syslog: no
  logfile: ""
  num-threads: 1
  interface: ${host}@${port}
  port: ${port}
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  domain-insecure: "test"
  local-zone: "test." nodefault
  chroot: ""
  username: ""
  directory: "${tmp}"
  pidfile: "${tmp}/unbound.pid"
${cacheBytes ? `  msg-cache-size: ${cacheBytes.msg}\n  rrset-cache-size: ${cacheBytes.rrset}\n` : ''}  prefetch: no

remote-control:
  control-enable: no

forward-zone:
  name: "."
  forward-addr: ${UPSTREAM.host}@${UPSTREAM.port}
`;
  const path = join(tmp, 'unbound.conf');
  writeFileSync(path, conf);
  checkConfig('unbound', 'unbound-checkconf', [path]);
  return launch('unbound', 'unbound', ['-d', '-c', path], { cwd: tmp, tmp });
}

const PVDNS_CLI = join(REPO_ROOT, 'dist', 'cli.js');

/** Checked before anything starts, so a missing build fails fast. */
function checkPvdnsBuilt() {
  if (!existsSync(PVDNS_CLI)) {
    throw new BenchError(`pvdns: ${PVDNS_CLI} not found; build pvdns first (or leave it out with --only dnsmasq,unbound)`);
  }
}

/**
 * startPvdns starts pvdns in front of nsd with the bench PvD. cacheEntries is
 * its cache.maxEntries; null leaves the key out, so pvdns runs with its
 * default (the idle workload: pvdns as shipped).
 */
function startPvdns(tmp, { host, port, cacheEntries, inspect = null }) {
  checkPvdnsBuilt();
  const yaml = `listen: ["${host}:${port}"]
http: { listen: "${host}:8053" }
log: { level: warn }
access: { allow: ["127.0.0.0/8"] }
${cacheEntries === null ? '' : `cache: { maxEntries: ${cacheEntries} }\n`}pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
pvds:
  - identifier: bench
    dnsServers: ["${UPSTREAM.host}:${UPSTREAM.port}"]
    default: true
`;
  const path = join(tmp, 'pvdns.yaml');
  writeFileSync(path, yaml);
  // The same node binary that runs this harness, with the V8 flags of the
  // executable's first line: pvdns as `npx pvdns` runs it.
  // The soak asks V8 for a full collection before each sample through the inspector (loopback only).
  const inspectFlags = inspect === null ? [] : [`--inspect=127.0.0.1:${inspect}`];
  return launch('pvdns', process.execPath, [...pvdnsNodeFlags(), ...inspectFlags, PVDNS_CLI, 'serve', '--config', path], { cwd: REPO_ROOT, tmp });
}

/**
 * startNodeFloor starts bench/node-floor.mjs: a bare Node "server" that
 * answers each query with itself through pvdns's addon, read and sent by
 * batch as pvdns's listener does, with no pvdns code in between.
 */
function startNodeFloor(tmp, { host, port }) {
  checkPvdnsBuilt();
  return launch('node-floor', process.execPath, [join(BENCH_DIR, 'node-floor.mjs'), host, String(port)], { cwd: REPO_ROOT, tmp });
}

/**
 * Inspector is a connection to a process's V8 inspector, to ask it for a
 * full garbage collection: memory sampled right after one is what the
 * process holds, not what V8 has yet to collect. V8 collects its old space
 * lazily — a minute of garbage can pile up before it does — so without this
 * a soak's memory trend says more about when V8 last collected than about a
 * leak.
 */
class Inspector {
  static async connect(port, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const [target] = await fetch(`http://127.0.0.1:${port}/json/list`).then((r) => r.json());
        const ws = new WebSocket(target.webSocketDebuggerUrl);
        await new Promise((resolveOpen, rejectOpen) => {
          ws.addEventListener('open', resolveOpen, { once: true });
          ws.addEventListener('error', () => rejectOpen(new Error('the inspector refused the connection')), { once: true });
        });
        return new Inspector(ws);
      } catch (err) {
        if (Date.now() > deadline) throw new BenchError(`cannot reach pvdns's inspector on 127.0.0.1:${port}: ${err.message}`);
        await sleep(100);
      }
    }
  }

  constructor(ws) {
    this.ws = ws;
    this.id = 0;
    this.waiting = new Map();
    ws.addEventListener('message', (e) => {
      const m = JSON.parse(String(e.data));
      this.waiting.get(m.id)?.(m);
      this.waiting.delete(m.id);
    });
  }

  /** collectGarbage runs a full collection in the process (HeapProfiler.collectGarbage). */
  collectGarbage(timeoutMs = 10_000) {
    const id = ++this.id;
    return new Promise((resolveGc, rejectGc) => {
      const timer = setTimeout(() => rejectGc(new BenchError('the inspector did not answer collectGarbage')), timeoutMs);
      this.waiting.set(id, () => {
        clearTimeout(timer);
        resolveGc();
      });
      this.ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
    });
  }

  close() {
    this.ws.close();
  }
}

/** pvdnsNodeFlags reads the node options from dist/cli.js's `#!/usr/bin/env -S node ...` line. */
function pvdnsNodeFlags() {
  const first = readFileSync(PVDNS_CLI, 'utf8').split('\n', 1)[0];
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+(?:=\S+)?)*)$/.exec(first);
  return m ? m[1].trim().split(' ').filter(Boolean) : [];
}

// ---------------------------------------------------------------- dnsperf

/** Turn dnsperf's "Statistics:" block into numbers (latencies in ms). */
function parseDnsperf(text) {
  const num = (re) => {
    const m = text.match(re);
    return m ? Number(m[1]) : null;
  };
  const ms = (v) => (v === null ? null : v * 1000);
  const latency = text.match(/Average Latency \(s\):\s+([\d.]+)(?:\s+\(min\s+([\d.]+),\s+max\s+([\d.]+)\))?/);
  const rcodes = {};
  const rcodeLine = text.match(/Response codes:\s+(.+)/);
  if (rcodeLine) {
    for (const m of rcodeLine[1].matchAll(/([A-Z0-9]+)\s+(\d+)\s+\(/g)) rcodes[m[1]] = Number(m[2]);
  }
  const packets = text.match(/Average packet size:\s+request\s+(\d+),\s+response\s+(\d+)/);
  return {
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    interrupted: num(/Queries interrupted:\s+(\d+)/),
    rcodes,
    requestBytes: packets ? Number(packets[1]) : null,
    responseBytes: packets ? Number(packets[2]) : null,
    runTimeSec: num(/Run time \(s\):\s+([\d.]+)/),
    qps: num(/Queries per second:\s+([\d.]+)/),
    latencyAvgMs: ms(latency ? Number(latency[1]) : null),
    latencyMinMs: ms(latency?.[2] ? Number(latency[2]) : null),
    latencyMaxMs: ms(latency?.[3] ? Number(latency[3]) : null),
    latencyStddevMs: ms(num(/Latency StdDev \(s\):\s+([\d.]+)/)),
  };
}

/**
 * One dnsperf run over UDP. -c spreads the load over several source ports (as
 * several stub clients would), -q keeps enough queries in flight to saturate a
 * single-threaded server, -t decides when a query counts as lost.
 * No -T: the default (one send + one receive thread) leaves the second core to
 * the server and nsd on a 2-core box.
 */
async function dnsperf(label, server, file, { duration, maxRuns, outstanding, clients, timeout }) {
  const args = ['-s', server.host, '-p', String(server.port), '-d', file,
    '-c', String(clients), '-q', String(outstanding), '-t', String(timeout)];
  if (duration) args.push('-l', String(duration));
  if (maxRuns) args.push('-n', String(maxRuns));
  const limitMs = ((duration ?? 60) + timeout + 30) * 1000;
  const dropsBefore = udpReceiveBufferDrops();
  const r = await runCommand(`dnsperf (${label})`, 'dnsperf', args, { timeoutMs: limitMs });
  const dropsAfter = udpReceiveBufferDrops();
  const stats = parseDnsperf(r.stdout);
  if (r.code !== 0 || stats.qps === null) {
    throw new BenchError(`dnsperf (${label}) failed (${r.signal ?? `exit ${r.code}`}):\n${r.stdout}${r.stderr}`);
  }
  return {
    ...stats,
    udpRcvbufErrors: dropsBefore === null || dropsAfter === null ? null : dropsAfter - dropsBefore,
    args: ['dnsperf', ...args].join(' '),
  };
}

/**
 * latencyRun measures each cache hit's latency at a fixed rate (`dnsperf -Q`)
 * well below saturation, so the figures are the server's and not the queue
 * dnsperf builds at full load (where latency is just outstanding ÷ qps).
 * dnsperf 2.10 prints no percentiles, but with -v it prints every answer's
 * latency; this reads them.
 */
async function latencyRun(label, server, file, opts) {
  const duration = Math.min(opts.duration, 5);
  const args = ['-s', server.host, '-p', String(server.port), '-d', file, '-c', String(opts.clients),
    '-q', String(opts.outstanding), '-t', String(opts.timeout), '-Q', String(opts.latencyQps), '-l', String(duration), '-v'];
  const r = await runCommand(`dnsperf (${label})`, 'dnsperf', args, { timeoutMs: (duration + opts.timeout + 30) * 1000 });
  const stats = parseDnsperf(r.stdout);
  if (r.code !== 0 || stats.qps === null) throw new BenchError(`dnsperf (${label}) failed (${r.signal ?? `exit ${r.code}`}):\n${r.stderr}`);
  const seconds = [];
  for (const m of r.stdout.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) seconds.push(Number(m[1]));
  const over1Ms = seconds.filter((x) => x > 0.001).length;
  seconds.sort((a, b) => a - b);
  const pct = (p) => (seconds.length ? 1000 * seconds[Math.min(seconds.length - 1, Math.floor((p / 100) * seconds.length))] : null);
  return { ...stats, answers: seconds.length, over1Ms, p50Ms: pct(50), p99Ms: pct(99), p999Ms: pct(99.9), args: ['dnsperf', ...args].join(' ') };
}

/**
 * Linux's count of UDP datagrams dropped because a socket's receive buffer was
 * full (machine-wide). Recorded per run: when it matches dnsperf's "lost",
 * the losses are overload drops, not a server failing to answer.
 */
function udpReceiveBufferDrops() {
  return snmpCounter('Udp', 'RcvbufErrors');
}

/** One counter of /proc/net/snmp (its protocol's header row, then its values row), or null where unreadable. */
function snmpCounter(protocol, name) {
  try {
    const [header, values] = readFileSync('/proc/net/snmp', 'utf8').split('\n')
      .filter((line) => line.startsWith(`${protocol}:`))
      .map((line) => line.trim().split(/\s+/));
    const i = header.indexOf(name);
    return i > 0 ? Number(values[i]) : null;
  } catch {
    return null;
  }
}

/** One pass over the hit names so the hits run measures answers from cache. */
async function warmCache(name, server, hitsFile, opts) {
  const s = await dnsperf(`${name} warm-up`, server, hitsFile, { ...opts, duration: null, maxRuns: 1, outstanding: 50 });
  if (s.completed !== HIT_NAMES || (s.rcodes.NOERROR ?? 0) !== HIT_NAMES) {
    throw new BenchError(`${name}: warm-up got ${s.completed}/${HIT_NAMES} answers, rcodes ${JSON.stringify(s.rcodes)}`);
  }
}

/** Warn about runs whose numbers would be misleading. */
function sanityWarnings(result, missNames, cacheEntries) {
  const warnings = [];
  const noerror = result.rcodes.NOERROR ?? 0;
  if (result.completed && noerror < result.completed) {
    warnings.push(`only ${noerror}/${result.completed} answers were NOERROR: ${JSON.stringify(result.rcodes)}`);
  }
  if (result.workload === 'misses' && result.sent >= missNames) {
    warnings.push(`ran out of unique names (${missNames}) before the time limit; raise --names`);
  }
  if (result.workload === 'misses' && cacheEntries && result.sent > cacheEntries) {
    warnings.push(`sent more unique names (${result.sent}) than the cache holds (${cacheEntries}): ` +
      'part of the run measured cache eviction');
  }
  if (result.sent && result.lost / result.sent > 0.01) {
    warnings.push(`${((100 * result.lost) / result.sent).toFixed(1)}% of queries lost`);
  }
  return warnings;
}

// ---------------------------------------------------------------- one server

/**
 * attachMonitor subscribes to pvdns's GET /v1/monitor (its HTTP listener,
 * :8053 on the server's address, no token: the bench's client is loopback)
 * and reads everything it is sent, counting records, octets and the records
 * pvdns says it dropped. It resolves once the stream has started; close()
 * ends it and returns the counts.
 */
function attachMonitor(host, query) {
  // cutOff: pvdns ended the stream (it cuts off a subscriber that falls 256 KiB behind).
  const counts = { query, records: 0, dropped: 0, bytes: 0, cutOff: false };
  let closing = false;
  return new Promise((resolveAttach, rejectAttach) => {
    const req = http.get(`http://${host}:8053/v1/monitor${query ? `?${query}` : ''}`, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        rejectAttach(new BenchError(`pvdns: GET /v1/monitor answered ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      let tail = '';
      res.on('data', (chunk) => {
        counts.bytes += Buffer.byteLength(chunk);
        const text = tail + chunk;
        counts.records += text.split('\nevent: query\n').length - 1;
        for (const m of text.matchAll(/\nevent: dropped\ndata: \{"dropped":(\d+)/g)) counts.dropped += Number(m[1]);
        // An event split across chunks is counted once: the next chunk starts after what was counted.
        const cut = text.lastIndexOf('\n\n');
        tail = cut < 0 ? text : text.slice(cut + 1);
        if (tail.length > 4096) tail = tail.slice(-4096);
        resolveAttach({ close: () => ((closing = true), req.destroy(), counts) });
      });
      res.on('error', () => undefined);
      res.on('close', () => {
        if (!closing) counts.cutOff = true;
      });
    });
    req.on('error', (err) => rejectAttach(new BenchError(`pvdns: GET /v1/monitor: ${err.message}`)));
  });
}

/**
 * benchmarkFloor runs the hit-latency workload against the Node floor as it
 * runs against the servers: a full-load run first (not reported: its answers
 * carry no records), then the same fixed-rate run.
 */
async function benchmarkFloor(tmp, hitsFile, opts, round) {
  const name = 'node-floor';
  const server = SERVERS[name];
  say(`${name}: starting on ${server.host}:${server.port}`);
  const proc = await server.start(tmp, server);
  try {
    // It answers with the question alone: NOERROR without records.
    await waitUntilAnswering(proc, server.host, server.port, hitName(1), 10_000, { records: false });
    say(`${name}: full load for ${opts.duration} s, then the fixed-rate run`);
    await dnsperf(`${name} load`, server, hitsFile, { ...opts, maxRuns: null });
    const latency = await latencyRun(`${name} hit latency`, server, hitsFile, opts);
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the run`);
    return [{ server: name, workload: 'latency', round, ...latency, warnings: [] }];
  } finally {
    await stop(proc);
  }
}

async function benchmarkServer(name, tmp, hitsFile, opts, round) {
  const server = { ...SERVERS[name], missPrefix: `${SERVERS[name].missPrefix}${round}-` };
  say(`${name}: starting on ${server.host}:${server.port}`);
  const proc = await server.start(tmp, server);
  const results = [];
  let missesFile = null;
  let monitor = null;
  try {
    await waitUntilAnswering(proc, server.host, server.port, hitName(1), name === 'pvdns' ? 20_000 : 10_000);
    await checkAnswer(proc, server.host, server.port, hitName(1), hitAddress(1));
    await checkAnswer(proc, server.host, server.port, `probe-${server.missPrefix}.miss.${ZONE}`, MISS_ADDRESS);

    const runs = new Set(opts.workloads);
    if (runs.has('hits') || runs.has('latency')) {
      say(`${name}: warming ${HIT_NAMES} names, then hits for ${opts.duration} s`);
      await warmCache(name, server, hitsFile, opts);
    }
    // --monitor: one subscriber watches every timed run (after the warm-up, which is not measured).
    if (name === 'pvdns' && opts.monitor !== null) monitor = await attachMonitor(server.host, opts.monitor);
    if (runs.has('hits')) {
      // The server's own CPU time per answer: what a change costs, less swayed than qps by what
      // else the machine runs at the time.
      const cpuBefore = cpuSeconds(proc.child.pid);
      const hits = await dnsperf(`${name} hits`, server, hitsFile, { ...opts, maxRuns: null });
      const cpuAfter = cpuSeconds(proc.child.pid);
      const cpuUsPerAnswer = cpuBefore !== null && cpuAfter !== null && hits.completed ? ((cpuAfter - cpuBefore) * 1e6) / hits.completed : null;
      results.push({ server: name, workload: 'hits', round, ...hits, cpuUsPerAnswer });
    }
    if (runs.has('latency')) {
      const latency = await latencyRun(`${name} hit latency`, server, hitsFile, opts);
      results.push({ server: name, workload: 'latency', round, ...latency });
    }

    if (runs.has('misses')) {
      say(`${name}: writing ${opts.missNames.toLocaleString('en')} unique names, then misses for ${opts.duration} s`);
      missesFile = writeMissesFile(tmp, server.missPrefix, opts.missNames);
      // -n 1: each name is asked once, so every query is a cache miss.
      const misses = await dnsperf(`${name} misses`, server, missesFile, { ...opts, maxRuns: 1 });
      results.push({ server: name, workload: 'misses', round, ...misses });
    }
    if (monitor !== null) {
      const watched = monitor.close();
      say(`pvdns: the monitor received ${watched.records} records (${watched.bytes} octets), told of ${watched.dropped} dropped${watched.cutOff ? '; pvdns cut it off for falling behind' : ''}`);
      for (const r of results) r.monitor = watched;
    }

    // A server that died under load would otherwise just show up as "lost".
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the run`);
  } finally {
    monitor?.close();
    await stop(proc);
    if (missesFile) rmSync(missesFile, { force: true });
  }
  for (const r of results) {
    r.warnings = sanityWarnings(r, opts.missNames, server.cacheEntries);
    for (const w of r.warnings) say(`WARNING ${r.workload}/${r.server}: ${w}`);
  }
  return results;
}

// ---------------------------------------------------------------- misses through DoT

/**
 * makeDotCertificates makes a throwaway CA and, signed by it, the DoT
 * upstream's certificate for DOT_NAME and its address (EC P-256, valid 2
 * days), with openssl. Every front trusts the CA file alone (plus, for pvdns,
 * the system roots, which sign nothing here).
 */
function makeDotCertificates(tmp) {
  const dir = join(tmp, 'dot-tls');
  mkdirSync(dir, { recursive: true });
  const f = (name) => join(dir, name);
  writeFileSync(f('server.ext'), [
    `subjectAltName=DNS:${DOT_NAME},IP:${DOT_UPSTREAM.host}`,
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  const steps = [
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'),
      '-days', '2', '-subj', '/CN=pvdns bench throwaway CA'],
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'),
      '-subj', `/CN=${DOT_NAME}`],
    ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'),
      '-days', '2', '-extfile', f('server.ext')],
  ];
  for (const args of steps) {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.error) throw new BenchError(`the DoT workload needs openssl to make its certificates: ${r.error.message}`);
    if (r.status !== 0) throw new BenchError(`openssl ${args[0]} failed making the DoT certificates: ${(r.stderr || r.stdout).trim().split('\n').at(-1)}`);
  }
  return { ca: f('ca.pem'), key: f('server.key'), pem: f('server.pem') };
}

/**
 * startDotUpstream starts the Unbound every DoT front forwards to: DoT only, on
 * DOT_UPSTREAM, forwarding to nsd. `forward-no-cache` keeps it from caching
 * what it forwards (and the names are unique anyway), so every query costs it
 * the same whichever front asks; it is started afresh for each front's run.
 * incoming-num-tcp: Unbound's default of 10 connections per thread would
 * refuse a front that opens more (Unbound's outgoing-num-tcp is also 10).
 */
function startDotUpstream(tmp, certs) {
  const conf = `server:
  verbosity: 0
  use-syslog: no
  logfile: ""
  num-threads: 1
  interface: ${DOT_UPSTREAM.host}@${DOT_UPSTREAM.port}
  tls-port: ${DOT_UPSTREAM.port}
  tls-service-key: "${certs.key}"
  tls-service-pem: "${certs.pem}"
  incoming-num-tcp: 100
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  domain-insecure: "test"
  local-zone: "test." nodefault
  chroot: ""
  username: ""
  directory: "${tmp}"
  pidfile: "${tmp}/dot-upstream.pid"
  msg-cache-size: 4m
  rrset-cache-size: 4m
  prefetch: no

remote-control:
  control-enable: no

forward-zone:
  name: "."
  forward-addr: ${UPSTREAM.host}@${UPSTREAM.port}
  forward-no-cache: yes
`;
  const path = join(tmp, 'dot-upstream.conf');
  writeFileSync(path, conf);
  checkConfig('DoT upstream (unbound)', 'unbound-checkconf', [path]);
  return launch('DoT upstream (unbound)', 'unbound', ['-d', '-c', path], { cwd: tmp, tmp });
}

/** One query over DoT (RFC 7858: TCP framing inside TLS), the name authenticated against `ca`; for readiness. */
function queryTls(host, port, servername, ca, name, timeoutMs = 1000) {
  return new Promise((resolveQuery, rejectQuery) => {
    const id = Math.floor(Math.random() * 0x10000);
    let received = Buffer.alloc(0);
    const socket = tls.connect({ host, port, servername, ca: readFileSync(ca) });
    const finish = (fn, value) => {
      clearTimeout(timer);
      socket.destroy();
      fn(value);
    };
    const timer = setTimeout(() => finish(rejectQuery, new Error('timeout')), timeoutMs);
    socket.on('error', (e) => finish(rejectQuery, e));
    socket.on('secureConnect', () => {
      const q = encodeQuery(id, name);
      socket.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]));
    });
    socket.on('data', (d) => {
      received = Buffer.concat([received, d]);
      if (received.length < 2 || received.length < 2 + received.readUInt16BE(0)) return;
      try {
        finish(resolveQuery, parseResponse(received.subarray(2, 2 + received.readUInt16BE(0))));
      } catch (e) {
        finish(rejectQuery, e);
      }
    });
  });
}

async function waitUntilAnsweringTls(proc, certs, name, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during startup`);
    try {
      const r = await queryTls(DOT_UPSTREAM.host, DOT_UPSTREAM.port, DOT_NAME, certs.ca, name);
      if (r.rcode === 0 && r.addresses.includes(MISS_ADDRESS)) return;
      last = `answered rcode ${r.rcode} with A [${r.addresses.join(', ')}]`;
    } catch (e) {
      last = e.message;
    }
    await sleep(200);
  }
  throw serverError(proc, `no answer for ${name} over DoT from ${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port} within ${timeoutMs / 1000} s (${last})`);
}

/** pvdns with one PvD whose only server is the DoT upstream, strict (nothing in the clear), same cache as the cleartext runs. */
function startPvdnsDot(tmp, { host, port }, certs) {
  checkPvdnsBuilt();
  const yaml = `listen: ["${host}:${port}"]
http: { listen: "${host}:8053" }
log: { level: warn }
access: { allow: ["127.0.0.0/8"] }
cache: { maxEntries: ${PVDNS_CACHE_ENTRIES} }
tls: { caFile: "${certs.ca}" }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
pvds:
  - identifier: bench
    dnsServers: ["tls://${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port}#${DOT_NAME}"]
    encryption: strict
    default: true
`;
  const path = join(tmp, 'pvdns-dot.yaml');
  writeFileSync(path, yaml);
  return launch('pvdns (DoT)', process.execPath, [...pvdnsNodeFlags(), PVDNS_CLI, 'serve', '--config', path], { cwd: REPO_ROOT, tmp });
}

/**
 * Unbound as in the cleartext runs (one thread, the same caches), forwarding
 * over TLS (`forward-tls-upstream`) and authenticating DOT_NAME against the CA.
 * Its other stream settings are Unbound's defaults (outgoing-num-tcp 10,
 * max-reuse-tcp-queries 200, tcp-reuse-timeout 60 s).
 */
function startUnboundDot(tmp, { host, port }, certs) {
  const conf = `server:
  verbosity: 0
  use-syslog: no
  logfile: ""
  num-threads: 1
  interface: ${host}@${port}
  port: ${port}
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  domain-insecure: "test"
  local-zone: "test." nodefault
  chroot: ""
  username: ""
  directory: "${tmp}"
  pidfile: "${tmp}/unbound-dot.pid"
  msg-cache-size: 256m
  rrset-cache-size: 512m
  prefetch: no
  tls-cert-bundle: "${certs.ca}"

remote-control:
  control-enable: no

forward-zone:
  name: "."
  forward-tls-upstream: yes
  forward-addr: ${DOT_UPSTREAM.host}@${DOT_UPSTREAM.port}#${DOT_NAME}
`;
  const path = join(tmp, 'unbound-dot.conf');
  writeFileSync(path, conf);
  checkConfig('unbound (DoT)', 'unbound-checkconf', [path]);
  return launch('unbound (DoT)', 'unbound', ['-d', '-c', path], { cwd: tmp, tmp });
}

/**
 * dnsdist with the DoT upstream as its one backend (certificate validated
 * against the CA), a packet cache as large as pvdns's, its health checks asking
 * a name nsd serves, and no security polling (which would send a query off the
 * machine). Its thread settings are its defaults: it is multi-threaded
 * (a UDP listener, TCP workers that carry DoT to the backend).
 * The web server (loopback, this address) exposes the backend's connection counts.
 */
function startDnsdistDot(tmp, { host, port }, certs) {
  const conf = `setSecurityPollSuffix("")
setLocal("${host}:${port}")
setACL({"127.0.0.0/8"})
newServer({address="${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port}", tls="openssl", subjectName="${DOT_NAME}", caStore="${certs.ca}", validateCertificates=true, checkName="${hitName(0)}.", maxInFlight=${DNSDIST_MAX_IN_FLIGHT}})
getPool(""):setCache(newPacketCache(${PVDNS_CACHE_ENTRIES}))
webserver("${host}:8083")
setWebserverConfig({apiKey="bench", password="bench", acl="127.0.0.0/8"})
`;
  const path = join(tmp, 'dnsdist-dot.conf');
  writeFileSync(path, conf);
  const check = spawnSync('dnsdist', ['--check-config', '-C', path], { encoding: 'utf8' });
  if (check.status !== 0) throw new BenchError(`dnsdist (DoT): generated config rejected by dnsdist --check-config:\n${check.stdout}${check.stderr}`);
  return launch('dnsdist (DoT)', 'dnsdist', ['--supervised', '--disable-syslog', '-C', path], { cwd: tmp, tmp });
}

/** The clock ticks of /proc/<pid>/stat's CPU times (USER_HZ). */
const CLOCK_TICKS = Number(captureOutput('getconf', ['CLK_TCK']).trim()) || 100;

/** cpuTicks is the user+system CPU time a process (all its threads, ended ones too) has used, in clock ticks, from /proc. */
function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}

/** cpuSeconds is cpuTicks in seconds. */
function cpuSeconds(pid) {
  const ticks = cpuTicks(pid);
  return ticks === null ? null : ticks / CLOCK_TICKS;
}

/** Linux's count of TCP connections accepted (Tcp PassiveOpens in /proc/net/snmp), machine-wide. */
function tcpPassiveOpens() {
  return snmpCounter('Tcp', 'PassiveOpens');
}

/**
 * handshakeCount is how many TLS connections the front has opened to the
 * upstream by its own count, or null when it keeps none: pvdns's
 * pvdns_upstream_tls_handshakes_total (every result), dnsdist's new TCP
 * connections to its backend. Unbound's statistics count no outgoing
 * connections.
 */
async function handshakeCount(name, front) {
  try {
    if (name === 'pvdns') {
      const sums = promSums(await fetch(`http://${front.host}:8053/metrics`).then((r) => r.text()), 'result');
      return {
        total: sums.get('pvdns_upstream_tls_handshakes_total') ?? 0,
        resumed: sums.get('pvdns_upstream_tls_handshakes_total:resumed') ?? 0,
        failed: sums.get('pvdns_upstream_tls_handshakes_total:failed') ?? 0,
      };
    }
    if (name === 'dnsdist') {
      const stats = await fetch(`http://${front.host}:8083/api/v1/servers/localhost`, { headers: { 'X-API-Key': 'bench' } }).then((r) => r.json());
      const backend = stats.servers?.[0];
      if (backend?.tcpNewConnections === undefined) return null;
      return { total: backend.tcpNewConnections, resumed: backend.tlsResumptions ?? null, failed: null };
    }
  } catch (e) {
    say(`${name} (DoT): cannot read its handshake count: ${e.message}`);
  }
  return null;
}

/**
 * benchmarkDot runs the DoT workload through one front: a fresh DoT upstream,
 * the front, its answers checked, DOT_WARM_NAMES unique names to open its
 * connections, then unique names for --duration seconds at full load (every
 * query a miss at the front and at the upstream), then unique names at a fixed
 * rate for latency percentiles. Handshakes, TCP connections accepted and CPU
 * are counted over the full-load run only.
 */
async function benchmarkDot(name, tmp, certs, opts, round) {
  const front = { ...DOT_FRONTS[name], missPrefix: `${DOT_FRONTS[name].missPrefix}${round}-` };
  const label = `${name} (DoT)`;
  say(`DoT upstream: starting on ${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port}`);
  const upstream = startDotUpstream(tmp, certs);
  const files = [];
  const results = [];
  let proc = null;
  try {
    await waitUntilAnsweringTls(upstream, certs, `probe-up-${front.missPrefix}.miss.${ZONE}`, 10_000);
    say(`${label}: starting on ${front.host}:${front.port}`);
    proc = front.start(tmp, front, certs);
    await waitUntilAnswering(proc, front.host, front.port, hitName(1), name === 'pvdns' ? 20_000 : 10_000);
    await checkAnswer(proc, front.host, front.port, `probe-${front.missPrefix}.miss.${ZONE}`, MISS_ADDRESS);

    const warmFile = writeMissesFile(tmp, `${front.missPrefix}w`, DOT_WARM_NAMES);
    files.push(warmFile);
    const warm = await dnsperf(`${label} warm-up`, front, warmFile, { ...opts, duration: null, maxRuns: 1 });
    if ((warm.rcodes.NOERROR ?? 0) !== DOT_WARM_NAMES) {
      throw serverError(proc, `warm-up got ${warm.completed}/${DOT_WARM_NAMES} answers, rcodes ${JSON.stringify(warm.rcodes)}`);
    }

    say(`${label}: writing ${opts.missNames.toLocaleString('en')} unique names, then misses through DoT for ${opts.duration} s`);
    const missesFile = writeMissesFile(tmp, front.missPrefix, opts.missNames);
    files.push(missesFile);
    const handshakesBefore = await handshakeCount(name, front);
    const opensBefore = tcpPassiveOpens();
    const cpuBefore = { front: cpuSeconds(proc.child.pid), upstream: cpuSeconds(upstream.child.pid) };
    const misses = await dnsperf(`${label} misses`, front, missesFile, { ...opts, maxRuns: 1 });
    const cpuAfter = { front: cpuSeconds(proc.child.pid), upstream: cpuSeconds(upstream.child.pid) };
    const opensAfter = tcpPassiveOpens();
    const handshakesAfter = await handshakeCount(name, front);
    const seconds = misses.runTimeSec;
    const perSecond = (a, b) => (a === null || b === null || !seconds ? null : (b - a) / seconds);
    results.push({
      server: name, workload: 'dot-misses', round, ...misses,
      handshakes: handshakesBefore && handshakesAfter ? handshakesAfter.total - handshakesBefore.total : null,
      handshakesPerSec: handshakesBefore && handshakesAfter ? perSecond(handshakesBefore.total, handshakesAfter.total) : null,
      resumedHandshakes: handshakesBefore?.resumed != null && handshakesAfter?.resumed != null ? handshakesAfter.resumed - handshakesBefore.resumed : null,
      failedHandshakes: handshakesBefore?.failed != null && handshakesAfter?.failed != null ? handshakesAfter.failed - handshakesBefore.failed : null,
      tcpOpensPerSec: perSecond(opensBefore, opensAfter),
      frontCpu: perSecond(cpuBefore.front, cpuAfter.front),
      upstreamCpu: perSecond(cpuBefore.upstream, cpuAfter.upstream),
    });

    const latencyFile = writeMissesFile(tmp, `${front.missPrefix}l`, opts.dotLatencyQps * Math.min(opts.duration, 5) + 1000);
    files.push(latencyFile);
    const latency = await latencyRun(`${label} miss latency`, front, latencyFile, { ...opts, latencyQps: opts.dotLatencyQps });
    results.push({ server: name, workload: 'dot-latency', round, ...latency });

    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the run`);
    if (upstream.exit) throw serverError(upstream, `${describeExit(upstream.exit)} during the ${label} run`);
  } finally {
    if (proc) await stop(proc);
    await stop(upstream);
    for (const f of files) rmSync(f, { force: true });
  }
  for (const r of results) {
    r.warnings = sanityWarnings({ ...r, workload: r.workload === 'dot-misses' ? 'misses' : r.workload }, opts.missNames, PVDNS_CACHE_ENTRIES);
    if (r.workload === 'dot-latency' && r.lost > 0) r.warnings.push(`${r.lost} queries lost at ${opts.dotLatencyQps} qps`);
    for (const w of r.warnings) say(`WARNING ${r.workload}/${r.server}: ${w}`);
  }
  return results;
}

/** dotMedians picks each front's median round of the DoT misses, and the median latency percentiles. */
function dotMedians(runs, fronts) {
  const out = [];
  const mid = (xs) => {
    const v = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
    return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
  };
  for (const server of fronts) {
    const mine = runs.filter((r) => r.workload === 'dot-misses' && r.server === server).sort((a, b) => a.qps - b.qps);
    if (mine.length === 0) continue;
    out.push({ ...mine[Math.floor((mine.length - 1) / 2)], qpsRounds: mine.map((r) => r.qps), handshakesRounds: mine.map((r) => r.handshakes) });
  }
  for (const server of fronts) {
    const mine = runs.filter((r) => r.workload === 'dot-latency' && r.server === server);
    if (mine.length === 0) continue;
    out.push({ ...mine[0], p50Ms: mid(mine.map((r) => r.p50Ms)), p99Ms: mid(mine.map((r) => r.p99Ms)), p999Ms: mid(mine.map((r) => r.p999Ms)),
      qps: mid(mine.map((r) => r.qps)), p99Rounds: mine.map((r) => r.p99Ms), lost: mine.reduce((n, r) => n + r.lost, 0),
      answers: mine.reduce((n, r) => n + r.answers, 0) });
  }
  return out;
}

/** renderDot is the report's DoT section. */
function renderDot(report) {
  const { options, dot } = report;
  const lines = ['### Misses through DNS over TLS', ''];
  lines.push(`- each front forwards over DoT to one Unbound ${report.versions.unbound} serving DoT on ${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port} ` +
    `(certificate for ${DOT_NAME} from a throwaway CA; forward-no-cache; restarted for each run), which forwards to nsd`);
  const setups = {
    pvdns: `pvdns: \`tls://${DOT_UPSTREAM.host}:${DOT_UPSTREAM.port}#${DOT_NAME}\`, strict, tls.caFile`,
    unbound: 'unbound: forward-tls-upstream, tls-cert-bundle, 1 thread, caches as in the cleartext runs',
    dnsdist: `dnsdist ${report.versions.dnsdist ?? '?'}: DoT backend (tls="openssl", validateCertificates, maxInFlight ${DNSDIST_MAX_IN_FLIGHT}), packet cache, default threads`,
  };
  lines.push(`- ${options.dotFronts.map((n) => setups[n]).join('; ')}`);
  lines.push(`- unique names (-n 1) after ${DOT_WARM_NAMES} warm-up names per front; handshakes and CPU over the full-load run only`);
  for (const note of dot.notes) lines.push(`- ${note}`);
  lines.push('');
  lines.push('| front | qps | avg latency (ms) | sent | lost | rcodes | TLS handshakes/s (own count) | TCP accepts/s (machine) | front CPU | upstream CPU | qps per round |');
  lines.push('|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|');
  for (const r of dot.results.filter((x) => x.workload === 'dot-misses')) {
    const hs = r.handshakesPerSec === null ? 'n/a' : `${fmt(r.handshakesPerSec, 2)} (${r.handshakes}${r.resumedHandshakes ? `, ${r.resumedHandshakes} resumed` : ''}${r.failedHandshakes ? `, ${r.failedHandshakes} failed` : ''})`;
    const pct = (v) => (v === null ? 'n/a' : `${fmt(100 * v, 0)} %`);
    lines.push(`| ${r.server} | ${fmt(r.qps, 0)} | ${fmt(r.latencyAvgMs, 3)} | ${r.sent} | ${r.lost} | ${rcodeSummary(r.rcodes)} | ${hs} | ` +
      `${fmt(r.tcpOpensPerSec, 2)} | ${pct(r.frontCpu)} | ${pct(r.upstreamCpu)} | ${r.qpsRounds.map((q) => fmt(q, 0)).join(' / ')} |`);
  }
  const latency = dot.results.filter((x) => x.workload === 'dot-latency');
  if (latency.length) {
    lines.push('', `Miss latency through DoT at a fixed ${options.dotLatencyQps} qps (unique names, dnsperf -Q -v; median of the rounds):`, '');
    lines.push('| front | p50 (ms) | p99 (ms) | p99.9 (ms) | answers | lost | p99 per round |');
    lines.push('|---|---:|---:|---:|---:|---:|---|');
    for (const r of latency) {
      lines.push(`| ${r.server} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ${fmt(r.p999Ms, 3)} | ${r.answers} | ${r.lost} | ${r.p99Rounds.map((v) => fmt(v, 3)).join(' / ')} |`);
    }
  }
  lines.push('', `dot misses: pvdns/unbound = ${fmt(dot.ratios['pvdns/unbound'])}, pvdns/dnsdist = ${fmt(dot.ratios['pvdns/dnsdist'])}`);
  return lines;
}

// ---------------------------------------------------------------- footprint

/** rssKiB reads a process's resident set size from /proc (Linux). */
function rssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** How many fresh pvdns processes the footprint takes its medians over. */
const FOOTPRINT_RUNS = 3;

/**
 * footprint measures pvdns alone, FOOTPRINT_RUNS times, each in a fresh
 * process: the time from starting it to its first answer (a local name: no
 * upstream in the way), and its RSS empty (4 s after that answer, once
 * start-up has settled and pvdns has handed back what it no longer holds)
 * and 4 s after 100,000 distinct answers were cached (likewise),
 * as bytes per cached answer. Where V8 last collected its heap makes single
 * figures swing by ±15 %; the medians are reported with every run's figure.
 */
async function footprint(tmp, opts) {
  const runs = [];
  for (let i = 0; i < FOOTPRINT_RUNS; i++) runs.push(await footprintOnce(tmp, opts, `fp${i}-`));
  const median = (key) => runs.map((r) => r[key]).sort((x, y) => x - y)[Math.floor(runs.length / 2)];
  return {
    startupMs: median('startupMs'),
    bytesPerAnswer: median('bytesPerAnswer'),
    emptyKiB: median('emptyKiB'),
    fullKiB: median('fullKiB'),
    entries: runs[0].entries,
    runs,
  };
}

async function footprintOnce(tmp, opts, missPrefix) {
  const server = { ...SERVERS.pvdns, missPrefix };
  const started = performance.now();
  const proc = await server.start(tmp, server);
  let startupMs = NaN;
  for (;;) {
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during startup`);
    try {
      const r = await queryA(server.host, server.port, 'localhost', 50);
      if (r.rcode === 0) {
        startupMs = performance.now() - started;
        break;
      }
    } catch {
      // not listening yet
    }
    if (performance.now() - started > 20_000) throw serverError(proc, 'no answer within 20 s');
    await sleep(5);
  }
  let file = null;
  try {
    // pvdns hands memory back once it has been quiet 2 s after growing (src/server/reclaim.ts):
    // both samples come after that, so they are what it keeps, not what a GC has yet to free.
    await sleep(4000);
    const emptyKiB = rssKiB(proc.child.pid);
    const entries = 100_000;
    file = writeMissesFile(tmp, server.missPrefix, entries);
    const fill = await dnsperf('pvdns cache fill', server, file, { ...opts, duration: 120, maxRuns: 1 });
    await sleep(4000);
    const fullKiB = rssKiB(proc.child.pid);
    return { startupMs, emptyKiB, fullKiB, entries: fill.completed, bytesPerAnswer: ((fullKiB - emptyKiB) * 1024) / fill.completed };
  } finally {
    await stop(proc);
    if (file) rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------- idle

/** procStatus reads what the idle workload reports from /proc/<pid>/status: RSS (all, anon, file; KiB) and threads. */
function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { rssKiB: field('VmRSS'), anonKiB: field('RssAnon'), fileKiB: field('RssFile'), threads: field('Threads') };
}

/**
 * taskSchedstats maps each thread of a process to its name (comm) and its
 * /proc/<pid>/task/<tid>/schedstat figures: time on a CPU (ns, the first
 * field) and timeslices run (the third: how many times the scheduler put it on
 * a CPU). A thread with nothing to do runs one timeslice per wake-up, so at
 * idle the timeslices count the wake-ups.
 */
function taskSchedstats(pid) {
  const tasks = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const [runNs, , slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
      tasks.set(tid, { comm: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), runNs, slices });
    } catch { /* the thread ended while we read */ }
  }
  return tasks;
}

/**
 * idleWindow leaves a server alone for `seconds` and says what it did
 * meanwhile: CPU ticks (utime + stime of the whole process), the CPU time the
 * scheduler counted (schedstat, ns-exact where ticks are 10 ms steps),
 * wake-ups (timeslices run, summed over its threads) per second, which threads
 * woke, and its memory and thread count at the end. A thread started during
 * the window counts all its timeslices; one that ended during it is missed
 * (its CPU time is not: the process's stat keeps it).
 */
async function idleWindow(proc, seconds) {
  const pid = proc.child.pid;
  const before = { at: performance.now(), ticks: cpuTicks(pid), tasks: taskSchedstats(pid) };
  await sleep(seconds * 1000);
  if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} while idle`);
  const after = { at: performance.now(), ticks: cpuTicks(pid), tasks: taskSchedstats(pid) };
  let wakeups = 0;
  let runNs = 0;
  const threadsWoke = [];
  for (const [tid, t] of after.tasks) {
    const was = before.tasks.get(tid) ?? { slices: 0, runNs: 0 };
    wakeups += t.slices - was.slices;
    runNs += t.runNs - was.runNs;
    if (t.slices > was.slices) threadsWoke.push({ tid: Number(tid), comm: t.comm, wakeups: t.slices - was.slices, cpuMs: (t.runNs - was.runNs) / 1e6 });
  }
  threadsWoke.sort((x, y) => y.wakeups - x.wakeups);
  const measured = (after.at - before.at) / 1000;
  const ticks = after.ticks - before.ticks;
  return {
    seconds: measured,
    ticks,
    cpuMs: (ticks * 1000) / CLOCK_TICKS,
    schedCpuMs: runNs / 1e6,
    wakeups,
    wakeupsPerSec: wakeups / measured,
    threadsWoke,
    ...procStatus(pid),
  };
}

/**
 * idle measures each selected cleartext server as a host daemon runs it, one
 * at a time, each in a fresh process with its default-sized cache
 * (IDLE_CACHES): 1,000 names warmed, IDLE_SETTLE_SECONDS to settle, then
 * nothing sent for --idle-seconds (CPU, wake-ups, threads, memory); then a
 * flood of unique names at full load for --duration seconds, RSS at its end,
 * and nothing again for --idle-seconds: how much memory the flood left behind.
 */
async function idle(tmp, hitsFile, opts) {
  const servers = [];
  for (const name of opts.only) servers.push(await idleOnce(name, tmp, hitsFile, opts));
  return { idleSeconds: opts.idleSeconds, settleSeconds: IDLE_SETTLE_SECONDS, clockTicks: CLOCK_TICKS, servers };
}

async function idleOnce(name, tmp, hitsFile, opts) {
  const server = { ...SERVERS[name], ...IDLE_CACHES[name], missPrefix: `${SERVERS[name].missPrefix}idle-` };
  // Written first, so that making the file does not overlap anything measured.
  say(`${name} (idle): writing ${opts.missNames.toLocaleString('en')} unique names for the flood`);
  const floodFile = writeMissesFile(tmp, server.missPrefix, opts.missNames);
  say(`${name} (idle): starting on ${server.host}:${server.port} with its default-sized cache`);
  const proc = await server.start(tmp, server);
  try {
    await waitUntilAnswering(proc, server.host, server.port, hitName(1), name === 'pvdns' ? 20_000 : 10_000);
    await checkAnswer(proc, server.host, server.port, `probe-${server.missPrefix}.miss.${ZONE}`, MISS_ADDRESS);
    await warmCache(name, server, hitsFile, opts);
    await sleep(IDLE_SETTLE_SECONDS * 1000);
    say(`${name} (idle): nothing sent for ${opts.idleSeconds} s`);
    const idleFigures = await idleWindow(proc, opts.idleSeconds);
    say(`${name} (idle): ${idleFigures.ticks} ticks, ${fmt(idleFigures.wakeupsPerSec, 1)} wake-ups/s, RSS ${fmt(idleFigures.rssKiB / 1024, 1)} MiB; ` +
      `flood of unique names for ${opts.duration} s`);
    const ticksBefore = cpuTicks(proc.child.pid);
    const flood = await dnsperf(`${name} flood`, server, floodFile, { ...opts, maxRuns: 1 });
    // Right at its end, before anything has had time to hand memory back.
    const floodEnd = { ...procStatus(proc.child.pid), ticks: cpuTicks(proc.child.pid) - ticksBefore };
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the flood`);
    say(`${name} (idle): RSS ${fmt(floodEnd.rssKiB / 1024, 1)} MiB at the flood's end (${fmt(flood.qps, 0)} qps); nothing sent for ${opts.idleSeconds} s`);
    const afterFlood = await idleWindow(proc, opts.idleSeconds);
    return {
      server: name,
      cache: IDLE_CACHES[name],
      idle: idleFigures,
      flood: { ...flood, ...floodEnd },
      afterFlood,
      afterFloodRatio: afterFlood.rssKiB / idleFigures.rssKiB,
    };
  } finally {
    await stop(proc);
    rmSync(floodFile, { force: true });
  }
}

/** IDLE_TARGETS are issue 19's targets for pvdns: idle CPU per 60 s, idle RSS, RSS after a flood against idle. */
const IDLE_TARGETS = { ticksPer60s: 3, rssMiB: 52, afterFloodRatio: 2 };

/** renderIdle is the report's idle section: one table, the servers side by side, and pvdns's targets. */
function renderIdle(report) {
  const { idle: r, options } = report;
  const s = r.idleSeconds;
  const mib = (kib) => fmt(kib / 1024, 1);
  const caches = { pvdns: 'pvdns its default cache.maxEntries', dnsmasq: `dnsmasq --cache-size=${IDLE_CACHES.dnsmasq.cacheEntries}`, unbound: 'unbound its default msg/rrset caches and 1 thread' };
  const lines = ['### Idle: each server left alone, and after a flood', ''];
  lines.push(`- as a host daemon is shipped: ${r.servers.map((x) => caches[x.server]).join(', ')}; each in a fresh process, ` +
    `${HIT_NAMES.toLocaleString('en')} names warmed, ${r.settleSeconds} s to settle, then nothing sent for ${s} s`);
  lines.push(`- then a flood: unique names at full load for ${options.duration} s (dnsperf as in misses), RSS at its end, then nothing sent for ${s} s`);
  lines.push(`- CPU: utime + stime from /proc/PID/stat in clock ticks (1 tick = ${fmt(1000 / r.clockTicks, 0)} ms); ` +
    'wake-ups: timeslices run (/proc/PID/task/*/schedstat, third field), summed over the threads', '');
  lines.push(`| server | idle RSS MiB (anon / file) | idle CPU ticks / ${s} s (ms) | wake-ups/s | threads | flood qps | RSS at flood end MiB | RSS ${s} s after MiB | CPU ticks / ${s} s after | after flood / idle |`);
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of r.servers) {
    lines.push(`| ${x.server} | ${mib(x.idle.rssKiB)} (${mib(x.idle.anonKiB)} / ${mib(x.idle.fileKiB)}) | ${x.idle.ticks} (${fmt(x.idle.cpuMs, 0)}) | ` +
      `${fmt(x.idle.wakeupsPerSec, 1)} | ${x.idle.threads} | ${fmt(x.flood.qps, 0)} | ${mib(x.flood.rssKiB)} | ${mib(x.afterFlood.rssKiB)} | ` +
      `${x.afterFlood.ticks} | ${fmt(x.afterFloodRatio, 2)} |`);
  }
  const woke = (w) => {
    if (w.threadsWoke.length === 0) return 'none';
    // Threads of one name (a pool) are listed once, with how many of them woke.
    const byName = new Map();
    for (const t of w.threadsWoke) {
      const g = byName.get(t.comm) ?? { n: 0, wakeups: 0 };
      byName.set(t.comm, { n: g.n + 1, wakeups: g.wakeups + t.wakeups });
    }
    return [...byName].map(([comm, g]) => `${comm}${g.n > 1 ? ` ×${g.n}` : ''} ${g.wakeups}`).join(', ');
  };
  lines.push('', `Threads that woke while idle (wake-ups over ${s} s): ${r.servers.map((x) => `${x.server}: ${woke(x.idle)}`).join('; ')}.`);
  const pv = r.servers.find((x) => x.server === 'pvdns');
  if (pv) {
    const per60 = (pv.idle.ticks * 60) / pv.idle.seconds;
    const verdict = (ok) => (ok ? 'PASS' : 'FAIL');
    lines.push('', `pvdns targets: idle CPU ${fmt(per60, 1)} ticks / 60 s (≤ ${IDLE_TARGETS.ticksPer60s}${s === 60 ? '' : `; measured over ${s} s`}): ${verdict(per60 <= IDLE_TARGETS.ticksPer60s)}; ` +
      `idle RSS ${mib(pv.idle.rssKiB)} MiB (≤ ${IDLE_TARGETS.rssMiB}): ${verdict(pv.idle.rssKiB / 1024 <= IDLE_TARGETS.rssMiB)}; ` +
      `${s} s after the flood ${fmt(pv.afterFloodRatio, 2)} × idle (≤ ${IDLE_TARGETS.afterFloodRatio}${s < 60 ? `, within 60 s: only ${s} s waited` : ''}): ` +
      `${verdict(pv.afterFloodRatio <= IDLE_TARGETS.afterFloodRatio)}`);
  }
  return lines;
}

// ---------------------------------------------------------------- soak

/**
 * writeSoakFile writes the soak's mixed queries, in a repeating pattern of 20:
 * 14 cached names (A), 3 unique names (misses), 2 names that do not exist
 * (NXDOMAIN, cached after the first time) and 1 AAAA of a cached name (NODATA).
 */
function writeSoakFile(tmp, count) {
  const path = join(tmp, 'soak.txt');
  const fd = openSync(path, 'w');
  try {
    for (let start = 0; start < count; start += 100_000) {
      let text = '';
      for (let i = start; i < Math.min(count, start + 100_000); i++) {
        const k = i % 20;
        if (k < 14) text += `${hitName(i % HIT_NAMES)} A\n`;
        else if (k < 17) text += `soak${i}.miss.${ZONE} A\n`;
        else if (k < 19) text += `nx${i % 5000}.${ZONE} A\n`;
        else text += `${hitName(i % HIT_NAMES)} AAAA\n`;
      }
      writeSync(fd, text);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Sums of a Prometheus text exposition's samples, by metric name and, when given, one label's value. */
function promSums(text, label) {
  const sums = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([\d.e+-]+)$/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    sums.set(m[1], (sums.get(m[1]) ?? 0) + value);
    const l = m[2] && new RegExp(`${label}="([^"]*)"`).exec(m[2]);
    if (l) sums.set(`${m[1]}:${l[1]}`, (sums.get(`${m[1]}:${l[1]}`) ?? 0) + value);
  }
  return sums;
}

/** dnsperf -S prints "<unix time>: <qps>" every interval; these are those lines. */
function intervalQps(text) {
  return [...text.matchAll(/^(\d+\.\d+): ([\d.]+)$/gm)].map((m) => ({ at: Number(m[1]) * 1000, qps: Number(m[2]) }));
}

/**
 * soak runs pvdns alone for `opts.soak` seconds under a mixed load — UDP at
 * `opts.soakQps` (hits, misses, NXDOMAIN, NODATA) and TCP at 500 qps — and
 * samples its RSS and metrics every `opts.interval` seconds. It fails (exit 1)
 * when queries are lost or answered with an error, when pvdns dies, or when
 * its RSS keeps growing once the cache is full.
 */
async function soak(tmp, hitsFile, opts) {
  const server = { ...SERVERS.pvdns, cacheEntries: opts.soakCache, inspect: SOAK_INSPECTOR_PORT };
  say(`pvdns: starting on ${server.host}:${server.port} (cache.maxEntries ${opts.soakCache})`);
  const proc = await server.start(tmp, server);
  let inspector = null;
  const samples = [];
  let udp;
  let tcp;
  let started = 0;
  try {
    await waitUntilAnswering(proc, server.host, server.port, hitName(1), 20_000);
    inspector = await Inspector.connect(SOAK_INSPECTOR_PORT);
    await warmCache('pvdns', server, hitsFile, opts);
    say(`writing ${(opts.soakQps * opts.soak).toLocaleString('en')} queries, then the soak for ${opts.soak} s`);
    const file = writeSoakFile(tmp, opts.soakQps * opts.soak);
    const common = ['-s', server.host, '-p', String(server.port), '-l', String(opts.soak), '-S', String(opts.interval), '-t', String(opts.timeout)];
    started = Date.now();
    const timeoutMs = (opts.soak + opts.timeout + 60) * 1000;
    udp = runCommand('dnsperf (soak, udp)', 'dnsperf', [...common, '-d', file, '-n', '1', '-Q', String(opts.soakQps), '-c', '4', '-q', '500'], { timeoutMs });
    tcp = runCommand('dnsperf (soak, tcp)', 'dnsperf', [...common, '-d', hitsFile, '-m', 'tcp', '-Q', '500', '-c', '4', '-q', '20'], { timeoutMs });
    let done = false;
    Promise.all([udp, tcp]).finally(() => { done = true; });
    while (!done) {
      await sleep(opts.interval * 1000);
      if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the soak`);
      await inspector.collectGarbage();
      const metrics = await fetch(`http://${server.host}:8053/metrics`).then((r) => r.text()).then((t) => promSums(t, 'rcode'), () => null);
      samples.push({ t: (Date.now() - started) / 1000, rssKiB: rssKiB(proc.child.pid), metrics });
      const last = samples.at(-1);
      say(`t=${last.t.toFixed(0)} s: RSS ${(last.rssKiB / 1024).toFixed(1)} MiB, cache ${last.metrics?.get('pvdns_cache_entries') ?? '?'} entries`);
    }
    if (proc.exit) throw serverError(proc, `${describeExit(proc.exit)} during the soak`);
  } finally {
    inspector?.close();
    await stop(proc);
  }
  const [u, t] = await Promise.all([udp, tcp]);
  for (const [label, r] of [['udp', u], ['tcp', t]]) {
    if (r.code !== 0) throw new BenchError(`dnsperf (soak, ${label}) failed (${r.signal ?? `exit ${r.code}`}):\n${r.stdout}${r.stderr}`);
  }
  return { startedAt: started, samples, udp: { ...parseDnsperf(u.stdout), intervals: intervalQps(u.stdout) }, tcp: { ...parseDnsperf(t.stdout), intervals: intervalQps(t.stdout) } };
}

/** soakVerdict lists what makes a soak fail, and says how the memory was judged. */
function soakVerdict(result, opts) {
  const problems = [];
  for (const label of ['udp', 'tcp']) {
    const r = result[label];
    if (r.lost > r.sent * 0.001) problems.push(`${label}: ${r.lost} of ${r.sent} queries lost`);
    const bad = Object.entries(r.rcodes).filter(([k]) => !['NOERROR', 'NXDOMAIN'].includes(k));
    if (bad.length) problems.push(`${label}: answers with ${bad.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  // Once the cache is full the process should level off. Each sample follows a full GC (see
  // Inspector), so it shows what pvdns holds; V8 keeps the high-water mark of its heap resident,
  // so RSS steps up now and then; a leak climbs on. Judged over the samples after the cache
  // filled: the last third may rise at most 16 MiB above the middle third.
  const full = result.samples.findIndex((s) => (s.metrics?.get('pvdns_cache_entries') ?? 0) >= opts.soakCache * 0.99);
  const after = full < 0 ? [] : result.samples.slice(full);
  let memory = 'the cache did not fill early enough in the run, so RSS growth was not judged';
  if (after.length >= 6) {
    const third = Math.floor(after.length / 3);
    const peak = (xs) => Math.max(...xs.map((s) => s.rssKiB)) / 1024;
    const middle = peak(after.slice(third, 2 * third));
    const last = peak(after.slice(2 * third));
    memory = `the cache was full at t=${after[0].t.toFixed(0)} s; peak RSS ${middle.toFixed(1)} MiB in the middle third of the rest ` +
      `of the run, ${last.toFixed(1)} MiB in the last third (at most 16 MiB more allowed)`;
    if (last - middle > 16) problems.push(`RSS still climbing once the cache was full: ${memory}`);
  }
  return { problems, memory };
}

function renderSoak(report) {
  const { versions, host, options, soak: r } = report;
  const lines = [`## pvdns soak — ${report.date}`, ''];
  lines.push(`- versions: pvdns ${versions.pvdns}${versions.pvdnsCommit ? ` (${versions.pvdnsCommit})` : ''}, node ${versions.node}, dnsperf ${versions.dnsperf}, nsd ${versions.nsd}`);
  lines.push(`- host: ${host.cpus} × ${host.cpuModel}, ${host.os}`);
  lines.push(`- load: ${options.soak} s; UDP at ${options.soakQps} qps (70 % cached names, 15 % unique names, 10 % NXDOMAIN, 5 % NODATA), ` +
    `TCP at 500 qps (cached names); cache.maxEntries ${options.soakCache}; a full GC (through pvdns's inspector) before each sample`, '');
  lines.push('| t (s) | UDP qps | TCP qps | RSS (MiB) | JS heap used (MiB) | cache entries | SERVFAIL so far | shed so far |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  const qpsNear = (intervals, t) => intervals.find((x) => Math.abs((x.at - r.startedAt) / 1000 - t) <= options.interval / 2)?.qps ?? null;
  for (const s of r.samples) {
    const heap = s.metrics?.get('nodejs_heap_size_used_bytes');
    lines.push(`| ${s.t.toFixed(0)} | ${fmt(qpsNear(r.udp.intervals, s.t), 0)} | ${fmt(qpsNear(r.tcp.intervals, s.t), 0)} | ${fmt(s.rssKiB / 1024, 1)} | ` +
      `${heap === undefined ? 'n/a' : fmt(heap / 1048576, 1)} | ` +
      `${s.metrics?.get('pvdns_cache_entries') ?? 'n/a'} | ${s.metrics?.get('pvdns_responses_total:SERVFAIL') ?? 0} | ${s.metrics?.get('pvdns_queries_shed_total') ?? 'n/a'} |`);
  }
  lines.push('');
  for (const label of ['udp', 'tcp']) {
    const x = r[label];
    lines.push(`${label}: ${x.sent} sent, ${x.completed} completed, ${x.lost} lost, ${fmt(x.qps, 0)} qps, rcodes ${rcodeSummary(x.rcodes)}, ` +
      `average latency ${fmt(x.latencyAvgMs, 3)} ms`);
  }
  lines.push('', `Memory: ${report.memory}.`);
  lines.push('', report.problems.length ? `**FAILED:** ${report.problems.join('; ')}` : 'OK: nothing lost, no errors, memory within bounds.');
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- report

/** medians picks, per workload and server, the round with the median qps, noting the range of all rounds. */
function medians(runs, servers) {
  const out = [];
  for (const workload of ['hits', 'misses']) {
    for (const server of servers) {
      const mine = runs.filter((r) => r.workload === workload && r.server === server).sort((a, b) => a.qps - b.qps);
      if (mine.length === 0) continue;
      const median = mine[Math.floor((mine.length - 1) / 2)];
      out.push({ ...median, qpsRounds: mine.map((r) => r.qps), lostRounds: mine.map((r) => r.lost) });
    }
  }
  // Hit latency: the median of each percentile over the rounds.
  for (const server of servers) {
    const mine = runs.filter((r) => r.workload === 'latency' && r.server === server);
    if (mine.length === 0) continue;
    const mid = (key) => {
      const v = mine.map((r) => r[key]).filter((x) => x !== null).sort((a, b) => a - b);
      return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
    };
    out.push({ ...mine[0], p50Ms: mid('p50Ms'), p99Ms: mid('p99Ms'), p999Ms: mid('p999Ms'), qps: mid('qps'),
      p99Rounds: mine.map((r) => r.p99Ms), lost: mine.reduce((n, r) => n + r.lost, 0), answers: mine.reduce((n, r) => n + r.answers, 0),
      over1Ms: mine.reduce((n, r) => n + r.over1Ms, 0) });
  }
  return out;
}

const fmt = (v, digits = 2) => (v === null || v === undefined ? 'n/a' : v.toFixed(digits));

function ratio(results, workload, a, b) {
  const qps = (s) => results.find((r) => r.workload === workload && r.server === s)?.qps;
  const x = qps(a);
  const y = qps(b);
  return x && y ? x / y : null;
}

function computeRatios(results) {
  const out = {};
  for (const w of ['hits', 'misses']) {
    out[w] = {
      'pvdns/dnsmasq': ratio(results, w, 'pvdns', 'dnsmasq'),
      'pvdns/unbound': ratio(results, w, 'pvdns', 'unbound'),
      'unbound/dnsmasq': ratio(results, w, 'unbound', 'dnsmasq'),
    };
  }
  return out;
}

function rcodeSummary(rcodes) {
  const entries = Object.entries(rcodes);
  if (entries.length === 1) return entries[0][0];
  return entries.map(([k, v]) => `${k} ${v}`).join(', ') || 'n/a';
}

function renderReport(report) {
  const { versions, host, options, results, ratios } = report;
  const lines = [];
  lines.push(`## pvdns benchmark — ${report.date}`, '');
  lines.push(`- versions: pvdns ${versions.pvdns}${versions.pvdnsCommit ? ` (${versions.pvdnsCommit})` : ''}, ` +
    `node ${versions.node}, dnsperf ${versions.dnsperf}, nsd ${versions.nsd}, ` +
    `dnsmasq ${versions.dnsmasq}, unbound ${versions.unbound}`);
  lines.push(`- host: ${host.cpus} × ${host.cpuModel}, ${host.os}, load average at start ${host.loadavg.map((l) => l.toFixed(2)).join(' ')}`);
  if (host.damon) lines.push(`- kernel: ${host.damon} (bench/README.md, "Latency on this machine")`);
  lines.push(`- caches: pvdns maxEntries ${PVDNS_CACHE_ENTRIES}, dnsmasq --cache-size ${DNSMASQ_CACHE_ENTRIES}, ` +
    'unbound msg 256m + rrset 512m; upstream nsd on ' + `${UPSTREAM.host}:${UPSTREAM.port}`);
  lines.push(`- dnsperf: UDP, ${options.duration} s per run, -c ${options.clients} -q ${options.outstanding} -t ${options.timeout}; ` +
    `hits = ${HIT_NAMES} warmed names looped, misses = unique names (-n 1, ${options.missNames.toLocaleString('en')} per server)`);
  lines.push('');
  // The cleartext comparison (absent with --only dot, or when no round workload ran).
  if (results.length) {
    lines.push(`Median of ${options.rounds} rounds per server (qps of every round in the last column).`, '');
    lines.push('| workload | server | qps | avg latency (ms) | min (ms) | max (ms) | stddev (ms) | sent | lost | rcodes | qps per round |');
    lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|');
    for (const workload of ['hits', 'misses']) {
      for (const r of results.filter((x) => x.workload === workload)) {
        lines.push(`| ${workload} | ${r.server} | ${fmt(r.qps, 0)} | ${fmt(r.latencyAvgMs, 3)} | ${fmt(r.latencyMinMs, 3)} | ` +
          `${fmt(r.latencyMaxMs, 3)} | ${fmt(r.latencyStddevMs, 3)} | ${r.sent} | ${r.lost} | ${rcodeSummary(r.rcodes)} | ` +
          `${r.qpsRounds.map((q) => fmt(q, 0)).join(' / ')} |`);
      }
    }
    const cpu = results.filter((x) => x.workload === 'hits' && x.cpuUsPerAnswer != null);
    if (cpu.length) lines.push('', `hits, each server's CPU time per answer (utime + stime): ${cpu.map((r) => `${r.server} ${fmt(r.cpuUsPerAnswer, 1)} µs`).join(', ')}`);
    const latency = results.filter((x) => x.workload === 'latency');
    if (latency.length) {
      lines.push('', `Cache-hit latency at a fixed ${options.latencyQps} qps (dnsperf -Q, each answer's latency from -v; ` +
        'the percentiles are the median of the rounds; answers, "over 1 ms" (slower than a millisecond) and lost count all the rounds):', '');
      lines.push('| server | p50 (ms) | p99 (ms) | p99.9 (ms) | answers | over 1 ms | lost | p99 per round |');
      lines.push('|---|---:|---:|---:|---:|---:|---:|---|');
      for (const r of latency) {
        lines.push(`| ${r.server === 'node-floor' ? 'node floor (reference)' : r.server} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ${fmt(r.p999Ms, 3)} | ${r.answers} | ` +
          `${r.over1Ms ?? 'n/a'} | ${r.lost} | ` +
          `${r.p99Rounds.map((v) => fmt(v, 3)).join(' / ')} |`);
      }
      if (latency.some((r) => r.server === 'node-floor')) {
        lines.push('', 'node floor: bench/node-floor.mjs, Node and pvdns\'s UDP addon answering each query with itself (no records), ' +
          'read and sent by batch as pvdns\'s listener does, with no pvdns code: what the runtime alone costs the tail.');
      }
    }
    lines.push('');
    for (const workload of ['hits', 'misses']) {
      const r = ratios[workload];
      lines.push(`${workload}: pvdns/dnsmasq = ${fmt(r['pvdns/dnsmasq'])}, pvdns/unbound = ${fmt(r['pvdns/unbound'])}`);
    }
    lines.push('');
    lines.push(`(reference) hits: unbound/dnsmasq = ${fmt(ratios.hits['unbound/dnsmasq'])}; ` +
      `misses: unbound/dnsmasq = ${fmt(ratios.misses['unbound/dnsmasq'])}`);
  }
  const watched = results.find((r) => r.server === 'pvdns' && r.monitor)?.monitor;
  if (watched) {
    lines.push('', `pvdns ran with one GET /v1/monitor subscriber attached${watched.query ? ` (?${watched.query})` : ''} for its timed runs ` +
      `(median round): ${watched.records.toLocaleString('en')} records, ${watched.bytes.toLocaleString('en')} octets, ${watched.dropped.toLocaleString('en')} dropped over its rate` +
      `${watched.cutOff ? '; pvdns cut the subscriber off for falling 256 KiB behind' : ''}`);
  }
  if (report.footprint) {
    const f = report.footprint;
    const each = (key, digits) => f.runs.map((r) => fmt(r[key], digits)).join(' / ');
    lines.push('', `pvdns start-up to first answer: ${fmt(f.startupMs, 0)} ms (target ≤ 300 ms; median of ${f.runs.length} starts: ${each('startupMs', 0)})`);
    lines.push(`pvdns memory: RSS ${fmt(f.emptyKiB / 1024, 1)} MiB empty, ${fmt(f.fullKiB / 1024, 1)} MiB with ${f.entries.toLocaleString('en')} cached answers: ` +
      `${fmt(f.bytesPerAnswer, 0)} bytes per answer (target ≤ 1024; median of ${f.runs.length} processes: ${each('bytesPerAnswer', 0)})`);
  }
  if (report.idle) lines.push('', ...renderIdle(report));
  if (report.dot) lines.push('', ...renderDot(report));
  const warned = [...results, ...(report.dot?.results ?? [])].filter((r) => r.warnings.length);
  if (warned.length) {
    lines.push('', '**Warnings:**');
    for (const r of warned) for (const w of r.warnings) lines.push(`- ${r.workload}/${r.server}: ${w}`);
  }
  return `${lines.join('\n')}\n`;
}

function hostInfo() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    os: `${os.type()} ${os.release()}`,
    loadavg: os.loadavg(),
    memoryMB: Math.round(os.totalmem() / 2 ** 20),
    damon: damonInfo(),
  };
}

/**
 * damonInfo describes the kernel's DAMON monitors, or null when there are
 * none. A kdamond thread sampling memory (with a pageout scheme, as on the
 * machine this bench was written on) takes a CPU for milliseconds at each
 * pass, and on two cores that shows in every server's latency tail. Its
 * settings are readable by root only; a kdamond thread is visible to all.
 */
function damonInfo() {
  const root = '/sys/kernel/mm/damon/admin/kdamonds';
  const read = (p) => {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      return null;
    }
  };
  const ms = (p) => {
    const raw = read(p);
    return raw === null || !/^\d+$/.test(raw) ? '?' : `${Number(raw) / 1000}`;
  };
  const on = [];
  for (let k = 0; ; k++) {
    const state = read(`${root}/${k}/state`);
    if (state === null) break;
    if (state !== 'on') continue;
    const ctx = `${root}/${k}/contexts/0`;
    const actions = [];
    for (let i = 0; ; i++) {
      const a = read(`${ctx}/schemes/${i}/action`);
      if (a === null) break;
      actions.push(a);
    }
    on.push(`kdamond ${k} (${read(`${ctx}/operations`) ?? '?'}, a sample every ${ms(`${ctx}/monitoring_attrs/intervals/sample_us`)} ms, ` +
      `aggregated every ${ms(`${ctx}/monitoring_attrs/intervals/aggr_us`)} ms${actions.length ? `, schemes: ${actions.join(', ')}` : ''})`);
  }
  if (on.length) return `DAMON on: ${on.join('; ')}`;
  // Not root, or a monitor set up otherwise (DAMON_RECLAIM, DAMON_LRU_SORT): its threads still show.
  let threads = 0;
  try {
    for (const pid of readdirSync('/proc')) if (/^\d+$/.test(pid) && read(`/proc/${pid}/comm`)?.startsWith('kdamond')) threads++;
  } catch {
    // no /proc: nothing to say
  }
  return threads ? `DAMON on: ${threads} kdamond thread${threads > 1 ? 's' : ''} (settings readable by root only)` : null;
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  keepTmp = opts.keepTmp;
  if (opts.subnet !== null) {
    const move = (address) => `${opts.subnet}.${address.split('.')[3]}`;
    UPSTREAM.host = move(UPSTREAM.host);
    for (const s of Object.values(SERVERS)) s.host = move(s.host);
  }
  if (opts.only.includes('pvdns') || opts.dotFronts.includes('pvdns')) checkPvdnsBuilt();
  ensureTools();
  // dnsdist is optional: the DoT workload compares it when it is installed.
  const dotNotes = [];
  for (const name of opts.dotFronts) {
    const tool = DOT_FRONTS[name].optional;
    if (tool && !findExecutable(tool)) {
      dotNotes.push(`${name} left out: not installed (apt-get install ${tool})`);
      say(`DoT: ${dotNotes.at(-1)}`);
    }
  }
  opts.dotFronts = opts.dotFronts.filter((n) => !DOT_FRONTS[n].optional || findExecutable(DOT_FRONTS[n].optional));
  const versions = collectVersions();
  const host = hostInfo();
  const date = new Date().toISOString();

  tmpDir = mkdtempSync(join(os.tmpdir(), 'pvdns-bench-'));
  say(`temp dir ${tmpDir}`);
  const hitsFile = writeHitsFile(tmpDir);

  say(`nsd: starting on ${UPSTREAM.host}:${UPSTREAM.port}`);
  const nsd = await startNsd(tmpDir);

  if (opts.soak !== null) {
    const result = await soak(tmpDir, hitsFile, opts);
    await stop(nsd);
    const report = { date, versions, host, options: { ...opts, keepTmp: undefined }, soak: result, ...soakVerdict(result, opts) };
    mkdirSync(dirname(SOAK_FILE), { recursive: true });
    writeFileSync(SOAK_FILE, `${JSON.stringify(report, (k, v) => (v instanceof Map ? Object.fromEntries(v) : v), 2)}\n`);
    process.stdout.write(renderSoak(report));
    say(`raw results written to ${SOAK_FILE}`);
    if (report.problems.length) process.exitCode = 1;
    return;
  }

  // Rounds over all servers, the order rotated each round, so a slow spell of
  // the machine does not land on one server only; each server's median round
  // is reported.
  // The DoT fronts take their turns in the same rotation, after the cleartext servers.
  const certs = opts.dotFronts.length ? makeDotCertificates(tmpDir) : null;
  // The Node floor joins the rotation when pvdns's hit latency is measured.
  const floor = opts.only.includes('pvdns') && opts.workloads.includes('latency') ? ['node-floor'] : [];
  const entries = [...opts.only, ...floor, ...opts.dotFronts.map((n) => `dot:${n}`)];
  const runs = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const order = entries.map((_, i) => entries[(i + round - 1) % entries.length]);
    for (const name of order) {
      // With none of the round workloads selected (--workloads idle, footprint) the cleartext servers sit the rounds out.
      if (!name.startsWith('dot:') && !opts.workloads.some((w) => ['hits', 'latency', 'misses'].includes(w))) continue;
      say(`round ${round}/${opts.rounds}`);
      if (name.startsWith('dot:')) runs.push(...(await benchmarkDot(name.slice(4), tmpDir, certs, opts, round)));
      else if (name === 'node-floor') runs.push(...(await benchmarkFloor(tmpDir, hitsFile, opts, round)));
      else runs.push(...(await benchmarkServer(name, tmpDir, hitsFile, opts, round)));
      if (nsd.exit) throw serverError(nsd, `${describeExit(nsd.exit)} during the ${name} run`);
    }
  }
  let fp = null;
  if (opts.only.includes('pvdns') && opts.workloads.includes('footprint')) {
    say('pvdns: start-up time and memory per cached answer');
    fp = await footprint(tmpDir, opts);
  }
  let idleResult = null;
  if (opts.only.length && opts.workloads.includes('idle')) {
    say(`idle: ${opts.only.join(', ')}, one at a time: ${opts.idleSeconds} s idle, a ${opts.duration} s flood, ${opts.idleSeconds} s idle again`);
    idleResult = await idle(tmpDir, hitsFile, opts);
    if (nsd.exit) throw serverError(nsd, `${describeExit(nsd.exit)} during the idle workload`);
  }
  await stop(nsd);
  const results = medians(runs.filter((r) => !r.workload.startsWith('dot-')), [...opts.only, ...floor]);
  const dotResults = dotMedians(runs, opts.dotFronts);
  const dot = opts.dotFronts.length === 0 ? null : {
    upstream: DOT_UPSTREAM,
    fronts: Object.fromEntries(opts.dotFronts.map((n) => [n, { host: DOT_FRONTS[n].host, port: DOT_FRONTS[n].port }])),
    notes: dotNotes,
    results: dotResults,
    ratios: {
      'pvdns/unbound': ratio(dotResults, 'dot-misses', 'pvdns', 'unbound'),
      'pvdns/dnsdist': ratio(dotResults, 'dot-misses', 'pvdns', 'dnsdist'),
    },
  };

  const report = {
    date,
    versions,
    host,
    options: { ...opts, keepTmp: undefined },
    upstream: UPSTREAM,
    servers: Object.fromEntries(opts.only.map((n) => {
      const { host: address, port, cacheEntries } = SERVERS[n];
      return [n, { host: address, port, cacheEntries }];
    })),
    runs,
    results,
    ratios: computeRatios(results),
    footprint: fp,
    idle: idleResult,
    dot,
  };
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(renderReport(report));
  say(`raw results written to ${RESULTS_FILE}`);
}

main()
  .then(() => cleanup())
  .catch(async (e) => {
    if (cleaningUp) return; // Ctrl-C: the signal handler cleans up and exits
    process.stderr.write(`\nbench failed: ${e instanceof BenchError ? e.message : (e?.stack ?? e)}\n`);
    await cleanup();
    process.exitCode = 1;
  });
