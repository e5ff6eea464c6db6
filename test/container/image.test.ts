// The Docker image without a Docker engine: docker/Dockerfile's steps
// replayed in a fresh temporary directory — the same COPY and RUN steps, in
// order, stage by stage, each stage's filesystem a folder of its own — then
// the image's ENTRYPOINT and CMD started with the image's configuration, and
// checked as a user would: the HEALTHCHECK command, a DNS answer, /metrics,
// and the API token pvdns writes at start, without which nothing changes.
//
// What this cannot prove, and needs a Docker engine for: the steps marked
// "image-only" (base-system packages, the token's folder owned by the node
// user), the base image itself, the non-root USER and the published ports.
// Substitutions, all on loopback: the image's listen addresses become
// 127.0.0.x ports that are free, the "system" PvD reads a resolv.conf of
// ours, a PvD file in the image's pvd.d names a fake server, and the token's
// folder is made in the stage's folder as the image-only step makes it (mode
// 0700; its owner is whoever runs the test). An instruction the replay does
// not know fails the test.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
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
  /** The image-only RUN steps, not replayed. */
  readonly imageOnly: string[] = [];
  user = 'root';
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
  /** http.tokenFile as the image's configuration has it, and where it is in the replay. */
  let tokenFile = '';
  let tokenPath = '';

  beforeAll(async () => {
    const steps = parseDockerfile(readFileSync(join(REPO, 'docker', 'Dockerfile'), 'utf8'));
    // What a real build leaves out of the context: a COPY of it would fail there.
    const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const stages: Stage[] = [];
    const byName = new Map<string, Stage>();
    const args: Record<string, string> = {};
    let stage: Stage | null = null;
    for (const s of steps) {
      const expand = (v: string): string => v.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? stage?.env[k] ?? '');
      if (s.op === 'ARG') {
        const [k, v = ''] = s.args.split('=');
        args[k!] ??= v;
        continue;
      }
      if (s.op === 'FROM') {
        stage = new Stage(`stage${stages.length}`, join(work, `stage${stages.length}`));
        stages.push(stage);
        const as = / AS (\S+)$/i.exec(s.args)?.[1];
        if (as) byName.set(as.toLowerCase(), stage);
        continue;
      }
      if (stage === null) throw new Error(`${s.op} before FROM`);
      switch (s.op) {
        case 'WORKDIR':
          stage.cwd = expand(s.args);
          mkdirSync(stage.path('.'), { recursive: true });
          break;
        case 'ENV':
          for (const m of s.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) stage.env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
          break;
        case 'COPY': {
          const parts = s.args.split(/\s+/);
          let from: Stage | null = null;
          if (parts[0]!.startsWith('--from=')) {
            const ref = parts.shift()!.slice(7);
            from = byName.get(ref.toLowerCase()) ?? stages[Number(ref)] ?? null;
            if (from === null) throw new Error(`COPY --from=${ref}: no such stage`);
          }
          const dest = parts.pop()!;
          for (const src of parts) {
            if (!from && ignored.some((i) => src === i || src.startsWith(`${i}/`))) throw new Error(`COPY ${src}: .dockerignore leaves it out of the context`);
            const source = from ? from.path(src) : join(REPO, src);
            // A directory's contents go to dest; a file goes to dest, or into it when dest is a folder.
            const intoFolder = !statSync(source).isDirectory() && (dest.endsWith('/') || parts.length > 1);
            const target = intoFolder ? join(stage.path(dest), basename(src)) : stage.path(dest);
            mkdirSync(dirname(target), { recursive: true });
            cpSync(source, target, { recursive: true });
          }
          replayed.push(`COPY ${s.args}`);
          break;
        }
        case 'RUN':
          if (s.imageOnly) {
            stage.imageOnly.push(s.args);
            break;
          }
          execFileSync('sh', ['-c', s.args], { cwd: stage.path('.'), env: { ...process.env, ...stage.env }, stdio: 'pipe', timeout: 300_000 });
          replayed.push(`RUN ${s.args}`);
          break;
        case 'ENTRYPOINT':
          stage.entrypoint = JSON.parse(s.args) as string[];
          break;
        case 'CMD':
          stage.cmd = JSON.parse(s.args) as string[];
          break;
        case 'HEALTHCHECK':
          stage.healthcheck = JSON.parse(s.args.slice(s.args.indexOf('CMD ') + 4)) as string[];
          break;
        case 'USER':
          stage.user = s.args.trim();
          break;
        case 'LABEL':
        case 'EXPOSE':
          break; // metadata for the engine: shown in the image, nothing to replay
        default:
          throw new Error(`the replay does not know ${s.op}: teach it, or the image and this test part ways`);
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
    // The token's folder, as the image-only step makes it (checked below), inside the stage.
    tokenFile = config.http!.tokenFile as string;
    tokenPath = final.path(tokenFile);
    mkdirSync(dirname(tokenPath), { recursive: true });
    chmodSync(dirname(tokenPath), 0o700);
    config.http!.tokenFile = tokenPath;
    writeFileSync(configPath, stringify(config));
    // A PvD file in the image's pvd.d, as a mounted folder would bring one.
    writeFileSync(join(config.pvdSources!.directory as string, 'lan.json'), JSON.stringify({ identifier: 'lan', dnsServers: [upstream.address], default: true, priority: 10 }));

    // ENTRYPOINT + CMD, their absolute paths inside the image mapped to the stage's folder.
    const argv = [...final.entrypoint, ...final.cmd].map((x) => (x.startsWith('/') ? final.path(x) : x));
    const [cmd, ...rest] = argv;
    // A PATH without resolvectl and nmcli: the host PvDs come from the resolv.conf above on any machine.
    const bin = join(work, 'bin');
    mkdirSync(bin);
    const env = { ...process.env, ...final.env, PATH: `${dirname(process.execPath)}:${bin}` };
    child = spawn(cmd === 'node' ? process.execPath : cmd!, rest, { cwd: final.path('.'), env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    expect(readFileSync(final.path('LICENSE'), 'utf8')).toMatch(/^MIT License/);
  });

  it("makes the API token's folder for the node user alone (image-only: it needs the image's user)", () => {
    expect(tokenFile).toBe('/run/pvdns/token');
    expect(final.imageOnly).toContain(`install -d -o node -g node -m 0700 ${dirname(tokenFile)}`);
    expect(final.user).toBe('node');
  });

  it('writes a fresh API token at start (mode 0600) and takes no change without it', async () => {
    expect(statSync(tokenPath).mode & 0o777).toBe(0o600);
    // What `docker exec pvdns cat /run/pvdns/token` shows the admin.
    const token = readFileSync(tokenPath, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(16);
    const base = `http://${HOST}:${httpPort}`;
    const body = JSON.stringify({ dnsServers: [upstream.address], dnsZones: ['corp.example'], noInternet: true });
    const headers = { 'content-type': 'application/json' };
    // Loopback, a client the image serves: still refused without the token (401 or 403, both "no").
    const without = await fetch(`${base}/v1/pvds/corp.example`, { method: 'PUT', headers, body });
    expect([401, 403]).toContain(without.status);
    expect([401, 403]).toContain((await fetch(`${base}/v1/cache/flush`, { method: 'POST' })).status);
    const withToken = await fetch(`${base}/v1/pvds/corp.example`, { method: 'PUT', headers: { ...headers, authorization: `Bearer ${token}` }, body });
    expect(withToken.status).toBe(201);
    const del = await fetch(`${base}/v1/pvds/corp.example`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(200);
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
