// The README's systemd install, replayed so that it cannot rot: the shell block
// under "As a systemd service" is run line by line in a temporary folder that
// stands for /, with /opt/pvdns, /etc/pvdns, /etc/systemd/system and
// /run/pvdns moved into it (a line that reaches anywhere else fails the test);
// `npm ci` in the copy builds dist/ and the addon from the files the recipe
// copied, offline, from the npm cache a `npm ci` of the repository filled.
// Then the unit it installed is played as systemd would play it:
// RuntimeDirectory made with its mode, ExecStartPre, ExecStart (the installed
// configuration, its listen addresses moved to free loopback ports, the
// host's resolv.conf replaced by ours and a PvD file in its pvd.d naming a
// fake server), and ExecReload's lines in order,
// stopping at the first that fails, as `systemctl reload` does.
//
// What needs systemd itself, and is not proven here: DynamicUser, the
// sandboxing, the capability, the ordering against nss-lookup.target at boot.
// `systemd-analyze verify` (where the machine has it) checks the unit's syntax
// and the executables it names. /usr/bin/node in the unit becomes the Node.js
// running this test: the README tells to point it at a Node >= 22.15.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { freePort } from '../interop/servers.js';

const REPO = join(import.meta.dirname, '..', '..');
const HOST = '127.0.0.140';
/** The folders of the recipe that the replay moves into its own root. */
const MOVED = ['/opt/pvdns', '/etc/pvdns', '/etc/systemd/system', '/run/pvdns'];

/** A unit file: each section's keys, every value of a key in order (ExecReload may repeat). */
type Unit = Map<string, Map<string, string[]>>;

/** parseUnit reads a systemd unit file (systemd.syntax(7)): sections, Key=Value, # and ; comments. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = new Map();
      unit.set(head[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section === null || eq < 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** words of a unit's space-separated list (After=, Wants=, Before=). */
const words = (unit: Unit, section: string, key: string): string[] => (unit.get(section)?.get(key) ?? []).flatMap((v) => v.split(/\s+/));

/** recipe: the README's shell block under "### As a systemd service". */
function recipe(): string[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### As a systemd service'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README: no ```sh block under "### As a systemd service"');
  return block[1]!.split('\n').filter((l) => l.trim() !== '');
}

describe('the systemd unit, read as a file', () => {
  const unit = parseUnit(readFileSync(join(REPO, 'packaging', 'pvdns.service'), 'utf8'));

  it('is ordered before nss-lookup.target and pulls it in, as a local resolver (systemd.special(7))', () => {
    expect(words(unit, 'Unit', 'Before')).toContain('nss-lookup.target');
    expect(words(unit, 'Unit', 'Wants')).toContain('nss-lookup.target');
    // An ordering after it would be a cycle.
    expect(words(unit, 'Unit', 'After')).not.toContain('nss-lookup.target');
  });

  it('checks the configuration before every start and before the SIGHUP of a reload', () => {
    const service = unit.get('Service')!;
    expect(service.get('ExecStartPre')).toEqual(['/usr/bin/node /opt/pvdns/dist/cli.js check-config /etc/pvdns/config.yaml']);
    expect(service.get('ExecReload')).toEqual(['/usr/bin/node /opt/pvdns/dist/cli.js check-config /etc/pvdns/config.yaml', '/bin/kill -HUP $MAINPID']);
  });

  it("gives the API token a folder of the service's own, /run/pvdns, mode 0700", () => {
    expect(unit.get('Service')!.get('RuntimeDirectory')).toEqual(['pvdns']);
    expect(unit.get('Service')!.get('RuntimeDirectoryMode')).toEqual(['0700']);
    const config = parseYaml(readFileSync(join(REPO, 'packaging', 'config.yaml'), 'utf8')) as { http: { tokenFile: string } };
    expect(config.http.tokenFile).toBe('/run/pvdns/token');
  });

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  it.skipIf(analyze === undefined)('passes systemd-analyze verify with nothing to say (skipped where systemd-analyze is missing)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvdns-unit-'));
    try {
      writeFileSync(join(dir, 'pvdns.service'), readFileSync(join(REPO, 'packaging', 'pvdns.service')));
      // verify names an unknown key or a bad value on stderr but may still exit 0: both must be clean.
      const r = execFileSyncStatus(analyze!, ['verify', join(dir, 'pvdns.service')]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** execFileSyncStatus runs a command to its end: exit status, stdout, stderr. */
function execFileSyncStatus(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(cmd, args, { ...opts, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    return { status: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout: string; stderr: string };
    return { status: e.status ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** run runs a command asynchronously (the pvdns it may talk to is a child, but vitest's own timers keep going). */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

describe("the README's systemd recipe, replayed in a temporary root", () => {
  const root = mkdtempSync(join(tmpdir(), 'pvdns-recipe-'));
  /** at maps a path of the recipe into the replay's root. */
  const at = (p: string): string => (MOVED.some((m) => p === m || p.startsWith(`${m}/`)) ? join(root, p) : p);
  const upstream = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.140')]));
  const replayed: string[] = [];
  const skipped: string[] = [];
  let unit: Unit;
  let child: ChildProcess | null = null;
  let logs = '';
  let dnsPort = 0;
  let httpPort = 0;
  /** The environment of the unit's commands: our Node first, no resolvectl or nmcli. */
  let env: NodeJS.ProcessEnv = {};
  /** exec turns a unit's command line into argv, paths moved and /usr/bin/node made our Node. */
  const exec = (line: string): string[] =>
    line
      .split(/\s+/)
      .map((w) => (w === '/usr/bin/node' ? process.execPath : at(w)))
      .map((w) => (w === '$MAINPID' && child?.pid !== undefined ? String(child.pid) : w));

  beforeAll(async () => {
    const npmEnv = {
      ...process.env,
      PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
      // The replay takes packages only from the npm cache: no network.
      npm_config_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
    };
    // What a systemd host has before the recipe: its units' folder.
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    for (const line of recipe()) {
      const cmd = line.replace(/\s+#.*$/, '').replace(/\bsudo /g, '').trim();
      // systemd's own steps are played from the unit below; the token exists once pvdns runs.
      if (/^systemctl\b/.test(cmd) || /^cat \/run\/pvdns\//.test(cmd)) {
        skipped.push(cmd);
        continue;
      }
      const moved = cmd.replace(/(?<![\w./-])\/[\w./-]+/g, (p) => at(p));
      const outside = [...moved.matchAll(/(?<![\w./-])\/[\w./-]+/g)].map((m) => m[0]).filter((p) => !p.startsWith(root));
      if (outside.length > 0) throw new Error(`README recipe: "${line}" reaches ${outside.join(', ')}, outside what the replay moves (${MOVED.join(', ')})`);
      const r = await run('sh', ['-c', moved], { cwd: REPO, env: npmEnv });
      if (r.status !== 0) throw new Error(`README recipe: "${line}" failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
      replayed.push(cmd);
    }

    unit = parseUnit(readFileSync(join(root, 'etc/systemd/system/pvdns.service'), 'utf8'));
    const service = unit.get('Service')!;
    // RuntimeDirectory=pvdns: /run/pvdns, made before ExecStartPre with RuntimeDirectoryMode.
    const runtime = join(root, 'run', service.get('RuntimeDirectory')![0]!);
    mkdirSync(runtime, { recursive: true });
    chmodSync(runtime, parseInt(service.get('RuntimeDirectoryMode')![0]!, 8));

    // The installed configuration, on free loopback ports, the host's links read from our resolv.conf.
    await upstream.start(HOST);
    dnsPort = await freePort(HOST);
    httpPort = await freePort(HOST);
    const configPath = join(root, 'etc/pvdns/config.yaml');
    const config = parseYaml(readFileSync(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    config.listen = [`${HOST}:${dnsPort}`] as never;
    config.http!.listen = `${HOST}:${httpPort}`;
    config.http!.tokenFile = at(config.http!.tokenFile as string);
    config.pvdSources!.directory = at(config.pvdSources!.directory as string);
    // The host's resolver, on loopback, nobody there; names go to a PvD file in pvd.d, as a VPN hook writes one.
    writeFileSync(join(root, 'resolv.conf'), 'nameserver 127.0.0.141\n');
    config.pvdSources!.resolvConf = join(root, 'resolv.conf');
    writeFileSync(configPath, stringify(config));
    writeFileSync(join(config.pvdSources!.directory as string, 'lan.json'), JSON.stringify({ identifier: 'lan', dnsServers: [upstream.address], default: true, priority: 10 }));
    const bin = join(root, 'bin'); // a PATH without resolvectl and nmcli: the host PvD is our resolv.conf's
    mkdirSync(bin);
    env = { PATH: `${dirname(process.execPath)}:${bin}:/usr/bin:/bin`, HOME: root };
  }, 600_000);

  afterAll(async () => {
    child?.kill('SIGTERM');
    await upstream.stop();
    if (process.env.PVDNS_INTEROP_KEEP !== '1') rmSync(root, { recursive: true, force: true });
  });

  it('copies what the build needs, builds dist/ and the addon, and keeps production dependencies only', () => {
    expect(replayed.some((c) => /npm ci/.test(c) && /npm prune --omit=dev/.test(c))).toBe(true);
    expect(skipped.some((c) => /systemctl (daemon-reload|enable)/.test(c))).toBe(true);
    const opt = join(root, 'opt/pvdns');
    expect(existsSync(join(opt, 'dist/cli.js'))).toBe(true);
    expect(existsSync(join(opt, 'dist/pvdns.bundle.js'))).toBe(true);
    // The compilers are on this machine: an addon that did not build is a broken install.
    expect(existsSync(join(opt, 'build/Release/pvdns_udp.node'))).toBe(true);
    expect(existsSync(join(opt, 'node_modules/pino'))).toBe(true);
    for (const dev of ['typescript', 'vitest', 'esbuild', 'dns2']) expect(existsSync(join(opt, 'node_modules', dev)), dev).toBe(false);
    expect(existsSync(join(root, 'etc/pvdns/pvd.d'))).toBe(true);
  });

  it('installs packaging/config.yaml, which ExecStartPre (check-config) passes', async () => {
    expect(readFileSync(join(REPO, 'packaging/config.yaml'), 'utf8')).toContain('tokenFile: /run/pvdns/token');
    const [cmd, ...args] = exec(unit.get('Service')!.get('ExecStartPre')![0]!);
    const r = await run(cmd!, args, { env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`${join(root, 'etc/pvdns/config.yaml')}: OK`);
  });

  it('starts with ExecStart, writes a fresh API token (0600) in the RuntimeDirectory, and answers DNS', async () => {
    const [cmd, ...args] = exec(unit.get('Service')!.get('ExecStart')![0]!);
    child = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    const deadline = Date.now() + 15_000;
    while (!logs.includes('"pvdns started"')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`ExecStart did not start pvdns:\n${logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const token = join(root, 'run/pvdns/token');
    expect(statSync(token).mode & 0o777).toBe(0o600);
    expect(readFileSync(token, 'utf8').trim().length).toBeGreaterThanOrEqual(16);
    const r = await ask({ host: HOST, port: dnsPort }, 'www.example.org', 'A');
    expect(r.packet.answers.map((x) => x.address)).toEqual(['192.0.2.140']);
  });

  it('takes no change without the token; the VPN hook reads it from /run/pvdns/token as root does', async () => {
    const base = `http://${HOST}:${httpPort}`;
    const put = await fetch(`${base}/v1/pvds/corp.example.com`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"dnsServers": ["10.8.0.1"]}' });
    expect([401, 403]).toContain(put.status);
    const hook = join(REPO, 'packaging/hooks/wireguard-pvd.sh');
    const hookEnv = { PATH: env.PATH, PVDNS_API: base, PVDNS_TOKEN_FILE: join(root, 'run/pvdns/token'), PVD_ID: 'corp.example.com' };
    const up = await run('sh', [hook, 'up', 'wg0'], { env: hookEnv });
    expect(up.stderr).toBe('');
    const pvd = (await (await fetch(`${base}/v1/pvds/corp.example.com`)).json()) as { source: string; interface: string };
    expect(pvd).toMatchObject({ source: 'api', interface: 'wg0' });
    expect((await run('sh', [hook, 'down', 'wg0'], { env: hookEnv })).stderr).toBe('');
    expect((await fetch(`${base}/v1/pvds/corp.example.com`)).status).toBe(404);
  });

  it('ExecReload of a bad file fails at check-config and sends no SIGHUP; of a good one, reloads', async () => {
    const configPath = join(root, 'etc/pvdns/config.yaml');
    const good = readFileSync(configPath, 'utf8');
    /** reload plays ExecReload's lines in order and stops at the first that fails, as systemd does. */
    const reload = async (): Promise<{ ran: number; status: number; stderr: string }> => {
      const lines = unit.get('Service')!.get('ExecReload')!;
      for (let i = 0; i < lines.length; i++) {
        const [cmd, ...args] = exec(lines[i]!);
        const r = await run(cmd!, args, { env });
        if (r.status !== 0) return { ran: i + 1, status: r.status, stderr: r.stderr };
      }
      return { ran: lines.length, status: 0, stderr: '' };
    };
    try {
      writeFileSync(configPath, `${good}\nlistn: ["127.0.0.1:53"]\n`);
      const bad = await reload();
      expect(bad).toMatchObject({ ran: 1, status: 1 });
      expect(bad.stderr.trim().split('\n')).toHaveLength(1);
      expect(bad.stderr).toMatch(/config\.yaml:\d+: .*listn/);
      await new Promise((r) => setTimeout(r, 300));
      expect(logs).not.toContain('reload failed');
      expect(child!.exitCode).toBeNull();

      const base = `http://${HOST}:${httpPort}`;
      expect((await fetch(`${base}/v1/pvds/lab`)).status).toBe(404);
      const next = parseYaml(good) as Record<string, unknown>;
      next.pvds = [{ identifier: 'lab', dnsServers: ['192.0.2.53'], dnsZones: ['lab.example'], noInternet: true }];
      writeFileSync(configPath, stringify(next));
      expect(await reload()).toEqual({ ran: 2, status: 0, stderr: '' });
      // SIGHUP was sent: the new PvD appears.
      const deadline = Date.now() + 5_000;
      let status = 0;
      while ((status = (await fetch(`${base}/v1/pvds/lab`)).status) !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(status).toBe(200);
    } finally {
      writeFileSync(configPath, good);
    }
  });
});
