// The addon's raw sockets against the real kernel, inside a network namespace
// this test creates (nothing touches the machine's own links): the
// LinkMonitor (src/pvd/sources/netlink.ts) sees veth links come, go up and
// down, gain and lose IPv4 and IPv6 addresses, and go away, each within
// 50 ms; the RA receiver (src/native/icmp6.ts) gets a Router Advertisement
// sent with scapy over a veth pair, with its sender, interface and hop limit,
// and never an echo request. Needs root, iproute2 and python3-scapy, and
// the build (`npm run test:host` builds first).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const NS = `pvdns-netlink-${process.pid}`;
const CHILD = new URL('./raw-child.mjs', import.meta.url).pathname;
const DIST = new URL('../../dist/pvd/sources/netlink.js', import.meta.url).pathname;
// Debian's python3 has python3-scapy; a python3 earlier on PATH (pyenv) may not.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const now = (): number => performance.timeOrigin + performance.now();

const ip = (...args: string[]): string => execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });
const inNs = (cmd: string, ...args: string[]): string => execFileSync('ip', ['netns', 'exec', NS, cmd, ...args], { encoding: 'utf8' });

/** One JSON line of raw-child.mjs: its shape depends on the mode, so the test reads it loosely. */
type Line = Record<string, any> & { t: number };

/** A raw-child.mjs inside the namespace, its JSON lines collected. */
class Child {
  readonly lines: Line[] = [];
  private readonly proc: ChildProcess;
  private waiters: Array<() => void> = [];
  stderr = '';

  constructor(mode: 'monitor' | 'ra', prefix: string[] = []) {
    this.proc = spawn('ip', ['netns', 'exec', NS, ...prefix, process.execPath, CHILD, mode], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      this.lines.push(JSON.parse(l) as Line);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  /** The first line (from index `from`) that satisfies `pred`, waiting up to `ms`. */
  async waitFor(pred: (l: Line) => boolean, ms = 3000, from = 0): Promise<Line> {
    const deadline = Date.now() + ms;
    // Each line is looked at once, in order (a predicate may keep state).
    for (let i = from; ; ) {
      for (; i < this.lines.length; i++) if (pred(this.lines[i]!)) return this.lines[i]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching line within ${ms} ms; got ${JSON.stringify(this.lines.slice(from))} ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  /** Writes a line to the child's standard input. */
  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  stop(): void {
    this.proc.stdin!.end();
    this.proc.kill();
  }
}

const children: Child[] = [];

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('test:host needs root (network namespaces, raw sockets)');
  if (!existsSync(DIST)) throw new Error('no build: run `npm run build` (npm run test:host does)');
  execFileSync('ip', ['netns', 'add', NS]);
  ip('link', 'set', 'lo', 'up');
  // Link-local addresses usable at once (no duplicate address detection), and no
  // kernel reaction to the test's RAs.
  inNs('sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.accept_ra=0');
});

afterAll(() => {
  for (const c of children) c.stop();
  try {
    execFileSync('ip', ['netns', 'del', NS]);
  } catch {
    // already gone
  }
});

describe('LinkMonitor on rtnetlink', () => {
  it('reports a veth pair coming, going up and down, its addresses, and its deletion, each within 50 ms', async () => {
    const mon = new Child('monitor');
    children.push(mon);
    const ready = await mon.waitFor((l) => 'ready' in l, 10_000);
    expect(ready.ready, ready.why).toBe(true);
    expect(ready.links.lo).toMatchObject({ up: true, addresses: expect.arrayContaining([{ address: '127.0.0.1', prefixLength: 8, family: 4, scope: 'host' }]) });

    const latencies: Record<string, number> = {};
    // The kernel's own pace, for reference: `ip -ts monitor` stamps each message it receives
    // ("[2026-12-04T15:25:34.751170] Deleted 3: …", local time).
    const kernel: number[] = [];
    const ipmon = spawn('ip', ['-n', NS, '-ts', 'monitor', 'link', 'address'], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: ipmon.stdout! }).on('line', (l) => {
      const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)\]/.exec(l);
      if (m) kernel.push(Date.parse(m[1]!) + Number(m[2]) * 1000);
    });
    const steps: Array<{ label: string; t0: number; t: number }> = [];
    await new Promise((r) => setTimeout(r, 200)); // ip monitor subscribed
    // One `ip -batch` reading commands as they come: the time measured is the
    // kernel's and the monitor's, not that of starting a process per change.
    const batch = spawn('ip', ['-n', NS, '-force', '-batch', '-'], { stdio: ['pipe', 'inherit', 'inherit'] });
    /**
     * Has `ip` run `…args` in the namespace and waits for the 'changed' line after which every
     * one of `names` has been reported and the state satisfies `pred`. The
     * kernel's messages for two links may come in one batch or two.
     */
    async function step(label: string, args: string[], names: string[], pred: (links: Line['links']) => boolean): Promise<Line['links']> {
      const from = mon.lines.length;
      const seen = new Set<string>();
      const t0 = now();
      batch.stdin!.write(`${args.join(' ')}\n`);
      const line = await mon.waitFor(
        (l) => {
          for (const n of l.changed ?? []) seen.add(n);
          return Array.isArray(l.changed) && names.every((n) => seen.has(n)) && pred(l.links);
        },
        3000,
        from,
      );
      latencies[label] = line.t - t0;
      steps.push({ label, t0, t: line.t });
      return line.links;
    }
    const addrs = (l: Line['links'], name: string): string[] => (l[name]?.addresses ?? []).map((a: { address: string; prefixLength: number }) => `${a.address}/${a.prefixLength}`);

    let links = await step('link added', ['link', 'add', 'nla', 'type', 'veth', 'peer', 'name', 'nlb'], ['nla', 'nlb'], (l) => l.nla && l.nlb);
    expect(links.nla.up).toBe(false);
    expect(links.nlb.up).toBe(false);

    // One end up with its peer down is LOWERLAYERDOWN: still not up.
    batch.stdin!.write('link set nla up\n');
    links = await step('link up', ['link', 'set', 'nlb', 'up'], ['nla', 'nlb'], (l) => l.nla.up && l.nlb.up);

    links = await step('IPv4 address added', ['addr', 'add', '10.8.0.5/24', 'dev', 'nla'], ['nla'], (l) => addrs(l, 'nla').includes('10.8.0.5/24'));
    expect(links.nla.prefixes).toEqual(['10.8.0.0/24']);
    expect(links.nla.addresses).toContainEqual({ address: '10.8.0.5', prefixLength: 24, family: 4, scope: 'global' });

    links = await step('IPv6 address added', ['addr', 'add', '2001:db8:1::5/64', 'dev', 'nla', 'nodad'], ['nla'], (l) => addrs(l, 'nla').includes('2001:db8:1::5/64'));
    expect(links.nla.prefixes).toEqual(['10.8.0.0/24', '2001:db8:1::/64']);

    links = await step('IPv4 address removed', ['addr', 'del', '10.8.0.5/24', 'dev', 'nla'], ['nla'], (l) => !addrs(l, 'nla').includes('10.8.0.5/24'));
    expect(links.nla.prefixes).toEqual(['2001:db8:1::/64']);

    links = await step('IPv6 address removed', ['addr', 'del', '2001:db8:1::5/64', 'dev', 'nla'], ['nla'], (l) => !addrs(l, 'nla').includes('2001:db8:1::5/64'));
    expect(links.nla.prefixes).toEqual([]);

    // The peer going down takes this end's carrier: both are down.
    links = await step('link down', ['link', 'set', 'nlb', 'down'], ['nla', 'nlb'], (l) => !l.nla.up && !l.nlb.up);

    links = await step('link deleted', ['link', 'del', 'nla'], ['nla', 'nlb'], (l) => !l.nla && !l.nlb);
    expect(Object.keys(links)).toEqual(['lo']);

    // ip monitor's stamp of the kernel's first message for each change (its output may come after ours).
    await new Promise((r) => setTimeout(r, 300));
    const afterKernel: Record<string, number> = {};
    steps.forEach(({ label, t0, t }, i) => {
      const k = kernel.find((x) => x >= t0 - 1 && x < (steps[i + 1]?.t0 ?? Infinity));
      if (k !== undefined) afterKernel[label] = t - k;
    });
    const table = Object.entries(latencies).map(([k, v]) => `${k} ${v.toFixed(1)} (${afterKernel[k]?.toFixed(1) ?? '?'} after ip monitor)`);
    console.log(`netlink latency from the command, ms: ${table.join(', ')}`);
    for (const [label, ms] of Object.entries(latencies)) {
      // Deleting a link, the kernel waits for RCU grace periods (synchronize_net in
      // unregister_netdevice_many) before it sends RTM_DELLINK: tens of ms on a busy
      // machine that no listener can save; there the bound is on the monitor's part.
      expect(ms, label).toBeLessThan(label === 'link deleted' ? 250 : 50);
      expect(afterKernel[label], `${label}: ip monitor saw it`).toBeDefined();
      expect(afterKernel[label]!, label).toBeLessThan(50);
    }
    batch.stdin!.end();
    ipmon.kill();
    mon.stop();
  });

  it('dumps again when events overrun its queue, and ends knowing every address; events flow on', async () => {
    ip('link', 'add', 'ovl', 'type', 'veth', 'peer', 'name', 'ovm');
    // A queue of a few kilobytes (the kernel's minimum) and a busy event loop: the kernel drops events.
    const mon = new Child('monitor', ['env', 'RCVBUF=1024']);
    children.push(mon);
    expect((await mon.waitFor((l) => 'ready' in l, 10_000)).ready).toBe(true);
    const from = mon.lines.length;
    mon.send('block 1500');
    await mon.waitFor((l) => l.blocked === true, 5000, from);
    const wanted = Array.from({ length: 200 }, (_, i) => `10.9.${i >> 8}.${i & 255}`);
    execFileSync('ip', ['-n', NS, '-batch', '-'], { input: wanted.map((a) => `addr add ${a}/32 dev ovl\n`).join('') });
    // The kernel either overruns the queue (ENOBUFS) or cuts a datagram to fit it: both make the
    // monitor dump again, and either way it must end knowing all 200.
    const line = await mon.waitFor((l) => l.links?.ovl?.addresses.length === wanted.length, 10_000, from);
    console.log(`netlink overrun test: ${line.overruns} overrun(s) reported by the kernel`);
    expect(line.links.ovl.addresses.map((a: { address: string }) => a.address).sort()).toEqual([...wanted].sort());

    const after = mon.lines.length;
    ip('addr', 'del', '10.9.0.7/32', 'dev', 'ovl');
    const gone = await mon.waitFor((l) => l.changed?.includes('ovl') && l.links.ovl.addresses.length === wanted.length - 1, 3000, after);
    expect(gone.links.ovl.addresses.map((a: { address: string }) => a.address)).not.toContain('10.9.0.7');
    ip('link', 'del', 'ovl');
    mon.stop();
  });
});

describe('Router Advertisement receiver (raw ICMPv6)', () => {
  it('refuses without CAP_NET_RAW, saying so', async () => {
    const c = new Child('ra', ['setpriv', '--bounding-set', '-net_raw']);
    children.push(c);
    const line = await c.waitFor((l) => 'ready' in l, 10_000);
    expect(line).toMatchObject({ ready: false, code: 'EPERM' });
    expect(line.error).toMatch(/needs CAP_NET_RAW/);
  });

  it('delivers an RA with its payload, sender, interface and hop limit, and filters out an echo request', async () => {
    ip('link', 'add', 'ra0', 'type', 'veth', 'peer', 'name', 'ra1');
    ip('link', 'set', 'ra0', 'up');
    ip('link', 'set', 'ra1', 'up');
    const ifindex = (JSON.parse(ip('-j', 'link', 'show', 'ra0')) as Array<{ ifindex: number }>)[0]!.ifindex;
    // The sender's link-local address appears once the link has its carrier.
    let source = '';
    for (let i = 0; i < 100 && !source; i++) {
      const info = JSON.parse(ip('-j', '-6', 'addr', 'show', 'dev', 'ra1', 'scope', 'link')) as Array<{ addr_info: Array<{ local: string; tentative?: boolean }> }>;
      source = info[0]?.addr_info.find((a) => !a.tentative)?.local ?? '';
      if (!source) await new Promise((r) => setTimeout(r, 50));
    }
    expect(source).toMatch(/^fe80:/);

    const rx = new Child('ra');
    children.push(rx);
    expect((await rx.waitFor((l) => 'ready' in l, 10_000)).ready).toBe(true);

    // Layer 2 out of ra1 (no local loopback of the multicast): an echo request
    // first, then RAs; the link keeps their order, so the RA arriving first
    // shows the echo was filtered. The second RA comes with a forged hop limit.
    const script = `
import sys
from scapy.all import Ether, IPv6, ICMPv6EchoRequest, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, sendp
src = sys.argv[1]
def frame(hlim, upper):
    p = Ether(bytes(Ether(dst='33:33:00:00:00:01')/IPv6(src=src, dst='ff02::1', hlim=hlim)/upper))
    return p
echo = frame(255, ICMPv6EchoRequest(id=7, seq=1))
ra = frame(255, ICMPv6ND_RA(chlim=64, routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix='2001:db8:77::', prefixlen=64))
forged = frame(64, ICMPv6ND_RA(chlim=64, routerlifetime=0))
sendp([echo, ra, forged], iface='ra1', verbose=0)
print(bytes(ra[IPv6].payload).hex())
print(bytes(forged[IPv6].payload).hex())
`;
    const [raHex, forgedHex] = inNs(PYTHON, '-c', script, source).trim().split('\n');
    expect(raHex!.slice(0, 2)).toBe('86'); // type 134

    const first = await rx.waitFor((l) => 'ra' in l, 5000);
    expect(first.ra).toEqual({ payload: raHex, source, ifindex, hopLimit: 255 });
    const second = await rx.waitFor((l) => 'ra' in l && l.ra.payload !== raHex, 5000);
    expect(second.ra).toEqual({ payload: forgedHex, source, ifindex, hopLimit: 64 });
    // Nothing but RAs ever came through.
    expect(rx.lines.filter((l) => 'ra' in l).map((l) => l.ra.payload.slice(0, 2))).toEqual(['86', '86']);
    rx.stop();
  });
});
