// GET /v1/monitor, the live query stream (src/http/monitor.ts), against a
// real pvdns on 127.0.44.x: each record carries what happened to its query
// (client, name, type, route and why, cache verdict, server, rcode and EDE,
// time), the stream is refused without the token, a subscriber over its
// rate is told what it lost, and one that never reads is cut off without
// pvdns's memory growing.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TOKEN_FILE } from '../../src/http/client.js';
import { STALL_MS, type MonitorRecord } from '../../src/http/monitor.js';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream, Packet } from '../helpers/fake-upstream.js';
import { call, EventStream, eventually, ISO, metricSum, resolve, type SseEvent } from '../helpers/http.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

const HOST = '127.0.44.2';
const CLIENT = '127.0.44.3';
const auth = { authorization: `Bearer ${TEST_TOKEN}` };

/** An upstream answering A 192.0.2.<octet>, and SERVFAIL to names starting with one of `failing`. */
function upstream(octet: number, failing: string[] = []): FakeUpstream {
  return new FakeUpstream((q) => {
    const name = q.questions[0]!.name;
    if (failing.some((f) => name.startsWith(f))) return answer(q, [], { rcode: 2 });
    return answer(q, [a(q, `192.0.2.${octet}`, 300)]);
  });
}

/** nextQuery returns the next `query` record of a monitor stream. */
async function nextQuery(s: EventStream): Promise<MonitorRecord> {
  for (;;) {
    const e = await s.next();
    if (e.event === 'query') return e.data as MonitorRecord;
  }
}

describe('GET /v1/monitor', () => {
  const first = upstream(11, ['flaky.', 'broken.']);
  const wifi = upstream(10, ['broken.']);
  const corp = upstream(12);
  let pvdns: Running;

  beforeAll(async () => {
    await first.start('127.0.44.11');
    await wifi.start('127.0.44.10');
    await corp.start('127.0.44.12');
    pvdns = await startPvdns(
      {
        http: { listen: `${HOST}:0`, token: TEST_TOKEN },
        pvds: [
          { identifier: 'first', dnsServers: [first.address], default: true, priority: 10 },
          { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 20 },
          { identifier: 'corp', dnsServers: [corp.address], dnsZones: ['corp.example'], noInternet: true },
        ],
      },
      { host: HOST },
    );
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([first.stop(), wifi.stop(), corp.stop()]);
  });

  it('streams each query with its client, route, cache verdict, server, rcode and time', async () => {
    const s = await EventStream.open(pvdns.http, auth, '/v1/monitor');
    expect(s.response.status).toBe(200);
    expect(s.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await s.next()).toMatchObject({ event: 'monitor', data: { sample: 1, rate: 1000 } });

    // A name a PvD claims: its zone, that PvD, asked upstream.
    await ask(pvdns.dns, 'www.corp.example', 'A', { from: CLIENT });
    const routed = await nextQuery(s);
    expect(routed).toMatchObject({
      client: CLIENT,
      transport: 'udp',
      name: 'www.corp.example',
      type: 'A',
      route: { kind: 'zone', zone: 'corp.example', order: ['corp'], skipped: [] },
      pvd: 'corp',
      cache: 'miss',
      server: corp.address,
      rcode: 'NOERROR',
      ede: null,
    });
    expect(routed.time).toMatch(ISO);
    expect(Math.abs(Date.parse(routed.time) - Date.now())).toBeLessThan(5000);
    expect(routed.ms).toBeGreaterThan(0);

    // The same again: from the cache, no server.
    await ask(pvdns.dns, 'www.corp.example', 'A', { from: CLIENT });
    expect(await nextQuery(s)).toMatchObject({ name: 'www.corp.example', pvd: 'corp', cache: 'hit', server: null, rcode: 'NOERROR' });

    // Nobody claims it: the default order, the first PvD failed over.
    await ask(pvdns.dns, 'flaky.example.net', 'AAAA', { from: CLIENT, tcp: true });
    expect(await nextQuery(s)).toMatchObject({
      transport: 'tcp',
      name: 'flaky.example.net',
      type: 'AAAA',
      route: { kind: 'default', zone: null, order: ['first', 'wifi'], skipped: [{ pvd: 'first', why: 'servfail' }] },
      pvd: 'wifi',
      server: wifi.address,
      rcode: 'NOERROR',
    });

    // SERVFAIL everywhere: the rcode the upstream gave, and pvdns's extended error.
    await ask(pvdns.dns, 'broken.example.net', 'A', { from: CLIENT });
    const failed = await nextQuery(s);
    expect(failed).toMatchObject({ name: 'broken.example.net', rcode: 'SERVFAIL', upstreamRcode: 'SERVFAIL', pvd: 'wifi', route: { kind: 'default' } });

    // pvdns answers it itself.
    await ask(pvdns.dns, 'localhost', 'A', { from: CLIENT });
    expect(await nextQuery(s)).toMatchObject({ name: 'localhost', route: { kind: 'local', zone: 'localhost', local: 'localhost' }, pvd: null, cache: 'none', server: null, rcode: 'NOERROR' });

    // The API's Translate Name in a PvD the client chose.
    expect((await resolve(pvdns.http, 'name=host.example.org&pvd=wifi')).status).toBe(200);
    expect(await nextQuery(s)).toMatchObject({ transport: 'api', name: 'host.example.org', route: { kind: 'forced', order: ['wifi'] }, pvd: 'wifi', rcode: 'NOERROR' });

    // A class pvdns does not serve is refused before routing, with its EDE text.
    const chaos = await sendClass(pvdns.dns, 'version.bind', 3);
    expect(chaos).not.toBeNull();
    expect(await nextQuery(s)).toMatchObject({ name: 'version.bind', route: { kind: 'none' }, rcode: 'REFUSED', ede: { code: 21, text: 'only class IN is served' } });
    s.close();
    await eventually('the subscriber to be released', () => pvdns.app.monitor.subscribers === 0);
    expect(pvdns.app.monitor.active).toBe(false);
  });

  it('needs the token when one is configured, and says what is wrong with a request', async () => {
    const none = await call<{ error: string }>(pvdns.http, 'GET', '/v1/monitor');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="pvdns"');
    expect(none.body.error).toMatch(/Bearer/);
    expect((await call(pvdns.http, 'GET', '/v1/monitor', { token: 'wrong-token-0123456789' })).status).toBe(401);
    expect((await call(pvdns.http, 'POST', '/v1/monitor', { token: TEST_TOKEN })).status).toBe(405);
    const bad = await call<{ error: string }>(pvdns.http, 'GET', '/v1/monitor?sample=2', { token: TEST_TOKEN });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^sample must be/);
    expect((await call(pvdns.http, 'GET', '/v1/monitor?rate=0', { token: TEST_TOKEN })).status).toBe(400);
    // Nothing was attached by any of them.
    expect(pvdns.app.monitor.subscribers).toBe(0);
  });

  it('drops what is over a subscriber\'s rate and says how many, and samples', async () => {
    await ask(pvdns.dns, 'www.corp.example', 'A'); // cached
    const slow = await EventStream.open(pvdns.http, auth, '/v1/monitor?rate=5');
    const sampled = await EventStream.open(pvdns.http, auth, '/v1/monitor?sample=0.02&rate=100000');
    expect((await slow.next()).data).toEqual({ sample: 1, rate: 5 });
    expect((await sampled.next()).data).toEqual({ sample: 0.02, rate: 100000 });
    const n = 300;
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, () => ask(pvdns.dns, 'www.corp.example', 'A')));
    let records = 0;
    let dropped: SseEvent | null = null;
    while (dropped === null) {
      const e = await slow.next(3000);
      if (e.event === 'query') records++;
      else if (e.event === 'dropped') dropped = e;
    }
    // Half a token's burst at 5/s is 1, refilled at 5/s for the second or so the queries took.
    expect(records).toBeLessThan(20);
    expect(dropped.data).toMatchObject({ rate: 5 });
    expect((dropped.data as { dropped: number }).dropped).toBeGreaterThanOrEqual(n - records - 20);
    await eventually('the drops to be counted', async () => (await metricSum(pvdns.http, 'pvdns_monitor_records_dropped_total')) >= n - 40);
    // 2 % of 300: 6 on average; 30 or more has a probability below 1e-10.
    let seen = 0;
    try {
      for (;;) if ((await sampled.next(500)).event === 'query') seen++;
    } catch {
      // no more within half a second
    }
    expect(seen).toBeLessThan(30);
    expect(await metricSum(pvdns.http, 'pvdns_monitor_subscribers')).toBe(2);
    slow.close();
    sampled.close();
  });
});

/** sendClass sends a query of another class than IN over UDP and returns the reply's octets. */
async function sendClass(server: { host: string; port: number }, name: string, qclass: number): Promise<Buffer | null> {
  const p = new Packet();
  p.header.id = 4242;
  p.questions.push({ name, type: Packet.TYPE.TXT, class: qclass } as never);
  const { sendRaw } = await import('../helpers/client.js');
  return sendRaw(server, p.toBuffer(), { from: CLIENT });
}

describe('GET /v1/monitor without a token configured', () => {
  const wifi = upstream(10);
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.44.14');
    pvdns = await startPvdns({ http: { listen: `${HOST}:0` }, pvds: [{ identifier: 'wifi', dnsServers: [wifi.address], default: true }] }, { host: HOST });
  });
  afterAll(async () => {
    await pvdns.stop();
    await wifi.stop();
  });

  it('is open to loopback clients', async () => {
    const s = await EventStream.open(pvdns.http, {}, '/v1/monitor');
    expect(s.response.status).toBe(200);
    expect((await s.next()).event).toBe('monitor');
    await ask(pvdns.dns, 'a.example.net', 'A', { from: CLIENT });
    expect(await nextQuery(s)).toMatchObject({ name: 'a.example.net', route: { kind: 'default', order: ['wifi'], skipped: [] }, pvd: 'wifi' });
    s.close();
  });
});

describe('GET /v1/monitor and a default PvD that is down', () => {
  const wifi = upstream(10);
  let deadPort = 0;
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.44.15');
    // A port nothing listens on: the kernel answers each query with ICMP port unreachable.
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen({ host: '127.0.44.16', port: 0 }, () => r()));
    deadPort = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    pvdns = await startPvdns(
      {
        http: { listen: `${HOST}:0`, token: TEST_TOKEN },
        pvds: [
          { identifier: 'vpn', dnsServers: [`127.0.44.16:${deadPort}`], default: true, priority: 1 },
          { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 2 },
        ],
      },
      { host: HOST },
    );
  });
  afterAll(async () => {
    await pvdns.stop();
    await wifi.stop();
  });

  it('says a PvD was passed over because it is down', async () => {
    const s = await EventStream.open(pvdns.http, auth, '/v1/monitor');
    let last: MonitorRecord | null = null;
    await eventually(
      'a record with vpn passed over as down',
      async () => {
        await ask(pvdns.dns, `n${Date.now()}.example.net`, 'A', { from: CLIENT, timeoutMs: 4000 });
        last = await nextQuery(s);
        return last.route.skipped.some((k) => k.pvd === 'vpn' && k.why === 'down');
      },
      15_000,
      () => JSON.stringify(last),
    );
    expect(last).toMatchObject({ route: { kind: 'default', order: ['vpn', 'wifi'], skipped: [{ pvd: 'vpn', why: 'down' }] }, pvd: 'wifi', rcode: 'NOERROR' });
    s.close();
  }, 40_000);
});

// pvdns as it runs (node dist/cli.js serve, built by pretest) in its own process, so its memory is
// its own: a subscriber that never reads under a flood of queries, and the CLI.
describe('pvdns monitor, pvdns in its own process', () => {
  const CLI = join(import.meta.dirname, '../../dist/cli.js');
  // The integration tests run twice at once (vitest.config.ts: the dgram project): an address each.
  const dgram = process.env.PVDNS_UDP_BACKEND === 'dgram';
  const host = dgram ? '127.0.44.30' : '127.0.44.20';
  const api = `http://${host}:8320`;
  const up = upstream(20);
  const tmp = mkdtempSync(join(os.tmpdir(), `pvdns-monitor-${process.pid}-`));
  const config = join(tmp, 'pvdns.yaml');
  const tokenFile = join(tmp, 'token');
  let child: ChildProcess;

  beforeAll(async () => {
    await up.start(dgram ? '127.0.44.31' : '127.0.44.21');
    writeFileSync(tokenFile, `${TEST_TOKEN}\n`, { mode: 0o600 });
    writeFileSync(
      config,
      `listen: ["${host}:5320"]
http: { listen: "${host}:8320", token: ${TEST_TOKEN} }
log: { level: warn }
pvdSources: { host: false }
captive: { probeIntervalS: 0 }
pvds:
  - { identifier: wifi, dnsServers: ["${up.address}"], default: true, dns64: "off" }
`,
    );
    child = spawn(process.execPath, ['--max-semi-space-size=16', '--min-semi-space-size=16', '--no-memory-reducer', CLI, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await eventually('pvdns to answer', async () => (await fetch(`${api}/healthz`).catch(() => null))?.status === 200, 20_000, () => stderr);
  });
  afterAll(async () => {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await up.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const dns = { host, port: 5320 };
  const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);

  /** The environment without the token and server the CLI would otherwise take from it. */
  const bare = (): NodeJS.ProcessEnv => {
    const env = { ...process.env };
    for (const k of ['PVDNS_TOKEN', 'PVDNS_TOKEN_FILE', 'PVDNS_API']) delete env[k];
    return env;
  };

  /** cli runs `node dist/cli.js ARGS` and returns its exit code and output. */
  function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((done) => {
      execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000, env: { ...bare(), ...env } }, (err, stdout, stderr) => {
        done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
      });
    });
  }

  it('prints one line per query like resolvectl monitor, JSON with --json, and exits 0 on Ctrl-C', async () => {
    for (const json of [false, true]) {
      // The token as every command finds it: --token-file here; --config's http.token (and its http.listen as the server) there.
      const args = json ? ['--config', config, '--json'] : ['--server', api, '--token-file', tokenFile];
      const mon = spawn(process.execPath, [CLI, 'monitor', ...args], { env: bare(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      mon.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      mon.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      // Queries, each for a new name, go on until the monitor has attached and printed one.
      let n = 0;
      let name = '';
      await eventually('the monitor to print a query', async () => {
        if (name !== '' && out.includes(name)) return true;
        name = `cli${n++}-${json ? 'json' : 'text'}.example.net`;
        await ask(dns, name, 'A', { from: CLIENT });
        return false;
      }, 10_000, () => err);
      mon.kill('SIGINT');
      const code = await new Promise<number | null>((r) => mon.once('exit', (c) => r(c)));
      expect(err).toBe('');
      expect(code).toBe(0);
      const line = out.split('\n').find((l) => l.includes(name))!;
      if (json) {
        expect(JSON.parse(line)).toMatchObject({ client: CLIENT, name, type: 'A', pvd: 'wifi', route: { kind: 'default' }, server: up.address, rcode: 'NOERROR' });
      } else {
        expect(line).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${CLIENT} ${name.replace(/\./g, '\\.')} A → wifi \\(default wifi\\) miss ${up.address.replace(/\./g, '\\.')} NOERROR \\d+(\\.\\d+)? ms$`));
      }
    }
  }, 40_000);

  it('says in one line why it was refused (401) or has no token to send, and exits 1', async () => {
    if (!existsSync(DEFAULT_TOKEN_FILE)) {
      expect(await cli(['monitor', '--server', api])).toEqual({
        code: 1,
        stdout: '',
        stderr: `pvdns: pvdns needs its API token for this and none was found: give --token-file FILE, PVDNS_TOKEN, PVDNS_TOKEN_FILE, --config FILE (its http.token or http.tokenFile) or ${DEFAULT_TOKEN_FILE}\n`,
      });
    }
    expect(await cli(['monitor', '--server', api], { PVDNS_TOKEN: 'wrong-token-0123456789' })).toEqual({
      code: 1,
      stdout: '',
      stderr: 'pvdns: pvdns refused the API token from PVDNS_TOKEN (401): it is not the token of its http.token or http.tokenFile (a restart writes a new token file)\n',
    });
    const missing = await cli(['monitor', '--server', api], { PVDNS_TOKEN_FILE: join(tmp, 'none') });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`pvdns: cannot read the API token from ${join(tmp, 'none')}: ENOENT (pvdns writes its http.tokenFile at start: is it running?)\n`);
    const usage = await cli(['monitor', '--sample', '3']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^pvdns: --sample must be.*\n\nUsage: pvdns monitor \[--sample R\] \[--rate N\]\n/);
    const unknown = await cli(['monitor', '--pvd', 'wifi']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^pvdns: monitor: unknown option --pvd\n/);
  });

  it('cuts off a subscriber that never reads, counts it, and holds no more memory for it', async () => {
    const files = join(tmp, 'queries.txt');
    writeFileSync(files, Array.from({ length: 100 }, (_, i) => `h${i}.example.net A`).join('\n') + '\n');
    for (let i = 0; i < 100; i++) await ask(dns, `h${i}.example.net`, 'A'); // cached: the floods are all hits
    const flood = (): Promise<string> =>
      new Promise((done) => execFile('dnsperf', ['-s', host, '-p', '5320', '-d', files, '-l', '4', '-Q', '12000', '-c', '2'], { encoding: 'utf8' }, (_e, stdout) => done(stdout)));
    // A flood with nobody watching first: the memory pvdns takes to answer at that rate is not the monitor's.
    expect(await flood()).toMatch(/Queries completed:\s+[1-9]/);
    const s = net.connect({ host, port: 8320 });
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('connect', r));
    s.write(`GET /v1/monitor?rate=100000 HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${TEST_TOKEN}\r\n\r\n`);
    const head = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString('latin1'))));
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    s.pause();
    const before = rssKiB();
    // ~48,000 records of ~450 octets: over 20 MB, far more than the 256 KiB bound and the kernel's socket buffers.
    expect(await flood()).toMatch(/Queries completed:\s+[1-9]/);
    const grown = rssKiB() - before;
    // Records stopped going out to it when the kernel's buffers were full; STALL_MS later it is cut.
    await eventually('the subscriber to be cut off', async () => (await metricSum(api, 'pvdns_monitor_subscribers_dropped_total')) === 1, STALL_MS + 5000);
    expect(await metricSum(api, 'pvdns_monitor_subscribers')).toBe(0);
    expect(await metricSum(api, 'pvdns_monitor_records_dropped_total')).toBeGreaterThan(0);
    // Measured: under 1.5 MB; without the bound, ~19 MB.
    expect(grown, `pvdns's RSS grew ${grown} KiB`).toBeLessThan(8 * 1024);
    const closed = new Promise<boolean>((r) => s.once('close', () => r(true)));
    s.resume();
    expect(await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))])).toBe(true);
  }, 40_000);
});
