// The command line as a user runs it: `node dist/cli.js` (built by pretest).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';

const CLI = join(import.meta.dirname, '../../dist/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pvdns-cli-'));

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** runWith runs the CLI with node options first (e.g. --import) and extra environment. */
function runWith(nodeArgs: string[], env: Record<string, string>, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...nodeArgs, CLI, ...args], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('pvdns --help, --version, check-config', () => {
  it('prints its version and usage', () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(run('--version')).toMatchObject({ code: 0, stdout: `pvdns ${pkg.version}\n` });
    const help = run('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/pvdns serve \[--config FILE\]/);
    expect(help.stdout).toMatch(/pvdns check-config \[--strict\] FILE/);
  });

  it('runs as `npx pvdns` through its first line, V8 flags included', () => {
    // The first line carries node options (env -S); a line env cannot split would fail here.
    expect(readFileSync(CLI, 'utf8').split('\n', 1)[0]).toMatch(/^#!\/usr\/bin\/env -S node --max-semi-space-size=\d+ --min-semi-space-size=\d+ --no-memory-reducer$/);
    const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    const r = spawnSync('npx', ['--no-install', 'pvdns', '--version'], { cwd: join(import.meta.dirname, '../..'), env, encoding: 'utf8', timeout: 60_000 });
    expect({ code: r.status, stdout: r.stdout }).toEqual({ code: 0, stdout: expect.stringMatching(/^pvdns \d+\.\d+\.\d+\n$/) });
    // The build bundled it (scripts/bundle.mjs): what these tests run is the one-file pvdns.
    expect(existsSync(join(dirname(CLI), 'pvdns.bundle.js'))).toBe(true);
  });

  it('rejects an unknown command with usage and exit code 2', () => {
    const r = run('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it('prints the effective PvDs of a valid file', () => {
    const f = file(
      'ok.yaml',
      ['listen: ["127.0.0.1:5353"]', 'pvdSources: { host: false }', 'pvds:', '  - identifier: corp.example.com', '    dnsServers: ["10.8.0.1"]', '    dnsZones: [corp.example.com]', '    prefixes: ["10.8.0.0/16"]', '    noInternet: true', '  - identifier: wifi', '    dnsServers: ["192.168.1.1", "[fd00::1]:5353"]', ''].join('\n'),
    );
    const r = run('check-config', f);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${f}: OK`);
    expect(r.stdout).toContain('corp.example.com (config)');
    expect(r.stdout).toContain('servers:  192.168.1.1:53, [fd00::1]:5353');
    expect(r.stdout).toContain('names nobody claims go to: wifi');
    // wifi is on no interface it names: it could be anywhere, so not the local network (RFC 8375).
    expect(r.stdout).toContain('home.arpa goes to: (no PvD of a local network: NXDOMAIN)');
    expect(r.stdout).toContain('test. goes to: the PvDs that claim it, else NXDOMAIN (forwardTestNames: false)');
    expect(r.stdout).toContain('    dns64:    auto (RFC 7050 discovery once running)');
  });

  it('names the file, line and key of an error in one line and exits 1', () => {
    const f = file('bad.yaml', ['pvds:', '  - identifier: wifi', '    dnsServers: ["192.168.1.1"]', '    dnsZone: [lan]', ''].join('\n'));
    const r = run('check-config', f);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`pvdns: config error: ${f}:4: pvds[0].dnsZone: unknown key "dnsZone"\n`);
  });

  it('refuses a file with no settings (empty, or comments only), naming it and exiting 1', () => {
    for (const [name, text] of [
      ['empty.yaml', ''],
      ['comments.yaml', '# pvdns: to be written\n'],
    ] as const) {
      const f = file(name, text);
      const r = run('check-config', f);
      expect(r.code, name).toBe(1);
      expect(r.stdout, name).toBe('');
      expect(r.stderr, name).toBe(`pvdns: config error: ${f}: the file has no settings (write {} to use every default)\n`);
    }
  });

  it('loads JSON as well as YAML', () => {
    const f = file('ok.json', JSON.stringify({ pvdSources: { host: false }, pvds: [{ identifier: 'wifi', dnsServers: ['192.0.2.53'] }] }, null, 2));
    expect(run('check-config', f).code).toBe(0);
    const bad = file('bad.json', '{\n  "pvdSources": { "host": false },\n  "cache": { "maxTtl": "long" }\n}\n');
    expect(run('check-config', bad).stderr).toMatch(new RegExp(`^pvdns: config error: ${bad}:3: cache\\.maxTtl: `));
  });

  it('--server that is not an http URL is one line saying what to write, for status and query', () => {
    for (const args of [['status'], ['query', 'example.com']]) {
      expect(run(...args, '--server', '127.0.0.1:8053')).toMatchObject({
        code: 1,
        stdout: '',
        stderr: 'pvdns: --server must be a URL such as http://127.0.0.1:8053 (got "127.0.0.1:8053")\n',
      });
      // A URL to Node, of scheme "localhost:"; and https, which the API does not speak.
      for (const server of ['localhost:8053', 'https://127.0.0.1:8053']) {
        expect(run(...args, '--server', server), server).toMatchObject({ code: 1, stderr: `pvdns: --server must be a URL such as http://127.0.0.1:8053, starting http:// (got "${server}")\n` });
      }
    }
  });

  it('an unexpected error is one line; PVDNS_DEBUG=1 adds its stack', () => {
    const f = file('fine.yaml', 'pvdSources: { host: false }\n');
    // Make check-config's last step fail with an error nobody foresaw (a two-line message at that).
    const breakStdout = `data:text/javascript,process.stdout.write = () => { throw new Error('stdout is gone\\nreally'); };`;
    const r = runWith(['--import', breakStdout], {}, 'check-config', f);
    expect(r).toMatchObject({ code: 1, stderr: 'pvdns: stdout is gone really\n' });
    const debug = runWith(['--import', breakStdout], { PVDNS_DEBUG: '1' }, 'check-config', f);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^pvdns: Error: stdout is gone\nreally\n\s+at /);
  });

  it('accepts the shipped default and example configurations', () => {
    for (const f of ['config/default.yaml', 'config/example.yaml']) {
      const r = run('check-config', join(import.meta.dirname, '../..', f));
      expect(r.stderr, f).toBe('');
      expect(r.code, f).toBe(0);
    }
  });
});

describe('pvdns serve', () => {
  const up = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.77')]));
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const server = { host: '127.0.0.28', port };
  let child: ChildProcess;
  let stdout = '';
  const config = (pvds: string[]): string =>
    file('serve.yaml', [`listen: ["127.0.0.28:${port}"]`, 'http: { listen: null }', 'pvdSources: { host: false }', 'upstream: { timeoutMs: 300 }', 'pvds:', ...pvds, ''].join('\n'));

  beforeAll(async () => {
    await up.start('127.0.0.29');
    const f = config(['  - identifier: lan', `    dnsServers: ["${up.address}"]`, '    dnsZones: [lan.example]', '    noInternet: true']);
    child = spawn(process.execPath, [CLI, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    for (let i = 0; i < 100 && !stdout.includes('pvdns started'); i++) await new Promise((r) => setTimeout(r, 50));
  });
  afterAll(async () => {
    child.kill('SIGKILL');
    await up.stop();
  });

  it('serves DNS and logs one start line naming listeners and PvDs', async () => {
    const start = stdout.split('\n').find((l) => l.includes('pvdns started'));
    expect(JSON.parse(start!)).toMatchObject({ listen: [`127.0.0.28:${port}`], pvds: [{ identifier: 'lan' }] });
    expect((await ask(server, 'localhost', 'A')).packet.answers[0]?.address).toBe('127.0.0.1');
    expect((await ask(server, 'nas.lan.example', 'A', { tcp: true })).packet.answers[0]?.address).toBe('192.0.2.77');
  });

  it('reloads its configuration on SIGHUP without a restart', async () => {
    expect((await ask(server, 'www.example.org', 'A')).packet.header.rcode).toBe(2); // no default PvD yet
    config(['  - identifier: lan', `    dnsServers: ["${up.address}"]`, '    default: true']);
    child.kill('SIGHUP');
    for (let i = 0; i < 100 && !stdout.includes('configuration reloaded'); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await ask(server, 'www.example.org', 'A')).packet.answers[0]?.address).toBe('192.0.2.77');
  });

  /** hupFails sends SIGHUP and returns the log line of the failed reload. */
  async function hupFails(): Promise<Record<string, unknown>> {
    const before = stdout.split('\n').length;
    child.kill('SIGHUP');
    let line: string | undefined;
    for (let i = 0; i < 100 && !(line = stdout.split('\n').slice(before - 1).find((l) => l.includes('reload failed'))); i++) await new Promise((r) => setTimeout(r, 50));
    return JSON.parse(line!) as Record<string, unknown>;
  }

  it('keeps running on a bad reload and says why in one log line: FILE:LINE: key: problem, no stack', async () => {
    const f = file('serve.yaml', 'listen: [nonsense]\n');
    const bad = await hupFails();
    expect(bad).toMatchObject({ level: 50, msg: 'reload failed; keeping the running configuration', error: `${f}:1: listen[0]: "nonsense" is not an IP address with an optional port` });
    expect(bad).not.toHaveProperty('err');
    expect((await ask(server, 'localhost', 'A')).packet.answers[0]?.address).toBe('127.0.0.1');

    // Several problems: every line in `errors`, the first in `error`.
    file('serve.yaml', 'listen: [nonsense]\naccess: { allow: [] }\n');
    expect(await hupFails()).toMatchObject({
      error: `${f}:1: listen[0]: "nonsense" is not an IP address with an optional port`,
      errors: [`${f}:1: listen[0]: "nonsense" is not an IP address with an optional port`, expect.stringMatching(new RegExp(`^${f}:2: access\\.allow: is empty`))],
    });

    // A listener another program holds: the bind failure names the key and the address.
    const other = dgram.createSocket('udp4');
    await new Promise<void>((r) => other.bind(port + 1, '127.0.0.28', r));
    try {
      config(['  - identifier: lan', '    dnsServers: ["192.0.2.1"]']);
      const text = readFileSync(f, 'utf8').replace(`listen: ["127.0.0.28:${port}"]`, `listen: ["127.0.0.28:${port}", "127.0.0.28:${port + 1}"]`);
      file('serve.yaml', text);
      const held = await hupFails();
      expect(held.error).toBe(`${f}:1: listen[1]: cannot listen on 127.0.0.28:${port + 1} (UDP): EADDRINUSE (another program listens there)`);
      expect(held).not.toHaveProperty('stack');
    } finally {
      other.close();
    }
    expect((await ask(server, 'nas.lan.example', 'A')).packet.answers[0]?.address).toBe('192.0.2.77');
  });

  it('exits 0 on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('exits 1 with the config error when the file is bad', () => {
    const f = file('broken.yaml', 'cache:\n  maxEntries: -5\n');
    const r = run('serve', '--config', f);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^pvdns: config error: ${f}:2: cache\\.maxEntries: `));
  });

  it('does not start on an empty file', () => {
    const f = file('empty-serve.yaml', '\n');
    const r = run('serve', '--config', f);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`pvdns: config error: ${f}: the file has no settings (write {} to use every default)\n`);
  });
});
