// PvD files (pvdSources.directory): a VPN's up/down script writes or deletes
// a JSON file and pvdns announces, updates or withdraws its PvD. Each test
// runs its own pvdns on its own temporary folder; each PvD's server is a
// fake upstream answering with its own address, so an answer says who was
// asked, and each upstream's record says who was not. Changes are waited
// for by polling the API with a deadline, never by a fixed sleep.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { App } from '../../src/app.js';
import { ConfigError } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import type { PvdView } from '../../src/pvd/view.js';
import { ask, type Server } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';

/** Each upstream answers A queries with the address 192.0.2.<last octet of its own address>. */
function upstream(host: string): FakeUpstream {
  const octet = host.split('.').at(-1)!;
  return new FakeUpstream((q) => answer(q, [a(q, `192.0.2.${octet}`, 300)]));
}

const wifi = upstream('127.0.0.120'); // the configuration's default PvD
const vpnA = upstream('127.0.0.121');
const vpnB = upstream('127.0.0.122');
const rfc = upstream('127.0.0.123');
const other = upstream('127.0.0.124');
const all = [wifi, vpnA, vpnB, rfc, other];

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Pvdns {
  app: App;
  dns: Server;
  http: string;
  dir: string;
  logs: LogLine[];
}

const DEADLINE_MS = 3000;

/** waitFor polls `probe` until it returns something other than undefined, or fails after the deadline. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = DEADLINE_MS): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('PvD files', () => {
  let pvdns: Pvdns | null = null;
  const dirs: string[] = [];

  /** start runs pvdns on a fresh folder (with `files` written first), logging into an array. */
  async function start(files: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Pvdns> {
    const dir = mkdtempSync(join(tmpdir(), 'pvdns-files-'));
    dirs.push(dir);
    for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(body));
    const logs: LogLine[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
    const cfg = configSchema.parse({
      listen: ['127.0.0.1:0'],
      http: { listen: '127.0.0.1:0' },
      log: { level: 'info' },
      upstream: { timeoutMs: 1000, attempts: 2 },
      pvdSources: { host: false, directory: dir },
      captive: { probeIntervalS: 0 }, // the fake servers see only the tests' queries
      pvds: [{ identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10 }],
      ...extra,
    });
    const app = new App(cfg, { configFile: null, log });
    await app.start();
    const { dns, http } = app.addresses();
    pvdns = { app, dns: { host: dns[0]!.host, port: dns[0]!.port }, http: `http://${http!.label}`, dir, logs };
    return pvdns;
  }

  const write = (name: string, body: unknown): void => writeFileSync(join(pvdns!.dir, name), typeof body === 'string' ? body : JSON.stringify(body));

  async function getPvd(id: string): Promise<{ status: number; body: PvdView & { error?: string } }> {
    const r = await fetch(`${pvdns!.http}/v1/pvds/${encodeURIComponent(id)}`);
    return { status: r.status, body: (await r.json()) as PvdView & { error?: string } };
  }

  async function listPvds(): Promise<PvdView[]> {
    const r = await fetch(`${pvdns!.http}/v1/pvds`);
    return ((await r.json()) as { pvds: PvdView[] }).pvds;
  }

  /** until waits for GET /v1/pvds/{id} to satisfy `ok` (undefined: to be there) and returns it. */
  function until(id: string, ok: (p: PvdView) => boolean = () => true): Promise<PvdView> {
    return waitFor(`PvD "${id}" to be announced as expected`, async () => {
      const r = await getPvd(id);
      return r.status === 200 && ok(r.body) ? r.body : undefined;
    });
  }

  /**
   * barrier writes a good marker file and waits for its PvD: the scan that
   * announced it read the folder after every earlier write, so whatever
   * those writes were going to do has happened (but for saying a bad file
   * written a moment ago, which waits for it to be still: see reported).
   */
  let markers = 0;
  async function barrier(): Promise<void> {
    const id = `marker-${++markers}`;
    write(`zz-${id}.json`, { identifier: id, dnsServers: [other.address], noInternet: true });
    await until(id);
  }

  /**
   * reported waits for `n` bad files to have been logged: a bad file just
   * written may be one a writer is still writing, so pvdns reads it again
   * when it has been still a moment before saying so (a barrier is not enough).
   */
  async function reported(n: number): Promise<LogLine[]> {
    const bad = (): LogLine[] => pvdns!.logs.filter((l) => l.msg.startsWith('ignoring a bad PvD file'));
    return waitFor(`${n} bad PvD files to be reported`, async () => (bad().length >= n ? bad() : undefined));
  }

  const address = async (name: string): Promise<string | undefined> => {
    const r = await ask(pvdns!.dns, name, 'A');
    expect(r.packet.header.rcode).toBe(0);
    return r.packet.answers[0]?.address;
  };

  const servers = (p: PvdView): string[] => p.servers.map((s) => s.address);

  beforeAll(async () => {
    await wifi.start('127.0.0.120');
    await vpnA.start('127.0.0.121');
    await vpnB.start('127.0.0.122');
    await rfc.start('127.0.0.123');
    await other.start('127.0.0.124');
  });
  beforeEach(() => {
    for (const u of all) u.seen.length = 0;
  });
  afterEach(async () => {
    await pvdns?.app.stop();
    pvdns = null;
  });
  afterAll(async () => {
    await Promise.all(all.map((u) => u.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('announces the PvDs of the files already in the folder when it starts', async () => {
    await start({ 'vpn.json': { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true } });
    const r = await getPvd('vpn.example');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ identifier: 'vpn.example', source: 'file', dnsZones: ['vpn.example'], noInternet: true });
    expect(await address('db.vpn.example')).toBe('192.0.2.121');
  });

  it('announces the PvD of a file added later, and sends names in its zones to its server only', async () => {
    await start();
    expect((await getPvd('vpn.example')).status).toBe(404);
    expect(await address('db.vpn.example')).toBe('192.0.2.120'); // nobody claims it yet: the default PvD

    write('vpn.json', { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example', 'corp.internal'], noInternet: true });
    const p = await until('vpn.example');
    expect(p).toMatchObject({ identifier: 'vpn.example', source: 'file', default: false, noInternet: true, dnsZones: ['vpn.example', 'corp.internal'] });
    expect(servers(p)).toEqual([vpnA.address]);

    wifi.seen.length = 0;
    expect(await address('git.vpn.example')).toBe('192.0.2.121');
    expect(await address('wiki.corp.internal')).toBe('192.0.2.121');
    expect(vpnA.names()).toEqual(['git.vpn.example', 'wiki.corp.internal']);
    expect(wifi.seen).toHaveLength(0); // no leak to the default PvD
    // Names nobody claims still go to the default PvD, not to the file's.
    expect(await address('www.example.org')).toBe('192.0.2.120');
    expect(vpnA.names()).not.toContain('www.example.org');
  });

  it('updates a PvD when its file changes: queries go to its new server', async () => {
    await start({ 'vpn.json': { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true } });
    expect(await address('one.vpn.example')).toBe('192.0.2.121');

    write('vpn.json', { identifier: 'vpn.example', dnsServers: [vpnB.address], dnsZones: ['vpn.example', 'more.example'], noInternet: true });
    const p = await until('vpn.example', (v) => servers(v)[0] === vpnB.address);
    expect(p).toMatchObject({ source: 'file', dnsZones: ['vpn.example', 'more.example'] });
    expect(servers(p)).toEqual([vpnB.address]);

    vpnA.seen.length = 0;
    expect(await address('two.vpn.example')).toBe('192.0.2.122');
    expect(await address('x.more.example')).toBe('192.0.2.122');
    expect(vpnB.names()).toEqual(['two.vpn.example', 'x.more.example']);
    expect(vpnA.seen).toHaveLength(0);
    expect(wifi.seen).toHaveLength(0);
  });

  it('withdraws a PvD when its file is removed: its names route elsewhere and GET /v1/pvds/{id} is 404', async () => {
    await start({ 'vpn.json': { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true } });
    expect(await address('db.vpn.example')).toBe('192.0.2.121'); // now cached in the PvD

    unlinkSync(join(pvdns!.dir, 'vpn.json'));
    await waitFor('the PvD to be withdrawn', async () => ((await getPvd('vpn.example')).status === 404 ? true : undefined));
    const gone = await getPvd('vpn.example');
    expect(gone.body).toEqual({ error: 'no PvD "vpn.example"' });
    expect((await listPvds()).map((p) => p.identifier)).toEqual(['wifi']);

    // The name (even the cached one) is now answered by the default PvD.
    expect(await address('db.vpn.example')).toBe('192.0.2.120');
    expect(await address('new.vpn.example')).toBe('192.0.2.120');
    expect(wifi.names()).toEqual(['db.vpn.example', 'new.vpn.example']);
    expect(vpnA.names()).toEqual(['db.vpn.example']);
  });

  it('takes a file that is renamed into place (how scripts write atomically)', async () => {
    await start();
    const tmp = join(pvdns!.dir, '.vpn.json.tmp');
    writeFileSync(tmp, JSON.stringify({ identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true }));
    renameSync(tmp, join(pvdns!.dir, 'vpn.json'));
    await until('vpn.example');
    expect(await address('db.vpn.example')).toBe('192.0.2.121');
  });

  it('honours pvdns\'s keys in an RFC 8801 file (the shipped corp-vpn.json with priority, interface, dns64 added) and logs the ignored ones', async () => {
    await start();
    const shipped = JSON.parse(readFileSync(join(import.meta.dirname, '../../config/pvd.d/corp-vpn.json'), 'utf8')) as Record<string, unknown>;
    write('corp-vpn.json', { ...shipped, dnsServers: [rfc.address], priority: 5, rebindProtection: true, dns64: 'off', interface: 'tun0' });
    const p = await until('vpn.corp.example.com');
    expect(p).toMatchObject({ source: 'file', priority: 5, interface: 'tun0', dns64: 'off', noInternet: true, dnsZones: ['corp.example.com'] });
    expect(pvdns!.app.pvds.get('vpn.corp.example.com')?.rebindProtection).toBe(true);
    expect(pvdns!.logs.filter((l) => l.ignoredKeys)).toMatchObject([{ file: join(pvdns!.dir, 'corp-vpn.json'), ignoredKeys: ['vendor-example'] }]);
    expect(await address('intranet.corp.example.com')).toBe('192.0.2.123');
  });

  it('ignores a file with a misspelled key or a server that is never unicast, naming the line and the key', async () => {
    await start();
    write('typo.json', '{\n  "identifier": "typo.example",\n  "expires": "2099-01-01T00:00:00Z",\n  "prefixes": [],\n  "dnsServers": ["127.0.0.121"],\n  "dnsZone": ["typo.example"]\n}\n');
    write('mdns.json', { identifier: 'mdns.example', dnsServers: ['224.0.0.251'], dnsZones: ['mdns.example'] });
    const errors = (await reported(2)).map((l) => l.error);
    expect((await getPvd('typo.example')).status).toBe(404);
    expect((await getPvd('mdns.example')).status).toBe(404);
    expect(errors.sort()).toEqual([
      `${join(pvdns!.dir, 'mdns.json')}:1: dnsServers[0]: "224.0.0.251" is a multicast address: never a DNS server, which is one host's unicast address`,
      `${join(pvdns!.dir, 'typo.json')}:6: dnsZone: unknown key (did you mean "dnsZones"?)`,
    ]);
  });

  it('reads an RFC 8801 PvD Additional Information file, ignoring the keys it does not know', async () => {
    await start();
    write('rfc8801.json', {
      identifier: 'Vpn.Example.NET',
      expires: '2099-01-01T00:00:00Z',
      prefixes: ['10.99.0.0/16', '2001:db8:99::/48'],
      dnsZones: ['vpn.example.net'],
      noInternet: true,
      metered: false,
      extraInfo: { note: 'unknown keys are ignored (RFC 8801 §4.3)' },
      'vendor-acme': { tunnel: 'gre', mtu: 1400 },
      dnsServers: [rfc.address],
    });
    const p = await until('vpn.example.net');
    expect(p).toMatchObject({
      identifier: 'Vpn.Example.NET',
      source: 'file',
      noInternet: true,
      default: false,
      dnsZones: ['vpn.example.net'],
      prefixes: ['10.99.0.0/16', '2001:db8:99::/48'],
      expires: '2099-01-01T00:00:00.000Z',
    });
    expect(servers(p)).toEqual([rfc.address]);

    expect(await address('intranet.vpn.example.net')).toBe('192.0.2.123');
    // Its prefixes' reverse zones are its own too (not answered locally per RFC 6303).
    const ptr = await ask(pvdns!.dns, '7.0.99.10.in-addr.arpa', 'PTR');
    expect(ptr.packet.header.rcode).toBe(0);
    expect(rfc.names()).toEqual(['intranet.vpn.example.net', '7.0.99.10.in-addr.arpa']);
    expect(wifi.seen).toHaveLength(0);
  });

  it('ignores a new file that is not JSON, or names an invalid server, and logs its path', async () => {
    await start();
    write('broken.json', '{ "identifier": "broken.example", "dnsServers": [');
    write('badserver.json', { identifier: 'badserver.example', dnsServers: ['not-an-address'], dnsZones: ['badserver.example'] });
    const bad = await reported(2);

    const ids = (await listPvds()).map((p) => p.identifier);
    expect(ids).not.toContain('broken.example');
    expect(ids).not.toContain('badserver.example');
    expect((await getPvd('badserver.example')).status).toBe(404);
    expect(await address('x.badserver.example')).toBe('192.0.2.120'); // still the default PvD's

    expect(bad.map((l) => l.file).sort()).toEqual([join(pvdns!.dir, 'badserver.json'), join(pvdns!.dir, 'broken.json')]);
    // One line naming the file, the line and the key: what check-config prints.
    expect(bad.find((l) => l.file === join(pvdns!.dir, 'badserver.json'))!.error).toBe(
      `${join(pvdns!.dir, 'badserver.json')}:1: dnsServers[0]: "not-an-address" is not an IP address with an optional port`,
    );
    expect(bad.find((l) => l.file === join(pvdns!.dir, 'broken.json'))!.error).toBe(`${join(pvdns!.dir, 'broken.json')}:1: not valid JSON: Unexpected end of JSON input`);
  });

  it('keeps a PvD as it was when its file is overwritten with garbage, and takes the next good version', async () => {
    // dns64 off: its discovery would change the PvD's view while this test compares it.
    const good = { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true, dns64: 'off' };
    await start({ 'vpn.json': good });
    expect(await address('cached.vpn.example')).toBe('192.0.2.121');
    const before = (await getPvd('vpn.example')).body;
    expect(before.cacheEntries).toBe(1);

    write('vpn.json', 'this is not JSON {{{');
    await reported(1);
    expect((await getPvd('vpn.example')).body).toEqual(before); // same servers, zones, state and cache

    write('vpn.json', { ...good, dnsServers: ['300.1.2.3'] });
    await reported(2);
    expect((await getPvd('vpn.example')).body).toEqual(before);

    expect(await address('cached.vpn.example')).toBe('192.0.2.121');
    expect(await address('fresh.vpn.example')).toBe('192.0.2.121');
    expect(vpnA.names()).toEqual(['cached.vpn.example', 'fresh.vpn.example']); // the cache survived too
    const bad = pvdns!.logs.filter((l) => l.msg.startsWith('ignoring a bad PvD file'));
    expect(bad.map((l) => l.file)).toEqual([join(pvdns!.dir, 'vpn.json'), join(pvdns!.dir, 'vpn.json')]);

    write('vpn.json', { ...good, dnsServers: [vpnB.address] });
    await until('vpn.example', (v) => servers(v)[0] === vpnB.address);
    expect(await address('next.vpn.example')).toBe('192.0.2.122');
  });

  it('uses the first file by name when two files name the same PvD, and the other once the first is gone', async () => {
    await start({
      'b-vpn.json': { identifier: 'vpn.example', dnsServers: [vpnB.address], dnsZones: ['vpn.example'], noInternet: true },
      'a-vpn.json': { identifier: 'VPN.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true },
    });
    const p = (await getPvd('vpn.example')).body;
    expect(p.source).toBe('file');
    expect(servers(p)).toEqual([vpnA.address]);
    expect((await listPvds()).filter((v) => v.identifier.toLowerCase() === 'vpn.example')).toHaveLength(1);
    expect(await address('db.vpn.example')).toBe('192.0.2.121');
    expect(vpnB.seen).toHaveLength(0);
    const conflict = (): LogLine[] => pvdns!.logs.filter((l) => l.msg.startsWith('two PvD files name the same PvD'));
    expect(conflict()).toMatchObject([{ file: join(pvdns!.dir, 'b-vpn.json'), other: join(pvdns!.dir, 'a-vpn.json') }]);
    // Every scan of the folder (each marker file makes one) leaves it said once.
    await barrier();
    await barrier();
    expect(conflict()).toHaveLength(1);

    // With the first file gone, the other one's PvD is the one in force.
    unlinkSync(join(pvdns!.dir, 'a-vpn.json'));
    await until('vpn.example', (v) => servers(v)[0] === vpnB.address);
    expect(await address('other.vpn.example')).toBe('192.0.2.122');
  });

  it('uses the first file by name even when it is written after the other', async () => {
    await start({ 'b-vpn.json': { identifier: 'vpn.example', dnsServers: [vpnB.address], dnsZones: ['vpn.example'], noInternet: true } });
    expect(servers((await getPvd('vpn.example')).body)).toEqual([vpnB.address]);

    // a-vpn.json sorts first, so it wins as it would have had both been there at start
    // (which file is in force must not depend on the order they were written in).
    write('a-vpn.json', { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true });
    await until('vpn.example', (v) => servers(v)[0] === vpnA.address);
    expect(await address('db.vpn.example')).toBe('192.0.2.121');
    expect(vpnB.seen).toHaveLength(0);
  });

  it('ignores files whose names do not end in .json', async () => {
    await start();
    const pvd = (id: string): unknown => ({ identifier: id, dnsServers: [vpnA.address], dnsZones: [id], noInternet: true });
    write('notes.txt', pvd('txt.example'));
    write('vpn.json.bak', pvd('bak.example'));
    write('vpn.json~', pvd('tilde.example'));
    write('json', pvd('bare.example'));
    await barrier();
    const ids = (await listPvds()).map((p) => p.identifier);
    expect(ids.filter((id) => !id.startsWith('marker-'))).toEqual(['wifi']);
    expect(await address('x.txt.example')).toBe('192.0.2.120');
    expect(vpnA.seen).toHaveLength(0);
  });

  it('ignores a file naming a PvD the configuration holds: the configuration wins', async () => {
    await start();
    write('hijack.json', { identifier: 'WiFi', dnsServers: [vpnA.address], dnsZones: ['hijack.example'], default: true, priority: 0 });
    await barrier();
    const p = (await getPvd('wifi')).body;
    expect(p).toMatchObject({ identifier: 'wifi', source: 'config', dnsZones: [], priority: 10 });
    expect(servers(p)).toEqual([wifi.address]);
    expect(await address('www.hijack.example')).toBe('192.0.2.120');
    expect(await address('www.example.org')).toBe('192.0.2.120');
    expect(vpnA.seen).toHaveLength(0);
    await barrier();
    const said = pvdns!.logs.filter((l) => l.pvd === 'wifi' && /another source holds/.test(l.msg));
    expect(said.map((l) => l.error)).toEqual([`${join(pvdns!.dir, 'hijack.json')}:1: identifier: "WiFi" is already config pvds[0]; this file is ignored`]);
  });

  it('stays up through a FIFO and huge bad files written into the folder, saying each in at most 20 lines', async () => {
    await start();
    const f = (name: string): string => join(pvdns!.dir, name);
    execFileSync('mkfifo', [f('fifo.json')]); // opened blocking, it stopped the event loop until someone wrote to it
    // 300 KB of servers that are not strings, and 130,000 unknown keys: their issues, spread into
    // push(), overflowed the stack and the rejected scan ended the process.
    write('servers.json', `{"identifier":"servers.example","dnsServers":[${Array<string>(150_000).fill('1').join(',')}]}`);
    write('keys.json', `{"identifier":"keys.example","dnsServers":["127.0.0.121"],\n${Array.from({ length: 130_000 }, (_, i) => `"k${i}":1`).join(',\n')}}`);
    const id = 'marker-after-hostile';
    write(`zz-${id}.json`, { identifier: id, dnsServers: [other.address], noInternet: true });
    await waitFor('the folder to be read', async () => ((await getPvd(id)).status === 200 ? true : undefined), 15_000);
    expect((await fetch(`${pvdns!.http}/healthz`)).status).toBe(200);
    expect(await address('www.example.org')).toBe('192.0.2.120');
    const said = (name: string): string[] => pvdns!.logs.filter((l) => l.file === f(name) && typeof l.error === 'string').map((l) => l.error as string);
    await waitFor('the three files to be said', async () => (said('fifo.json').length && said('servers.json').length && said('keys.json').length ? true : undefined));
    expect(said('fifo.json')).toEqual([`${f('fifo.json')}: not a regular file`]);
    expect(said('servers.json')).toEqual([`${f('servers.json')}:1: dnsServers: has 150000 items; a PvD takes at most 256`]);
    expect(said('keys.json')).toHaveLength(20);
    expect(said('keys.json')[0]).toMatch(new RegExp(`^${f('keys.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: k0: unknown key`));
    expect(said('keys.json').at(-1)).toBe(`${f('keys.json')}: 129981 more problems not shown`);
    // And it goes on reading the folder.
    write('vpn.json', { identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true });
    await until('vpn.example');
    expect(await address('db.vpn.example')).toBe('192.0.2.121');
  });

  it('withdraws a PvD whose file is a symbolic link when the file it names is removed, and says so', async () => {
    await start();
    // The target beside the link, under a name that is no PvD file, so inotify sees it go;
    // one elsewhere is seen at the next rescan (10 s).
    const target = join(pvdns!.dir, 'vpn.target');
    writeFileSync(target, JSON.stringify({ identifier: 'vpn.example', dnsServers: [vpnA.address], dnsZones: ['vpn.example'], noInternet: true }));
    symlinkSync(target, join(pvdns!.dir, 'vpn.json'));
    await until('vpn.example');
    unlinkSync(target);
    await waitFor('the PvD to be withdrawn', async () => ((await getPvd('vpn.example')).status === 404 ? true : undefined));
    expect(pvdns!.logs.filter((l) => l.file === join(pvdns!.dir, 'vpn.json') && l.error)).toMatchObject([
      { msg: 'a PvD file is a symbolic link to nothing; its PvD, if any, is withdrawn', error: `${join(pvdns!.dir, 'vpn.json')}: a symbolic link to nothing: no PvD` },
    ]);
    expect(await address('db.vpn.example')).toBe('192.0.2.120');
  });

  it('refuses to start when pvdSources.directory does not exist, with a ConfigError naming the key', async () => {
    const missing = join(tmpdir(), `pvdns-no-such-dir-${process.pid}-${Date.now()}`);
    const err = await start({}, { pvdSources: { host: false, directory: missing } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe('pvdSources.directory');
    expect((err as ConfigError).message).toContain('pvdSources.directory');
    expect((err as ConfigError).message).toContain(missing);
  });
});

// check-config reads the PvD directory with the code serve runs: every fixture
// below gives the same lines on check-config's stderr as in serve's log.
describe('check-config sees the PvD directory as serve does', () => {
  const CLI = join(import.meta.dirname, '../../dist/cli.js');
  const tmp = mkdtempSync(join(tmpdir(), 'pvdns-check-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** config writes a configuration file (JSON) whose PvD directory is `dir`, and returns its path and parsed form. */
  function config(name: string, dir: string): { path: string; parsed: ReturnType<typeof configSchema.parse> } {
    const raw = {
      listen: ['127.0.0.1:0'],
      http: { listen: null },
      log: { level: 'info' },
      captive: { probeIntervalS: 0 },
      pvdSources: { host: false, directory: dir },
      pvds: [{ identifier: 'wifi', dnsServers: ['127.0.0.120'], default: true, priority: 10 }],
    };
    const path = join(tmp, name);
    writeFileSync(path, JSON.stringify(raw, null, 2));
    return { path, parsed: configSchema.parse(raw) };
  }

  /** serveErrors starts pvdns (in this process) on the configuration and returns the one-line errors it logs about PvD files. */
  async function serveErrors(path: string, parsed: ReturnType<typeof configSchema.parse>): Promise<{ errors: string[]; app: App }> {
    const logs: LogLine[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
    const app = new App(parsed, { configFile: path, log });
    await app.start();
    return { errors: logs.filter((l) => typeof l.error === 'string').map((l) => l.error as string), app };
  }

  it('prints each bad, conflicting or expired file as serve logs it, exits 1, and lists the good files with their source file', async () => {
    const dir = join(tmp, 'broken.d');
    mkdirSync(dir);
    const put = (name: string, body: unknown): void => writeFileSync(join(dir, name), typeof body === 'string' ? body : JSON.stringify(body, null, 2));
    put('a-vpn.json', { identifier: 'vpn.example', dnsServers: ['127.0.0.121'], dnsZones: ['vpn.example'], noInternet: true });
    put('b-vpn.json', { identifier: 'VPN.example', dnsServers: ['127.0.0.122'], noInternet: true });
    put('c-hijack.json', { identifier: 'wifi', dnsServers: ['127.0.0.121'] });
    put('d-old.json', { identifier: 'old.example', dnsServers: ['127.0.0.121'], expires: '2020-01-01T00:00:00Z', noInternet: true });
    put('e-typo.json', { identifier: 'typo.example', expires: '2099-01-01T00:00:00Z', prefixes: [], dnsServers: ['127.0.0.121'], dnsZone: ['typo.example'] });
    put('f-mdns.json', { identifier: 'mdns.example', dnsServers: ['224.0.0.251'] });
    put('g-cut.json', '{ "identifier": "cut.example",\n  "dnsServers": [');
    put('h-empty.json', '');
    put('i-rfc.json', { identifier: 'rfc.example', expires: '2099-01-01T00:00:00Z', prefixes: ['2001:db8:99::/48'], dnsServers: ['127.0.0.123'], 'vendor-x': {} });
    put('j-noservers.json', { identifier: 'bare.example', expires: '2099-01-01T00:00:00Z', prefixes: [] });
    put('k-port0.json', { identifier: 'port0.example', dnsServers: ['127.0.0.1:0'] });
    const { path, parsed } = config('broken.json', dir);

    // Warnings, exit 0: serve would run (a VPN hook's stale file must not fail ExecStartPre); --strict: 1.
    const check = run('check-config', path);
    expect(check.code).toBe(0);
    expect(run('check-config', '--strict', path).code).toBe(1);
    const printed = check.stderr.trimEnd().split('\n').map((l) => l.replace(/^pvdns: warning: /, ''));
    expect(check.stderr.trimEnd().split('\n').every((l) => l.startsWith('pvdns: warning: '))).toBe(true);
    const f = (name: string): string => join(dir, name);
    expect(printed).toEqual([
      `${f('b-vpn.json')}:2: identifier: "VPN.example" is also the PvD of ${f('a-vpn.json')}; the first file by name is used`,
      `${f('c-hijack.json')}:2: identifier: "wifi" is already config pvds[0]; this file is ignored`,
      `${f('d-old.json')}:6: expires: 2020-01-01T00:00:00Z has passed: the PvD is not used (RFC 8801 §4.3)`,
      `${f('e-typo.json')}:8: dnsZone: unknown key (did you mean "dnsZones"?)`,
      `${f('f-mdns.json')}:4: dnsServers[0]: "224.0.0.251" is a multicast address: never a DNS server, which is one host's unicast address`,
      `${f('g-cut.json')}:2: not valid JSON: Unexpected end of JSON input`,
      `${f('h-empty.json')}: the file is empty (a PvD file holds one JSON object)`,
      `${f('j-noservers.json')}:1: dnsServers: an RFC 8801 PvD needs the DNS servers its link gave`,
      `${f('k-port0.json')}:4: dnsServers[0]: "127.0.0.1:0" has port 0`,
    ]);
    expect(check.stdout).toContain(`${path}: OK, with 9 problems in the PvD files of pvdSources.directory (serve ignores those files)`);
    expect(check.stdout).toContain(`  vpn.example (file ${f('a-vpn.json')})`);
    expect(check.stdout).toContain(`  rfc.example (file ${f('i-rfc.json')})`);
    expect(check.stdout).toContain('  wifi (config)');
    expect(check.stdout).not.toContain('typo.example');

    // serve runs, ignoring those files, and logs the same lines.
    const { errors, app } = await serveErrors(path, parsed);
    try {
      expect([...errors].sort()).toEqual([...printed].sort());
      expect(app.pvds.list().map((p) => p.id)).toEqual(['wifi', 'vpn.example', 'rfc.example']);
    } finally {
      await app.stop();
    }
  });

  it('neither hangs on a FIFO nor prints more than 20 lines for a file, and says the same as serve', async () => {
    const dir = join(tmp, 'hostile.d');
    mkdirSync(dir);
    const f = (name: string): string => join(dir, name);
    execFileSync('mkfifo', [f('a-fifo.json')]);
    symlinkSync('gone.json', f('b-dangling.json'));
    writeFileSync(f('c-keys.json'), `{\n"identifier": "keys.example",\n"dnsServers": ["127.0.0.121"],\n${Array.from({ length: 130_000 }, (_, i) => `"k${i}": 1`).join(',\n')}\n}`);
    writeFileSync(f('d-vpn.json'), JSON.stringify({ identifier: 'vpn.example', dnsServers: ['127.0.0.121'], noInternet: true }));
    const { path, parsed } = config('hostile.json', dir);

    const check = run('check-config', path); // spawnSync's 10 s timeout: a hang fails here
    expect(check.code).toBe(0); // warnings: serve runs, ignoring those files
    const printed = check.stderr.trimEnd().split('\n').map((l) => l.replace(/^pvdns: warning: /, ''));
    expect(printed).toHaveLength(22);
    expect(printed.slice(0, 3)).toEqual([
      `${f('a-fifo.json')}: not a regular file`,
      `${f('b-dangling.json')}: a symbolic link to nothing: no PvD`,
      `${f('c-keys.json')}:4: k0: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)`,
    ]);
    expect(printed.at(-1)).toBe(`${f('c-keys.json')}: 129981 more problems not shown`);
    expect(check.stdout).toContain(`  vpn.example (file ${f('d-vpn.json')})`);

    const { errors, app } = await serveErrors(path, parsed);
    try {
      expect([...errors].sort()).toEqual([...printed].sort());
      expect(app.pvds.get('vpn.example')?.source).toBe('file');
    } finally {
      await app.stop();
    }
  });

  it('refuses a PvD directory that does not exist, as serve does: same key, same words', async () => {
    const missing = join(tmp, 'no-such.d');
    const { path, parsed } = config('missing.json', missing);
    const check = run('check-config', path);
    expect(check.code).toBe(1);
    expect(check.stdout).toBe('');
    const err = await new App(parsed, { configFile: path, log: pino({ level: 'silent' }) }).start().then(
      () => null,
      (e: unknown) => e as ConfigError,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.key).toBe('pvdSources.directory');
    expect(err!.message).toBe(`${path}: pvdSources.directory: cannot read ${missing}: ENOENT`); // parsed without its text: no line
    expect(check.stderr).toBe(`pvdns: config error: ${path}:16: pvdSources.directory: cannot read ${missing}: ENOENT\n`);
    // serve, from the same file, says the same and exits the same.
    const serve = run('serve', '--config', path);
    expect(serve.code).toBe(1);
    expect(serve.stderr).toBe(check.stderr);
  });

  it('check-config --pvd FILE validates one PvD file: the PvD and its ignored keys, or one line per problem', () => {
    const good = join(tmp, 'good.json');
    const shipped = JSON.parse(readFileSync(join(import.meta.dirname, '../../config/pvd.d/corp-vpn.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(good, JSON.stringify({ ...shipped, priority: 5, interface: 'tun0', foo: 1 }, null, 2));
    const ok = run('check-config', '--pvd', good);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toContain(`${good}: OK`);
    expect(ok.stdout).toContain(`  vpn.corp.example.com (file ${good})`);
    expect(ok.stdout).toContain('default: false, priority: 5, noInternet: true');
    expect(ok.stdout).toContain('ignored:  vendor-example, foo (keys pvdns does not know in an RFC 8801 object, RFC 8801 §4.3)');

    const bad = join(tmp, 'bad.json');
    writeFileSync(bad, '{\n  "identifier": "x.example",\n  "dnsServers": ["0.0.0.0", "192.0.2.1:0"],\n  "priorty": 5,\n  "expires": "2020-01-01T00:00:00Z"\n}\n');
    const no = run('check-config', '--pvd', bad);
    expect(no.code).toBe(1);
    expect(no.stdout).toBe('');
    expect(no.stderr.trimEnd().split('\n')).toEqual([
      `${bad}:3: dnsServers[0]: "0.0.0.0" is an unspecified address, which names no host: never a DNS server, which is one host's unicast address (this host is 127.0.0.1 or ::1)`,
      `${bad}:3: dnsServers[1]: "192.0.2.1:0" has port 0`,
      `${bad}:4: priorty: unknown key (did you mean "priority"?)`,
    ]);

    const old = join(tmp, 'old.json');
    writeFileSync(old, '{\n  "identifier": "old.example",\n  "dnsServers": ["192.0.2.1"],\n  "expires": "2020-01-01T00:00:00Z"\n}\n');
    expect(run('check-config', '--pvd', old)).toMatchObject({ code: 1, stdout: '', stderr: `${old}:4: expires: 2020-01-01T00:00:00Z has passed: the PvD is not used (RFC 8801 §4.3)\n` });
  });

  it('refuses a PvD file whose server is pvdns\'s own listener, on the line of that server', () => {
    const dir = join(tmp, 'loop.d');
    mkdirSync(dir);
    writeFileSync(join(dir, 'loop.json'), '{\n  "identifier": "loop.example",\n  "dnsServers": [\n    "192.0.2.1",\n    "127.0.0.1:5399"\n  ]\n}\n');
    const path = join(tmp, 'loop.yaml');
    writeFileSync(path, `listen: ["127.0.0.1:5399"]\nhttp: { listen: null }\npvdSources: { host: false, directory: ${JSON.stringify(dir)} }\n`);
    const r = run('check-config', path);
    expect(r.code).toBe(0); // serve runs without that file
    expect(r.stderr).toBe(`pvdns: warning: ${join(dir, 'loop.json')}:5: dnsServers[1]: 127.0.0.1:5399 is pvdns's own listener: queries would loop\n`);
    expect(run('check-config', '--strict', path).code).toBe(1);
    expect(r.stdout).toContain('names nobody claims go to: (no default PvD: SERVFAIL)');
  });

  it('says what to run when given a PvD file as a configuration', () => {
    const r = run('check-config', join(import.meta.dirname, '../../config/pvd.d/corp-vpn.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pvdns: config error: .*corp-vpn\.json:2: identifier: unknown key "identifier" \(a PvD file\? use pvdns check-config --pvd FILE\)\n$/);
  });
});
