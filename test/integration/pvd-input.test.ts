// One reading of a PvD wherever it comes from (issue 14, item 4): a server
// that can never be a unicast DNS server is refused in the configuration, a
// PvD file and an API body alike, with the same words; a mixed RFC 8801 body
// keeps pvdns's keys through the API; the host's servers that can never
// answer are skipped with a warning, not a crash.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { formatProblem, readPvdFile } from '../../src/pvd/sources/directory.js';
import { put } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const NEVER: Array<[why: string, server: string, problem: string]> = [
  ['IPv4 multicast', '224.0.0.251', '"224.0.0.251" is a multicast address: never a DNS server'],
  ['IPv6 multicast', '[ff02::fb]:5353', '"[ff02::fb]:5353" is a multicast address: never a DNS server'],
  ['the limited broadcast', '255.255.255.255', '"255.255.255.255" is the broadcast address: never a DNS server'],
  ['0.0.0.0', '0.0.0.0', '"0.0.0.0" is an unspecified address, which names no host'],
  ['::', '[::]', '"[::]" is an unspecified address, which names no host'],
];

describe('a server that can never be a unicast DNS server', () => {
  let pvdns: Running;
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-never-'));
  beforeAll(async () => {
    pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: ['127.0.0.1:9'], default: true }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(NEVER)('is refused in the config, a PvD file and the API alike: %s', async (_why, server, problem) => {
    // Configuration: the file, its line and the key.
    const text = `pvdSources: { host: false }\npvds:\n  - identifier: lan\n    dnsServers:\n      - "${server}"\n`;
    let err: unknown = null;
    try {
      parseConfig(text, 'pvdns.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(new RegExp(`^pvdns\\.yaml:5: pvds\\[0\\]\\.dnsServers\\[0\\]: ${escape(problem)}`));

    // A PvD file: the file, its line and the key.
    const file = join(dir, 'lan.json');
    writeFileSync(file, JSON.stringify({ identifier: 'lan', dnsServers: [server] }, null, 2));
    const r = readPvdFile(file);
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([expect.stringMatching(new RegExp(`^${escape(file)}:4: dnsServers\\[0\\]: ${escape(problem)}`))]);

    // The API: 400 with the key, and nothing announced.
    const reply = await put(pvdns.http, 'lan', { dnsServers: [server] });
    expect(reply.status).toBe(400);
    expect(reply.body.error).toMatch(new RegExp(`^dnsServers\\[0\\]: ${escape(problem)}`));
    expect(pvdns.app.pvds.get('lan')).toBeUndefined();
  });

  it('is skipped, with a warning, among the host\'s resolv.conf nameservers: the others make the system PvD', async () => {
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 0.0.0.0\nnameserver 224.0.0.251\nnameserver 192.0.2.53\n');
    const logs: Array<{ msg: string; server?: string }> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as { msg: string }) });
    const app = new App(configSchema.parse({ http: { listen: null }, pvdSources: { host: true, resolvConf } }), { configFile: null, log, runTool: async () => null });
    await app.preview();
    expect(app.pvds.get('system')?.servers.map((s) => s.label)).toEqual(['192.0.2.53:53']);
    expect(app.pvds.get('system')?.isDefault).toBe(true);
    expect(logs.filter((l) => l.msg === 'skipping a resolv.conf nameserver that can never answer').map((l) => l.server)).toEqual(['0.0.0.0:53', '224.0.0.251:53']);

    // Only such servers: the system PvD has none, and is no default (never a default that answers nothing).
    writeFileSync(resolvConf, 'nameserver 0.0.0.0\n');
    const bare = new App(configSchema.parse({ http: { listen: null }, pvdSources: { host: true, resolvConf } }), { configFile: null, log, runTool: async () => null });
    await bare.preview();
    expect(bare.pvds.get('system')).toMatchObject({ servers: [], isDefault: false });
  });

  it('is skipped, with a warning, among a host link\'s servers (resolvectl)', async () => {
    const out: Record<string, string> = {
      dns: 'Global:\nLink 2 (eth0): 0.0.0.0 192.0.2.1 ff02::fb\n',
      domain: 'Global:\nLink 2 (eth0): lan.example\n',
      'default-route': 'Link 2 (eth0): yes\n',
      dnsovertls: 'Global: no\nLink 2 (eth0): no\n',
    };
    const logs: Array<{ msg: string; server?: string }> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logs.push(JSON.parse(s) as { msg: string }) });
    const app = new App(configSchema.parse({ http: { listen: null }, pvdSources: { host: true } }), {
      configFile: null,
      log,
      runTool: async (cmd, args) => (cmd === 'resolvectl' ? (out[args.at(-1)!] ?? null) : null),
    });
    await app.preview();
    expect(app.pvds.get('eth0')?.servers.map((s) => s.label)).toEqual(['192.0.2.1:53']);
    expect(logs.filter((l) => l.msg === "skipping a link's DNS server that can never answer").map((l) => l.server)).toEqual(['0.0.0.0', '[ff02::fb]']);
  });
});

describe('a mixed RFC 8801 body through the API', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: ['127.0.0.1:9'], default: true, priority: 50 }] });
  });
  afterAll(() => pvdns.stop());

  const rfc = { identifier: 'vpn.corp.example.com', expires: '2099-01-01T00:00:00Z', prefixes: ['10.8.0.0/16'], dnsServers: ['127.0.0.1:9'], dnsZones: ['corp.example.com'] };

  it('keeps every pvdns key of an RFC 8801 body with unknown keys', async () => {
    const r = await put(pvdns.http, 'vpn.corp.example.com', { ...rfc, priority: 5, interface: 'tun0', dns64: 'off', noInternet: true, 'vendor-x': { a: 1 }, foo: 1 });
    expect(r.status).toBe(201);
    expect(r.body.pvd).toMatchObject({ priority: 5, interface: 'tun0', dns64: 'off', noInternet: true, dnsZones: ['corp.example.com'] });
    // What RFC 8801 §4.3 has ignored is said, not dropped in silence.
    expect((r.body as { ignoredKeys?: string[] }).ignoredKeys).toEqual(['vendor-x', 'foo']);
    const plain = await put(pvdns.http, 'vpn.corp.example.com', { ...rfc, priority: 5, interface: 'tun0', dns64: 'off', noInternet: true });
    expect(plain.status).toBe(200);
    expect((plain.body as { ignoredKeys?: string[] }).ignoredKeys).toEqual([]);
  });

  it('refuses a misspelled key in it (400 naming the key and the suggestion), and one without servers', async () => {
    const typo = await put(pvdns.http, 'typo.example', { ...rfc, identifier: 'typo.example', dnsZone: ['typo.example'] });
    expect(typo).toMatchObject({ status: 400, body: { error: 'dnsZone: unknown key (did you mean "dnsZones"?)' } });
    const { dnsServers: _, ...bare } = rfc;
    const none = await put(pvdns.http, 'bare.example', { ...bare, identifier: 'bare.example' });
    expect(none).toMatchObject({ status: 400, body: { error: 'dnsServers: an RFC 8801 PvD needs the DNS servers its link gave' } });
    const defaultNone = await put(pvdns.http, 'nothing.example', { default: true });
    expect(defaultNone).toMatchObject({ status: 400, body: { error: 'default: a PvD with no dnsServers cannot serve names nobody owns' } });
  });
  it('ignores short keys of its own that are a letter or two from a known one: dns, dns4, dns6, internet', async () => {
    const r = await put(pvdns.http, 'short.example', { ...rfc, identifier: 'short.example', dns: 1, dns4: ['10.8.0.1'], dns6: [], internet: true });
    expect(r.status).toBe(201);
    expect((r.body as { ignoredKeys?: string[] }).ignoredKeys).toEqual(['dns', 'dns4', 'dns6', 'internet']);
    expect(r.body.pvd).toMatchObject({ noInternet: false }); // internet is not noInternet
  });

  it('names at most 20 problems of a body, and how many more there were', async () => {
    const body: Record<string, unknown> = { identifier: 'many.example', dnsServers: ['127.0.0.1:9'] };
    for (let i = 0; i < 5000; i++) body[`k${i}`] = 1;
    const r = await put(pvdns.http, 'many.example', body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/^k0: unknown key \(only an RFC 8801 object.*; 4980 more problems not shown$/);
    expect(r.body.error!.split('; ')).toHaveLength(21);
  });
});
