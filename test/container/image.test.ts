// The Docker image without a Docker engine: docker/Dockerfile's steps
// replayed in a fresh temporary directory — the same COPY and RUN steps, in
// order, stage by stage, each stage's filesystem a folder of its own — then
// the image's ENTRYPOINT and CMD started with the image's configuration, and
// checked as a user would: the HEALTHCHECK command, a DNS answer, /metrics.
//
// What this cannot prove, and needs a Docker engine for: the steps marked
// "image-only" (base-system packages, the file capability on node), the base
// image itself, the non-root USER and the published ports. Substitutions,
// all on loopback: the image's listen addresses become 127.0.0.x ports that
// are free, and the "system" PvD reads a resolv.conf naming a fake server.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { freePort } from '../interop/servers.js';

const REPO = join(import.meta.dirname, '..', '..');
const HOST = '127.0.0.130';

interface Step {
  op: string;
  args: string;
  /** The comment just above: "image-only" steps change the base system. */
  imageOnly: boolean;
}

/** parseDockerfile reads instructions, joining continued lines and keeping the comment above each. */
function parseDockerfile(text: string): Step[] {
  const steps: Step[] = [];
  let comment = '';
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && line.startsWith('#')) {
      comment += `${line}\n`;
      continue;
    }
    if (pending === '' && line === '') {
      comment = '';
      continue;
    }
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(pending)!;
    steps.push({ op: m[1]!.toUpperCase(), args: m[2]!, imageOnly: /image-only/.test(comment) });
    pending = '';
    comment = '';
  }
  return steps;
}

/** A stage's filesystem: absolute paths inside the image map into its folder. */
class Stage {
  cwd = '/';
  readonly env: Record<string, string> = {};
  entrypoint: string[] = [];
  cmd: string[] = [];
  healthcheck: string[] = [];
  constructor(
    readonly name: string,
    readonly root: string,
  ) {
    mkdirSync(root, { recursive: true });
  }
  path(p: string): string {
    return join(this.root, p.startsWith('/') ? p : join(this.cwd, p));
  }
}

describe('the Docker image, replayed without a Docker engine', () => {
  const work = mkdtempSync(join(tmpdir(), 'pvdns-image-'));
  const upstream = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.130')]));
  const replayed: string[] = [];
  let final: Stage;
  let child: ChildProcess | null = null;
  let dnsPort = 0;
  let httpPort = 0;
  let logs = '';

  beforeAll(async () => {
    const steps = parseDockerfile(readFileSync(join(REPO, 'docker', 'Dockerfile'), 'utf8'));
    const stages = new Map<string, Stage>();
    const args: Record<string, string> = {};
    let stage: Stage | null = null;
    for (const s of steps) {
      const expand = (v: string): string => v.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? stage?.env[k] ?? '');
      if (s.op === 'ARG') {
        const [k, v = ''] = s.args.split('=');
        args[k!] ??= v;
      } else if (s.op === 'FROM') {
        const name = / AS (\S+)$/i.exec(s.args)?.[1] ?? `stage${stages.size}`;
        stage = new Stage(name, join(work, name));
        stages.set(name, stage);
      } else if (stage === null) {
        throw new Error(`${s.op} before FROM`);
      } else if (s.op === 'WORKDIR') {
        stage.cwd = expand(s.args);
        mkdirSync(stage.path('.'), { recursive: true });
      } else if (s.op === 'ENV') {
        const [k, v] = s.args.split('=');
        stage.env[k!] = v!;
      } else if (s.op === 'COPY') {
        const parts = s.args.split(/\s+/);
        const from = parts[0]!.startsWith('--from=') ? stages.get(parts.shift()!.slice(7))! : null;
        const dest = parts.pop()!;
        for (const src of parts) {
          const source = from ? from.path(src) : join(REPO, src);
          const target = dest.endsWith('/') || parts.length > 1 ? join(stage.path(dest), src.split('/').pop()!) : stage.path(dest);
          mkdirSync(dirname(target), { recursive: true });
          cpSync(source, target, { recursive: true });
        }
        replayed.push(`COPY ${s.args}`);
      } else if (s.op === 'RUN') {
        if (s.imageOnly) continue;
        execFileSync('sh', ['-c', s.args], { cwd: stage.path('.'), env: { ...process.env, ...stage.env }, stdio: 'pipe', timeout: 300_000 });
        replayed.push(`RUN ${s.args}`);
      } else if (s.op === 'ENTRYPOINT') {
        stage.entrypoint = JSON.parse(s.args) as string[];
      } else if (s.op === 'CMD') {
        stage.cmd = JSON.parse(s.args) as string[];
      } else if (s.op === 'HEALTHCHECK') {
        stage.healthcheck = JSON.parse(s.args.slice(s.args.indexOf('CMD ') + 4)) as string[];
      }
    }
    final = stage!;

    // The image's configuration, on loopback ports and with a resolv.conf of ours.
    await upstream.start(HOST);
    dnsPort = await freePort(HOST);
    httpPort = await freePort(HOST);
    const configPath = final.path('/etc/pvdns/config.yaml');
    const config = parseYaml(readFileSync(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    config.listen = [`${HOST}:${dnsPort}`] as never;
    config.http!.listen = `${HOST}:${httpPort}`;
    config.pvdSources!.directory = final.path(config.pvdSources!.directory as string);
    // The container's resolver, as the image's "system" PvD would see it: on loopback, nobody there.
    writeFileSync(join(work, 'resolv.conf'), 'nameserver 127.0.0.131\n');
    config.pvdSources!.resolvConf = join(work, 'resolv.conf');
    writeFileSync(configPath, stringify(config));
    // A PvD file in the image's pvd.d, as a mounted folder would bring one.
    writeFileSync(join(config.pvdSources!.directory as string, 'lan.json'), JSON.stringify({ identifier: 'lan', dnsServers: [upstream.address], default: true, priority: 10 }));

    // ENTRYPOINT + CMD, their absolute paths inside the image mapped to the stage's folder.
    const argv = [...final.entrypoint, ...final.cmd].map((x) => (x.startsWith('/') ? final.path(x) : x));
    const [cmd, ...rest] = argv;
    child = spawn(cmd === 'node' ? process.execPath : cmd!, rest, { cwd: final.path('.'), env: { ...process.env, ...final.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    const deadline = Date.now() + 15_000;
    while (!logs.includes('"pvdns started"')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the image's command did not start:\n${logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 600_000);

  afterAll(async () => {
    child?.kill('SIGTERM');
    await upstream.stop();
    if (process.env.PVDNS_INTEROP_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  });

  it('replays every step but the image-only ones, with a production-only install in the run stage', () => {
    expect(replayed).toContain('RUN npm ci --no-audit --no-fund');
    expect(replayed).toContain('RUN npm prune --omit=dev --no-audit --no-fund');
    const modules = final.path('node_modules');
    expect(existsSync(join(modules, 'pino'))).toBe(true);
    for (const dev of ['typescript', 'vitest', 'dns2']) expect(existsSync(join(modules, dev)), dev).toBe(false);
    expect(existsSync(final.path('dist/cli.js'))).toBe(true);
    expect(existsSync(final.path('build/Release/pvdns_udp.node'))).toBe(true);
  });

  it("passes the image's HEALTHCHECK (GET /healthz)", () => {
    const [cmd, ...rest] = final.healthcheck.map((x) => x.replace('127.0.0.1:8053', `${HOST}:${httpPort}`));
    expect(() => execFileSync(cmd === 'node' ? process.execPath : cmd!, rest, { timeout: 10_000 })).not.toThrow();
  });

  it('answers DNS: a local name itself, and a name through a PvD from its pvd.d folder', async () => {
    const server = { host: HOST, port: dnsPort };
    expect((await ask(server, 'localhost', 'A')).packet.answers.map((x) => x.address)).toEqual(['127.0.0.1']);
    expect((await ask(server, 'www.example.org', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.130']);
  });

  it('serves /metrics in the Prometheus text format', async () => {
    const r = await fetch(`http://${HOST}:${httpPort}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    expect(text).toMatch(/^pvdns_queries_total\{pvd="lan",qtype="A",transport="udp"\} 1$/m);
    expect(text).toMatch(/^# TYPE process_cpu_seconds_total counter$/m);
  });
});
