// Launchers for the interop tests: real DNS software from Debian (nsd,
// unbound, dnsmasq), pvdns's own command line, and dig to ask them.
//
// Everything stays on loopback. Each server gets its own 127.0.0.x address
// (the tests use 127.0.0.80–127.0.0.99) and a port found free on it, its own
// temp dir for config and logs, and is stopped by its stop(), by afterAll, or
// at the latest when the test process exits. No program started here reads
// /etc/resolv.conf for servers or contacts the root servers: nsd is only
// authoritative, unbound forwards "." to a given address, dnsmasq runs with
// --no-resolv, and pvdns's configs set pvdSources.host: false. (dig itself
// parses /etc/resolv.conf at start-up, but with @server it only ever sends to
// that server.)
//
// A server is "ready" when it answers dig; a failure to start reports the
// command and the tail of the program's logs.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve as resolvePath } from 'node:path';

export interface Endpoint {
  host: string;
  port: number;
}

/** The Debian package that ships each program the tests run. */
const DEBIAN_PACKAGE: Record<string, string> = {
  dig: 'dnsutils',
  nsd: 'nsd',
  'nsd-checkconf': 'nsd',
  'nsd-control': 'nsd',
  unbound: 'unbound',
  'unbound-checkconf': 'unbound',
  dnsmasq: 'dnsmasq-base',
  openssl: 'openssl',
  dnsperf: 'dnsperf',
  ss: 'iproute2',
};

/** Set PVDNS_INTEROP_KEEP=1 to keep the temp dirs (configs, logs) for a look after a failure. */
const KEEP = process.env.PVDNS_INTEROP_KEEP === '1';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ programs

const found = new Map<string, string>();

/** program finds an executable (also in the sbin dirs a non-root PATH lacks) or says which package to install. */
export function program(name: string): string {
  const hit = found.get(name);
  if (hit) return hit;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) {
        found.set(name, candidate);
        return candidate;
      }
    } catch {
      // not in this dir
    }
  }
  const pkg = DEBIAN_PACKAGE[name] ?? name;
  throw new Error(`${name} not found: the interop tests need the Debian package ${pkg} (apt-get install ${pkg})`);
}

/** requirePrograms fails with one message naming every missing program and its package. */
export function requirePrograms(...names: string[]): void {
  const missing: string[] = [];
  for (const n of names) {
    try {
      program(n);
    } catch (err) {
      missing.push((err as Error).message);
    }
  }
  if (missing.length) throw new Error(missing.join('\n'));
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** run runs a short command to completion without blocking the event loop. */
export function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === null ? String(err.message) : '') });
    });
  });
}

/** checkConfig runs a daemon's own config checker: clearer errors than a daemon that dies. */
export async function checkConfig(checker: string, file: string): Promise<void> {
  const r = await run(program(checker), [file]);
  if (r.code !== 0) throw new Error(`${checker} rejected the generated ${file}:\n${r.stdout}${r.stderr}`);
}

// ------------------------------------------------------------------ ports

/** freePort finds a port that is free for both UDP and TCP on `host`. */
export async function freePort(host: string): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => resolve(udp.address().port));
    });
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, host, () => resolve(true));
    });
    await new Promise<void>((r) => (ok ? tcp.close(() => r()) : r()));
    await new Promise<void>((r) => udp.close(() => r()));
    if (ok) return port;
  }
  throw new Error(`no port free for both UDP and TCP on ${host}`);
}

// ------------------------------------------------------------------ processes

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every process started here, so the exit hook can stop what afterAll did not. */
const running = new Set<Daemon>();

function killAll(): void {
  for (const d of running) d.killNow();
}
process.on('exit', killAll);
// vitest ends its worker processes with SIGTERM, which skips 'exit' handlers
// by default: stop ours first, then let the signal do what it would have.
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

/** tail returns the last lines of a file, or '' if there is none. */
function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Daemon is one long-running program with its temp dir and log files. */
export class Daemon {
  readonly dir: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  exit: Exit | null = null;
  private child: ChildProcess | null = null;

  /** The process's id while it runs (for /proc). */
  get pid(): number {
    return this.child?.pid ?? -1;
  }
  private exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  private command = '';

  constructor(
    readonly name: string,
    /** Other log files worth showing when it fails: [label, path]. */
    readonly extraLogs: Array<[string, string]> = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `pvdns-interop-${name}-`));
    this.stdoutPath = join(this.dir, 'stdout.log');
    this.stderrPath = join(this.dir, 'stderr.log');
    running.add(this);
  }

  file(name: string, text?: string): string {
    const path = join(this.dir, name);
    if (text !== undefined) writeFileSync(path, text);
    return path;
  }

  start(cmd: string, args: string[], cwd = this.dir, env: Record<string, string> = {}): void {
    this.command = `${cmd} ${args.join(' ')}`;
    const out = openSync(this.stdoutPath, 'w');
    const err = openSync(this.stderrPath, 'w');
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', out, err], env: { ...process.env, ...env } });
    closeSync(out);
    closeSync(err);
    this.child = child;
    this.exited = new Promise((resolve) => {
      const done = (e: Exit): void => {
        this.exit ??= e;
        resolve(this.exit);
      };
      child.once('exit', (code, signal) => done({ code, signal }));
      child.once('error', (e) => {
        appendError(this.stderrPath, e);
        done({ code: null, signal: null });
      });
    });
  }

  /** guard runs a launcher's start-up; if it fails, the process is stopped before the error goes on. */
  async guard<T>(startUp: () => Promise<T>): Promise<T> {
    try {
      return await startUp();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** fail builds the error for "it did not work", with the command and its logs' tails. */
  fail(reason: string): Error {
    return new Error(`${this.name}: ${reason}\n  command: ${this.command}${this.logTails()}`);
  }

  /** logTails is the last lines of each of its logs, labelled. */
  logTails(): string {
    let out = this.exit ? `\n  (${this.name} has exited: code ${this.exit.code}, signal ${this.exit.signal})` : '';
    for (const [label, path] of [['stderr', this.stderrPath], ['stdout', this.stdoutPath], ...this.extraLogs] as const) {
      const t = tail(path);
      if (t) out += `\n  --- ${this.name} ${label} (last lines) ---\n${t.replace(/^/gm, '  | ')}`;
    }
    return out;
  }

  /** waitReady asks dig until `accept` likes the answer, or fails with the logs. */
  async waitReady(at: Endpoint, args: string[], accept: (r: DigResult) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exit) throw this.fail('exited during start-up');
      try {
        const r = await dig(at, [...args, '+time=1']);
        if (accept(r)) return;
        last = `answered ${r.status} (flags ${r.flags.join(' ')})`;
      } catch (err) {
        last = (err as Error).message.split('\n')[0]!;
      }
      await sleep(100);
    }
    throw this.fail(`not ready: dig @${at.host} -p ${at.port} ${args.join(' ')} within ${timeoutMs / 1000} s (${last})`);
  }

  /** stop sends SIGTERM (SIGKILL after 5 s), removes the temp dir and reports how it exited. */
  async stop(): Promise<Exit> {
    if (this.child && !this.exit) {
      this.child.kill('SIGTERM');
      await Promise.race([this.exited, sleep(5000)]);
      if (!this.exit) {
        this.child.kill('SIGKILL');
        await Promise.race([this.exited, sleep(2000)]);
      }
    }
    running.delete(this);
    if (!KEEP) rmSync(this.dir, { recursive: true, force: true });
    return this.exit ?? { code: null, signal: null };
  }

  /** signal sends a signal (SIGHUP: reload) to the running program. */
  signal(sig: NodeJS.Signals): void {
    if (this.child && !this.exit) this.child.kill(sig);
  }

  /** waitExit resolves with how the program exited, or null when it runs on past `ms`. */
  async waitExit(ms: number): Promise<Exit | null> {
    await Promise.race([this.exited, sleep(ms)]);
    return this.exit;
  }

  /** killNow is the synchronous last resort at process exit. */
  killNow(): void {
    if (this.child && !this.exit) this.child.kill('SIGKILL');
    if (!KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

function appendError(path: string, e: Error): void {
  try {
    writeFileSync(path, `${tail(path)}\nspawn failed: ${e.message}\n`);
  } catch {
    // nothing more to do
  }
}

/** Server is what every launcher returns. */
export interface Server extends Endpoint {
  readonly name: string;
  /** Tail of its logs, for assertion messages. */
  logs(): string;
  /** How it exited, or null while it runs. */
  exited(): Exit | null;
  stop(): Promise<Exit>;
}

/** server is the Server a launcher returns for a running Daemon listening at `at`. */
export function server(d: Daemon, at: Endpoint): Server {
  return { name: d.name, host: at.host, port: at.port, logs: () => d.logTails(), exited: () => d.exit, stop: () => d.stop() };
}

/** A query as a server's query log shows it. */
export interface LoggedQuery {
  name: string;
  type: string;
  from: string;
}

let syncCounter = 0;

/**
 * loggedQueries returns the queries in a server's log. It first asks the
 * server a unique name of its own and waits for that to appear, so every
 * query answered before the call is in the log.
 */
export async function loggedQueries(d: Daemon, at: Endpoint, logPath: string, parse: (text: string) => LoggedQuery[]): Promise<LoggedQuery[]> {
  const marker = `sync-${process.pid}-${++syncCounter}.invalid`;
  await dig(at, [marker, 'A']).catch(() => undefined);
  const deadline = Date.now() + 5000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(logPath, 'utf8');
    } catch {
      // not created yet
    }
    const queries = parse(text);
    if (queries.some((q) => q.name === marker)) return queries.filter((q) => !q.name.startsWith('sync-'));
    if (Date.now() > deadline) throw d.fail(`its query log never showed the marker query ${marker}`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ nsd

export interface Nsd extends Server {
  /** Queries nsd has answered since it started (UDP and TCP), from nsd-control's statistics. */
  queryCount(): Promise<number>;
}

/**
 * startNsd runs nsd authoritative for `zones` (origin → zone file text) on
 * `host`. Statistics come from nsd-control over a Unix socket (no keys);
 * nsd has no query log, so it counts queries rather than naming them.
 */
export async function startNsd(zones: Record<string, string>, host = '127.0.0.81'): Promise<Nsd> {
  requirePrograms('nsd', 'nsd-checkconf', 'nsd-control');
  const d = new Daemon('nsd');
  return d.guard(async () => {
    d.extraLogs.push(['nsd.log', join(d.dir, 'nsd.log')]);
    const port = await freePort(host);
    const zoneConf = Object.entries(zones).map(([origin, text]) => {
      const file = d.file(`${origin}.zone`, text);
      return `zone:\n  name: "${origin}"\n  zonefile: "${file}"\n`;
    });
    // username/chroot "": run as is, in the temp dir. database "": zones from text
    // only. rrl-* 0: response rate limiting would throttle loopback test traffic.
    const conf = d.file(
      'nsd.conf',
      `server:
  ip-address: ${host}@${port}
  port: ${port}
  do-ip4: yes
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${d.dir}"
  database: ""
  pidfile: "${d.dir}/nsd.pid"
  xfrdfile: "${d.dir}/xfrd.state"
  xfrdir: "${d.dir}"
  zonelistfile: "${d.dir}/zone.list"
  logfile: "${d.dir}/nsd.log"
  verbosity: 1
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0

remote-control:
  control-enable: yes
  control-interface: "${d.dir}/nsd.ctl"

${zoneConf.join('\n')}`,
    );
    await checkConfig('nsd-checkconf', conf);
    d.start(program('nsd'), ['-d', '-c', conf]);
    const at = { host, port };
    const apex = Object.keys(zones)[0]!;
    await d.waitReady(at, [apex, 'SOA'], (r) => r.status === 'NOERROR' && r.flags.includes('aa'));
    return {
      ...server(d, at),
      async queryCount() {
        const r = await run(program('nsd-control'), ['-c', conf, 'stats_noreset']);
        const m = /^num\.queries=(\d+)$/m.exec(r.stdout);
        if (r.code !== 0 || !m) throw d.fail(`nsd-control stats_noreset failed (exit ${r.code}):\n${r.stdout}${r.stderr}`);
        return Number(m[1]);
      },
    };
  });
}

// ------------------------------------------------------------------ unbound

export interface UnboundOptions {
  host?: string;
  /** Where unbound sends everything it does not answer itself ("." forward-zone). Required: without it unbound would ask the root servers. */
  forwardTo: Endpoint;
  /** Zones unbound answers itself (local-zone static): zone → records in zone-file syntax. */
  localZones?: Record<string, string[]>;
  /** Run unbound as a DNS64 (module-config "dns64 iterator") synthesizing with this prefix. */
  dns64Prefix?: string;
}

export interface Unbound extends Server {
  /** Every query unbound received (log-queries), in order. */
  queries(): Promise<LoggedQuery[]>;
}

/**
 * startUnbound runs unbound as a forwarder with query logging. No validator
 * module (no trust anchors to fetch), and `do-not-query-localhost: no` so it
 * may forward to a loopback address.
 */
export async function startUnbound(opts: UnboundOptions): Promise<Unbound> {
  requirePrograms('unbound', 'unbound-checkconf');
  const host = opts.host ?? '127.0.0.83';
  const d = new Daemon('unbound');
  return d.guard(async () => {
    const logPath = join(d.dir, 'unbound.log');
    d.extraLogs.push(['unbound.log', logPath]);
    const port = await freePort(host);
    const local = Object.entries(opts.localZones ?? {}).flatMap(([zone, records]) => [
      `  local-zone: "${zone}." static`,
      ...records.map((r) => `  local-data: "${r}"`),
    ]);
    // local-zone "test." nodefault: unbound would otherwise answer all of test.
    // (RFC 6761 §6.2) itself with NXDOMAIN, without forwarding.
    const conf = d.file(
      'unbound.conf',
      `server:
  verbosity: 1
  use-syslog: no
  logfile: "${logPath}"
  log-queries: yes
  num-threads: 1
  interface: ${host}@${port}
  port: ${port}
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "${opts.dns64Prefix ? 'dns64 iterator' : 'iterator'}"
${opts.dns64Prefix ? `  dns64-prefix: ${opts.dns64Prefix}\n` : ''}  domain-insecure: "test"
  local-zone: "test." nodefault
${local.join('\n')}
  chroot: ""
  username: ""
  directory: "${d.dir}"
  pidfile: "${d.dir}/unbound.pid"
  prefetch: no

remote-control:
  control-enable: no

forward-zone:
  name: "."
  forward-addr: ${opts.forwardTo.host}@${opts.forwardTo.port}
`,
    );
    await checkConfig('unbound-checkconf', conf);
    d.start(program('unbound'), ['-d', '-c', conf]);
    const at = { host, port };
    // unbound answers localhost itself (its default local zones).
    await d.waitReady(at, ['localhost', 'A'], (r) => r.status === 'NOERROR');
    return {
      ...server(d, at),
      queries: () => loggedQueries(d, at, logPath, parseUnboundLog),
    };
  });
}

/** "[1700000000] unbound[123:0] info: 127.0.0.1 www.wifi.test. A IN" */
export function parseUnboundLog(text: string): LoggedQuery[] {
  const out: LoggedQuery[] = [];
  for (const m of text.matchAll(/\binfo: (\S+) (\S+?)\.? (\S+) IN$/gm)) {
    out.push({ from: m[1]!, name: m[2]!.toLowerCase(), type: m[3]! });
  }
  return out;
}

// ------------------------------------------------------------------ dnsmasq

export interface Dnsmasq extends Server {
  /** Every query dnsmasq received (--log-queries), in order. */
  queries(): Promise<LoggedQuery[]>;
}

/**
 * startDnsmasq runs dnsmasq as a DNS server only, with query logging, plus
 * `args` (e.g. --address=/corp.test/10.1.2.3), on `port` when given (a
 * restart in place), else on a free one.
 */
export async function startDnsmasq(args: string[], host = '127.0.0.82', fixedPort?: number): Promise<Dnsmasq> {
  requirePrograms('dnsmasq');
  const d = new Daemon('dnsmasq');
  return d.guard(async () => {
    const logPath = join(d.dir, 'dnsmasq.log');
    d.extraLogs.push(['dnsmasq.log', logPath]);
    const port = fixedPort ?? (await freePort(host));
    // --conf-file=/dev/null: ignore /etc/dnsmasq.conf. --no-resolv/--no-hosts:
    // never /etc/resolv.conf or /etc/hosts. --bind-interfaces: only this address.
    // --pid-file= (empty): no pid file. No dhcp-* options, so no lease file.
    d.start(program('dnsmasq'), [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--listen-address=${host}`,
      '--bind-interfaces',
      `--port=${port}`,
      '--user=root',
      '--pid-file=',
      '--log-queries',
      `--log-facility=${logPath}`,
      ...args,
    ]);
    const at = { host, port };
    // Any answer will do (it refuses names it has no data or server for).
    await d.waitReady(at, ['localhost', 'A'], (r) => r.status !== '');
    return {
      ...server(d, at),
      queries: () => loggedQueries(d, at, logPath, parseDnsmasqLog),
    };
  });
}

/** "Nov 25 20:37:43 dnsmasq[12310]: query[A] x.corp.test from 127.0.0.1" */
function parseDnsmasqLog(text: string): LoggedQuery[] {
  const out: LoggedQuery[] = [];
  for (const m of text.matchAll(/: query\[(\S+)\] (\S+) from (\S+)$/gm)) {
    out.push({ type: m[1]!, name: m[2]!.toLowerCase(), from: m[3]! });
  }
  return out;
}

// ------------------------------------------------------------------ pvdns

const REPO = join(import.meta.dirname, '..', '..');
/**
 * The pvdns executable: this tree's dist/cli.js, or another build's given by
 * PVDNS_CLI (e.g. an older commit's, for the chaos suite's "before" figures).
 */
const CLI = process.env.PVDNS_CLI ? resolvePath(process.env.PVDNS_CLI) : join(REPO, 'dist', 'cli.js');

export interface PvdnsCli extends Server {
  /** pvdns's JSON log lines so far. */
  logLines(): Array<Record<string, unknown>>;
  /** The HTTP API's base URL ("http://127.0.0.1:8053"), or null when http.listen is null. */
  http: string | null;
  /** The configuration file it runs with (rewrite it, then signal('SIGHUP')). */
  configFile: string;
  signal(sig: NodeJS.Signals): void;
  waitExit(ms: number): Promise<Exit | null>;
  /** Its process id (for /proc). */
  pid: number;
}

/** nodeFlags are the node options of dist/cli.js's first line: pvdns runs as `npx pvdns` would run it. */
function nodeFlags(): string[] {
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+(?:=\S+)?)*)$/.exec(readFileSync(CLI, 'utf8').split('\n', 1)[0]!);
  return m ? m[1]!.trim().split(' ').filter(Boolean) : [];
}

/**
 * startPvdnsCli runs `node <flags> dist/cli.js serve --config FILE` with `configYaml`.
 * Where it listens is read from its "pvdns started" log line, so the config
 * may use port 0. The config should set `pvdSources: { host: false }` so
 * pvdns does not read /etc/resolv.conf.
 */
export async function startPvdnsCli(configYaml: string, env: Record<string, string> = {}): Promise<PvdnsCli> {
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: build pvdns first (npm run build)`);
  const d = new Daemon('pvdns');
  return d.guard(async () => {
    const conf = d.file('pvdns.yaml', configYaml);
    d.start(process.execPath, [...nodeFlags(), CLI, 'serve', '--config', conf], REPO, env);
    const logLines = (): Array<Record<string, unknown>> =>
      readFileSync(d.stdoutPath, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);

    const deadline = Date.now() + 15_000;
    let started: Record<string, unknown> | undefined;
    while (started === undefined) {
      if (d.exit) throw d.fail('exited during start-up');
      if (Date.now() > deadline) throw d.fail('no "pvdns started" log line within 15 s');
      await sleep(50);
      started = logLines().find((l) => l.msg === 'pvdns started');
    }
    const listen = (started.listen as string[])[0]!;
    const http = typeof started.http === 'string' ? `http://${started.http}` : null;
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(listen);
    if (!m) throw d.fail(`cannot read the listen address "${listen}"`);
    const at = { host: m[1]!, port: Number(m[2]) };
    // localhost is answered by pvdns itself: ready without any upstream.
    await d.waitReady(at, ['localhost', 'A'], (r) => r.status === 'NOERROR');
    return { ...server(d, at), logLines, http, configFile: conf, signal: (sig) => d.signal(sig), waitExit: (ms) => d.waitExit(ms), pid: d.pid };
  });
}

// ------------------------------------------------------------------ certificates

export interface TestCertificate {
  /** The CA certificate (PEM file), for NODE_EXTRA_CA_CERTS. */
  caFile: string;
  key: Buffer;
  cert: Buffer;
}

/**
 * testCertificate makes a throwaway CA and a server certificate for
 * `hostname` (as a subjectAltName) signed by it, with Debian's openssl: what
 * an HTTPS server needs for a client that checks certificates (RFC 8908 §4.1).
 */
export async function testCertificate(hostname: string): Promise<TestCertificate> {
  requirePrograms('openssl');
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-interop-cert-'));
  const f = (n: string): string => join(dir, n);
  const steps: string[][] = [
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
      '-subj', '/CN=pvdns interop test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${hostname}`],
    ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')],
  ];
  writeFileSync(f('ext.cnf'), `subjectAltName=DNS:${hostname}\nextendedKeyUsage=serverAuth\n`);
  for (const args of steps) {
    const r = await run(program('openssl'), args);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  }
  if (!KEEP) process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return { caFile: f('ca.pem'), key: readFileSync(f('server.key')), cert: readFileSync(f('server.pem')) };
}

// ------------------------------------------------------------------ dig

/** One resource record as dig prints it. */
export interface DigRecord {
  name: string;
  ttl: number;
  class: string;
  type: string;
  /** RDATA in presentation form; unknown types as RFC 3597 "\# len hex". */
  data: string;
}

export interface DigResult {
  /** The command line, for assertion messages. */
  command: string;
  /** dig's whole output. */
  text: string;
  exitCode: number | null;
  /** NOERROR, NXDOMAIN, SERVFAIL, BADVERS, ... */
  status: string;
  /** Header flags: qr, aa, tc, rd, ra, ad, cd. */
  flags: string[];
  /** The OPT pseudosection, or null when the reply had no OPT record. */
  opt: { version: number; flags: string[]; udp: number } | null;
  /** The EDE line dig printed, e.g. "22 (No Reachable Authority): (pvd corp: ...)". */
  ede: string | null;
  answer: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  /** Size of the reply message in octets. */
  msgSize: number;
  /** Transport of the reply dig printed. */
  transport: 'UDP' | 'TCP';
  /** dig got TC=1 over UDP and asked again over TCP. */
  retriedOverTcp: boolean;
}

/**
 * dig runs Debian's dig against `at` with one try of 2 s (later args win, so
 * callers may override) and parses the last reply it printed. It rejects
 * when dig printed no reply at all (timeout, refused connection).
 */
/** The figures of a dnsperf run. */
export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  text: string;
}

/** dnsperf runs Debian's dnsperf against `at` with the queries of `data` ("name TYPE" lines). */
export async function dnsperf(at: Endpoint, data: string, args: string[]): Promise<DnsperfResult> {
  requirePrograms('dnsperf');
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-interop-dnsperf-'));
  try {
    writeFileSync(join(dir, 'queries'), data);
    const r = await run(program('dnsperf'), ['-s', at.host, '-p', String(at.port), '-d', join(dir, 'queries'), ...args], 120_000);
    const text = r.stdout + r.stderr;
    const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    return {
      sent: num(/Queries sent:\s+(\d+)/),
      completed: num(/Queries completed:\s+(\d+)/),
      lost: num(/Queries lost:\s+(\d+)/),
      qps: num(/Queries per second:\s+([\d.]+)/),
      text,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function dig(at: Endpoint, args: string[]): Promise<DigResult> {
  const argv = [`@${at.host}`, '-p', String(at.port), '+tries=1', '+time=2', ...args];
  const command = `dig ${argv.join(' ')}`;
  const r = await run(program('dig'), argv);
  const text = r.stdout + r.stderr;
  const last = text.lastIndexOf(';; Got answer:');
  if (last < 0) throw new Error(`${command}: no reply (exit ${r.code})\n${text}`);
  const reply = text.slice(last);
  const header = /status: (\S+?),/.exec(reply);
  const flags = /^;; flags:([^;]*);/m.exec(reply);
  const edns = /^; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)/m.exec(reply);
  const size = /MSG SIZE\s+rcvd: (\d+)/.exec(reply);
  const via = /^;; SERVER: .*\((UDP|TCP)\)$/m.exec(reply);
  return {
    command,
    text,
    exitCode: r.code,
    status: header?.[1] ?? '',
    flags: words(flags?.[1]),
    opt: edns ? { version: Number(edns[1]), flags: words(edns[2]), udp: Number(edns[3]) } : null,
    ede: /^; EDE: (.*)$/m.exec(reply)?.[1] ?? null,
    answer: section(reply, 'ANSWER'),
    authority: section(reply, 'AUTHORITY'),
    additional: section(reply, 'ADDITIONAL'),
    msgSize: size ? Number(size[1]) : NaN,
    transport: (via?.[1] as 'UDP' | 'TCP' | undefined) ?? (args.includes('+tcp') ? 'TCP' : 'UDP'),
    retriedOverTcp: text.includes(';; Truncated, retrying in TCP mode.'),
  };
}

function words(s: string | undefined): string[] {
  return (s ?? '').trim().split(/\s+/).filter(Boolean);
}

/** section parses the records of ";; ANSWER SECTION:" up to the next blank line. */
function section(reply: string, name: string): DigRecord[] {
  const start = reply.indexOf(`;; ${name} SECTION:\n`);
  if (start < 0) return [];
  const body = reply.slice(start).split('\n').slice(1);
  const out: DigRecord[] = [];
  for (const line of body) {
    if (line.trim() === '') break;
    const m = /^(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`cannot parse dig's ${name} line: ${line}`);
    out.push({ name: m[1]!, ttl: Number(m[2]), class: m[3]!, type: m[4]!, data: m[5]! });
  }
  return out;
}

/** withoutTtl shows records as "name class type data", for comparing answers from different caches. */
export function withoutTtl(records: DigRecord[]): string[] {
  return records.map((r) => `${r.name} ${r.class} ${r.type} ${r.data}`);
}
