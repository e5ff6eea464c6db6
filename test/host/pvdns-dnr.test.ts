// pvdns taking a network's designated encrypted resolver (RFC 9463 DNR) from
// a real Router Advertisement: two network namespaces this test creates, a
// "router" and a "host", joined by a veth pair, set up as in
// pvdns-ra.test.ts. In the router's: scapy sending RAs whose PvD option
// (RFC 8801) carries an RDNSS (a fake cleartext server, ns-dns.mjs,
// answering everything with CLEAR_ANSWER) and an Encrypted DNS option
// (RFC 9463 §6.1: alpn "dot", ADN dot.dnr.test, the router's address), and
// Unbound serving DNS over TLS there with a throwaway CA's certificate for
// the ADN, answering the probe name with DOT_ANSWER. In the host's: pvdns
// (`dist/cli.js serve`, Router Advertisements on, the host's links off),
// asked with dig.
//
// What a user sees: the PvD pvdns announces lists the designated resolver
// (tls://[ADDR]:853#dot.dnr.test) beside the RDNSS server, which /v1/pvds
// shows as cleartext; a query is answered through DoT by Unbound and never
// reaches the cleartext server; when the option's lifetime runs out the
// designated resolver is withdrawn and the RDNSS server answers.
//
// Needs root, iproute2, python3-scapy, unbound, dig, openssl and the build
// (`npm run test:host` builds first).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alpn, dnr, pvd, rdnss } from '../helpers/ra-packets.js';

const ROOT = resolvePath(import.meta.dirname, '../..');
const NS_HOST = `dnr-h-${process.pid}`;
const NS_ROUTER = `dnr-r-${process.pid}`;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ROUTER_ADDR = '2001:db8:7b::1';
const HOST_ADDR = '2001:db8:7b::2';
const PVD_ID = 'dnr.ra.example';
const ADN = 'dot.dnr.test';
const PROBE = 'probe.dnr.test';
const DOT_ANSWER = '192.0.2.85';
const CLEAR_ANSWER = '192.0.2.53';
/** The Encrypted DNS option's lifetime (s): the designated resolver is withdrawn this long after the RA. */
const DNR_LIFETIME_S = 8;

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ip = (ns: string, ...args: string[]): string => execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });
const inHost = (cmd: string, ...args: string[]): string => execFileSync('ip', ['netns', 'exec', NS_HOST, cmd, ...args], { encoding: 'utf8' });

/** A pvdns log line: pino's JSON. */
interface LogLine {
  msg: string;
  pvd?: { identifier?: string; servers?: string[]; designatedResolvers?: string[] };
  [k: string]: unknown;
}

const logs: LogLine[] = [];
/** What ns-dns.mjs's cleartext server was asked, and when (epoch ms). */
const clearAsked: string[] = [];
const clearAskedAt: number[] = [];
const procs: ChildProcess[] = [];
let stderr = '';
let pvdnsStderr = '';
let dir = '';

function spawnIn(ns: string, cmd: string, args: string[], onLine: (line: string) => void): ChildProcess {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: dir });
  createInterface({ input: p.stdout! }).on('line', onLine);
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  procs.push(p);
  return p;
}

async function until<T>(get: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; pvdns said: ${logs.slice(-6).map((l) => JSON.stringify(l)).join(' | ')} ${stderr.slice(-500)}`);
    await sleep(20);
  }
}

/** Whether pvdns's HTTP API answers yet. */
function apiUp(): boolean {
  try {
    inHost('curl', '-sf', '-o', '/dev/null', 'http://127.0.0.1:8053/v1/pvds');
    return true;
  } catch {
    return false;
  }
}

/** dig through pvdns in the host's namespace: the A records of `name`. */
function ask(name: string): string[] {
  return inHost('dig', '@127.0.0.1', '-p', '5300', name, 'A', '+short', '+tries=1', '+time=3').trim().split('\n').filter(Boolean);
}

// One scapy process for every RA, as in pvdns-ra.test.ts.
const SENDER = `
import sys
from scapy.all import Ether, IPv6, ICMPv6ND_RA, Raw, conf
s = conf.L2socket(iface='dnrr')
print('ready', flush=True)
for line in sys.stdin:
    src, lifetime, options = line.split()
    s.send(Ether(dst='33:33:00:00:00:01')/IPv6(src=src, dst='ff02::1', hlim=255)/ICMPv6ND_RA(chlim=64, routerlifetime=int(lifetime))/Raw(bytes.fromhex(options)))
    print('sent', flush=True)
`;
let sender: ChildProcess;
let sent = 0;

async function sendRa(source: string, routerLifetime: number, ...options: number[][]): Promise<number> {
  const before = sent;
  sender.stdin!.write(`${source} ${routerLifetime} ${Buffer.from(options.flat()).toString('hex')}\n`);
  await until(() => (sent > before ? true : undefined), 'RA sent by scapy', 5000);
  return now();
}

async function routerLinkLocal(): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const info = JSON.parse(ip(NS_ROUTER, '-j', '-6', 'addr', 'show', 'dev', 'dnrr', 'scope', 'link')) as Array<{ addr_info: Array<{ local: string; tentative?: boolean }> }>;
    const a = info[0]?.addr_info.find((x) => x.local && !x.tentative)?.local;
    if (a) return a;
    await sleep(50);
  }
  throw new Error('dnrr never got a link-local address');
}

function cleanUp(): void {
  for (const p of procs) p.kill('SIGTERM');
  for (const ns of [NS_HOST, NS_ROUTER]) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
    } catch {
      // not made, or already gone
    }
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}

describe('pvdns taking the designated resolver of an RA (RFC 9463 DNR)', () => {
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('test:host needs root (network namespaces, raw sockets)');
    if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('no build: run `npm run build` (npm run test:host does)');
    try {
      execFileSync(PYTHON, ['-c', 'import scapy.layers.inet6'], { stdio: 'pipe' });
    } catch {
      throw new Error(`${PYTHON} has no scapy: install python3-scapy`);
    }
    try {
      dir = mkdtempSync(join(tmpdir(), `pvdns-dnr-${process.pid}-`));
      const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
      ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=pvdns DNR test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'dot.key', '-out', 'dot.csr', '-subj', `/CN=${ADN}`);
      writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=DNS:${ADN}\n`);
      ssl('x509', '-req', '-in', 'dot.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'dot.pem', '-days', '1', '-extfile', 'ext.cnf');

      for (const ns of [NS_HOST, NS_ROUTER]) {
        execFileSync('ip', ['netns', 'add', ns]);
        ip(ns, 'link', 'set', 'lo', 'up');
        execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.accept_ra=0']);
      }
      ip(NS_HOST, 'link', 'add', 'dnrh', 'type', 'veth', 'peer', 'name', 'dnrr', 'netns', NS_ROUTER);
      ip(NS_HOST, 'addr', 'add', `${HOST_ADDR}/64`, 'dev', 'dnrh', 'nodad');
      ip(NS_ROUTER, 'addr', 'add', `${ROUTER_ADDR}/64`, 'dev', 'dnrr', 'nodad');
      ip(NS_HOST, 'link', 'set', 'dnrh', 'up');
      ip(NS_ROUTER, 'link', 'set', 'dnrr', 'up');

      const node = process.execPath;
      // The router's side: the cleartext RDNSS server, Unbound over DoT, the RA sender.
      spawnIn(NS_ROUTER, node, [join(ROOT, 'test/host/ns-dns.mjs'), '--server', `clear=${ROUTER_ADDR}:53=${CLEAR_ANSWER}`], (line) => {
        const e = JSON.parse(line) as { kind?: string; name?: string; t: number };
        if (e.kind === 'asked') {
          clearAsked.push(e.name!);
          clearAskedAt.push(e.t);
        }
      });
      const unboundLog = join(dir, 'unbound.log');
      writeFileSync(
        join(dir, 'unbound.conf'),
        `server:
  verbosity: 1
  use-syslog: no
  logfile: "${unboundLog}"
  log-queries: yes
  num-threads: 1
  interface: ${ROUTER_ADDR}@853
  tls-port: 853
  tls-service-key: "${join(dir, 'dot.key')}"
  tls-service-pem: "${join(dir, 'dot.pem')}"
  do-ip4: no
  do-ip6: yes
  access-control: 2001:db8::/32 allow
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "dnr.test." static
  local-data: "${PROBE}. 5 IN A ${DOT_ANSWER}"
  chroot: ""
  username: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"

remote-control:
  control-enable: no
`,
      );
      execFileSync('unbound-checkconf', [join(dir, 'unbound.conf')], { stdio: 'pipe' });
      spawnIn(NS_ROUTER, 'unbound', ['-d', '-c', join(dir, 'unbound.conf')], () => {});
      sender = spawnIn(NS_ROUTER, PYTHON, ['-c', SENDER], (line) => void (line === 'sent' && sent++));
      // The host's side: pvdns, with no PvD but the RA's.
      const config = join(dir, 'pvdns.yaml');
      writeFileSync(
        config,
        JSON.stringify({
          listen: ['127.0.0.1:5300'],
          http: { listen: '127.0.0.1:8053' },
          log: { level: 'info' },
          captive: { probeIntervalS: 0 },
          cache: { maxTtl: 0 },
          tls: { caFile: join(dir, 'ca.pem') },
          pvdSources: { host: false, routerAdvertisements: true },
          forwardTestNames: true, // its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
        }),
      );
      spawnIn(NS_HOST, node, [join(ROOT, 'dist/cli.js'), 'serve', '--config', config], (line) => {
        if (line.startsWith('{')) logs.push(JSON.parse(line) as LogLine);
      }).stderr!.on('data', (d: Buffer) => (pvdnsStderr += d.toString()));
      await until(() => (apiUp() ? true : undefined), 'pvdns HTTP API', 15_000);
      await until(() => (existsSync(unboundLog) && /start of service/.test(readFileSync(unboundLog, 'utf8')) ? true : undefined), 'unbound start', 15_000);
    } catch (err) {
      cleanUp();
      throw err;
    }
  }, 60_000);

  afterAll(() => cleanUp());

  it('lists the designated resolver before the RDNSS server, answers through DoT, and withdraws it when its lifetime runs out', async () => {
    const source = await routerLinkLocal();
    const dnrOption = dnr(ADN, { priority: 1, lifetime: DNR_LIFETIME_S, addresses: [ROUTER_ADDR], params: [alpn('dot')] });
    const t0 = await sendRa(source, 1800, pvd(PVD_ID, {}, rdnss(600, ROUTER_ADDR), dnrOption));
    const designated = `tls://[${ROUTER_ADDR}]:853#${ADN}`;

    const announced = await until(() => logs.find((l) => l.msg === 'pvd announced' && l.pvd?.identifier === PVD_ID), `announce of ${PVD_ID}`);
    expect(announced.pvd!.designatedResolvers).toEqual([designated]);
    expect(announced.pvd!.servers).toEqual([`[${ROUTER_ADDR}]:53`]);

    // /v1/pvds: the RDNSS server stays the PvD's cleartext one.
    const view = (JSON.parse(inHost('curl', '-sf', 'http://127.0.0.1:8053/v1/pvds')) as { pvds: Array<{ identifier: string; encryption: string; servers: Array<{ address: string; transport: string }> }> }).pvds;
    const p = view.find((v) => v.identifier === PVD_ID);
    expect(p, JSON.stringify(view)).toBeDefined();
    // The designated resolver first, learned by DNR; then the RDNSS server, learned from the RA.
    expect(p!.servers).toEqual([
      expect.objectContaining({ address: designated, transport: 'tls', authName: ADN, learned: 'dnr', verified: true }),
      expect.objectContaining({ address: `[${ROUTER_ADDR}]:53`, transport: 'udp', learned: 'ra', verified: null }),
    ]);
    expect(p!.encryption).toBe('opportunistic');

    // Asked through the designated resolver over DoT; the cleartext server hears nothing of it.
    expect(ask(PROBE)).toEqual([DOT_ANSWER]);
    expect(clearAsked.filter((n) => n === PROBE)).toEqual([]);
    expect(readFileSync(join(dir, 'unbound.log'), 'utf8')).toContain(PROBE);

    // The option's lifetime runs out: the designated resolver is withdrawn, the RDNSS server answers.
    const updated = await until(() => logs.find((l) => l.msg === 'pvd updated' && l.pvd?.identifier === PVD_ID && (l.pvd.designatedResolvers ?? []).length === 0), 'withdrawal of the designated resolver', DNR_LIFETIME_S * 1000 + 5000);
    const withdrawnAfterS = (now() - t0) / 1000;
    expect(withdrawnAfterS).toBeGreaterThanOrEqual(DNR_LIFETIME_S - 0.5);
    expect(updated.pvd!.servers).toEqual([`[${ROUTER_ADDR}]:53`]);
    expect(ask(PROBE)).toEqual([CLEAR_ANSWER]);
    await until(() => (clearAsked.includes(PROBE) ? true : undefined), 'the probe at the cleartext server', 2000);
    const beforeWithdrawal = clearAsked.filter((_, i) => clearAskedAt[i]! < t0 + withdrawnAfterS * 1000 - 1000);
    console.log(`[e2e DNR] designated resolver ${designated} used over DoT; withdrawn ${withdrawnAfterS.toFixed(1)} s after the RA (lifetime ${DNR_LIFETIME_S} s); asked of the cleartext server while it was designated: ${JSON.stringify(beforeWithdrawal)}`);
    expect(pvdnsStderr).toBe('');
  }, 60_000);
});
