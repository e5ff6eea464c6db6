// SourceSet (src/pvd/sources/sources.ts), the one place PvD sources are
// wired: what apply() does on start and on each reload (config PvDs synced,
// the host's source started, refreshed or restarted, or stopped), a one-off
// read, what views() says, and run() for the other sources. The host is
// read through resolvectl fed recorded output (no D-Bus: the bus address
// where auto is tried names a socket that does not exist), and link names
// no machine has, so the kernel's view of the real links never matches one.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseSocketAddress, type SocketAddress } from '../../src/config/address.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { createLogger, type Logger } from '../../src/log.js';
import { PvdRegistry } from '../../src/pvd/registry.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import type { RunTool } from '../../src/pvd/sources/host.js';
import type { PvdFeed, SourceSink } from '../../src/pvd/sources/source.js';
import { SourceSet } from '../../src/pvd/sources/sources.js';

/** No RA source runs here: nothing verifies a TLS server. */
const noTls = (): never => {
  throw new Error('no TLS context in this test');
};

const tmp = mkdtempSync(join(tmpdir(), `pvdns-hostfeed-sources-${process.pid}-`));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const resolvConf = join(tmp, 'resolv.conf');
writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
const otherResolvConf = join(tmp, 'other-resolv.conf');
writeFileSync(otherResolvConf, 'nameserver 198.51.100.53\n');

/** What resolvectl prints now, one row per link: name, servers, domains, default-route. */
let out: Record<string, string>;
const resolvectl = (rows: Array<[string, string, string, 'yes' | 'no']>): void => {
  out = {
    dns: `Global:\n${rows.map(([n, s], i) => `Link ${i + 2} (${n}): ${s}`).join('\n')}\n`,
    domain: `Global:\n${rows.map(([n, , d], i) => `Link ${i + 2} (${n}): ${d}`).join('\n')}\n`,
    'default-route': `Global: no\n${rows.map(([n, , , r], i) => `Link ${i + 2} (${n}): ${r}`).join('\n')}\n`,
    dnsovertls: `Global: no\n${rows.map(([n], i) => `Link ${i + 2} (${n}): no`).join('\n')}\n`,
  };
};
/** How many times resolvectl was asked for the links' servers: once per read of the host. */
let reads: number;
const runTool: RunTool = (cmd, args) => {
  if (cmd !== 'resolvectl') return Promise.resolve(null);
  if (args.at(-1) === 'dns') reads++;
  return Promise.resolve(out[args.at(-1)!] ?? null);
};

const config = (pvdSources: Record<string, unknown>, pvds: unknown[] = []): Config =>
  configSchema.parse({ log: { level: 'silent' }, pvdSources: { resolvConf, ...pvdSources }, pvds });
const resolvectlConfig = (extra: Record<string, unknown> = {}, pvds: unknown[] = []): Config =>
  config({ hostBackend: 'resolvectl', hostPollIntervalS: 0, ...extra }, pvds);
const corp = { identifier: 'corp', dnsServers: ['192.0.2.10'], dnsZones: ['corp.example'] };

let registry: PvdRegistry;
let log: Logger;
let own: SocketAddress[];
let set: SourceSet;

beforeEach(() => {
  registry = new PvdRegistry();
  log = createLogger('silent');
  vi.spyOn(log, 'warn');
  own = [parseSocketAddress('127.0.0.1:53', 53) as SocketAddress];
  reads = 0;
  resolvectl([
    ['pvdtest0', '192.0.2.1', 'home.example', 'yes'],
    ['pvdtest1', '10.8.0.1', '~corp.example.com', 'no'],
  ]);
  set = new SourceSet({
    registry,
    log,
    hold: () => () => undefined,
    ownListeners: () => own,
    runTool,
    busAddress: `unix:path=${join(tmp, 'no-such-bus')}`,
    loopProblem: () => null,
    resolveIn: () => Promise.resolve([]),
    tlsContext: noTls,
  });
});
afterEach(() => set.stop());

/** The registry as a user lists it: identifier, source and origin. */
const pvds = (): Array<[string, string, string | null]> => registry.list().map((p) => [p.identifier, p.source, p.origin]);
const ids = (): string[] => registry.list().map((p) => p.identifier).sort();

describe('SourceSet.apply', () => {
  it("syncs the configured PvDs and starts the host's source, which views() names", async () => {
    await set.apply(resolvectlConfig({}, [corp]));
    expect(pvds()).toEqual([
      ['corp', 'config', null],
      ['pvdtest0', 'host', 'resolvectl (read at start and reload)'],
      ['pvdtest1', 'host', 'resolvectl (read at start and reload)'],
    ]);
    expect(registry.get('pvdtest1')!.dnsZones).toEqual(['corp.example.com']);
    expect(set.views()).toEqual([{ source: 'host', via: 'resolvectl (read at start and reload)' }]);
  });

  it("on a reload with the same host settings, applies the links again instead of restarting (pvdns's listeners may have changed)", async () => {
    resolvectl([['pvdtest0', '127.0.0.1:5300 192.0.2.1', '', 'yes']]);
    own = [parseSocketAddress('127.0.0.1:5300', 53) as SocketAddress];
    await set.apply(resolvectlConfig({}, [corp]));
    expect(registry.get('pvdtest0')!.servers.map((s) => s.label)).toEqual(['192.0.2.1:53']);
    // The reload moves pvdns's listener away and drops the configured PvD.
    own = [parseSocketAddress('127.0.0.1:53', 53) as SocketAddress];
    await set.apply(resolvectlConfig());
    expect(reads).toBe(1);
    expect(ids()).toEqual(['pvdtest0']);
    expect(registry.get('pvdtest0')!.servers.map((s) => s.label)).toEqual(['127.0.0.1:5300', '192.0.2.1:53']);
  });

  it('restarts the host source when its backend, resolv.conf or poll interval changes', async () => {
    await set.apply(resolvectlConfig());
    expect(reads).toBe(1);
    await set.apply(resolvectlConfig({ hostPollIntervalS: 3600 }));
    expect(reads).toBe(2);
    expect(set.views()).toEqual([{ source: 'host', via: 'resolvectl (polled every 3600 s)' }]);
    expect(registry.get('pvdtest0')!.origin).toBe('resolvectl (polled every 3600 s)');

    // To resolv.conf: the links' PvDs go, the system PvD comes.
    await set.apply(resolvectlConfig({ hostPollIntervalS: 3600, hostBackend: 'resolvconf' }));
    expect(pvds()).toEqual([['system', 'host', `resolv.conf (${resolvConf})`]]);
    expect(registry.get('system')!.servers.map((s) => s.label)).toEqual(['192.0.2.53:53']);
    await set.apply(resolvectlConfig({ hostPollIntervalS: 3600, hostBackend: 'resolvconf', resolvConf: otherResolvConf }));
    expect(pvds()).toEqual([['system', 'host', `resolv.conf (${otherResolvConf})`]]);
    expect(registry.get('system')!.servers.map((s) => s.label)).toEqual(['198.51.100.53:53']);
    expect(set.views()).toEqual([{ source: 'host', via: `resolv.conf (${otherResolvConf})` }]);

    // And back to the links.
    await set.apply(resolvectlConfig());
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1']);
    expect(reads).toBe(3);
  });

  it('with host: false, withdraws the host PvDs and keeps the configured ones', async () => {
    await set.apply(resolvectlConfig({}, [corp]));
    await set.apply(resolvectlConfig({ host: false }, [corp]));
    expect(pvds()).toEqual([['corp', 'config', null]]);
    expect(set.views()).toEqual([]);
    // The links changing now reaches nothing.
    resolvectl([['pvdtest9', '192.0.2.9', '', 'yes']]);
    await set.apply(resolvectlConfig({ host: false }, [corp]));
    expect(ids()).toEqual(['corp']);
    expect(reads).toBe(1);
  });

  it('with once: true, reads the host and stops: the PvDs stay, nothing follows the host', async () => {
    await set.apply(config({ hostBackend: 'resolvectl', hostPollIntervalS: 1 }), { once: true });
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1']);
    expect(set.views()).toEqual([]);
    resolvectl([['pvdtest9', '192.0.2.9', '', 'yes']]);
    await new Promise((r) => setTimeout(r, 1300));
    expect(reads).toBe(1);
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1']);
  });

  it('with backend auto and no system bus, falls back to resolvectl (polled)', async () => {
    await set.apply(config({ hostBackend: 'auto', hostPollIntervalS: 3600 }));
    expect(set.views()).toEqual([{ source: 'host', via: 'resolvectl (polled every 3600 s)' }]);
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1']);
  });

  it('with backend auto, nothing on the bus and no tool, falls back to resolv.conf', async () => {
    out = {};
    await set.apply(config({ hostBackend: 'auto', hostPollIntervalS: 3600 }));
    expect(set.views()).toEqual([{ source: 'host', via: `resolv.conf (${resolvConf})` }]);
    expect(pvds()).toEqual([['system', 'host', `resolv.conf (${resolvConf})`]]);
  });

  it('runs one host source after two reloads at once (SIGHUP twice): the earlier one is stopped, not left polling', async () => {
    let slow = true;
    const tool = runTool;
    const wait: RunTool = async (cmd, args) => {
      if (slow) await new Promise((r) => setTimeout(r, 20));
      return tool(cmd, args);
    };
    set = new SourceSet({ registry, log, hold: () => () => undefined, ownListeners: () => own, runTool: wait, loopProblem: () => null, resolveIn: () => Promise.resolve([]), tlsContext: noTls });
    const first = set.apply(config({ hostBackend: 'resolvectl', hostPollIntervalS: 1 }));
    const second = set.apply(config({ hostBackend: 'resolvectl', hostPollIntervalS: 3600 }));
    await Promise.all([first, second]);
    slow = false;
    expect(set.views()).toEqual([{ source: 'host', via: 'resolvectl (polled every 3600 s)' }]);
    const after = reads;
    // A host source nobody holds would read the host again within a second, and sync its links over the running one's.
    resolvectl([['pvdtest9', '192.0.2.9', '', 'yes']]);
    await new Promise((r) => setTimeout(r, 1300));
    expect(reads).toBe(after);
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1']);
  });

  it('stops a host source that finishes starting after stop()', async () => {
    const tool = runTool;
    const wait: RunTool = async (cmd, args) => {
      await new Promise((r) => setTimeout(r, 20));
      return tool(cmd, args);
    };
    set = new SourceSet({ registry, log, hold: () => () => undefined, ownListeners: () => own, runTool: wait, loopProblem: () => null, resolveIn: () => Promise.resolve([]), tlsContext: noTls });
    const applying = set.apply(config({ hostBackend: 'resolvectl', hostPollIntervalS: 1 }));
    set.stop();
    await applying;
    expect(set.views()).toEqual([]);
    const after = reads;
    await new Promise((r) => setTimeout(r, 1300));
    expect(reads).toBe(after);
  });

  it('leaves a configured PvD alone when a host link has its identifier, and says so', async () => {
    await set.apply(resolvectlConfig({}, [{ identifier: 'pvdtest0', dnsServers: ['192.0.2.77'] }]));
    expect(pvds()).toEqual([
      ['pvdtest0', 'config', null],
      ['pvdtest1', 'host', 'resolvectl (read at start and reload)'],
    ]);
    expect(registry.get('pvdtest0')!.servers.map((s) => s.label)).toEqual(['192.0.2.77:53']);
    expect(vi.mocked(log.warn)).toHaveBeenCalledWith({ pvd: 'pvdtest0', source: 'host' }, 'pvd not announced: another source holds this identifier');
  });
});

/** A source the test drives: it announces what it is told through its sink. */
class FakeFeed implements PvdFeed {
  sink: SourceSink | null = null;
  stopped = false;
  constructor(
    private readonly name: string,
    private readonly first: string[],
  ) {}
  describe(): string {
    return this.name;
  }
  start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    sink.sync(this.first.map((id) => pvdSpecSchema.parse({ identifier: id, dnsServers: ['192.0.2.20'] })));
    return Promise.resolve();
  }
  stop(): void {
    this.stopped = true;
  }
}

describe('SourceSet.run', () => {
  it('keeps a feed whose key did not change, replaces it on a new key, and withdraws its PvDs on null', async () => {
    const made: FakeFeed[] = [];
    const make = (name: string, first: string[]) => (): FakeFeed => {
      const f = new FakeFeed(name, first);
      made.push(f);
      return f;
    };
    await set.run('file', '/etc/pvdns/a', make('directory /etc/pvdns/a', ['a.example', 'b.example']));
    expect(pvds()).toEqual([
      ['a.example', 'file', 'directory /etc/pvdns/a'],
      ['b.example', 'file', 'directory /etc/pvdns/a'],
    ]);
    expect(set.views()).toEqual([{ source: 'file', via: 'directory /etc/pvdns/a' }]);

    await set.run('file', '/etc/pvdns/a', make('directory /etc/pvdns/a', ['never.example']));
    expect(made).toHaveLength(1);
    expect(made[0]!.stopped).toBe(false);

    await set.run('file', '/etc/pvdns/b', make('directory /etc/pvdns/b', ['b.example', 'c.example']));
    expect(made).toHaveLength(2);
    expect(made[0]!.stopped).toBe(true);
    expect(pvds()).toEqual([
      ['b.example', 'file', 'directory /etc/pvdns/b'],
      ['c.example', 'file', 'directory /etc/pvdns/b'],
    ]);
    expect(set.views()).toEqual([{ source: 'file', via: 'directory /etc/pvdns/b' }]);

    await set.run('file', null, make('unused', []));
    expect(made).toHaveLength(2);
    expect(made[1]!.stopped).toBe(true);
    expect(pvds()).toEqual([]);
    expect(set.views()).toEqual([]);
  });

  it("lists each source in views(), and a feed's sink never touches another source's PvD", async () => {
    await set.apply(resolvectlConfig({}, [corp]));
    const feed = new FakeFeed('router advertisements', ['ra.example']);
    await set.run('ra', 'on', () => feed);
    expect(set.views()).toEqual([
      { source: 'host', via: 'resolvectl (read at start and reload)' },
      { source: 'ra', via: 'router advertisements' },
    ]);
    expect(registry.get('ra.example')!.origin).toBe('router advertisements');
    feed.sink!.withdraw('corp');
    feed.sink!.withdraw('pvdtest0');
    feed.sink!.announce(pvdSpecSchema.parse({ identifier: 'pvdtest1', dnsServers: ['192.0.2.66'] }));
    expect(pvds()).toEqual([
      ['corp', 'config', null],
      ['pvdtest0', 'host', 'resolvectl (read at start and reload)'],
      ['pvdtest1', 'host', 'resolvectl (read at start and reload)'],
      ['ra.example', 'ra', 'router advertisements'],
    ]);
    expect(registry.get('pvdtest1')!.servers.map((s) => s.label)).toEqual(['10.8.0.1:53']);
    feed.sink!.withdraw('ra.example');
    expect(ids()).toEqual(['corp', 'pvdtest0', 'pvdtest1']);
  });

  it('stop() stops every source and leaves their PvDs', async () => {
    const feed = new FakeFeed('directory /x', ['x.example']);
    await set.run('file', '/x', () => feed);
    await set.apply(resolvectlConfig());
    set.stop();
    expect(feed.stopped).toBe(true);
    expect(set.views()).toEqual([]);
    expect(ids()).toEqual(['pvdtest0', 'pvdtest1', 'x.example']);
  });
});

describe('SourceSet: Router Advertisement PvDs and other sources\' zones', () => {
  it('keeps an RA PvD from claiming a zone the configuration gave another PvD (or a zone above or below it), with one warning', async () => {
    await set.apply(resolvectlConfig({ host: false }, [corp]));
    const sink = set.sink('ra', () => null);
    const spec = pvdSpecSchema.parse({ identifier: 'evil.example.net', dnsServers: ['192.0.2.99'], dnsZones: ['corp.example', 'git.corp.example', 'example', 'evil.example.net'] });
    sink.sync([spec]);
    expect(registry.get('evil.example.net')!.dnsZones).toEqual(['evil.example.net']);
    sink.sync([spec]);
    const warned = vi.mocked(log.warn).mock.calls.filter((c) => String(c[1]).includes('may not claim a zone'));
    expect(warned.map((c) => (c[0] as { zone: string }).zone)).toEqual(['corp.example', 'git.corp.example', 'example']);
    // Another RA PvD's zones are no bar, and the configured PvD still owns its zone.
    expect(registry.get('corp')!.dnsZones).toEqual(['corp.example']);
  });
});
