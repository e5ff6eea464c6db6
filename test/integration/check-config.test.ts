// check-config sees what serve sees (issue 14): for every broken file, both
// `pvdns check-config FILE` and `pvdns serve --config FILE` exit 1 with the
// very same lines on stderr, each `FILE:LINE: key: problem`, one line per
// problem and never a stack trace. Under systemd, check-config is the
// unit's ExecStartPre: an OK there that serve then refuses restarts the
// unit forever. What only binding can find (a port taken, a privileged port)
// is serve's alone, in the same one-line form. Runs `node dist/cli.js`
// (built by pretest).

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import dgram from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = join(import.meta.dirname, '../../dist/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pvdns-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: opts.timeout ?? 15_000, env: opts.env ?? process.env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let n = 0;
function file(text: string, name = `c${n++}.yaml`): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** A port nothing listens on now, for listeners a fixture does not expect to bind. */
const port = 30_000 + Math.floor(Math.random() * 20_000);

/** The settings of every fixture but the one it breaks: loopback, no host PvDs, no HTTP, no probes. */
const BASE = [`listen: ["127.0.0.1:${port}"]`, 'http: { listen: null }', 'pvdSources: { host: false }', 'captive: { probeIntervalS: 0 }'];

/** yaml joins lines into a file's text. */
const yaml = (...lines: string[]): string => lines.join('\n') + '\n';

const missing = join(dir, 'no-such-thing');
const aFile = file('nameserver 192.0.2.53\n', 'resolv.conf');
const badPem = file('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n', 'bad.pem');

/** Each broken file, with the first line both commands must print (`FILE:` is put in front). */
const BROKEN: Array<[name: string, text: string, first: string, lines?: number]> = [
  ['an unknown key (schema)', yaml(...BASE, 'pvds:', '  - identifier: wifi', '    dnsZone: [lan]'), '7: pvds[0].dnsZone: unknown key "dnsZone"'],
  ['a DNS listener listed twice', yaml(`listen: ["127.0.0.1:${port}", "127.0.0.1:${port}"]`, ...BASE.slice(1)), `1: listen[1]: 127.0.0.1:${port} is already listen[0]`],
  [
    'a DNS listener beside the wildcard on its port',
    yaml('listen:', `  - 0.0.0.0:${port}`, `  - 127.0.0.1:${port}`, ...BASE.slice(1)),
    `3: listen[1]: 127.0.0.1:${port} and listen[0] (0.0.0.0:${port}) cannot both listen: a wildcard address takes its port on every address of its family`,
  ],
  [
    'http.listen on a DNS port',
    yaml(BASE[0]!, `http: { listen: "127.0.0.1:${port}" }`, ...BASE.slice(2)),
    `2: http.listen: 127.0.0.1:${port} is on a DNS port: listen[0] (127.0.0.1:${port}) takes TCP there`,
  ],
  ['a canary name that is no domain name', yaml(...BASE.slice(0, 3), 'captive:', '  probeIntervalS: 0', '  canary: { name: "canary..test" }'), '6: captive.canary.name: "canary..test" has an invalid label'],
  ['a canary address that is no IPv4 literal', yaml(...BASE.slice(0, 3), 'captive:', '  canary:', '    addresses: [canary.test]'), '6: captive.canary.addresses[0]: "canary.test" is not an IPv4 address'],
  ['an empty access.allow', yaml(...BASE, 'access:', '  allow: []'), '6: access.allow: is empty: every client would be refused'],
  [
    'a resolvConf that does not exist, with pvdSources.host true',
    yaml(...BASE.slice(0, 2), 'pvdSources:', '  host: true', `  resolvConf: ${missing}`, BASE[3]!),
    `5: pvdSources.resolvConf: cannot read ${missing}: ENOENT (pvdSources.host is true: its "system" PvD takes the nameservers there)`,
  ],
  ['a resolvConf that is a folder', yaml(...BASE.slice(0, 2), `pvdSources: { host: true, resolvConf: "${dir}" }`, BASE[3]!), `3: pvdSources.resolvConf: cannot read ${dir}: EISDIR`],
  ['a PvD directory that does not exist', yaml(...BASE.slice(0, 2), 'pvdSources:', '  host: false', `  directory: ${missing}`, BASE[3]!), `5: pvdSources.directory: cannot read ${missing}: ENOENT`],
  ['a PvD directory that is a file', yaml(...BASE.slice(0, 2), `pvdSources: { host: false, directory: "${aFile}" }`, BASE[3]!), `3: pvdSources.directory: cannot read ${aFile}: ENOTDIR`],
  ['a tls.caFile that does not exist', yaml(...BASE, `tls: { caFile: "${missing}" }`), `5: tls.caFile: cannot read ${missing}: ENOENT`],
  ['a tls.caFile with no certificate', yaml(...BASE, `tls: { caFile: "${aFile}" }`), `5: tls.caFile: ${aFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`],
  [
    'a tls.caFile whose certificate does not parse',
    yaml(...BASE, `tls: { caFile: "${badPem}" }`),
    `5: tls.caFile: ${badPem}: certificate 1 of 1 does not parse`,
  ],
  [
    'a PvD server that is pvdns itself',
    yaml(...BASE, 'pvds:', '  - identifier: loop', `    dnsServers: ["192.0.2.1", "127.0.0.1:${port}"]`),
    `7: pvds[0].dnsServers[1]: 127.0.0.1:${port} is pvdns's own listener: queries would loop`,
  ],
  [
    'an alias bomb',
    yaml(...BASE, 'a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefg'[i]}`).join(',')}]`)),
    '6: not valid YAML or JSON: too many aliases',
  ],
  ['collections nested 200,000 deep', yaml(...BASE, `pvds: ${'['.repeat(200_000)}${']'.repeat(200_000)}`), '5: not valid YAML or JSON: collections nested more than 64 deep'],
  ['an empty file', '', ' the file has no settings (write {} to use every default)'],
  [
    'three problems at once, one line each',
    yaml(...BASE, 'cache: { negativeTtl: -1 }', 'access: { allow: [] }', 'pvds: [{ identifier: a, dnsServers: [ns.example] }]'),
    '5: cache.negativeTtl: Too small: expected number to be >=0',
    3,
  ],
  [
    'two problems serve finds on the host, both named',
    yaml(...BASE.slice(0, 2), `pvdSources: { host: true, resolvConf: "${missing}", directory: "${missing}" }`, BASE[3]!),
    `3: pvdSources.directory: cannot read ${missing}: ENOENT`,
    2,
  ],
];

/** The lines a failed command printed, without the "pvdns: config error: " in front. */
const problems = (r: Run): string[] => r.stderr.split('\n').filter(Boolean).map((l) => l.replace(/^pvdns: config error: /, ''));

describe('check-config and serve give the same verdict and the same lines', () => {
  it.each(BROKEN)('%s', (_, text, first, lines = 1) => {
    const f = file(text);
    const check = run(['check-config', f]);
    // serve would run until killed if it started: the timeout then fails the test (status null).
    const serve = run(['serve', '--config', f], { timeout: 10_000 });
    for (const [name, r] of [
      ['check-config', check],
      ['serve', serve],
    ] as const) {
      expect(r.code, `${name}: ${r.stderr}`).toBe(1);
      expect(r.stdout, name).toBe('');
      expect(r.stderr, name).not.toMatch(/\n\s+at /); // no stack
      expect(r.stderr.split('\n').every((l) => l === '' || l.startsWith('pvdns: config error: ')), name).toBe(true);
      expect(problems(r), name).toHaveLength(lines);
      expect(problems(r)[0]!.startsWith(`${f}:${first}`), `${name}: "${problems(r)[0]}" should start with "${f}:${first}"`).toBe(true);
    }
    expect(serve.stderr).toBe(check.stderr);
  });

  it('the three problems are each named with their line', () => {
    const f = file(yaml(...BASE, 'cache: { negativeTtl: -1 }', 'access: { allow: [] }', 'pvds: [{ identifier: a, dnsServers: [ns.example] }]'));
    expect(problems(run(['check-config', f]))).toEqual([
      `${f}:5: cache.negativeTtl: Too small: expected number to be >=0`,
      `${f}:6: access.allow: is empty: every client would be refused; list the networks to serve, e.g. ["127.0.0.0/8", "::1/128"]`,
      `${f}:7: pvds[0].dnsServers[0]: "ns.example" is not an IP address with an optional port`,
    ]);
  });

  it(`a file over 4 MiB is refused by both before it is read`, () => {
    const f = file(yaml(...BASE) + '#'.repeat(4 * 1024 * 1024));
    for (const r of [run(['check-config', f]), run(['serve', '--config', f])]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^pvdns: config error: ${f}: the file is \\d+ bytes: configuration files over 4 MiB \\(4194304 bytes\\) are refused\\n$`));
    }
  });
});

describe('a PvD whose expires has passed: a warning from both, and both go on without it', () => {
  it('check-config prints the warning line on stderr and exits 0; serve logs the same line and starts', async () => {
    const f = file(yaml(...BASE, 'pvds:', '  - identifier: old.example', '    dnsServers: ["192.0.2.1"]', '    expires: "2020-01-01T00:00:00Z"', '  - identifier: wifi', '    dnsServers: ["192.0.2.2"]'));
    const warning = `${f}:8: pvds[0].expires: 2020-01-01T00:00:00Z has passed: PvD "old.example" is not announced`;
    const check = run(['check-config', f]);
    expect(check.code).toBe(0);
    expect(check.stderr).toBe(`pvdns: warning: ${warning}\n`);
    expect(check.stdout).toContain(`${f}: OK`);
    expect(check.stdout).not.toContain('old.example');

    const child = spawn(process.execPath, [CLI, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 200 && !out.includes('pvdns started'); i++) await new Promise((r) => setTimeout(r, 50));
      const logs = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; warning?: string; pvds?: { identifier: string }[] });
      expect(logs.find((l) => l.warning !== undefined)).toMatchObject({ level: 40, msg: 'configuration warning', warning });
      expect(logs.find((l) => l.msg === 'pvdns started')?.pvds?.map((p) => p.identifier)).toEqual(['wifi']);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });
});

/** hold holds a port the way another program would (UDP or TCP), until released. */
async function hold(kind: 'udp' | 'tcp', host: string, p: number): Promise<() => Promise<void>> {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(p, host, resolve);
    });
    return () => new Promise((r) => s.close(() => r()));
  }
  const s: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(p, host, resolve);
  });
  return () => new Promise((r) => s.close(() => r()));
}

describe('what only binding finds: check-config cannot know, serve says it in one line naming the key', () => {
  it.each([
    ['udp', 'listen[1]', (p: number) => yaml(`listen: ["127.0.0.1:${port + 1}", "127.0.0.1:${p}"]`, ...BASE.slice(1)), 1, (p: number) => `listen[1]: cannot listen on 127.0.0.1:${p} (UDP): EADDRINUSE (another program listens there)`],
    ['tcp', 'listen[0]', (p: number) => yaml(`listen: ["127.0.0.1:${p}"]`, ...BASE.slice(1)), 1, (p: number) => `listen[0]: cannot listen on 127.0.0.1:${p} (TCP): EADDRINUSE (another program listens there)`],
    ['tcp', 'http.listen', (p: number) => yaml(BASE[0]!, 'http:', `  listen: 127.0.0.1:${p}`, ...BASE.slice(2)), 3, (p: number) => `http.listen: cannot listen on 127.0.0.1:${p}: EADDRINUSE (another program listens there)`],
  ] as const)('a %s port another program holds (%s)', async (kind, _, text, line, problem) => {
    const p = port + 2 + Math.floor(Math.random() * 1000);
    const release = await hold(kind, '127.0.0.1', p);
    try {
      const f = file(text(p));
      expect(run(['check-config', f]).code).toBe(0);
      const serve = run(['serve', '--config', f], { timeout: 10_000 });
      expect(serve.code).toBe(1);
      expect(serve.stderr).toBe(`pvdns: ${f}:${line}: ${problem(p)}\n`);
    } finally {
      await release();
    }
  });

  it('an address no interface has (EADDRNOTAVAIL)', () => {
    const f = file(yaml(`listen: ["192.0.2.1:${port}"]`, ...BASE.slice(1)));
    expect(run(['check-config', f]).code).toBe(0);
    const serve = run(['serve', '--config', f], { timeout: 10_000 });
    expect({ code: serve.code, stderr: serve.stderr }).toEqual({
      code: 1,
      stderr: `pvdns: ${f}:1: listen[0]: cannot listen on 192.0.2.1:${port} (UDP): EADDRNOTAVAIL (no interface of this host has that address)\n`,
    });
  });

  const unprivilegedFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
  const root = process.getuid?.() === 0;
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  // As root the port binds: run serve as nobody (uid 65534, setpriv) to see EACCES; a host that lets anyone bind port 53 cannot show it.
  it.skipIf(unprivilegedFrom <= 53 || (root && !setpriv))('a privileged port without the capability (EACCES)', () => {
    const open = join(dir, 'world');
    mkdirSync(open, { recursive: true });
    chmodSync(dir, 0o755);
    chmodSync(open, 0o755);
    const f = join(open, 'p53.yaml');
    writeFileSync(f, yaml(`listen: ["127.0.0.1:${port}", "127.0.0.1:53"]`, ...BASE.slice(1)));
    chmodSync(f, 0o644);
    const argv = [CLI, 'serve', '--config', f];
    const r = root
      ? spawnSync(setpriv!, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...argv], { encoding: 'utf8', timeout: 10_000 })
      : spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 10_000 });
    expect({ code: r.status, stderr: r.stderr }).toEqual({
      code: 1,
      stderr: `pvdns: ${f}:1: listen[1]: cannot listen on 127.0.0.1:53 (UDP): EACCES (ports below 1024 need root or CAP_NET_BIND_SERVICE)\n`,
    });
  });
});
