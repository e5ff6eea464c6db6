// HostFeed (src/pvd/sources/host.ts): the host's PvDs as a user sees them in
// the registry, fed by fake link backends and a fake kernel link view.
// Which backend is used, what happens when none answers (resolv.conf and its
// rewrites), reports before and after start, links going down and up,
// prefixes from the links' addresses, skipped servers warned about once,
// the routing hold, and stop.

import { closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseSocketAddress, type SocketAddress } from '../../src/config/address.js';
import { wireKey } from '../../src/dns/name.js';
import { createLogger, type Logger } from '../../src/log.js';
import { PvdRegistry } from '../../src/pvd/registry.js';
import { HostFeed, type LinkAddress, type LinkState, type LinkWatch } from '../../src/pvd/sources/host.js';
import type { HostLink, LinkBackend } from '../../src/pvd/sources/source.js';
import { SourceSet } from '../../src/pvd/sources/sources.js';
import { RouteTable } from '../../src/resolve/routes.js';

/** No RA source runs here: nothing verifies a TLS server. */
const noTls = (): never => {
  throw new Error('no TLS context in this test');
};

const tmp = mkdtempSync(join(tmpdir(), `pvdns-hostfeed-${process.pid}-`));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Lets pending reports and pushes run. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

async function eventually(what: string, ok: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const link = (ifname: string, servers: string[], domains: string[] = [], defaultRoute = false): HostLink => ({ ifname, servers, domains, defaultRoute });

/** A backend whose first report (or failure) the test gives, and whose later reports it sends. */
class FakeBackend implements LinkBackend {
  starts = 0;
  stops = 0;
  refreshes = 0;
  report: ((links: HostLink[]) => void) | null = null;
  hold: (() => () => void) | null = null;
  constructor(
    readonly name: string,
    private readonly first: () => Promise<HostLink[] | null>,
  ) {}
  start(onReport: (links: HostLink[]) => void, hold?: () => () => void): Promise<HostLink[] | null> {
    this.starts++;
    this.report = onReport;
    this.hold = hold ?? null;
    return this.first();
  }
  refresh(): void {
    this.refreshes++;
  }
  stop(): void {
    this.stops++;
  }
}

const answers = (name: string, links: HostLink[] | null): FakeBackend => new FakeBackend(name, () => Promise.resolve(links));

/** The kernel's links as the test sets them; every change is one batch to the subscribers. */
class FakeLinks implements LinkWatch {
  /** The link is deleted: the kernel no longer knows it. */
  del(ifname: string): void {
    this.states.delete(ifname);
    for (const fn of this.subscribers) fn();
  }
  readonly states = new Map<string, LinkState>();
  readonly subscribers = new Set<() => void>();
  byName(ifname: string): LinkState | undefined {
    return this.states.get(ifname);
  }
  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
  set(ifname: string, up: boolean, addresses: LinkAddress[] = []): void {
    this.states.set(ifname, { ifindex: this.states.size + 2, ifname, up, addresses });
    for (const fn of this.subscribers) fn();
  }
}

const addr = (text: string, scope: LinkAddress['scope'] = 'global'): LinkAddress => {
  const [address, len] = text.split('/');
  return { address: address!, prefixLength: Number(len), family: address!.includes(':') ? 6 : 4, scope };
};

let registry: PvdRegistry;
let log: Logger;
let holds: number;
let set: SourceSet;
let own: SocketAddress[];
const feeds: HostFeed[] = [];

beforeEach(() => {
  registry = new PvdRegistry();
  log = createLogger('silent');
  vi.spyOn(log, 'warn');
  holds = 0;
  own = [parseSocketAddress('127.0.0.1:53', 53) as SocketAddress];
  set = new SourceSet({
    registry,
    log,
    hold: () => {
      holds++;
      return () => holds--;
    },
    ownListeners: () => own,
    loopProblem: () => null,
    resolveIn: () => Promise.resolve([]),
    tlsContext: noTls,
  });
});
afterEach(() => {
  for (const f of feeds.splice(0)) f.stop();
  set.stop();
});

/** A started HostFeed over these backends, its changes going through SourceSet's sink as the App's do. */
async function hostFeed(opts: { backends: LinkBackend[]; resolvConf?: string; links?: LinkWatch | null }): Promise<HostFeed> {
  const feed = new HostFeed({ backends: opts.backends, resolvConf: opts.resolvConf ?? join(tmp, 'absent.conf'), ownListeners: () => own, links: opts.links ?? null, log });
  feeds.push(feed);
  await feed.start(set.sink('host', () => feed));
  return feed;
}

/** Which PvDs a PTR query for `name` is sent to, by the route table built from the registry now. */
const ptrRoute = (name: string): string[] => new RouteTable(registry.list()).match(wireKey(name)).pvds.map((p) => p.id);

/** The registry as a user reads it: identifier → servers. */
const pvds = (): Record<string, string[]> => Object.fromEntries(registry.list().map((p) => [p.identifier, p.servers.map((s) => s.label)]));
/** How many warnings carried this message. */
const warnings = (msg: string): number => vi.mocked(log.warn).mock.calls.filter((c) => c[1] === msg).length;

describe('HostFeed: which backend', () => {
  it('uses the first backend that answers, names it, and marks its PvDs with it', async () => {
    const resolved = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'], ['home.example'], true)]);
    const nm = answers('NetworkManager (D-Bus)', [link('eth0', ['192.0.2.99'])]);
    const feed = await hostFeed({ backends: [resolved, nm] });
    expect(feed.describe()).toBe('resolved (D-Bus)');
    expect(feed.backend()).toBe('resolved (D-Bus)');
    expect(nm.starts).toBe(0);
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
    const eth0 = registry.get('eth0')!;
    expect([eth0.source, eth0.origin, eth0.interface, eth0.isDefault, eth0.dnsZones]).toEqual(['host', 'resolved (D-Bus)', 'eth0', true, ['home.example']]);
  });

  it('stops a backend that is not available here (null) and tries the next', async () => {
    const resolved = answers('resolved (D-Bus)', null);
    const tool = answers('resolvectl (polled every 10 s)', [link('wg0', ['10.8.0.1'], ['corp.example.com'])]);
    const feed = await hostFeed({ backends: [resolved, tool] });
    expect(resolved.stops).toBe(1);
    expect(tool.stops).toBe(0);
    expect(feed.describe()).toBe('resolvectl (polled every 10 s)');
    expect(registry.get('wg0')?.origin).toBe('resolvectl (polled every 10 s)');
  });

  it('logs a backend that throws (one warning naming it) and uses the next', async () => {
    const broken = new FakeBackend('resolved (D-Bus)', () => Promise.reject(new Error('bus said no')));
    const sync = new FakeBackend('nmcli (polled every 10 s)', () => {
      throw new Error('thrown, not rejected');
    });
    const tool = answers('resolvectl (polled every 10 s)', [link('eth0', ['192.0.2.1'])]);
    const feed = await hostFeed({ backends: [broken, sync, tool] });
    expect(feed.describe()).toBe('resolvectl (polled every 10 s)');
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
    const lines = vi.mocked(log.warn).mock.calls.filter((c) => String(c[1]).startsWith("cannot read the host's links"));
    expect(lines.map((c) => c[0])).toEqual([
      { backend: 'resolved (D-Bus)', error: 'bus said no' },
      { backend: 'nmcli (polled every 10 s)', error: 'thrown, not rejected' },
    ]);
    expect([broken.stops, sync.stops]).toEqual([1, 1]);
  });

  it("keeps the links a backend reports while it is still starting (they are newer than its first read)", async () => {
    let answer!: (links: HostLink[]) => void;
    const slow = new FakeBackend('resolved (D-Bus)', () => new Promise((r) => (answer = r)));
    const started = hostFeed({ backends: [slow] });
    await settle();
    slow.report!([link('eth0', ['192.0.2.1']), link('wg0', ['10.8.0.1'], ['corp.example.com'])]);
    answer([link('eth0', ['192.0.2.1'])]);
    await started;
    expect(Object.keys(pvds()).sort()).toEqual(['eth0', 'wg0']);
  });

  it('does not take links from a backend that reported while starting and then said it is not available', async () => {
    const gone = new FakeBackend('resolved (D-Bus)', async () => {
      gone.report!([link('stale0', ['192.0.2.66'])]);
      return null;
    });
    const tool = answers('resolvectl (polled every 10 s)', [link('eth0', ['192.0.2.1'])]);
    await hostFeed({ backends: [gone, tool] });
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
    // Nor does a late report of the one that left.
    gone.report!([link('stale0', ['192.0.2.66'])]);
    await settle();
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
  });

  it("passes the sink's routing hold to the backend (2nd argument of start)", async () => {
    const b = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'])]);
    await hostFeed({ backends: [b] });
    const release = b.hold!();
    expect(holds).toBe(1);
    release();
    expect(holds).toBe(0);
  });
});

describe('HostFeed: reports after start', () => {
  it('applies each report as the whole set: a new link announced, a changed one updated, a missing one withdrawn', async () => {
    const b = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'], [], true)]);
    const feed = await hostFeed({ backends: [b] });
    const tag = registry.get('eth0')!.tag;
    b.report!([link('eth0', ['192.0.2.1'], [], true), link('wg0', ['10.8.0.1'], ['corp.example.com'])]);
    await settle();
    expect(Object.keys(pvds()).sort()).toEqual(['eth0', 'wg0']);
    // eth0 did not change: the same PvD, its cache kept.
    expect(registry.get('eth0')!.tag).toBe(tag);
    b.report!([link('wg0', ['10.8.0.2'], ['corp.example.com'])]);
    await settle();
    expect(pvds()).toEqual({ wg0: ['10.8.0.2:53'] });
    b.report!([]);
    await settle();
    // No link left with servers: resolv.conf's system PvD stands in (here the file is absent: no servers).
    expect(pvds()).toEqual({ system: [] });
    expect(feed.describe()).toMatch(/^resolv\.conf \(.*absent\.conf\): resolved \(D-Bus\) reports no link with usable servers$/);
  });
});

describe('HostFeed: the kernel link state', () => {
  it("gives a link the kernel says is down no PvD, brings it back when it is up, and asks the backend to read again on each change", async () => {
    const links = new FakeLinks();
    links.set('eth0', true);
    links.set('wg0', false);
    const b = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'], [], true), link('wg0', ['10.8.0.1'], ['corp.example.com'])]);
    await hostFeed({ backends: [b], links });
    expect(Object.keys(pvds())).toEqual(['eth0']);
    links.set('wg0', true);
    await settle();
    expect(Object.keys(pvds()).sort()).toEqual(['eth0', 'wg0']);
    expect(b.refreshes).toBe(1);
    links.set('eth0', false);
    await settle();
    expect(Object.keys(pvds())).toEqual(['wg0']);
    expect(b.refreshes).toBe(2);
  });

  it('withdraws a link the kernel has deleted at once, before the backend says so; a link it never knew (a container) is kept', async () => {
    const links = new FakeLinks();
    links.set('wg0', true);
    const b = answers('resolved (D-Bus)', [link('wg0', ['10.8.0.1'], ['corp.example.com']), link('wlan0', ['192.0.2.1'], [], true)]);
    await hostFeed({ backends: [b], links });
    expect(Object.keys(pvds()).sort()).toEqual(['wg0', 'wlan0']);
    links.del('wg0');
    await settle();
    expect(Object.keys(pvds())).toEqual(['wlan0']);
    // The backend still reports it (it has not caught up): still no PvD.
    b.report!([link('wg0', ['10.8.0.1'], ['corp.example.com']), link('wlan0', ['192.0.2.1'], [], true)]);
    await settle();
    expect(Object.keys(pvds())).toEqual(['wlan0']);
    // Created again under the same name: back.
    links.set('wg0', true);
    await settle();
    expect(Object.keys(pvds()).sort()).toEqual(['wg0', 'wlan0']);
  });

  it("keeps a link's encryption: DNSOverTLS=yes is strict (never in the clear), opportunistic is opportunistic, no or none is off unless a server has a TLS name (then opportunistic)", async () => {
    vi.spyOn(log, 'info');
    const b = answers('resolved (D-Bus)', [
      { ...link('wlan0', ['192.0.2.1#dns.example', '192.0.2.2', '192.0.2.3:5353'], [], true), dnsOverTls: 'yes' },
      { ...link('eth0', ['192.0.2.4#dns.example', '192.0.2.5'], [], true), dnsOverTls: 'opportunistic' },
      { ...link('wg0', ['10.8.0.1:853#dns.corp', '10.8.0.2'], ['corp.example.com']), dnsOverTls: 'no' },
      link('tun0', ['10.9.0.1#dns.lab'], ['lab.example']),
    ]);
    await hostFeed({ backends: [b] });
    const view = (id: string): unknown => {
      const p = registry.get(id)!;
      return [p.encryption, p.servers.map((s) => [s.transport, `${s.host}:${s.port}`, s.authName, s.authenticate, s.fallback?.label ?? null])];
    };
    // As resolved asks them: a name authenticates the server; with none, its address does (strict), or
    // nothing is checked (opportunistic); a port given is the one TLS uses; nothing strict in the clear.
    expect(view('wlan0')).toEqual([
      'strict',
      [
        ['tls', '192.0.2.1:853', 'dns.example', true, null],
        ['tls', '192.0.2.2:853', null, true, null],
        ['tls', '192.0.2.3:5353', null, true, null],
      ],
    ]);
    expect(view('eth0')).toEqual([
      'opportunistic',
      [
        ['tls', '192.0.2.4:853', 'dns.example', true, '192.0.2.4:53'],
        ['tls', '192.0.2.5:853', null, false, '192.0.2.5:53'],
      ],
    ]);
    // DNSOverTLS=no (resolved's default) with a named server: TLS is tried, authenticated by the name, and
    // the fallback is what resolved asks in the clear (on the port it was given).
    expect(view('wg0')).toEqual([
      'opportunistic',
      [
        ['tls', '10.8.0.1:853', 'dns.corp', true, '10.8.0.1:53'],
        ['tls', '10.8.0.2:853', null, false, '10.8.0.2:53'],
      ],
    ]);
    expect(view('tun0')).toEqual(['opportunistic', [['tls', '10.9.0.1:853', 'dns.lab', true, '10.9.0.1:53']]]);
    expect(vi.mocked(log.warn)).not.toHaveBeenCalled();
    // One short line per link that encrypts, and only when its mode changes.
    const said = (): unknown[] => vi.mocked(log.info).mock.calls.map((c) => c[1]);
    expect(said()).toEqual([
      'DNS over TLS strict, from resolved (D-Bus)',
      'DNS over TLS opportunistic, from resolved (D-Bus)',
      'DNS over TLS opportunistic, from resolved (D-Bus)',
      'DNS over TLS opportunistic, from resolved (D-Bus)',
    ]);
    b.report!([{ ...link('wlan0', ['192.0.2.1#dns.example'], [], true), dnsOverTls: 'yes' }, { ...link('eth0', ['192.0.2.4'], [], true), dnsOverTls: 'no' }]);
    await settle();
    expect(registry.get('eth0')!.encryption).toBe('off');
    expect(said()).toHaveLength(5);
    expect(said()[4]).toBe('DNS over TLS off, from resolved (D-Bus)');
  });

  it('never gives a link that requires DNS over TLS a PvD that asks in the clear, whatever its servers look like', async () => {
    const forms = ['192.0.2.1', '192.0.2.1:53', '192.0.2.1:853', '192.0.2.1#dns.example', '192.0.2.1:53#dns.example', 'fd00::1', '[fd00::1]:5353', 'fe80::1%3#dns.example', '[fe80::1]:5353%3'];
    const b = answers('resolvectl (polled every 10 s)', [{ ...link('wlan0', forms, [], true), dnsOverTls: 'yes' }]);
    await hostFeed({ backends: [b] });
    const p = registry.get('wlan0')!;
    expect(p.encryption).toBe('strict');
    expect(p.servers).toHaveLength(forms.length);
    for (const s of p.servers) expect([s.transport, s.fallback, s.authenticate]).toEqual(['tls', null, true]);
    expect(p.servers.map((s) => s.label)).toContain('tls://[fe80::1%wlan0]:853#dns.example');
  });

  it("skips a link's server that is pvdns itself where pvdns would send to it: opportunistically, its cleartext address", async () => {
    const b = answers('resolved (D-Bus)', [
      { ...link('eth0', ['127.0.0.1', '192.0.2.1'], [], true), dnsOverTls: 'opportunistic' },
      { ...link('wlan0', ['127.0.0.1#self.example', '192.0.2.2'], []), dnsOverTls: 'no' },
    ]);
    await hostFeed({ backends: [b] });
    // wlan0 tries TLS (a named server) and falls back to 127.0.0.1:53, pvdns itself: skipped.
    expect(pvds()).toEqual({ eth0: ['tls://192.0.2.1:853'], wlan0: ['tls://192.0.2.2:853'] });
    expect(warnings("skipping a link's DNS server that is pvdns itself (a loop)")).toBe(2);
  });

  it("gives a link's PvD the prefixes of its global addresses, IPv4 and IPv6, and follows them as they change", async () => {
    const links = new FakeLinks();
    links.set('wg0', true, [addr('10.8.0.2/24'), addr('2001:db8:5::7/64'), addr('fe80::1/64', 'link'), addr('127.0.0.1/8', 'host'), addr('10.8.0.3/24')]);
    const b = answers('resolved (D-Bus)', [link('wg0', ['10.8.0.1'], ['corp.example.com'])]);
    await hostFeed({ backends: [b], links });
    const wg0 = registry.get('wg0')!;
    expect(wg0.prefixes).toEqual(['10.8.0.0/24', '2001:db8:5::/64']);
    // Their reverse zones are the PvD's: a PTR query for 10.8.0.7 routes to the VPN.
    expect(wg0.reverseZones).toEqual(expect.arrayContaining(['0.8.10.in-addr.arpa', '0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa']));
    expect(wg0.reverseZones.some((z) => z.includes('0.8.e.f') || z.endsWith('127.in-addr.arpa'))).toBe(false);
    expect(ptrRoute('7.0.8.10.in-addr.arpa')).toEqual(['wg0']);
    expect(ptrRoute('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa')).toEqual(['wg0']);
    links.set('wg0', true, [addr('10.9.1.2/16')]);
    await settle();
    expect(registry.get('wg0')!.prefixes).toEqual(['10.9.0.0/16']);
    expect(registry.get('wg0')!.reverseZones).toEqual(['9.10.in-addr.arpa']);
    expect(ptrRoute('7.0.8.10.in-addr.arpa')).toEqual([]);
    expect(ptrRoute('2.1.9.10.in-addr.arpa')).toEqual(['wg0']);
    links.set('wg0', true, []);
    await settle();
    expect(registry.get('wg0')!.prefixes).toEqual([]);
  });

  it('stops following the kernel when stopped', async () => {
    const links = new FakeLinks();
    const b = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'])]);
    const feed = await hostFeed({ backends: [b], links });
    expect(links.subscribers.size).toBe(1);
    feed.stop();
    expect(links.subscribers.size).toBe(0);
  });
});

describe('HostFeed: servers it skips', () => {
  const loop = "skipping a link's DNS server that is pvdns itself (a loop)";
  const never = "skipping a link's DNS server that can never answer";

  it("skips pvdns's own listener and a server that can never answer, with one warning each however many reports follow", async () => {
    const eth0 = link('eth0', ['127.0.0.1', '192.0.2.1', '224.0.0.251'], [], true);
    const b = answers('resolved (D-Bus)', [eth0]);
    await hostFeed({ backends: [b] });
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
    // Other links come and go; eth0 keeps its bad servers.
    b.report!([eth0, link('wg0', ['10.8.0.1'])]);
    await settle();
    b.report!([eth0]);
    await settle();
    b.report!([eth0, link('tun0', ['10.9.0.1'])]);
    await settle();
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'], tun0: ['10.9.0.1:53'] });
    expect([warnings(loop), warnings(never)]).toEqual([1, 1]);
  });

  it('warns again when a problem that went away comes back, and on a reload (refresh)', async () => {
    const bad = link('eth0', ['127.0.0.1', '192.0.2.1']);
    const b = answers('resolved (D-Bus)', [bad]);
    const feed = await hostFeed({ backends: [b] });
    b.report!([link('eth0', ['192.0.2.1'])]);
    await settle();
    expect(warnings(loop)).toBe(1);
    b.report!([bad]);
    await settle();
    expect(warnings(loop)).toBe(2);
    await feed.refresh();
    expect(warnings(loop)).toBe(3);
  });

  it('does not warn again about a link that went down and came back up with the same servers', async () => {
    const links = new FakeLinks();
    links.set('eth0', true);
    const b = answers('resolved (D-Bus)', [link('eth0', ['127.0.0.1', '192.0.2.1'])]);
    await hostFeed({ backends: [b], links });
    links.set('eth0', false);
    await settle();
    links.set('eth0', true);
    await settle();
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
    expect(warnings(loop)).toBe(1);
  });

  it('withdraws a link whose only server is pvdns itself, and announces it once the listeners change (refresh)', async () => {
    const b = answers('resolved (D-Bus)', [link('lo', ['127.0.0.1'], [], true)]);
    const feed = await hostFeed({ backends: [b] });
    expect(pvds()).toEqual({ system: [] }); // the link's only server loops: resolv.conf (absent) stands in
    own = [parseSocketAddress('127.0.0.1:5300', 53) as SocketAddress];
    await feed.refresh();
    expect(pvds()).toEqual({ lo: ['127.0.0.1:53'] });
  });
});

describe("HostFeed: resolved's global servers", () => {
  const global = (servers: string[], dnsOverTls?: string, domains: string[] = []): HostLink => ({ ifname: 'system', servers, domains, defaultRoute: true, global: true, ...(dnsOverTls ? { dnsOverTls } : {}) });

  it('makes them the strict `system` PvD (DNSOverTLS=yes), and reads no resolv.conf: its 9.9.9.9 is never asked in the clear', async () => {
    const file = join(tmp, 'uplink.conf');
    writeFileSync(file, 'nameserver 9.9.9.9\n');
    const links = new FakeLinks();
    links.set('eth0', true);
    // The common setup: resolved.conf's DNS=9.9.9.9#dns.quad9.net and DNSOverTLS=yes, a link with the default route but no servers.
    const b = answers('resolved (D-Bus)', [global(['9.9.9.9#dns.quad9.net', '149.112.112.112'], 'yes', ['corp.example'])]);
    const feed = await hostFeed({ backends: [b], resolvConf: file, links });
    expect(feed.describe()).toBe('resolved (D-Bus)');
    const p = registry.get('system')!;
    expect([p.origin, p.interface, p.isDefault, p.encryption, p.dnsZones]).toEqual(['resolved (D-Bus)', null, true, 'strict', ['corp.example']]);
    expect(p.servers.map((x) => [x.label, x.transport, x.authName, x.authenticate, x.fallback])).toEqual([
      ['tls://9.9.9.9:853#dns.quad9.net', 'tls', 'dns.quad9.net', true, null],
      ['tls://149.112.112.112:853', 'tls', null, true, null],
    ]);
    // The kernel's links say nothing about it: a link named like it going down changes nothing.
    links.set('system', false);
    await settle();
    expect(registry.get('system')?.encryption).toBe('strict');
  });

  it('keeps links and the global PvD side by side; without global servers, resolv.conf stands in as before', async () => {
    const file = join(tmp, 'fallback.conf');
    writeFileSync(file, 'nameserver 192.0.2.53\n');
    const b = answers('resolvectl (polled every 10 s)', [link('wg0', ['10.8.0.1'], ['corp.example.com']), global(['9.9.9.9'], 'no')]);
    const feed = await hostFeed({ backends: [b], resolvConf: file });
    expect(pvds()).toEqual({ wg0: ['10.8.0.1:53'], system: ['9.9.9.9:53'] });
    expect(registry.get('system')!.encryption).toBe('off');
    // resolved.conf's DNS= emptied (resolved restarted): no usable link, no global server — resolv.conf.
    b.report!([link('wg0', ['127.0.0.1'], ['corp.example.com'])]);
    await settle();
    expect(pvds()).toEqual({ system: ['192.0.2.53:53'] });
    expect(feed.describe()).toMatch(/reports no link with usable servers$/);
    expect(registry.get('system')!.origin).toBe(`resolv.conf (${file}): resolvectl (polled every 10 s) reports no link with usable servers`);
  });

  it('skips a global server that is pvdns itself (a foreign resolv.conf naming pvdns): no global PvD then, and resolv.conf (naming pvdns too) gives no servers', async () => {
    const file = join(tmp, 'self.conf');
    writeFileSync(file, 'nameserver 127.0.0.1\n');
    const b = answers('resolved (D-Bus)', [global(['127.0.0.1'], 'no')]);
    await hostFeed({ backends: [b], resolvConf: file });
    expect(pvds()).toEqual({ system: [] });
    expect(warnings("skipping a link's DNS server that is pvdns itself (a loop)")).toBe(1);
    // With a real server beside it, the global PvD keeps that one.
    b.report!([global(['127.0.0.1', '192.0.2.9'], 'opportunistic')]);
    await settle();
    expect(pvds()).toEqual({ system: ['tls://192.0.2.9:853'] });
    expect(registry.get('system')!.origin).toBe('resolved (D-Bus)');
  });
});

describe('HostFeed: stop', () => {
  it('stops the backend, and applies no report after it', async () => {
    const b = answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'])]);
    const feed = await hostFeed({ backends: [b] });
    feed.stop();
    expect(b.stops).toBe(1);
    b.report!([link('wg0', ['10.8.0.1'])]);
    await settle();
    // Stopping leaves the PvDs as they were (the SourceSet or the App decides what goes).
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
  });

  it('stopped while its backend is starting: the backend is stopped and nothing is announced', async () => {
    let answer!: (links: HostLink[]) => void;
    const slow = new FakeBackend('resolved (D-Bus)', () => new Promise((r) => (answer = r)));
    const next = answers('resolvectl (polled every 10 s)', [link('eth1', ['192.0.2.2'])]);
    const feed = new HostFeed({ backends: [slow, next], resolvConf: join(tmp, 'absent.conf'), ownListeners: () => own, links: null, log });
    const started = feed.start(set.sink('host', () => feed));
    await settle();
    feed.stop();
    answer([link('eth0', ['192.0.2.1'])]);
    await started;
    expect(slow.stops).toBeGreaterThanOrEqual(1);
    expect(next.starts).toBe(0);
    expect(pvds()).toEqual({});
  });
});

describe('HostFeed: resolv.conf when no backend answers', () => {
  it('makes the system PvD of its nameservers, a default only with servers', async () => {
    const file = join(tmp, 'servers.conf');
    writeFileSync(file, '# by DHCP\nsearch home.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53 ; second\noptions edns0\n');
    const feed = await hostFeed({ backends: [answers('resolved (D-Bus)', null)], resolvConf: file });
    expect(feed.describe()).toBe(`resolv.conf (${file})`);
    expect(feed.backend()).toBeNull();
    expect(pvds()).toEqual({ system: ['192.0.2.53:53', '[2001:db8::53]:53'] });
    expect(registry.get('system')!.isDefault).toBe(true);
    expect(registry.get('system')!.origin).toBe(`resolv.conf (${file})`);
  });

  it('makes a system PvD with no servers and no default of a resolv.conf without usable nameservers (one warning)', async () => {
    const file = join(tmp, 'none.conf');
    writeFileSync(file, 'nameserver 127.0.0.1\nnameserver 0.0.0.0\n');
    await hostFeed({ backends: [], resolvConf: file });
    expect(pvds()).toEqual({ system: [] });
    expect(registry.get('system')!.isDefault).toBe(false);
    expect(warnings('resolv.conf lists no usable nameserver: the system PvD has no servers and is no default')).toBe(1);
    expect(warnings('skipping a resolv.conf nameserver that is pvdns itself (a loop)')).toBe(1);
  });

  it('applies a resolv.conf replaced by rename (as a DHCP client does) within 100 ms, and one rewritten in place', async () => {
    const dir = mkdtempSync(join(tmp, 'watched-'));
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 192.0.2.53\n');
    await hostFeed({ backends: [], resolvConf: file });
    expect(pvds()).toEqual({ system: ['192.0.2.53:53'] });

    writeFileSync(join(dir, 'resolv.conf.tmp'), 'nameserver 198.51.100.53\n');
    let t = performance.now();
    renameSync(join(dir, 'resolv.conf.tmp'), file);
    await eventually('the renamed resolv.conf', () => pvds().system?.[0] === '198.51.100.53:53');
    expect(performance.now() - t).toBeLessThan(100);

    t = performance.now();
    writeFileSync(file, 'nameserver 203.0.113.53\nnameserver 203.0.113.54\n');
    await eventually('the rewritten resolv.conf', () => pvds().system?.length === 2);
    expect(performance.now() - t).toBeLessThan(100);
    expect(pvds()).toEqual({ system: ['203.0.113.53:53', '203.0.113.54:53'] });

    // Its last nameserver gone: the system PvD stays, with no servers and no default.
    writeFileSync(file, '# nothing\n');
    await eventually('the emptied resolv.conf', () => pvds().system?.length === 0);
    expect(registry.get('system')!.isDefault).toBe(false);
    // Another file in the folder changing is not resolv.conf.
    writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n');
    await settle();
    expect(pvds()).toEqual({ system: [] });
  });

  it('reads a rewrite in place whole: no moment without servers, no warning, between the truncation and the write', async () => {
    const dir = mkdtempSync(join(tmp, 'inplace-'));
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 192.0.2.53\n');
    await hostFeed({ backends: [], resolvConf: file });
    const seen: number[] = [];
    registry.on('updated', (p) => seen.push(p.servers.length));
    // As a shell's `echo ... > /etc/resolv.conf` or NetworkManager's rc-manager=file: open (truncating), then write.
    const fd = openSync(file, 'w');
    await new Promise((r) => setTimeout(r, 5));
    writeSync(fd, 'nameserver 198.51.100.53\n');
    closeSync(fd);
    await eventually('the rewritten resolv.conf', () => pvds().system?.[0] === '198.51.100.53:53');
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toEqual([1]);
    expect(vi.mocked(log.warn)).not.toHaveBeenCalled();
  });

  it('stops watching resolv.conf when stopped', async () => {
    const dir = mkdtempSync(join(tmp, 'stopped-'));
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 192.0.2.53\n');
    const feed = await hostFeed({ backends: [], resolvConf: file });
    feed.stop();
    writeFileSync(file, 'nameserver 198.51.100.53\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(pvds()).toEqual({ system: ['192.0.2.53:53'] });
  });

  it('does not watch resolv.conf while a backend answers', async () => {
    const dir = mkdtempSync(join(tmp, 'unwatched-'));
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 192.0.2.53\n');
    await hostFeed({ backends: [answers('resolved (D-Bus)', [link('eth0', ['192.0.2.1'])])], resolvConf: file });
    writeFileSync(file, 'nameserver 198.51.100.53\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(pvds()).toEqual({ eth0: ['192.0.2.1:53'] });
  });
});
