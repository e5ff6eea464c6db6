// Reading PvD files (pvdSources.directory): one file by readPvdFile — bounded,
// strict JSON, every problem with its file, line and key — and the folder by
// PvdDirectory.scan(), which says each problem once per change of the folder,
// not at every rescan, naming both sides of a conflict.

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { MAX_PVD_FILE_BYTES, MAX_PVD_PROBLEMS, PvdInputError } from '../../src/pvd/input.js';
import { PvdRegistry } from '../../src/pvd/registry.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { formatProblem, PvdDirectory, readPvdFile } from '../../src/pvd/sources/directory.js';
import type { SourceSink } from '../../src/pvd/sources/source.js';
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

  it('refuses a FIFO named like a PvD file at once, without waiting for a writer', () => {
    const dir = folder();
    const fifo = join(dir, 'x.json');
    execFileSync('mkfifo', [fifo]);
    const t0 = performance.now();
    const r = readPvdFile(fifo); // opened blocking, this would never return: nobody writes to it
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([`${fifo}: not a regular file`]);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('follows a symbolic link to a file, and says of one to nothing or looping that it is one', () => {
    const dir = folder({ 'real.json': vpn('real.example') });
    symlinkSync('real.json', join(dir, 'link.json'));
    symlinkSync('nowhere.json', join(dir, 'dangling.json'));
    symlinkSync('loop-b.json', join(dir, 'loop-a.json'));
    symlinkSync('loop-a.json', join(dir, 'loop-b.json'));
    expect(readPvdFile(join(dir, 'link.json'))).toMatchObject({ ok: true, spec: { identifier: 'real.example' } });
    const said = (name: string): string[] => {
      const r = readPvdFile(join(dir, name));
      return r.ok ? [] : r.problems.map((p) => formatProblem(p).slice(dir.length + 1));
    };
    expect(said('dangling.json')).toEqual(['dangling.json: a symbolic link to nothing: no PvD']);
    expect(said('loop-a.json')).toEqual(['loop-a.json: a symbolic link that loops (ELOOP): no PvD']);
  });

  it(`refuses large bad files in at most ${MAX_PVD_PROBLEMS} lines, the last saying how many more`, async () => {
    const t0 = performance.now();
    // 300 KB: 150,000 servers that are not strings. A spread of their issues overflowed the stack.
    const servers = await problemsOf(`{"identifier":"a.example","dnsServers":[${Array<string>(150_000).fill('1').join(',')}]}`);
    expect(servers).toEqual(['f.json:1: dnsServers: has 150000 items; a PvD takes at most 256']);
    // 130,000 unknown keys, one per line: the first 19 by line, and the count of the rest.
    const keys = await problemsOf(`{\n"identifier": "a.example",\n"dnsServers": ["192.0.2.1"],\n${Array.from({ length: 130_000 }, (_, i) => `"k${i}": 1`).join(',\n')}\n}`);
    expect(keys).toHaveLength(MAX_PVD_PROBLEMS);
    expect(keys[0]).toBe('f.json:4: k0: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)');
    expect(keys.at(-1)).toBe('f.json: 129981 more problems not shown');
    // One key 130,000 times: JSON.parse keeps the last in silence, the file is refused in 20 lines.
    const twice = await problemsOf(`{"identifier": "a.example", "dnsServers": ["192.0.2.1"], ${Array<string>(130_000).fill('"priority": 1').join(', ')}}`);
    expect(twice).toHaveLength(MAX_PVD_PROBLEMS);
    expect(twice[0]).toMatch(/^f\.json:1: priority: the key appears twice \(first on line 1\)/);
    expect(twice.at(-1)).toBe('f.json: 129980 more problems not shown');
    // 150,000 bad zones: how many, then the first ten.
    const zones = await problemsOf(JSON.stringify({ identifier: 'a.example', dnsZones: Array<string>(150_000).fill('-bad-') }, null, 1));
    expect(zones).toHaveLength(11);
    expect(zones[0]).toBe('f.json:3: dnsZones: 150000 of its 150000 items are wrong');
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('turns any fault while judging a file into that file\'s one-line problem', () => {
    const dir = folder({ 'x.json': vpn('x.example') });
    const r = readPvdFile(join(dir, 'x.json'), () => {
      throw new RangeError('Maximum call stack size exceeded\n    at somewhere');
    });
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([`${join(dir, 'x.json')}: cannot be read as a PvD: Maximum call stack size exceeded\\n    at somewhere`]);
  });

  it('prints every problem as one line, whatever the file name, key or value holds', async () => {
    const forged = await problemsOf('{"identifier": "a.example", "dnsServers": ["192.0.2.1"], "a\\nfake.json:1: dnsServers: forged": 1, "\\u001b[2Jx": 2}');
    expect(forged).toEqual([
      'f.json:1: a\\nfake.json:1: dnsServers: forged: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)',
      'f.json:1: \\u001b[2Jx: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)',
    ]);
    const dir = folder({ 'two\nlines.json': '{' });
    const r = readPvdFile(join(dir, 'two\nlines.json'));
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([`${dir}/two\\nlines.json:1: not valid JSON: Expected property name or '}'`]);
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

  it('reads a file again when only its ctime or inode changed: same size, same mtime', async () => {
    const dir = folder({ 'vpn.json': vpn('vpn.example', '10.8.0.1') });
    utimesSync(join(dir, 'vpn.json'), 1_700_000_000, 1_700_000_000); // whole seconds: utimes puts them back exactly
    const registry = new PvdRegistry();
    const d = new PvdDirectory(dir, registry, logger().log);
    await d.scan();
    const before = statSync(join(dir, 'vpn.json'));
    // Another server of the same length, and the old mtime put back (as `cp -p`, `touch -r` or a
    // write within the clock's resolution leave it): only ctime says the file changed.
    writeFileSync(join(dir, 'vpn.json'), JSON.stringify(vpn('vpn.example', '10.8.0.2'), null, 2));
    utimesSync(join(dir, 'vpn.json'), before.atime, before.mtime);
    expect(statSync(join(dir, 'vpn.json'))).toMatchObject({ size: before.size, mtimeMs: before.mtimeMs });
    await d.scan();
    expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.2:53']);
    // A file renamed into place with the same size and mtime: a new inode.
    writeFileSync(join(dir, '.tmp'), JSON.stringify(vpn('vpn.example', '10.8.0.3'), null, 2));
    utimesSync(join(dir, '.tmp'), before.atime, before.mtime);
    renameSync(join(dir, '.tmp'), join(dir, 'vpn.json'));
    await d.scan();
    expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.3:53']);
    registry.close();
  });

  // Root reads a file whatever its mode, so only an unprivileged run can see EACCES.
  it.skipIf(process.getuid?.() === 0)('takes a file that was unreadable once chmod makes it readable', async () => {
    const dir = folder({ 'vpn.json': vpn('vpn.example') });
    chmodSync(join(dir, 'vpn.json'), 0o000);
    const registry = new PvdRegistry();
    const d = new PvdDirectory(dir, registry, logger().log);
    expect((await d.scan()).problems.map(formatProblem)).toEqual([`${join(dir, 'vpn.json')}: cannot read: EACCES`]);
    chmodSync(join(dir, 'vpn.json'), 0o644); // changes ctime only
    expect((await d.scan()).problems).toEqual([]);
    expect(registry.get('vpn.example')).toBeDefined();
    registry.close();
  });

  it('does not sync the registry again when neither the folder nor the registry changed', async () => {
    const dir = folder({ 'a.json': vpn('a.example'), 'b.json': vpn('b.example'), 'bad.json': '{' });
    const registry = new PvdRegistry();
    const d = new PvdDirectory(dir, registry, logger().log);
    const first = await d.scan();
    const batch = vi.spyOn(registry, 'batch');
    for (let i = 0; i < 3; i++) expect(await d.scan()).toEqual(first);
    expect(batch).not.toHaveBeenCalled();
    writeFileSync(join(dir, 'c.json'), JSON.stringify(vpn('c.example')));
    await d.scan();
    expect(batch).toHaveBeenCalledTimes(1);
    rmSync(join(dir, 'c.json'));
    await d.scan();
    expect(batch).toHaveBeenCalledTimes(2);
    expect(registry.get('c.example')).toBeUndefined();
    registry.close();
  });

  it('lets a file\'s PvD in once the source that held it withdraws it, with no change to the file', async () => {
    const dir = folder({ 'wifi.json': vpn('wifi', '10.8.0.1') });
    const registry = new PvdRegistry();
    syncSource(registry, 'config', [pvdSpecSchema.parse({ identifier: 'wifi', dnsServers: ['192.0.2.1'] })]);
    const d = new PvdDirectory(dir, registry, logger().log);
    expect((await d.scan()).problems.map((p) => p.problem)).toEqual(['"wifi" is already config pvds[0]; this file is ignored']);
    expect((await d.scan()).files).toEqual([]);
    syncSource(registry, 'config', []); // a reload drops it from the configuration
    const r = await d.scan();
    expect(r).toEqual({ files: [{ file: join(dir, 'wifi.json'), id: 'wifi' }], problems: [] });
    expect(registry.get('wifi')).toMatchObject({ source: 'file' });
    registry.close();
  });

  it('says a file\'s PvD has expired at the first scan after the registry withdrew it', async () => {
    const expires = '2030-01-01T00:00:00Z';
    let now = Date.parse(expires) - 50;
    const registry = new PvdRegistry(() => now);
    const dir = folder({ 'soon.json': { ...vpn('soon.example'), expires } });
    const d = new PvdDirectory(dir, registry, logger().log);
    expect((await d.scan()).files).toHaveLength(1);
    now += 1000;
    await vi.waitFor(() => expect(registry.get('soon.example')).toBeUndefined(), { timeout: 2000 }); // its timer fires in 50 ms
    const r = await d.scan();
    expect(r.files).toEqual([]);
    expect(r.problems.map(formatProblem)).toEqual([`${join(dir, 'soon.json')}:10: expires: ${expires} has passed: the PvD is not used (RFC 8801 §4.3)`]);
    registry.close();
  });

  it('withdraws the PvD of a file that becomes a symbolic link to nothing, saying so, and takes it back with its target', async () => {
    const dir = folder({ 'target.d.json.real': vpn('vpn.example') });
    symlinkSync('target.d.json.real', join(dir, 'vpn.json'));
    const registry = new PvdRegistry();
    const { log, lines } = logger();
    const d = new PvdDirectory(dir, registry, log);
    expect((await d.scan()).files).toEqual([{ file: join(dir, 'vpn.json'), id: 'vpn.example' }]);
    rmSync(join(dir, 'target.d.json.real')); // the VPN's down script removes the file the link names
    const r = await d.scan();
    expect(r.problems.map(formatProblem)).toEqual([`${join(dir, 'vpn.json')}: a symbolic link to nothing: no PvD`]);
    expect(registry.get('vpn.example')).toBeUndefined();
    expect(lines.at(-1)).toMatchObject({ msg: 'a PvD file is a symbolic link to nothing; its PvD, if any, is withdrawn', file: join(dir, 'vpn.json') });
    await d.scan();
    expect(lines.filter((l) => l.error)).toHaveLength(1); // said once
    writeFileSync(join(dir, 'target.d.json.real'), JSON.stringify(vpn('vpn.example', '10.8.0.9'))); // the link itself did not change
    expect((await d.scan()).problems).toEqual([]);
    expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.9:53']);
    registry.close();
  });

  it('survives a scan that throws: one line logged, and the next change is read', async () => {
    const dir = folder();
    const registry = new PvdRegistry();
    const { log, lines } = logger();
    const d = new PvdDirectory(dir, registry, log, () => null, 100);
    await d.start();
    let fail = true;
    registry.on('changed', () => {
      if (fail) {
        fail = false;
        throw new Error('a listener\nfailed');
      }
    });
    const rejections: unknown[] = [];
    const onRejection = (err: unknown): void => void rejections.push(err);
    process.on('unhandledRejection', onRejection);
    try {
      writeFileSync(join(dir, 'a.json'), JSON.stringify(vpn('a.example')));
      await vi.waitFor(() => expect(lines.find((l) => l.msg.startsWith('cannot scan the PvD directory'))).toMatchObject({ error: 'a listener failed' }), { timeout: 3000 });
      writeFileSync(join(dir, 'b.json'), JSON.stringify(vpn('b.example')));
      await vi.waitFor(() => expect(registry.get('b.example')).toBeDefined(), { timeout: 3000 });
      expect(registry.get('a.example')).toBeDefined();
      expect(rejections).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
      d.stop();
      registry.close();
    }
  });

  it('logs the ignored keys of an RFC 8801 file in one short line: the first 20, and how many more', async () => {
    const body: Record<string, unknown> = { identifier: 'rfc.example', expires: '2030-01-01T00:00:00Z', prefixes: [], dnsServers: ['10.9.0.1'] };
    for (let i = 0; i < 130_000; i++) body[`k${i}`] = i;
    const dir = folder({ 'rfc.json': body });
    const registry = new PvdRegistry();
    const { log, lines } = logger();
    expect((await new PvdDirectory(dir, registry, log).scan()).files).toHaveLength(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.ignoredKeys).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`));
    expect(lines[0]!.moreIgnoredKeys).toBe(129_980);
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

describe('PvdDirectory as a source (PvdFeed)', () => {
  /** recorder is a SourceSink that applies syncs to `registry` (as sources.ts's does) and records each call. */
  function recorder(registry: PvdRegistry): { sink: SourceSink; calls: string[]; open: () => number } {
    const calls: string[] = [];
    let holds = 0;
    const sink: SourceSink = {
      sync: (specs) => {
        calls.push(`sync ${specs.map((s) => s.identifier).join(',')}`);
        syncSource(registry, 'file', specs);
      },
      announce: () => calls.push('announce'),
      withdraw: () => calls.push('withdraw'),
      hold: () => {
        holds++;
        calls.push('hold');
        let released = false;
        return () => {
          if (released) return;
          released = true;
          holds--;
          calls.push('release');
        };
      },
    };
    return { sink, calls, open: () => holds };
  }

  it('changes the registry through its sink, holding routing from a change of a .json file until the change is applied', async () => {
    const dir = folder({ 'a.json': vpn('a.example') });
    const registry = new PvdRegistry();
    const { sink, calls, open } = recorder(registry);
    const d = new PvdDirectory(dir, registry, logger().log);
    expect(d.describe()).toBe(`directory ${dir}`);
    try {
      await d.start(sink);
      expect(calls).toEqual(['sync a.example']);
      writeFileSync(join(dir, 'b.json'), JSON.stringify(vpn('b.example')));
      await vi.waitFor(() => expect(registry.get('b.example')).toBeDefined(), { timeout: 2000 });
      await d.settled();
      expect(calls.slice(1)).toEqual(['hold', 'sync a.example,b.example', 'release']);
      expect(open()).toBe(0);
    } finally {
      d.stop();
      registry.close();
    }
  });

  it('says a file that stays bad once, after it has been still a moment, and keeps its PvD meanwhile', async () => {
    const dir = folder({ 'vpn.json': vpn('vpn.example') });
    const registry = new PvdRegistry();
    const { log, lines } = logger();
    const d = new PvdDirectory(dir, registry, log);
    try {
      await d.start();
      const written = Date.now();
      writeFileSync(join(dir, 'vpn.json'), '{"identifier": "vpn.example", "dnsServers": [');
      await vi.waitFor(() => expect(lines.filter((l) => l.error)).toHaveLength(1), { timeout: 2000 });
      expect(Date.now() - written).toBeGreaterThanOrEqual(40); // read again when still, not at the first read
      await d.settled();
      expect(lines.filter((l) => l.error).map((l) => l.error)).toEqual([`${join(dir, 'vpn.json')}:1: not valid JSON: Unexpected end of JSON input`]);
      expect(registry.get('vpn.example')?.servers.map((s) => s.label)).toEqual(['10.8.0.1:53']);
    } finally {
      d.stop();
      registry.close();
    }
  });

  it('releases the routing barrier it holds when stopped before the change is read', async () => {
    const dir = folder();
    const registry = new PvdRegistry();
    const { sink, calls, open } = recorder(registry);
    const d = new PvdDirectory(dir, registry, logger().log);
    await d.start({
      ...sink,
      hold: () => {
        queueMicrotask(() => {
          expect(open()).toBe(1);
          d.stop(); // the change heard, its read armed and not yet run
        });
        return sink.hold();
      },
    });
    writeFileSync(join(dir, 'a.json'), JSON.stringify(vpn('a.example')));
    await vi.waitFor(() => expect(calls).toContain('release'), { timeout: 2000 });
    expect(open()).toBe(0);
    await new Promise((r) => setTimeout(r, 60)); // past the read it had armed: nothing is read after stop
    expect(calls).toEqual(['sync ', 'hold', 'release']);
    expect(registry.get('a.example')).toBeUndefined();
    registry.close();
  });
});
