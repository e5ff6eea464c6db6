// Reading PvD files (pvdSources.directory): one file by readPvdFile — bounded,
// strict JSON, every problem with its file, line and key — and the folder by
// PvdDirectory.scan(), which says each problem once per change of the folder,
// not at every rescan, naming both sides of a conflict.

import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_PVD_FILE_BYTES, PvdInputError } from '../../src/pvd/input.js';
import { PvdRegistry } from '../../src/pvd/registry.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { formatProblem, PvdDirectory, readPvdFile } from '../../src/pvd/sources/directory.js';
import { syncSource } from '../../src/pvd/sources/sync.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function folder(files: Record<string, string | object> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-dir-'));
  dirs.push(dir);
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  return dir;
}

/** problemsOf reads one file and returns its problems as check-config prints them, with the folder left out. */
async function problemsOf(text: string): Promise<string[]> {
  const dir = folder({ 'f.json': text });
  const r = readPvdFile(join(dir, 'f.json'));
  return r.ok ? [] : r.problems.map((p) => formatProblem(p).slice(dir.length + 1));
}

describe('readPvdFile', () => {
  it('reads a good file, with the ignored keys and the line of each key', async () => {
    const dir = folder({
      'rfc.json': '{\n  "identifier": "vpn.example",\n  "expires": "2030-01-01T00:00:00Z",\n  "prefixes": ["10.8.0.0/16"],\n  "dnsServers": [\n    "10.8.0.1",\n    "10.8.0.2"\n  ],\n  "foo": {"identifier": "not this one"}\n}\n',
    });
    const r = readPvdFile(join(dir, 'rfc.json'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.spec.dnsServers).toEqual(['10.8.0.1', '10.8.0.2']);
    expect(r.ignoredKeys).toEqual(['foo']);
    expect(Object.fromEntries(r.lines)).toEqual({ identifier: 2, expires: 3, prefixes: 4, 'prefixes[0]': 4, dnsServers: 5, 'dnsServers[0]': 6, 'dnsServers[1]': 7, foo: 9 });
  });

  it.each([
    ['an empty file', '', ['f.json: the file is empty (a PvD file holds one JSON object)']],
    ['white space only', ' \n\n', ['f.json: the file is empty (a PvD file holds one JSON object)']],
    ['a trailing comma (JV10)', '{\n  "identifier": "x",\n  "dnsServers": ["192.0.2.1"],\n}\n', ['f.json:4: not valid JSON: Expected double-quoted property name']],
    ['a cut file', '{\n  "identifier": "x",\n  "dnsServers": [', ['f.json:3: not valid JSON: Unexpected end of JSON input']],
    ['a bad token deep in a file', '{\n  "identifier": "x",\n  "dnsServers": ["192.0.2.1",\n  ]\n, "priority": 1234567890}', ["f.json:4: not valid JSON: Unexpected token ']'"]],
    ['a key twice (I-JSON)', '{\n  "identifier": "x",\n  "priority": 1,\n  "dnsServers": ["192.0.2.1"],\n  "priority": 2\n}', ['f.json:5: priority: the key appears twice (first on line 3); JSON leaves which one counts to the reader (RFC 7493 §2.3)']],
    ['not an object', '["192.0.2.1"]', ['f.json: a PvD must be a JSON object']],
    [
      'a misspelled key and a multicast server, on their lines',
      '{\n  "identifier": "vpn.example",\n  "expires": "2030-01-01T00:00:00Z",\n  "prefixes": [],\n  "dnsServers": [\n    "10.8.0.1",\n    "224.0.0.251"\n  ],\n  "dnsZone": ["vpn.example"]\n}',
      [
        `f.json:7: dnsServers[1]: "224.0.0.251" is a multicast address: never a DNS server, which is one host's unicast address`,
        'f.json:9: dnsZone: unknown key (did you mean "dnsZones"?)',
      ],
    ],
    ['an RFC 8801 object without servers', '{"identifier": "vpn.example", "expires": "2030-01-01T00:00:00Z", "prefixes": []}', ['f.json:1: dnsServers: an RFC 8801 PvD needs the DNS servers its link gave']],
    ['a missing identifier', '{\n  "dnsServers": ["192.0.2.1"]\n}', ['f.json:1: identifier: is required']],
  ])('refuses %s, naming the line and the key', async (_why, text, expected) => {
    const got = await problemsOf(text);
    expect(got).toHaveLength(expected.length);
    got.forEach((line, i) => expect(line.startsWith(expected[i]!), `${line} starts with ${expected[i]}`).toBe(true));
    for (const line of got) expect(line).not.toContain('\n');
  });

  it(`refuses a file over ${MAX_PVD_FILE_BYTES / 1024 / 1024} MiB without reading it, and takes one just under`, async () => {
    const body = (size: number): string => {
      const head = '{"identifier": "big.example", "dnsServers": ["192.0.2.1"], "pad": "';
      return `${head}${'x'.repeat(size - head.length - 2)}"}`;
    };
    const dir = folder({ 'big.json': body(MAX_PVD_FILE_BYTES + 1), 'fits.json': body(MAX_PVD_FILE_BYTES) });
    const big = readPvdFile(join(dir, 'big.json'));
    expect(big.ok ? [] : big.problems.map(formatProblem)).toEqual([`${join(dir, 'big.json')}: the file is ${MAX_PVD_FILE_BYTES + 1} bytes, over the 4 MiB a PvD file may hold`]);
    const fits = readPvdFile(join(dir, 'fits.json'));
    // Read whole: the only complaint is the unknown key of an object that is not RFC 8801's.
    expect(fits.ok ? [] : fits.problems.map((p) => p.key)).toEqual(['pad']);
  });

  it('refuses a folder named like a PvD file, and a file that is gone, with one line each', async () => {
    const dir = folder();
    const sub = join(dir, 'sub.json');
    (await import('node:fs')).mkdirSync(sub);
    const r = readPvdFile(sub);
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([`${sub}: not a regular file`]);
    const gone = readPvdFile(join(dir, 'gone.json'));
    expect(gone.ok ? [] : gone.problems.map(formatProblem)).toEqual([`${join(dir, 'gone.json')}: cannot read: ENOENT`]);
  });

  it('applies the further check on the line of the server it names', async () => {
    const dir = folder({ 'loop.json': '{\n  "identifier": "loop",\n  "dnsServers": [\n    "192.0.2.1",\n    "127.0.0.1:53"\n  ]\n}' });
    const r = readPvdFile(join(dir, 'loop.json'), (spec) => (spec.dnsServers.includes('127.0.0.1:53') ? new PvdInputError('dnsServers[1]', "127.0.0.1:53 is pvdns's own listener") : null));
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([`${join(dir, 'loop.json')}:5: dnsServers[1]: 127.0.0.1:53 is pvdns's own listener`]);
  });
});

interface LogLine {
  level: number;
  msg: string;
  error?: string;
  [k: string]: unknown;
}

function logger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) }), lines };
}

const vpn = (id: string, server = '10.8.0.1'): object => ({ identifier: id, dnsServers: [server], dnsZones: [id], noInternet: true });

describe('PvdDirectory.scan', () => {
  it('names both sides of every conflict and says each problem once, however often the folder is scanned', async () => {
    const dir = folder({
      'a-vpn.json': vpn('vpn.example'),
      'b-vpn.json': vpn('VPN.example', '10.8.0.2'),
      'c-wifi.json': vpn('wifi'),
      'd-old.json': { ...vpn('old.example'), expires: '2020-01-01T00:00:00Z' },
      'e-bad.json': '{"identifier": "bad.example", "dnsServers": ["255.255.255.255"]}',
      'f-rfc.json': { identifier: 'rfc.example', expires: '2030-01-01T00:00:00Z', prefixes: [], dnsServers: ['10.9.0.1'], 'vendor-x': {}, foo: 1 },
    });
    const registry = new PvdRegistry();
    syncSource(registry, 'config', [pvdSpecSchema.parse({ identifier: 'cell', dnsServers: ['192.0.2.9'] }), pvdSpecSchema.parse({ identifier: 'wifi', dnsServers: ['192.0.2.1'] })]);
    const { log, lines } = logger();
    const d = new PvdDirectory(dir, registry, log);

    const first = await d.scan();
    const f = (name: string): string => join(dir, name);
    const expected = [
      `${f('b-vpn.json')}:2: identifier: "VPN.example" is also the PvD of ${f('a-vpn.json')}; the first file by name is used`,
      `${f('c-wifi.json')}:2: identifier: "wifi" is already config pvds[1]; this file is ignored`,
      `${f('d-old.json')}:10: expires: 2020-01-01T00:00:00Z has passed: the PvD is not used (RFC 8801 §4.3)`,
      `${f('e-bad.json')}:1: dnsServers[0]: "255.255.255.255" is the broadcast address: never a DNS server, which is one host's unicast address`,
    ];
    expect(first.problems.map(formatProblem)).toEqual(expected);
    expect(first.files).toEqual([
      { file: f('a-vpn.json'), id: 'vpn.example' },
      { file: f('f-rfc.json'), id: 'rfc.example' },
    ]);
    expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.1:53']);
    expect(registry.get('wifi')?.source).toBe('config');
    // The log says the same lines (in `error`), and the ignored keys of the RFC 8801 file.
    expect(lines.filter((l) => l.error).map((l) => l.error).sort()).toEqual([...expected].sort());
    expect(lines.find((l) => l.ignoredKeys)).toMatchObject({ file: f('f-rfc.json'), ignoredKeys: ['vendor-x', 'foo'] });
    const logged = lines.length;

    // Rescans of an unchanged folder: the same report, nothing logged again.
    for (let i = 0; i < 3; i++) expect((await d.scan()).problems.map(formatProblem)).toEqual(expected);
    expect(lines).toHaveLength(logged);

    // A change: the new problem is logged, the old ones are not; one that goes is forgotten.
    writeFileSync(f('g-typo.json'), '{"identifier": "typo.example", "dnsServers": ["10.7.0.1"], "dnsZone": []}');
    rmSync(f('b-vpn.json'));
    const next = await d.scan();
    expect(next.problems.map(formatProblem)).toEqual([...expected.slice(1), `${f('g-typo.json')}:1: dnsZone: unknown key (did you mean "dnsZones"?)`]);
    expect(lines.slice(logged).map((l) => l.error)).toEqual([`${f('g-typo.json')}:1: dnsZone: unknown key (did you mean "dnsZones"?)`]);

    // The conflict comes back: it is said again, once.
    writeFileSync(f('b-vpn.json'), JSON.stringify(vpn('vpn.example', '10.8.0.2'), null, 2));
    await d.scan();
    await d.scan();
    expect(lines.slice(logged + 1).map((l) => l.msg)).toEqual(['two PvD files name the same PvD; using the first']);
    registry.close();
  });

  it('says a bad file once per version: rewritten with the same mistake, it is said again', async () => {
    const dir = folder({ 'bad.json': '{"identifier": "bad.example", "dnsServers": ["0.0.0.0"]}' });
    const registry = new PvdRegistry();
    const { log, lines } = logger();
    const d = new PvdDirectory(dir, registry, log);
    await d.scan();
    await d.scan();
    expect(lines.map((l) => l.msg)).toEqual(['ignoring a bad PvD file; its PvD, if any, is unchanged']);
    const later = new Date(Date.now() + 5000);
    utimesSync(join(dir, 'bad.json'), later, later); // a new version, as a VPN hook writing it again makes
    await d.scan();
    expect(lines.map((l) => l.msg)).toEqual(['ignoring a bad PvD file; its PvD, if any, is unchanged', 'ignoring a bad PvD file; its PvD, if any, is unchanged']);
    registry.close();
  });

  it('keeps a file\'s last good PvD while its new version is bad, and reports the bad version', async () => {
    const dir = folder({ 'vpn.json': vpn('vpn.example') });
    const registry = new PvdRegistry();
    const d = new PvdDirectory(dir, registry, logger().log);
    await d.scan();
    writeFileSync(join(dir, 'vpn.json'), '{"identifier": "vpn.example", "dnsServers": ["ff02::1"]}');
    const r = await d.scan();
    expect(r.problems.map((p) => p.key)).toEqual(['dnsServers[0]']);
    expect(r.files).toEqual([{ file: join(dir, 'vpn.json'), id: 'vpn.example' }]);
    expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.1:53']);
    registry.close();
  });
});
