// pvdns itself following RFC 8801 PvDs in real Router Advertisements: two
// network namespaces this test creates, a "router" and a "host", joined by a
// veth pair. In the host's namespace: pvdns (`dist/cli.js serve`, Router
// Advertisements on, the host's links off) with a configured default PvD
// "wifi" whose fake DNS server (ns-dns.mjs) answers everything with
// 192.0.2.10, and a client asking pvdns for a corporate name every
// CLIENT_MS. In the router's: scapy sending RAs whose PvD option (H flag)
// carries an RDNSS (a fake server answering 10.8.0.20, and the PvD ID's AAAA
// with the router's address) and a PIO, and the PvD's Additional
// Information served over HTTPS with a throwaway CA (ra-child.mjs), which
// gives the PvD the zone corp.example.com. The figures, over CYCLES
// announce/withdraw cycles:
//
// - from the RA's send to the first corp answer from the PvD's server
//   (RA received, PvD announced, its information resolved through its own
//   server and fetched, the zone routed), and from an RA with router
//   lifetime 0 to the first corp answer from wifi again;
// - corp queries the client sent after pvdns announced the RA's PvD (it has
//   the RA; the zone comes only with the information) that the wifi server
//   was asked before pvdns withdrew the PvD: target 0, as the feed holds the
//   routing gate while the information is fetched (100 ms at most). Without
//   the hold, 13 in 5 cycles here. The first fetch is the one at risk of
//   outlasting the hold: pvdns readies its TLS context and request code
//   when the RA source starts (first fetch 60-70 ms here without that).
//
// RFC 8801 §4.1 asks at least 10 s between two requests for one PvD's
// information and at most 5 requests on one network in 10 s. So each cycle
// advertises a PvD of its own (vpnN.ra.example, all with the same zone; the
// certificate names *.ra.example), and the cycles are CYCLE_MS apart, 5 in
// 10 s at most. A new sequence number for one PvD would not do: its refetch
// MUST wait a random 0..2^(10+Delay) ms, and 10 s after the last one.
//
// Needs root, iproute2, python3-scapy, openssl and the build (`npm run
// test:host` builds first).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pio, pvd, rdnss } from '../helpers/ra-packets.js';

const CYCLES = Number(process.env.PVDNS_E2E_CYCLES ?? 20);
const CLIENT_MS = 10;
const TARGET_MS = 100;
/** 5 fetches on the link in 10 s at most (RFC 8801 §4.1): one cycle (one fetch) every 2 s and a little. */
const CYCLE_MS = 2050;
const CORP = 'git.corp.example.com';
const ROOT = resolvePath(import.meta.dirname, '../..');
const NS_HOST = `pvdns-ra2-h-${process.pid}`;
const NS_ROUTER = `pvdns-ra2-r-${process.pid}`;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ROUTER_ADDR = '2001:db8:7a::1';
const HOST_ADDR = '2001:db8:7a::2';
const VPN_ANSWER = '10.8.0.20';
const WIFI_ANSWER = '192.0.2.10';

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ip = (ns: string, ...args: string[]): string => execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });

interface Event {
  t: number;
  kind: string;
  server?: string;
  name?: string;
  address?: string | null;
  sentAt?: number;
}

/** A pvdns log line: pino's JSON, its ISO time read as epoch ms. */
interface LogLine {
  time: string;
  ms: number;
  msg: string;
  pvd?: string | { id?: string; identifier?: string };
  [k: string]: unknown;
}

const events: Event[] = [];
const logs: LogLine[] = [];
const procs: ChildProcess[] = [];
/** What the children wrote on stderr (scapy warns that the router has no route to ff02::1: sending needs none). */
let stderr = '';
let pvdnsStderr = '';
let dir = '';

/** spawnIn runs a command in a namespace, its stdout lines to `onLine`, its stderr kept for failures. */
function spawnIn(ns: string, cmd: string, args: string[], onLine: (line: string) => void, env: Record<string, string> = {}): ChildProcess {
  const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env }, cwd: dir });
  createInterface({ input: p.stdout! }).on('line', onLine);
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  procs.push(p);
  return p;
}

const logged = (line: string): void => {
  if (!line.startsWith('{')) return;
  const l = JSON.parse(line) as LogLine;
  logs.push({ ...l, ms: Date.parse(l.time) });
};
/** When the client sent each of its queries (it asks qK.git.corp.example.com: each name once). */
const sentAtOf = new Map<string, number>();
const evented = (line: string): void => {
  const e = JSON.parse(line) as Event;
  if (e.kind === 'answer') sentAtOf.set(e.name!, e.sentAt!);
  events.push(e);
};

/** waitFor resolves with the first event `pred` accepts. */
async function waitFor(pred: (e: Event) => boolean, what: string, timeoutMs = 5000): Promise<Event> {
  const deadline = now() + timeoutMs;
  for (let i = 0; ; ) {
    for (; i < events.length; i++) if (pred(events[i]!)) return events[i]!;
    if (now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; vpn asked: ${JSON.stringify(events.filter((e) => e.server === 'vpn').slice(-4))}; pvdns said: ${logs.slice(-8).map((l) => JSON.stringify(l)).join(' | ')} ${stderr.slice(-500)}`);
    await sleep(1);
  }
}

/** waitLog resolves with the first pvdns log line `pred` accepts (pino writes asynchronously: it may trail the answers). */
async function waitLog(pred: (l: LogLine) => boolean, what: string, timeoutMs = 5000): Promise<LogLine> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const l = logs.find(pred);
    if (l) return l;
    if (now() > deadline) throw new Error(`pvdns logged no ${what} within ${timeoutMs} ms; it said: ${logs.slice(-8).map((x) => JSON.stringify(x)).join(' | ')} ${stderr.slice(-500)}`);
    await sleep(5);
  }
}

// One scapy process for every RA: it builds each frame, then stamps the time just before it leaves.
const SENDER = `
import sys, time
from scapy.all import Ether, IPv6, ICMPv6ND_RA, Raw, conf
s = conf.L2socket(iface='rar')
print('ready', flush=True)
for line in sys.stdin:
    src, lifetime, options = line.split()
    frame = bytes(Ether(dst='33:33:00:00:00:01')/IPv6(src=src, dst='ff02::1', hlim=255)/ICMPv6ND_RA(chlim=64, routerlifetime=int(lifetime))/Raw(bytes.fromhex(options)))
    t = time.time() * 1000
    s.send(frame)
    print(t, flush=True)
`;
let sender: ChildProcess;
const sent: string[] = [];

/** sendRa sends one RA from the router's end and resolves with when it left (epoch ms). */
async function sendRa(source: string, routerLifetime: number, ...options: number[][]): Promise<number> {
  const before = sent.length;
  sender.stdin!.write(`${source} ${routerLifetime} ${Buffer.from(options.flat()).toString('hex')}\n`);
  for (let i = 0; sent.length === before; i++) {
    if (i > 2000) throw new Error(`scapy sent nothing: ${stderr.slice(-500)}`);
    await sleep(1);
  }
  return Number(sent[before]);
}

/** The router's link-local address, once the link has its carrier. */
async function routerLinkLocal(): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const info = JSON.parse(ip(NS_ROUTER, '-j', '-6', 'addr', 'show', 'dev', 'rar', 'scope', 'link')) as Array<{ addr_info: Array<{ local: string; tentative?: boolean }> }>;
    const a = info[0]?.addr_info.find((x) => x.local && !x.tentative)?.local;
    if (a) return a;
    await sleep(50);
  }
  throw new Error('rar never got a link-local address');
}

const stats = (xs: number[]): { median: number; worst: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, worst: s.at(-1)! };
};

const pvdOf = (l: LogLine): string | undefined => (typeof l.pvd === 'string' ? l.pvd : (l.pvd?.id ?? l.pvd?.identifier));

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

describe('pvdns following RFC 8801 PvDs in Router Advertisements', () => {
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('test:host needs root (network namespaces, raw sockets)');
    if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('no build: run `npm run build` (npm run test:host does)');
    try {
      execFileSync(PYTHON, ['-c', 'import scapy.layers.inet6'], { stdio: 'pipe' });
    } catch {
      throw new Error(`${PYTHON} has no scapy: install python3-scapy`);
    }
    try {
      dir = mkdtempSync(join(tmpdir(), `pvdns-ra2-${process.pid}-`));
      const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
      ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=pvdns RA test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=ra.example');
      writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:*.ra.example\n');
      ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '1', '-extfile', 'ext.cnf');

      for (const ns of [NS_HOST, NS_ROUTER]) {
        execFileSync('ip', ['netns', 'add', ns]);
        ip(ns, 'link', 'set', 'lo', 'up');
        // Addresses usable at once; the kernel does not act on the test's RAs (pvdns does).
        execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.accept_ra=0']);
      }
      ip(NS_HOST, 'link', 'add', 'rah', 'type', 'veth', 'peer', 'name', 'rar', 'netns', NS_ROUTER);
      ip(NS_HOST, 'addr', 'add', `${HOST_ADDR}/64`, 'dev', 'rah', 'nodad');
      ip(NS_ROUTER, 'addr', 'add', `${ROUTER_ADDR}/64`, 'dev', 'rar', 'nodad');
      ip(NS_HOST, 'link', 'set', 'rah', 'up');
      ip(NS_ROUTER, 'link', 'set', 'rar', 'up');

      const node = process.execPath;
      const nsDns = join(ROOT, 'test/host/ns-dns.mjs');
      // The router's side: the PvD's DNS server (its PvD IDs' AAAA: the router) and the information server.
      spawnIn(NS_ROUTER, node, [nsDns, '--server', `vpn=${ROUTER_ADDR}:53=${VPN_ANSWER},${ROUTER_ADDR}`], evented);
      const info = { identifier: '$HOST.', expires: new Date(Date.now() + 3600_000).toISOString(), prefixes: ['2001:db8:7a::/48'], dnsZones: ['corp.example.com'] };
      spawnIn(NS_ROUTER, node, [join(ROOT, 'test/host/ra-child.mjs'), 'server'], evented, {
        PVD_INFO_KEY: join(dir, 'srv.key'),
        PVD_INFO_CERT: join(dir, 'srv.pem'),
        PVD_INFO_ADDR: ROUTER_ADDR,
        PVD_INFO_JSON: JSON.stringify(info),
      });
      sender = spawnIn(NS_ROUTER, PYTHON, ['-c', SENDER], (line) => void (line === 'ready' || sent.push(line)));
      // The host's side: wifi's server and the client, then pvdns.
      spawnIn(NS_HOST, node, [nsDns, '--server', `wifi=127.0.0.10:53=${WIFI_ANSWER}`, '--client', '127.0.0.1:5300', '--name', CORP, '--every', String(CLIENT_MS), '--unique'], evented);
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
          pvds: [{ identifier: 'wifi', dnsServers: ['127.0.0.10'], default: true }],
          pvdSources: { host: false, routerAdvertisements: true },
        }),
      );
      spawnIn(NS_HOST, node, [join(ROOT, 'dist/cli.js'), 'serve', '--config', config], logged).stderr!.on('data', (d: Buffer) => (pvdnsStderr += d.toString()));
      await waitFor((e) => (e as { ready?: boolean }).ready === true, 'HTTPS server', 10_000);
      await waitFor((e) => e.kind === 'answer' && e.address === WIFI_ANSWER, 'answer from wifi through pvdns', 15_000);
    } catch (err) {
      cleanUp();
      throw err;
    }
  }, 60_000);

  afterAll(() => cleanUp());

  it(`routes an RA PvD's zone to it within ${TARGET_MS} ms of the RA and back to wifi as fast on router lifetime 0; no corp name reaches wifi meanwhile (${CYCLES} cycles)`, async () => {
    const source = await routerLinkLocal();
    const up: number[] = [];
    const down: number[] = [];
    const fetchMs: number[] = [];
    let leaked = 0;
    const leakAt: string[] = [];
    let corpAnswers = 0;
    for (let c = 0; c < CYCLES; c++) {
      const id = `vpn${c}.ra.example`;
      const option = pvd(id, { http: true, sequence: 1, delay: 0 }, rdnss(600, ROUTER_ADDR), pio('2001:db8:7a::/64'));
      const t0 = await sendRa(source, 1800, option);
      const first = await waitFor((e) => e.kind === 'answer' && e.address === VPN_ANSWER && e.sentAt! >= t0, `corp answer from ${id}'s server`);
      up.push(first.t - t0);
      await sleep(CYCLE_MS - 500);
      const t2 = await sendRa(source, 0, option);
      const back = await waitFor((e) => e.kind === 'answer' && e.address === WIFI_ANSWER && e.sentAt! >= t2, `corp answer from wifi after ${id}'s withdrawal`);
      down.push(back.t - t2);
      const announced = await waitLog((l) => l.msg === 'pvd announced' && pvdOf(l) === id, `announce of ${id}`);
      const updated = await waitLog((l) => l.msg === 'pvd updated' && pvdOf(l) === id, `update of ${id} with its information`);
      const withdrawn = await waitLog((l) => l.msg === 'pvd withdrawn' && pvdOf(l) === id, `withdrawal of ${id}`);
      fetchMs.push(updated.ms - announced.ms);
      // A leak: a corp query the client sent after pvdns had announced the PvD (so it reached pvdns
      // after; pino stamps whole ms: from the next one) that wifi was asked before pvdns withdrew the
      // PvD (before the whole ms of its line: the line is written in the registry's 'withdrawn'
      // event, in the same turn as and before the 'changed' one that rebuilds the routes, so the
      // query was routed before the PvD went). The start is judged by the
      // query's sending, not by when wifi saw it: one pvdns sent to wifi just before the announce
      // may show there several ms later on a loaded machine. The end by when wifi saw it, not by the
      // sending: a query sent just before the withdrawing RA may reach pvdns after it (a
      // local run counted one sent 1,572 ms into a cycle, just before that RA).
      const leaks = events.filter((e) => {
        if (e.kind !== 'asked' || e.server !== 'wifi' || !e.name!.endsWith(CORP)) return false;
        const sentAt = sentAtOf.get(e.name!);
        return sentAt !== undefined && sentAt > announced.ms + 1 && e.t < withdrawn.ms;
      });
      leaked += leaks.length;
      for (const e of leaks) leakAt.push(`${id}: sent ${(sentAtOf.get(e.name!)! - t0).toFixed(1)} ms after the RA, asked of wifi ${(withdrawn.ms - e.t).toFixed(1)} ms before the withdrawal, its fetch ${updated.ms - announced.ms} ms`);
      corpAnswers += events.filter((e) => e.kind === 'answer' && e.address === VPN_ANSWER && e.t > t0 && e.t < t2).length;
      await sleep(Math.max(0, t0 + CYCLE_MS - now()));
    }
    const [u, d, f] = [stats(up), stats(down), stats(fetchMs)];
    const fmt = (x: { median: number; worst: number }): string => `median ${x.median.toFixed(1)} ms, worst ${x.worst.toFixed(1)} ms`;
    console.log(
      `[e2e RA] RA → first corp answer from the RA PvD's server: ${fmt(u)}; router lifetime 0 → first from wifi: ${fmt(d)}; ` +
        `pvdns's announce → update with the fetched information: ${fmt(f)}, the first ${fetchMs[0]} ms; ` +
        `corp queries wifi saw from the announce to the withdrawal: ${leaked} (of ${corpAnswers} answered by the RA PvD), ${CYCLES} cycles, a query every ${CLIENT_MS} ms`,
    );
    if (leakAt.length > 0) console.log(`[e2e RA] leaks: ${leakAt.join('; ')}`);
    // The routing gate's own counts, to tell a hold refused or forced open from one never taken.
    const metrics = execFileSync('ip', ['netns', 'exec', NS_HOST, 'curl', '-s', 'http://127.0.0.1:8053/metrics'], { encoding: 'utf8' });
    const gate = metrics.split('\n').filter((l) => l.startsWith('pvdns_route_gate_total')).join(', ');
    console.log(`[e2e RA] ${gate}`);
    expect(corpAnswers).toBeGreaterThan(CYCLES * 50);
    // The failure's own message says why (CI shows the end of a run, not these lines above).
    expect(leaked, `leaks: ${leakAt.join('; ')}; ${gate}; fetches ${fetchMs.join(', ')} ms`).toBe(0);
    expect(u.worst, `RA → first corp answer per cycle: ${up.map((x) => x.toFixed(1)).join(', ')} ms; fetches ${fetchMs.join(', ')} ms; ${gate}`).toBeLessThanOrEqual(TARGET_MS);
    expect(d.worst, `router lifetime 0 → first from wifi per cycle: ${down.map((x) => x.toFixed(1)).join(', ')} ms`).toBeLessThanOrEqual(TARGET_MS);
    // Every information request came from the host's address in the PvD's prefix (§4.1), one per PvD.
    const served = events.filter((e) => 'served' in e) as unknown as Array<{ served: { path: string; from: string } }>;
    expect(served).toHaveLength(CYCLES);
    for (const s of served) expect(s.served).toEqual({ path: '/.well-known/pvd', from: HOST_ADDR });
    expect(pvdnsStderr).toBe('');
  }, 80_000);
});
