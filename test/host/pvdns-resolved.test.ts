// pvdns itself beside a real systemd-resolved 252 (resolved-harness.ts), all
// in one network namespace: a Wi-Fi link with the default route and a VPN
// link that comes and goes with `resolvectl`, each with a fake DNS server
// (ns-dns.mjs) that logs every name it is asked, and a client asking a
// corporate name of pvdns every CLIENT_MS. The figures:
//
// - from `resolvectl domain vpn0 ~corp.example.com` to the first corp answer
//   from the VPN's server, and from `resolvectl revert vpn0` to the first
//   one from the Wi-Fi's again (the VPN's PvD withdrawn): median and worst
//   of CYCLES, target ≤ 100 ms;
// - corp queries the Wi-Fi's server saw while the VPN held the zone (from
//   `resolvectl domain` returning to `resolvectl revert` starting), over
//   CYCLES up/down cycles: target 0.
//
// pvdns runs as root here, so it watches resolved's calls as a bus monitor;
// PVDNS_E2E_USER=pvdns runs it unprivileged (the fallback: a client leaving
// the bus is the trigger), for the figures of that case. The figures before
// this issue, for the same run: PVDNS_E2E_BACKEND=resolvectl has pvdns poll
// resolvectl every 10 s, as it did (3 cycles unless PVDNS_E2E_CYCLES says;
// the targets are then printed, not asserted).

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSystemUser, onLines, RESOLVECTL_BIN, startResolved, type Resolved } from './resolved-harness.js';

const BACKEND = process.env.PVDNS_E2E_BACKEND === 'resolvectl' ? 'resolvectl' : 'resolved';
const POLLED = BACKEND === 'resolvectl';
const CYCLES = Number(process.env.PVDNS_E2E_CYCLES ?? (POLLED ? 3 : 20));
/** How long a change may take to show: the poll's 10 s and more when polling. */
const WAIT_MS = POLLED ? 15_000 : 5000;
const CLIENT_MS = 10;
const TARGET_MS = 100;
const CORP = 'git.corp.example.com';
const USER = process.env.PVDNS_E2E_USER || undefined;
const ROOT = resolvePath(import.meta.dirname, '../..');

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Event {
  t: number;
  kind: string;
  server?: string;
  name?: string;
  address?: string | null;
  sentAt?: number;
  rcode?: number;
}

let r: Resolved;
let dns: ChildProcess;
let pvdns: ChildProcess;
const events: Event[] = [];
const pvdnsLog: string[] = [];

/** waitFor resolves with the first event from `from` on that `pred` accepts. */
async function waitFor(pred: (e: Event) => boolean, what: string, timeoutMs = 5000): Promise<Event> {
  const deadline = now() + timeoutMs;
  for (let i = 0; ; ) {
    for (; i < events.length; i++) if (pred(events[i]!)) return events[i]!;
    if (now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; pvdns said: ${pvdnsLog.slice(-12).join(' | ')}`);
    await sleep(1);
  }
}

const stats = (xs: number[]): { median: number; worst: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, worst: s.at(-1)! };
};

describe(`pvdns beside a real systemd-resolved (${USER ?? 'root'}, ${BACKEND})`, () => {
  beforeAll(async () => {
    r = await startResolved({ name: 'e2e' });
    await r.addLink('wifi0');
    await r.addLink('vpn0');
    if (USER) ensureSystemUser(USER);
    dns = r.spawn(process.execPath, [join(ROOT, 'test/host/ns-dns.mjs'), '--server', 'wifi=127.0.0.10:53=192.0.2.10', '--server', 'vpn=127.0.0.20:53=10.8.0.20', '--client', '127.0.0.1:5300', '--name', CORP, '--every', String(CLIENT_MS)], {});
    onLines(dns, (line) => events.push(JSON.parse(line) as Event));
    await waitFor((e) => e.kind === 'ready', 'fake servers');
    await r.resolvectl(['dns', 'wifi0', '127.0.0.10']);
    await r.resolvectl(['default-route', 'wifi0', 'yes']);
    const config = join(r.dir, 'pvdns.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        listen: ['127.0.0.1:5300'],
        http: { listen: '127.0.0.1:8053' },
        log: { level: 'info' },
        captive: { probeIntervalS: 0 },
        cache: { maxTtl: 0 },
        // A tunnel PvD bound to an address of wifi0's: pvdns notices when the address goes.
        pvds: [{ identifier: 'tunnel', dnsServers: ['127.0.0.30'], noInternet: true, dns64: 'off', sourceAddress: '10.9.0.2' }],
        pvdSources: { host: true, hostBackend: BACKEND, hostPollIntervalS: 10, resolvConf: join(r.dir, 'resolv.conf') },
        forwardTestNames: true, // its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
      }),
    );
    writeFileSync(join(r.dir, 'resolv.conf'), '# none\n');
    await r.exec('ip', ['addr', 'add', '10.9.0.2/24', 'dev', 'wifi0']);
    // resolvectl on PATH for the polled backend (it finds resolved through the bus address the harness sets).
    const env = { PATH: `${dirname(RESOLVECTL_BIN)}:${process.env.PATH ?? '/usr/bin:/bin'}` };
    pvdns = r.spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve', '--config', config], { user: USER, cwd: r.dir, env });
    onLines(pvdns, (line) => pvdnsLog.push(line));
    pvdns.stderr!.on('data', (d: Buffer) => pvdnsLog.push(d.toString()));
    await waitFor((e) => e.kind === 'answer' && e.address === '192.0.2.10', 'answer from the Wi-Fi through pvdns', 15_000);
  }, 60_000);

  afterAll(async () => {
    pvdns?.kill('SIGTERM');
    dns?.kill('SIGTERM');
    await r?.stop();
  });

  it('says in its start line that it follows resolved over D-Bus', async () => {
    type Line = { msg?: string; sources?: string[] };
    const started = (): Line | undefined => pvdnsLog.map((l) => (l.startsWith('{') ? (JSON.parse(l) as Line) : {})).find((l) => l.msg === 'pvdns started');
    // pino writes asynchronously: the line may trail the first answers.
    for (let i = 0; i < 500 && !started(); i++) await sleep(10);
    const start = started();
    if (POLLED) expect(start?.sources).toEqual(['host: resolvectl (polled every 10 s)']);
    else expect(start?.sources).toEqual([USER ? expect.stringMatching(/^host: resolved \(D-Bus; no bus monitor/) : 'host: resolved (D-Bus)']);
  });

  it(`routes the VPN's zone to it within ${TARGET_MS} ms of resolvectl, and withdraws it as fast; no corp name reaches the Wi-Fi meanwhile (${CYCLES} cycles)`, async () => {
    // From the command's start (it includes spawning `ip netns exec … resolvectl`, ~30 ms here)
    // and from its return (negative: pvdns had switched before resolvectl exited).
    const up: number[] = [];
    const upAfter: number[] = [];
    const down: number[] = [];
    const downAfter: number[] = [];
    let leaked = 0;
    let corpAnswers = 0;
    for (let c = 0; c < CYCLES; c++) {
      await r.resolvectl(['dns', 'vpn0', '127.0.0.20']);
      await sleep(50);
      const t0 = now();
      await r.resolvectl(['domain', 'vpn0', '~corp.example.com']);
      const t1 = now();
      const first = await waitFor((e) => e.kind === 'answer' && e.address === '10.8.0.20' && e.sentAt! >= t0, 'corp answer from the VPN', WAIT_MS);
      up.push(first.t - t0);
      upAfter.push(first.t - t1);
      await sleep(150);
      const t2 = now();
      // While the VPN held the zone, no corp name the client asked may have gone to the Wi-Fi: the
      // client's send time decides (the fake servers share the client's process, and a busy one may
      // log a query pvdns sent before t1 after it).
      leaked += events.filter((e) => e.kind === 'answer' && e.address === '192.0.2.10' && e.sentAt! > t1 && e.sentAt! < t2).length;
      corpAnswers += events.filter((e) => e.kind === 'answer' && e.address === '10.8.0.20' && e.t > t1 && e.t < t2).length;
      await r.resolvectl(['revert', 'vpn0']);
      const t3 = now();
      const back = await waitFor((e) => e.kind === 'answer' && e.address === '192.0.2.10' && e.sentAt! >= t2, 'corp answer from the Wi-Fi after the revert', WAIT_MS);
      down.push(back.t - t2);
      downAfter.push(back.t - t3);
      await sleep(50);
    }
    const [u, ua, d, da] = [stats(up), stats(upAfter), stats(down), stats(downAfter)];
    const f = (x: { median: number; worst: number }): string => `median ${x.median.toFixed(1)} ms, worst ${x.worst.toFixed(1)} ms`;
    console.log(
      `[e2e ${USER ?? 'root'}, ${BACKEND}] resolvectl domain → first corp answer from the VPN: from the command's start ${f(u)}, from its return ${f(ua)}; ` +
        `resolvectl revert → first from the Wi-Fi: from the start ${f(d)}, from the return ${f(da)}; ` +
        `corp queries the Wi-Fi saw while the VPN held the zone: ${leaked} (of ${corpAnswers} answered by the VPN), ${CYCLES} cycles, a query every ${CLIENT_MS} ms`,
    );
    const gate = (await r.exec('curl', ['-s', 'http://127.0.0.1:8053/metrics'])).stdout.split('\n').filter((l) => l.startsWith('pvdns_route_gate_total'));
    console.log(`[e2e ${USER ?? 'root'}, ${BACKEND}] ${gate.join(', ')}`);
    expect(corpAnswers).toBeGreaterThan(CYCLES * 5);
    if (POLLED) return; // the figures before: printed above, not held to the targets
    expect(leaked).toBe(0);
    // Judged from the command's return: its start includes spawning processes, which a loaded CI machine may slow.
    expect(ua.worst).toBeLessThanOrEqual(TARGET_MS);
    expect(da.worst).toBeLessThanOrEqual(TARGET_MS);
  }, POLLED ? 300_000 : 120_000);

  it("notices a PvD's sourceAddress leaving the host, and coming back (netlink)", async () => {
    const present = async (): Promise<unknown> =>
      (JSON.parse((await r.exec('curl', ['-s', 'http://127.0.0.1:8053/v1/pvds/tunnel'])).stdout) as { sourceAddressPresent: unknown }).sourceAddressPresent;
    const until = async (want: boolean): Promise<void> => {
      for (let i = 0; i < 100 && (await present()) !== want; i++) await sleep(20);
      expect(await present()).toBe(want);
    };
    await until(true);
    await r.exec('ip', ['addr', 'del', '10.9.0.2/24', 'dev', 'wifi0']);
    await until(false);
    expect(pvdnsLog.some((l) => l.includes("sourceAddress is on none of the host's links"))).toBe(true);
    await r.exec('ip', ['addr', 'add', '10.9.0.2/24', 'dev', 'wifi0']);
    await until(true);
  }, POLLED ? 60_000 : 30_000);

  it('withdraws the VPN the moment its link is deleted (netlink), and announces it when it is back', async () => {
    await r.resolvectl(['dns', 'vpn0', '127.0.0.20']);
    await r.resolvectl(['domain', 'vpn0', '~corp.example.com']);
    await waitFor((e) => e.kind === 'answer' && e.address === '10.8.0.20', 'corp answer from the VPN', WAIT_MS);
    const t0 = now();
    await r.delLink('vpn0');
    const back = await waitFor((e) => e.kind === 'answer' && e.address === '192.0.2.10' && e.sentAt! >= t0, 'corp answer from the Wi-Fi after the link went');
    console.log(`[e2e ${USER ?? 'root'}, ${BACKEND}] ip link del vpn0 → first corp answer from the Wi-Fi: ${(back.t - t0).toFixed(1)} ms`);
    expect(back.t - t0).toBeLessThanOrEqual(TARGET_MS);
  }, POLLED ? 60_000 : 30_000);

  it("keeps a link's DNS over TLS: `resolvectl dnsovertls dot0 yes` makes its PvD strict, its ADDR#NAME server TLS authenticated as NAME", async () => {
    type View = { encryption?: string; servers?: Array<{ address: string; transport: string; authName: string | null; fallback: string | null }> };
    const pvd = async (): Promise<View> => JSON.parse((await r.exec('curl', ['-s', 'http://127.0.0.1:8053/v1/pvds/dot0'])).stdout) as View;
    const until = async (ok: (v: View) => boolean, what: string): Promise<View> => {
      for (let i = 0; i < (POLLED ? 750 : 250); i++) {
        const v = await pvd();
        if (ok(v)) return v;
        await sleep(20);
      }
      throw new Error(`dot0's PvD never ${what}: ${JSON.stringify(await pvd())}`);
    };
    await r.addLink('dot0');
    // No default route: the other tests' names keep going where they went.
    await r.resolvectl(['default-route', 'dot0', 'no']);
    await r.resolvectl(['dns', 'dot0', '10.77.0.1#dns.test', '10.77.0.2']);
    const clear = await until((v) => v.servers?.length === 2, 'appeared');
    // resolved's default, DNSOverTLS=no, with a named server: TLS is tried (authenticated by the name),
    // falling back to the clear as resolved asks them.
    expect([clear.encryption, clear.servers!.map((s) => [s.transport, s.fallback])]).toEqual(['opportunistic', [['tls', '10.77.0.1:53'], ['tls', '10.77.0.2:53']]]);
    await r.resolvectl(['dnsovertls', 'dot0', 'yes']);
    const strict = await until((v) => v.encryption === 'strict', 'became strict');
    expect(strict.servers!.map((s) => [s.address, s.transport, s.authName, s.fallback])).toEqual([
      ['tls://10.77.0.1:853#dns.test', 'tls', 'dns.test', null],
      // No name: resolved checks the certificate against the address; so does pvdns.
      ['tls://10.77.0.2:853', 'tls', null, null],
    ]);
    await r.resolvectl(['dnsovertls', 'dot0', 'opportunistic']);
    const opp = await until((v) => v.encryption === 'opportunistic', 'became opportunistic');
    expect(opp.servers!.map((s) => [s.transport, s.fallback])).toEqual([
      ['tls', '10.77.0.1:53'],
      ['tls', '10.77.0.2:53'],
    ]);
    expect(pvdnsLog.some((l) => l.includes('DNS over TLS strict, from '))).toBe(true);
    await r.delLink('dot0');
  }, POLLED ? 60_000 : 30_000);
});
