// The CLI as complete as resolvectl (issue 18): `pvdns flush`, `announce`,
// `withdraw` and `reload` with the API token, `query`'s exit codes and
// reverse lookups, `status`'s lastError, captive state and default route,
// and the command line itself (bare pvdns, help, unknown options, the
// process title). Run as a user runs it (node dist/cli.js, built by
// pretest) against a pvdns in this process, so spawned asynchronously
// (spawnSync would block the pvdns it talks to), or against `pvdns serve`
// where a configuration file is the point (reload).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_TOKEN_FILE, defaultRouting, reverseName } from '../../src/http/client.js';
import type { PvdView } from '../../src/pvd/view.js';
import { a, answer, FakeUpstream, Packet, soa } from '../helpers/fake-upstream.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

const CLI = join(import.meta.dirname, '../../dist/cli.js');
const dir = mkdtempSync(join(tmpdir(), `pvdns-cli-control-${process.pid}-`));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** cli runs pvdns with `args`; `env` replaces the token variables (none unless given). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  for (const k of ['PVDNS_TOKEN', 'PVDNS_TOKEN_FILE', 'PVDNS_API']) delete base[k];
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000, env: { ...base, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Answers A with 192.0.2.<octet>; NXDOMAIN under nx.; NODATA for TXT; PTR with host-<octet>.example. */
function upstream(octet: number): FakeUpstream {
  return new FakeUpstream((q) => {
    const question = q.questions[0]!;
    if (question.name.startsWith('nx.') || question.name.includes('.nx.')) return answer(q, [], { rcode: 3, authorities: [soa('example.org', 60, 60)] });
    if (question.type === Packet.TYPE.TXT) return answer(q, [], { authorities: [soa('example.org', 60, 60)] });
    if (question.type === Packet.TYPE.PTR) return answer(q, [{ name: question.name, type: Packet.TYPE.PTR, class: 1, ttl: 60, domain: `host-${octet}.example` } as never]);
    return answer(q, [a(q, `192.0.2.${octet}`, 300)]);
  });
}

describe('pvdns flush, announce, withdraw, query and status against a running pvdns', () => {
  const wifi = upstream(41);
  const corp = upstream(42);
  const vpn = upstream(43);
  let pvdns: Running;
  let server: string;
  const token = { PVDNS_TOKEN: TEST_TOKEN };

  beforeAll(async () => {
    await wifi.start('127.0.41.11');
    await corp.start('127.0.41.12');
    await vpn.start('127.0.41.13');
    pvdns = await startPvdns(
      {
        http: { listen: '127.0.41.10:0', token: TEST_TOKEN },
        pvds: [
          { identifier: 'corp.example.com', dnsServers: [corp.address], dnsZones: ['corp.example.com'], prefixes: ['10.8.0.0/16', 'fd00:8::/32'], noInternet: true },
          { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10 },
          // Nothing listens on port 9 there: refused at once, so the server is down after one query.
          { identifier: 'backup', dnsServers: ['127.0.41.14:9'], default: true, priority: 20 },
        ],
      },
      { host: '127.0.41.10' },
    );
    server = pvdns.http;
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), corp.stop(), vpn.stop()]);
  });
  beforeEach(() => {
    for (const u of [wifi, corp, vpn]) u.seen.length = 0;
  });

  describe('flush', () => {
    it('empties one PvD\'s cache with --pvd, every cache without, and the next query asks again', async () => {
      expect((await cli(['query', 'cached.example.org', '--server', server])).code).toBe(0);
      expect((await cli(['query', 'cached.corp.example.com', '--server', server])).code).toBe(0);
      expect((await cli(['query', 'cached.example.org', '--server', server])).stdout).toMatch(/, cached\n/);

      const one = await cli(['flush', '--pvd', 'wifi', '--server', server], token);
      expect(one).toEqual({ code: 0, stdout: 'flushed 1 cached answer of pvd wifi\n', stderr: '' });
      const again = await cli(['query', 'cached.example.org', '--server', server]);
      expect(again.stdout).not.toMatch(/cached\n/);
      expect(wifi.names()).toEqual(['cached.example.org', 'cached.example.org']);
      // corp's answer stayed.
      expect((await cli(['query', 'cached.corp.example.com', '--server', server])).stdout).toMatch(/, cached\n/);

      const all = await cli(['flush', '--server', server, '--json'], token);
      expect(all.code).toBe(0);
      expect(JSON.parse(all.stdout)).toEqual({ flushed: 2, pvd: null });
      expect((await cli(['query', 'cached.corp.example.com', '--server', server])).stdout).not.toMatch(/cached\n/);
    });

    it('takes the token from --token-file, PVDNS_TOKEN_FILE or --config', async () => {
      const tf = file('token', `${TEST_TOKEN}\n`);
      expect(await cli(['flush', '--token-file', tf, '--server', server])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^flushed \d+ cached answers? of every PvD\n$/) });
      expect((await cli(['flush', '--server', server], { PVDNS_TOKEN_FILE: tf })).code).toBe(0);
      // --config gives both the token and, without --server, the address (http.listen).
      const [host, port] = [new URL(server).hostname, new URL(server).port];
      const cfg = file('api.yaml', `http: { listen: "${host}:${port}", token: "${TEST_TOKEN}" }\npvdSources: { host: false }\n`);
      expect((await cli(['flush', '--config', cfg])).code).toBe(0);
      const cfgFile = file('api-file.yaml', `http: { listen: "${host}:${port}", tokenFile: "${tf}" }\npvdSources: { host: false }\n`);
      expect((await cli(['flush', '-c', cfgFile])).code).toBe(0);
    });

    it('explains a refused or missing token in one line and exits 1', async () => {
      const wrong = await cli(['flush', '--server', server], { PVDNS_TOKEN: 'not-the-token-0123456789' });
      expect(wrong).toEqual({
        code: 1,
        stdout: '',
        stderr: 'pvdns: pvdns refused the API token from PVDNS_TOKEN (401): it is not the token of its http.token or http.tokenFile (a restart writes a new token file)\n',
      });
      if (!existsSync(DEFAULT_TOKEN_FILE)) {
        const none = await cli(['flush', '--server', server]);
        expect(none.code).toBe(1);
        expect(none.stderr).toBe(
          `pvdns: pvdns needs its API token for this and none was found: give --token-file FILE, PVDNS_TOKEN, PVDNS_TOKEN_FILE, --config FILE (its http.token or http.tokenFile) or ${DEFAULT_TOKEN_FILE}\n`,
        );
      }
      const missing = await cli(['flush', '--server', server, '--token-file', join(dir, 'nosuch')]);
      expect(missing).toMatchObject({ code: 1, stderr: `pvdns: cannot read the API token from ${join(dir, 'nosuch')}: ENOENT (pvdns writes its http.tokenFile at start: is it running?)\n` });
      const unknown = await cli(['flush', '--pvd', 'nosuch', '--server', server], token);
      expect(unknown).toMatchObject({ code: 1, stderr: 'pvdns: no PvD "nosuch" (pvdns status lists them)\n' });
    });

    it('says a pvdns with no token takes no changes (403)', async () => {
      const closed = await startPvdns({ http: { listen: '127.0.41.15:0' }, pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }] }, { host: '127.0.41.15' });
      try {
        const r = await cli(['flush', '--server', closed.http], token);
        expect(r).toEqual({ code: 1, stdout: '', stderr: 'pvdns: pvdns refused the change (403): this pvdns takes no changes through its API: set http.token or http.tokenFile\n' });
      } finally {
        await closed.stop();
      }
    });
  });

  describe('announce and withdraw', () => {
    it('announces a PvD file, whose zone then goes to its server; again: unchanged; edited: updated', async () => {
      const f = file('vpn.json', JSON.stringify({ identifier: 'vpn.example', dnsServers: [vpn.address], dnsZones: ['vpn.example'], noInternet: true }, null, 2));
      expect(await cli(['announce', f, '--server', server], token)).toEqual({ code: 0, stdout: 'announced vpn.example\n', stderr: '' });
      const q = await cli(['query', 'git.vpn.example', '--server', server]);
      expect(q.stdout.split('\n')[0]).toBe(`git.vpn.example A: NOERROR from pvd vpn.example (server ${vpn.address})`);
      expect(vpn.names()).toEqual(['git.vpn.example']);
      expect((await cli(['announce', f, '--server', server], token)).stdout).toBe('unchanged vpn.example\n');
      file('vpn.json', JSON.stringify({ identifier: 'vpn.example', dnsServers: [vpn.address], dnsZones: ['vpn.example', 'other.example'], noInternet: true }));
      expect((await cli(['announce', f, '--server', server], token)).stdout).toBe('updated vpn.example\n');
      const view = (await (await fetch(`${server}/v1/pvds/vpn.example`)).json()) as PvdView;
      expect(view.dnsZones).toEqual(['vpn.example', 'other.example']);

      expect(await cli(['withdraw', 'vpn.example', '--server', server], token)).toEqual({ code: 0, stdout: 'withdrew vpn.example\n', stderr: '' });
      expect((await fetch(`${server}/v1/pvds/vpn.example`)).status).toBe(404);
      expect(await cli(['withdraw', 'vpn.example', '--server', server], token)).toEqual({ code: 1, stdout: '', stderr: 'pvdns: no PvD "vpn.example" (pvdns status lists them)\n' });
    });

    it('lists the keys pvdns ignored in an RFC 8801 object', async () => {
      const f = file('ra.json', JSON.stringify({ identifier: 'ra.example', expires: '2099-01-01T00:00:00Z', prefixes: ['2001:db8:41::/48'], dnsServers: [vpn.address], 'vendor-x': { a: 1 }, colour: 'blue' }));
      const r = await cli(['announce', f, '--server', server], token);
      expect(r).toEqual({ code: 0, stdout: 'announced ra.example\n  ignored keys: vendor-x, colour (unknown to pvdns, RFC 8801 §4.3)\n', stderr: '' });
      expect((await cli(['withdraw', 'ra.example', '--server', server], token)).code).toBe(0);
    });

    it('refuses a bad PvD file with its FILE:LINE: key: problem before asking pvdns', async () => {
      const f = file('bad.json', '{\n  "identifier": "bad.example",\n  "dnsServers": ["nonsense"]\n}\n');
      const r = await cli(['announce', f, '--server', server], token);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(new RegExp(`^pvdns: ${f}:3: dnsServers\\[0\\]: .+\n$`));
      expect((await fetch(`${server}/v1/pvds/bad.example`)).status).toBe(404);
    });

    it('says a PvD of the configuration is changed and removed there (409)', async () => {
      const f = file('wifi.json', JSON.stringify({ identifier: 'wifi', dnsServers: [vpn.address] }));
      expect(await cli(['announce', f, '--server', server], token)).toEqual({ code: 1, stdout: '', stderr: 'pvdns: PvD "wifi" comes from config; change it there (409)\n' });
      expect(await cli(['withdraw', 'WIFI', '--server', server], token)).toEqual({
        code: 1,
        stdout: '',
        stderr: 'pvdns: PvD "wifi" comes from config; remove it there (only PvDs announced through the API are withdrawn with pvdns withdraw)\n',
      });
      expect((await fetch(`${server}/v1/pvds/wifi`)).status).toBe(200);
    });
  });

  describe('query', () => {
    it('exits 0 on an answer, 3 on NXDOMAIN, 4 on no record of the type, 5 on SERVFAIL', async () => {
      expect((await cli(['query', 'www.example.org', '--server', server])).code).toBe(0);
      const nx = await cli(['query', 'nx.example.org', '--server', server]);
      expect(nx).toMatchObject({ code: 3, stderr: '' });
      expect(nx.stdout.split('\n')[0]).toBe(`nx.example.org A: NXDOMAIN from pvd wifi (server ${wifi.address})`);
      const nodata = await cli(['query', 'www.example.org', 'TXT', '--server', server]);
      expect(nodata).toEqual({ code: 4, stdout: `www.example.org TXT: NOERROR from pvd wifi (server ${wifi.address})\n  no TXT record\n`, stderr: '' });
      const fail = await cli(['query', 'www.example.org', '--pvd', 'backup', '--server', server]);
      expect(fail.code).toBe(5);
      expect(fail.stdout).toMatch(/^www\.example\.org A: SERVFAIL from pvd backup\n {2}extended error \d+: /);
      // --json: the same exit codes.
      expect((await cli(['query', 'nx.example.org', '--json', '--server', server])).code).toBe(3);
    });

    it('looks an address up by its reverse name, routed to the PvD whose prefix holds it', async () => {
      const v4 = await cli(['query', '10.8.1.1', '--server', server]);
      expect(v4).toEqual({ code: 0, stdout: `1.1.8.10.in-addr.arpa PTR: NOERROR from pvd corp.example.com (server ${corp.address})\n  1.1.8.10.in-addr.arpa.\t60\tPTR\thost-42.example.\n`, stderr: '' });
      const v6 = await cli(['query', 'fd00:8::1', 'PTR', '--server', server]);
      const name = `1.0.0.0.${'0.0.0.0.'.repeat(5)}8.0.0.0.0.0.d.f.ip6.arpa`;
      expect(v6.code).toBe(0);
      expect(v6.stdout.split('\n')[0]).toBe(`${name} PTR: NOERROR from pvd corp.example.com (server ${corp.address})`);
      expect(corp.seen.map((s) => [s.name, s.type])).toEqual([
        ['1.1.8.10.in-addr.arpa', Packet.TYPE.PTR],
        [name, Packet.TYPE.PTR],
      ]);
      expect(wifi.seen).toHaveLength(0);
      // Another type: the address is asked as a name, as written.
      expect((await cli(['query', '10.8.1.1', 'A', '--server', server])).stdout.split('\n')[0]).toMatch(/^10\.8\.1\.1 A: /);
    });

    it('reverseName: in-addr.arpa, ip6.arpa, a zone index dropped, null for a name', () => {
      expect(reverseName('192.0.2.1')).toBe('1.2.0.192.in-addr.arpa');
      expect(reverseName('2001:db8::1')).toBe(`1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
      expect(reverseName('fe80::1%eth0')).toBe(`1.${'0.'.repeat(28)}8.e.f.ip6.arpa`);
      expect(reverseName('www.example.org')).toBeNull();
    });
  });

  describe('status', () => {
    it('shows a down server\'s lastError, the captive state and the default route with what it skips and why', async () => {
      // backup's server refuses: down after one query.
      await cli(['query', 'x.example.org', '--pvd', 'backup', '--server', server]);
      const r = await cli(['status', '--server', server]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.split('\n');
      expect(lines[0]).toBe('default route: wifi; skipped: corp.example.com (noInternet), backup (servers down)');
      expect(lines[1]).toBe('');
      expect(lines).toContain('  captive:  unknown (not probed yet)');
      expect(lines.find((l) => l.includes('127.0.41.14:9'))).toMatch(/^ {2}server 127\.0\.41\.14:9\s+down\s+\(.*refused.*\)$/);
    });

    it('defaultRouting: by priority; a captive or down PvD passed over only while another can serve', () => {
      const server = (state: string): PvdView['servers'][number] => ({ address: '192.0.2.1:53', state }) as PvdView['servers'][number];
      const pvd = (identifier: string, priority: number, more: Partial<PvdView> = {}): PvdView =>
        ({ identifier, default: true, noInternet: false, priority, captive: false, servers: [server('operational')], ...more }) as PvdView;
      expect(defaultRouting([pvd('b', 20), pvd('a', 10), pvd('c', 20)])).toBe('default route: a → b → c');
      expect(defaultRouting([pvd('hotel', 1, { captive: true }), pvd('lte', 50)])).toBe('default route: lte; skipped: hotel (captive)');
      expect(defaultRouting([pvd('hotel', 1, { captive: true }), pvd('lte', 50, { servers: [server('down')] })])).toBe(
        'default route: hotel → lte (hotel captive, lte servers down: asked anyway, no other default PvD can serve)',
      );
      expect(defaultRouting([pvd('vpn', 1, { noInternet: true, default: false }), pvd('bare', 1, { servers: [] }), pvd('x', 1, { default: false })])).toBe(
        'default route: none (names no PvD claims get SERVFAIL); skipped: vpn (noInternet), bare (no DNS servers)',
      );
    });
  });

  describe('POST /v1/reload', () => {
    it('needs the token, and a pvdns started without a file has nothing to reload (409)', async () => {
      expect((await fetch(`${server}/v1/reload`, { method: 'POST' })).status).toBe(401);
      const r = await fetch(`${server}/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(r.status).toBe(409);
      expect(await r.json()).toEqual({ error: 'this pvdns was started without a configuration file: there is nothing to reload' });
      expect((await fetch(`${server}/v1/reload`)).status).toBe(405);
      expect(await cli(['reload', '--server', server], token)).toEqual({
        code: 1,
        stdout: '',
        stderr: 'pvdns: this pvdns was started without a configuration file: there is nothing to reload (409)\n',
      });
    });
  });
});

describe('pvdns reload and the process title, with pvdns serve', () => {
  const up = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.44')]));
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  const host = '127.0.41.20';
  let child: ChildProcess;
  let out = '';
  const config = (lines: string[]): string =>
    file('serve.yaml', [`listen: ["${host}:${port}"]`, `http: { listen: "${host}:${port + 1}", token: "${TEST_TOKEN}" }`, 'pvdSources: { host: false }', 'captive: { probeIntervalS: 0 }', ...lines, ''].join('\n'));
  const lan = (): string[] => ['pvds:', '  - identifier: lan', `    dnsServers: ["${up.address}"]`, '    dns64: "off"', '    default: true'];
  let cfg = '';
  /** The audit lines of POST /v1/reload in pvdns's log. */
  const reloadLines = (): string[] => out.split('\n').filter((l) => l.includes('"path":"/v1/reload"'));

  beforeAll(async () => {
    await up.start('127.0.41.21');
    cfg = config(lan());
    child = spawn(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 200 && !out.includes('pvdns started'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('pvdns started');
  });
  afterAll(async () => {
    child.kill('SIGKILL');
    await up.stop();
  });

  it('is called pvdns in ps and /proc (comm and command line)', () => {
    expect(readFileSync(`/proc/${child.pid}/comm`, 'utf8')).toBe('pvdns\n');
    expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').replace(/[\0 ]+$/, '')).toBe('pvdns');
  });

  it('reloads the file pvdns was started with and says what changed', async () => {
    // The token and the address from the configuration file itself.
    expect(await cli(['reload', '--config', cfg])).toEqual({ code: 0, stdout: `reloaded ${cfg}\n  nothing changed\n`, stderr: '' });
    config([...lan(), '    priority: 5', '  - identifier: lab', `    dnsServers: ["${up.address}"]`, '    dnsZones: [lab.example]', 'cache: { maxEntries: 5000 }']);
    const r = await cli(['reload', '--config', cfg]);
    expect(r).toEqual({ code: 0, stdout: `reloaded ${cfg}\n  settings changed: cache\n  pvds added:       lab\n  pvds changed:     lan\n`, stderr: '' });
    const json = await cli(['reload', '--config', cfg, '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ config: cfg, settings: [], pvds: { added: [], removed: [], changed: [] } });
    expect(out).toMatch(/"msg":"configuration reloaded"/);
    // Each API reload is a change with its audit line: who, with the token, and what changed.
    // Logged once the answer is sent: waited for.
    for (let i = 0; i < 100 && reloadLines().length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    const audit = reloadLines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toHaveLength(3);
    expect(audit[1]).toMatchObject({ audit: true, msg: 'api change', auth: 'token', method: 'POST', status: 200, config: cfg, settings: ['cache'], pvds: { added: ['lab'], removed: [], changed: ['lan'] } });
  });

  it('refuses a bad file with its first problem, exits 1, and pvdns keeps serving', async () => {
    config([...lan(), 'cache: { maxTtl: long }', 'access: { allow: [] }']);
    const r = await cli(['reload', '--server', `http://${host}:${port + 1}`], { PVDNS_TOKEN: TEST_TOKEN });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^pvdns: reload refused, pvdns keeps its running configuration: ${cfg}:\\d+: cache\\.maxTtl: [^\\n]+ \\(and 1 more: pvdns check-config FILE lists them\\)\\n$`));
    for (let i = 0; i < 100 && reloadLines().length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    const refused = reloadLines().at(-1)!;
    expect(JSON.parse(refused)).toMatchObject({ status: 422, error: expect.stringMatching(/cache\.maxTtl/) });
    const q = await cli(['query', 'lab.lab.example', '--server', `http://${host}:${port + 1}`]);
    expect(q.code).toBe(0);
    expect(q.stdout.split('\n')[0]).toMatch(/from pvd lab /);
  });
});

describe('the command line', () => {
  it('bare pvdns prints usage on stderr and exits 2; help and --help print it on stdout', async () => {
    const bare = await cli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/^pvdns: a command is needed \(pvdns serve runs the resolver\)\n\npvdns — /);
    const help = await cli(['help']);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toBe((await cli(['--help'])).stdout);
    for (const c of ['serve', 'check-config', 'status', 'query', 'monitor', 'flush', 'reload', 'announce', 'withdraw', 'help']) expect(help.stdout).toContain(`  pvdns ${c}`);
    // Every line fits a terminal of 100 columns.
    expect(help.stdout.split('\n').filter((l) => l.length > 100)).toEqual([]);
  });

  it('pvdns help COMMAND and COMMAND --help say what it does and its options', async () => {
    const h = await cli(['help', 'flush']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: pvdns flush \[--pvd ID\]\n/);
    expect(h.stdout).toContain('--token-file FILE');
    expect((await cli(['flush', '--help'])).stdout).toBe(h.stdout);
    // monitor finds its token as the changes do, and has its own options besides.
    const m = await cli(['help', 'monitor']);
    expect(m.stdout).toMatch(/^Usage: pvdns monitor \[--sample R\] \[--rate N\]\n/);
    for (const o of ['--sample R', '--rate N', '--server URL', '--json', '--token-file FILE', '--config FILE']) expect(m.stdout).toContain(`  ${o} `);
    expect(await cli(['help', 'frobnicate'])).toMatchObject({ code: 2, stdout: '', stderr: expect.stringMatching(/^pvdns: unknown command "frobnicate"\n/) });
  });

  it('an option a command does not take is a usage error naming it, for every command', async () => {
    const cases: Array<[string[], string]> = [
      [['serve', '--pvd', 'x'], 'serve: unknown option --pvd'],
      [['check-config', '--json', 'f.yaml'], 'check-config: unknown option --json'],
      [['status', '--token-file', 'x'], 'status: unknown option --token-file'],
      [['query', 'a.example', '--strict'], 'query: unknown option --strict'],
      [['flush', '--frobnicate'], 'flush: unknown option --frobnicate'],
      [['reload', '--pvd', 'x'], 'reload: unknown option --pvd'],
      [['announce', 'f.json', '-x'], 'announce: unknown option -x'],
      [['withdraw', 'id', '--strict'], 'withdraw: unknown option --strict'],
      [['help', '--json'], 'help: unknown option --json'],
      [['--config', 'f.yaml', 'serve'], 'the command comes first: pvdns COMMAND [OPTIONS] (got --config)'],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr.split('\n')[0], args.join(' ')).toBe(`pvdns: ${message}`);
    }
  });

  it('the commands that change pvdns say what they need', async () => {
    expect((await cli(['announce'])).stderr.split('\n')[0]).toBe('pvdns: usage: pvdns announce FILE (one PvD file, JSON as in pvdSources.directory)');
    expect((await cli(['withdraw'])).stderr.split('\n')[0]).toBe('pvdns: usage: pvdns withdraw ID');
    expect((await cli(['reload', 'x.yaml'])).stderr.split('\n')[0]).toBe('pvdns: reload takes no arguments (got x.yaml): pvdns reads the file it was started with');
  });
});
