// `npm pack`'s tarball, installed as a user installs it: packed from this
// repository, installed into an empty folder (`npm install <tgz>`), and the
// installed `pvdns` run (--version, check-config of a good file and of a bad
// one). The tarball also carries what the build needs: unpacked, with the
// repository's development dependencies beside it, `npm run build` remakes
// dist/ from it alone.
//
// Packed with --ignore-scripts: "prepare" (the build) has run already
// (`npm run test:install` builds first), and running it here would rewrite
// the repository's dist/ under any other run reading it.
//
// The network: `npm install <tgz>` asks for each dependency's full registry
// metadata (npm 11 does, even with a lockfile nearby), which `npm ci` never
// caches, so `--offline` cannot work; it runs with `--prefer-offline`: the
// packages come from the cache `npm ci` filled, and the metadata (about 20
// small documents) is fetched from the npm registry the first time on a
// machine and taken from the cache afterwards.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };

/** run runs a command to its end: exit status, stdout, stderr. */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, encoding: 'utf8', timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

describe("npm pack's tarball, installed into an empty folder", () => {
  const work = mkdtempSync(join(tmpdir(), 'pvdns-pack-'));
  const app = join(work, 'app');
  // Our Node first: npm and the installed pvdns's `#!/usr/bin/env node` line run on it.
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}`, npm_config_audit: 'false', npm_config_fund: 'false' };
  let files: string[] = [];
  let tarball = '';
  let pvdns = '';

  beforeAll(async () => {
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: REPO, env });
    if (pack.status !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`);
    const [info] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path);
    tarball = join(work, info!.filename);
    mkdirSync(app);
    // --prefix: npm would otherwise install into the nearest folder above with a node_modules (a
    // stray /node_modules made this fail with npm's "Tracker idealTree already exists").
    const install = await run('npm', ['install', '--prefix', app, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: app, env });
    if (install.status !== 0) throw new Error(`npm install ${tarball} failed:\n${install.stdout}\n${install.stderr}`);
    pvdns = join(app, 'node_modules', '.bin', 'pvdns');
  }, 600_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('carries the program, its build, the addon sources and the licence, and nothing of the tests', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'dist/cli.js', 'dist/command.js', 'dist/pvdns.bundle.js', 'config/default.yaml', 'binding.gyp', 'native/build.mjs', 'native/udp.c', 'native/raw.c', 'scripts/bundle.mjs', 'tsconfig.json', 'src/cli.ts']) {
      expect(files, f).toContain(f);
    }
    for (const prefix of ['test/', 'build/', 'node_modules/', 'docker/', 'bench/', '.ci/', 'packaging/']) {
      expect(files.filter((f) => f.startsWith(prefix)), prefix).toEqual([]);
    }
    // Every file package.json's scripts run is in it: `node X` and `tsc -p X`.
    for (const script of Object.values(pkg.scripts)) {
      for (const m of script.matchAll(/\bnode ((?:native|scripts|bench)\/\S+\.m?js)/g)) {
        if (!m[1]!.startsWith('bench/')) expect(files, `${script}: ${m[1]}`).toContain(m[1]);
      }
    }
  });

  it('builds dist/ and the bundle from its own files (npm run build in the unpacked tarball)', async () => {
    const src = join(work, 'unpacked');
    mkdirSync(src);
    expect((await run('tar', ['xzf', tarball, '-C', src, '--strip-components=1'])).status).toBe(0);
    rmSync(join(src, 'dist'), { recursive: true });
    // The development dependencies (tsc, esbuild): the repository's, as `npm install` in the folder would bring them.
    symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'));
    const r = await run('npm', ['run', 'build'], { cwd: src, env });
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(src, 'dist/cli.js'))).toBe(true);
    expect(existsSync(join(src, 'dist/pvdns.bundle.js'))).toBe(true);
  });

  it('installs the pvdns command, which says its version', async () => {
    const r = await run(pvdns, ['--version'], { env });
    expect(r).toMatchObject({ status: 0, stdout: `pvdns ${pkg.version}\n` });
  });

  it('builds the batched-UDP addon on install (the install script ran; the compilers are here)', () => {
    expect(existsSync(join(app, 'node_modules/pvdns/build/Release/pvdns_udp.node'))).toBe(true);
  });

  it('check-config: OK with the PvDs and routes for a good file, one line naming file, line and key for a bad one', async () => {
    const good = join(work, 'good.yaml');
    writeFileSync(
      good,
      [
        'listen: ["127.0.0.1:5300"]',
        'pvdSources: { host: false }',
        'pvds:',
        '  - identifier: corp.example.com',
        '    dnsServers: ["10.8.0.1"]',
        '    dnsZones: ["corp.example.com"]',
        '    noInternet: true',
        '  - identifier: lan',
        '    dnsServers: ["192.0.2.1"]',
        '',
      ].join('\n'),
    );
    const ok = await run(pvdns, ['check-config', good], { env });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^${good.replace(/[.]/g, '\\.')}: OK\n`));
    expect(ok.stdout).toMatch(/^ {2}corp\.example\.com \(config\)$/m);
    expect(ok.stdout).toMatch(/^ {4}zones: +corp\.example\.com$/m);
    expect(ok.stdout).toMatch(/^names nobody claims go to: lan$/m);

    const bad = join(work, 'bad.yaml');
    writeFileSync(bad, 'pvdSources: { host: false }\npvds:\n  - identifier: x\n    dnsZone: ["x.example"]\n');
    const no = await run(pvdns, ['check-config', bad], { env });
    expect(no.status).toBe(1);
    expect(no.stderr.trim().split('\n')).toHaveLength(1);
    expect(no.stderr).toMatch(/bad\.yaml:4: pvds\[0\]\.dnsZone/);
  });
});
