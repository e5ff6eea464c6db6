// SIGHUP and SIGTERM as an operator sends them to `pvdns serve` (the built
// CLI, dist/cli.js): a reload under load loses no query, keeps what did not
// change, rebinds only what did, and refuses a bad file while the old
// configuration goes on serving; SIGTERM answers what is in flight and exits 0.
// pvdns listens on 127.0.0.140 (ports probed free first); its upstreams are
// fake servers on 127.0.0.125–127.0.0.131, each answering A queries with
// 192.0.2.<its last octet>, so an answer says which server was asked.

import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ask, sendTcp, makeQuery, Packet, type Server } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';

const CLI = join(import.meta.dirname, '../../dist/cli.js');
const HOST = '127.0.0.140';
const dir = mkdtempSync(join(tmpdir(), 'pvdns-reload-'));

/** Answers with 192.0.2.<last octet of the server's address>; names starting "long" get a TTL of 3600. */
function upstream(host: string, delayMs = 0): FakeUpstream {
  const octet = host.split('.').at(-1)!;
  return new FakeUpstream(async (q) => {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const ttl = q.questions[0]!.name.toLowerCase().startsWith('long') ? 3600 : 300;
    return answer(q, [a(q, `192.0.2.${octet}`, ttl)]);
  });
}

const main = upstream('127.0.0.125');
const lanOld = upstream('127.0.0.126');
const lanNew = upstream('127.0.0.127');
const extra = upstream('127.0.0.128');
const slow = upstream('127.0.0.131', 300);
const ups = [main, lanOld, lanNew, extra, slow];

/** freePort finds a port free for both UDP and TCP on `host`. */
async function freePort(host: string, avoid: number[] = []): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const u = dgram.createSocket('udp4');
    await new Promise<void>((res, rej) => {
      u.once('error', rej);
      u.bind({ address: host, port: 0 }, () => res());
    });
    const port = u.address().port;
    const t = net.createServer();
    const ok = await new Promise<boolean>((res) => {
      t.once('error', () => res(false));
      t.listen({ host, port }, () => res(true));
    });
    await new Promise<void>((res) => u.close(() => res()));
    if (ok) await new Promise<void>((res) => t.close(() => res()));
    if (ok && !avoid.includes(port)) return port;
  }
  throw new Error(`no free port on ${host}`);
}

let configs = 0;
/** writeConfig writes a configuration file (JSON, which the YAML loader reads with line numbers). */
function writeConfig(file: string | null, c: Record<string, unknown>): string {
  const path = file ?? join(dir, `pvdns-${++configs}.json`);
  // No captive-portal probes and no Pref64 discovery: the fake servers see only the tests' queries,
  // and a server's RTT moves only with them.
  const pvds = Array.isArray(c.pvds) ? { pvds: c.pvds.map((p: Record<string, unknown>) => ({ dns64: 'off', ...p })) } : {};
  writeFileSync(path, JSON.stringify({ pvdSources: { host: false }, captive: { probeIntervalS: 0 }, ...c, ...pvds }, null, 2) + '\n');
  return path;
}

type LogLine = Record<string, unknown> & { msg: string };

/** Serve is one `pvdns serve --config FILE` process and its JSON log lines. */
class Serve {
  readonly lines: LogLine[] = [];
  stderr = '';
  exit: { code: number | null; signal: string | null; at: number } | null = null;
  readonly exited: Promise<void>;
  private partial = '';

  private constructor(
    readonly child: ChildProcess,
    readonly file: string,
  ) {
    child.stdout!.on('data', (d: Buffer) => {
      const text = this.partial + d.toString();
      const parts = text.split('\n');
      this.partial = parts.pop()!;
      for (const p of parts) {
        try {
          this.lines.push(JSON.parse(p) as LogLine);
        } catch {
          this.lines.push({ msg: `(not JSON) ${p}` });
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((r) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        r();
      }),
    );
  }

  static running = new Set<Serve>();

  static async start(file: string): Promise<Serve> {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const s = new Serve(child, file);
    Serve.running.add(s);
    await s.waitLog('the "pvdns started" line', (l) => l.msg === 'pvdns started', 0, 10_000);
    return s;
  }

  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }

  /** waitLog waits for a line at index ≥ `from` matching `pred`. */
  async waitLog(what: string, pred: (l: LogLine) => boolean, from = 0, timeoutMs = 3000): Promise<LogLine> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (this.exit) throw new Error(`pvdns exited (${JSON.stringify(this.exit)}) before ${what}; stderr: ${this.stderr}`);
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; stderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** hup sends SIGHUP and returns the line that ends the reload: "configuration reloaded" or "reload failed …". */
  async hup(): Promise<LogLine> {
    const from = this.lines.length;
    this.child.kill('SIGHUP');
    return this.waitLog('the end of the reload', (l) => l.msg === 'configuration reloaded' || l.msg.startsWith('reload failed'), from);
  }

  async kill(): Promise<void> {
    if (!this.exit) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    Serve.running.delete(this);
  }
}

/** reloaded sends SIGHUP and expects the reload to succeed. */
async function reloaded(pvdns: Serve): Promise<void> {
  const end = await pvdns.hup();
  expect(end.msg, JSON.stringify(end)).toBe('configuration reloaded');
}

const dns = (port: number): Server => ({ host: HOST, port });

/** addressOf asks for an A record and returns the address answered (NOERROR asserted). */
async function addressOf(server: Server, name: string): Promise<string | undefined> {
  const r = await ask(server, name, 'A', { timeoutMs: 2000 });
  expect(r.packet.header.rcode, name).toBe(0);
  return r.packet.answers[0]?.address;
}

/** answers says whether anything answers a UDP query on `server` within 500 ms. */
async function answersUdp(server: Server): Promise<boolean> {
  return ask(server, 'localhost', 'A', { timeoutMs: 500 }).then(
    () => true,
    () => false,
  );
}

beforeAll(async () => {
  await main.start('127.0.0.125');
  await lanOld.start('127.0.0.126');
  await lanNew.start('127.0.0.127');
  await extra.start('127.0.0.128');
  await slow.start('127.0.0.131');
});
afterEach(async () => {
  for (const s of [...Serve.running]) await s.kill();
  for (const u of ups) u.seen.length = 0;
});
afterAll(async () => {
  for (const s of [...Serve.running]) await s.kill();
  await Promise.all(ups.map((u) => u.stop()));
  rmSync(dir, { recursive: true, force: true });
});

describe('SIGHUP under a steady query load', () => {
  it('loses no query across 10 reloads that change servers, PvDs, log level and cache.maxTtl', async () => {
    const port = await freePort(HOST);
    const server = dns(port);
    /** Variant i: even and odd differ in a PvD's servers, a PvD present, the log level and cache.maxTtl. */
    const variant = (i: number): Record<string, unknown> => ({
      listen: [`${HOST}:${port}`],
      http: { listen: null },
      log: { level: i % 2 === 0 ? 'info' : 'debug' },
      cache: { maxTtl: i % 2 === 0 ? 300 : 600 },
      upstream: { timeoutMs: 1000, attempts: 2 },
      pvds: [
        { identifier: 'wifi', dnsServers: [main.address], default: true },
        { identifier: 'lan', dnsServers: [(i % 2 === 0 ? lanOld : lanNew).address], dnsZones: ['lan.example'], noInternet: true },
        ...(i % 2 === 0 ? [{ identifier: 'extra', dnsServers: [extra.address], dnsZones: ['extra.example'], noInternet: true }] : []),
      ],
    });
    const file = writeConfig(null, variant(0));
    const pvdns = await Serve.start(file);

    let stop = false;
    let sent = 0;
    let answered = 0;
    const failures: string[] = [];
    let n = 0;
    const names = (): string => {
      const k = n++;
      switch (k % 4) {
        case 0:
          return 'cached.example'; // from the cache, but for the first ask after each cache change
        case 1:
          return `u${k}.example`; // the default PvD's server
        case 2:
          return `h${k}.lan.example`; // the PvD whose servers change
        default:
          return `h${k}.extra.example`; // the PvD that comes and goes (the default PvD's while it is gone)
      }
    };
    const asker = async (): Promise<void> => {
      while (!stop) {
        const name = names();
        sent++;
        try {
          const r = await ask(server, name, 'A', { timeoutMs: 2500 });
          answered++;
          if (r.packet.header.rcode !== 0 || r.packet.answers.length !== 1) failures.push(`${name}: rcode ${r.packet.header.rcode}, ${r.packet.answers.length} answers`);
        } catch (err) {
          failures.push(`${name}: ${(err as Error).message}`);
        }
      }
    };
    const started = Date.now();
    const load = Array.from({ length: 20 }, () => asker());

    const checks: string[] = [];
    for (let i = 1; i <= 10; i++) {
      await new Promise((r) => setTimeout(r, 150));
      writeConfig(file, variant(i));
      const end = await pvdns.hup();
      expect(end.msg, JSON.stringify(end)).toBe('configuration reloaded');
      // Each reload took effect: the lan PvD's server, the extra PvD's presence, the TTL cap.
      const lan = await addressOf(server, `probe${i}.lan.example`);
      const ext = await addressOf(server, `probe${i}.extra.example`);
      const long = await ask(server, `long${i}.example`, 'A', { timeoutMs: 2000 });
      checks.push(`${i}: lan ${lan}, extra ${ext}, ttl ${long.packet.answers[0]?.ttl}`);
    }
    while (Date.now() - started < 3000) await new Promise((r) => setTimeout(r, 50));
    stop = true;
    await Promise.all(load);

    expect(failures).toEqual([]);
    expect(answered).toBe(sent);
    expect(sent).toBeGreaterThan(200);
    expect(checks).toEqual(
      Array.from({ length: 10 }, (_, j) => {
        const i = j + 1;
        return i % 2 === 0 ? `${i}: lan 192.0.2.126, extra 192.0.2.128, ttl 300` : `${i}: lan 192.0.2.127, extra 192.0.2.125, ttl 600`;
      }),
    );
    expect(pvdns.count('configuration reloaded')).toBe(10);
    expect(pvdns.lines.filter((l) => l.msg.startsWith('reload failed'))).toEqual([]);
    // The log level changed with each reload: per-query lines at debug, none at info (the last).
    const lastReload = pvdns.lines.findLastIndex((l) => l.msg === 'configuration reloaded');
    expect(pvdns.lines.slice(0, lastReload).some((l) => l.msg === 'query')).toBe(true);
    expect(pvdns.lines.slice(lastReload).filter((l) => l.msg === 'query')).toEqual([]);
    // Queries never went to a server outside their PvD.
    expect(lanOld.names().every((x) => x.endsWith('.lan.example'))).toBe(true);
    expect(lanNew.names().every((x) => x.endsWith('.lan.example'))).toBe(true);
    expect(extra.names().every((x) => x.endsWith('.extra.example'))).toBe(true);
  }, 30_000);
});

describe('SIGHUP keeps what did not change', () => {
  const base = (port: number, httpPort: number, more: object[] = []): Record<string, unknown> => ({
    listen: [`${HOST}:${port}`],
    http: { listen: `${HOST}:${httpPort}` },
    upstream: { timeoutMs: 1000, attempts: 2 },
    pvds: [{ identifier: 'wifi', dnsServers: [main.address], default: true }, ...more],
  });
  const lan = (): object => ({ identifier: 'lan', dnsServers: [lanOld.address], dnsZones: ['lan.example'], noInternet: true });

  it('answers a cached name of an unchanged PvD from its cache after a reload', async () => {
    const port = await freePort(HOST);
    const httpPort = await freePort(HOST, [port]);
    const file = writeConfig(null, base(port, httpPort));
    const pvdns = await Serve.start(file);
    expect(await addressOf(dns(port), 'kept.example')).toBe('192.0.2.125');
    expect(main.names()).toEqual(['kept.example']);

    writeConfig(file, { ...base(port, httpPort, [lan()]), tcp: { idleTimeoutMs: 5000 } });
    await reloaded(pvdns);
    expect((await fetch(`http://${HOST}:${httpPort}/v1/pvds/lan`)).status).toBe(200); // the reload did happen

    const r = await ask(dns(port), 'kept.example', 'A', { timeoutMs: 2000 });
    expect(r.packet.answers[0]?.address).toBe('192.0.2.125');
    expect(r.packet.answers[0]!.ttl).toBeLessThanOrEqual(300);
    expect(main.names()).toEqual(['kept.example']); // no new upstream query
    const wifi = (await (await fetch(`http://${HOST}:${httpPort}/v1/pvds/wifi`)).json()) as { cacheEntries: number };
    expect(wifi.cacheEntries).toBe(1);
  });

  it("keeps an unchanged PvD's server state (operational, with its RTT) across a reload", async () => {
    const port = await freePort(HOST);
    const httpPort = await freePort(HOST, [port]);
    const file = writeConfig(null, base(port, httpPort));
    const pvdns = await Serve.start(file);
    await addressOf(dns(port), 'warm.example');
    const get = async (): Promise<{ servers: Array<{ state: string; rttMs: number | null; since: string | null }> }> =>
      (await (await fetch(`http://${HOST}:${httpPort}/v1/pvds/wifi`)).json()) as { servers: Array<{ state: string; rttMs: number | null; since: string | null }> };
    const before = (await get()).servers[0]!;
    expect(before.state).toBe('operational');

    writeConfig(file, base(port, httpPort, [lan()]));
    await reloaded(pvdns);
    const after = (await get()).servers[0]!;
    expect(after).toEqual(before);
  });
});

describe('SIGHUP rebinds what changed', () => {
  it('moves DNS to a new port and then HTTP to a new port; the old ones stop answering', async () => {
    const p1 = await freePort(HOST);
    const p2 = await freePort(HOST, [p1]);
    const h1 = await freePort(HOST, [p1, p2]);
    const h2 = await freePort(HOST, [p1, p2, h1]);
    const cfg = (dnsPort: number, httpPort: number): Record<string, unknown> => ({
      listen: [`${HOST}:${dnsPort}`],
      http: { listen: `${HOST}:${httpPort}` },
      pvds: [{ identifier: 'wifi', dnsServers: [main.address], default: true }],
    });
    const file = writeConfig(null, cfg(p1, h1));
    const pvdns = await Serve.start(file);
    expect(await addressOf(dns(p1), 'a.example')).toBe('192.0.2.125');

    writeConfig(file, cfg(p2, h1));
    await reloaded(pvdns);
    expect(await addressOf(dns(p2), 'b.example')).toBe('192.0.2.125');
    const tcp = await sendTcp(dns(p2), [makeQuery('c.example', 'A')], 2000);
    expect(tcp.map((m) => Packet.parse(m).answers[0]?.address)).toEqual(['192.0.2.125']);
    expect(await answersUdp(dns(p1))).toBe(false);
    expect(await sendTcp(dns(p1), [makeQuery('d.example', 'A')], 1000)).toEqual([]);
    expect((await fetch(`http://${HOST}:${h1}/healthz`)).status).toBe(200); // http.listen did not change

    writeConfig(file, cfg(p2, h2));
    await reloaded(pvdns);
    expect((await fetch(`http://${HOST}:${h2}/healthz`)).status).toBe(200);
    const pvds = (await (await fetch(`http://${HOST}:${h2}/v1/pvds`)).json()) as { pvds: Array<{ identifier: string }> };
    expect(pvds.pvds.map((p) => p.identifier)).toEqual(['wifi']);
    const old = await fetch(`http://${HOST}:${h1}/healthz`).then(
      (r) => `status ${r.status}`,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );
    expect(old).toBe('ECONNREFUSED');
    expect(await addressOf(dns(p2), 'e.example')).toBe('192.0.2.125'); // DNS did not move this time
  });
});

describe('a bad configuration on SIGHUP', () => {
  it('is refused with a log line naming the file and key, and the old configuration keeps serving', async () => {
    const port = await freePort(HOST);
    const cfg = (lanServer: string, over: Record<string, unknown> = {}): Record<string, unknown> => ({
      listen: [`${HOST}:${port}`],
      http: { listen: null },
      pvds: [
        { identifier: 'wifi', dnsServers: [main.address], default: true },
        { identifier: 'lan', dnsServers: [lanServer], dnsZones: ['lan.example'], noInternet: true },
      ],
      ...over,
    });
    const file = writeConfig(null, cfg(lanOld.address));
    const pvdns = await Serve.start(file);
    expect(await addressOf(dns(port), 'one.lan.example')).toBe('192.0.2.126');

    // A schema error (with a good change beside it that must not be applied either).
    writeConfig(file, cfg(lanNew.address, { cache: { maxTtl: 'long' } }));
    const schema = await pvdns.hup();
    expect(schema.msg).toBe('reload failed; keeping the running configuration');
    expect(schema.error).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: cache\\.maxTtl: `));
    expect(await addressOf(dns(port), 'two.lan.example')).toBe('192.0.2.126');

    // A loop: a server that is pvdns's own listener.
    writeConfig(file, {
      ...cfg(lanNew.address),
      pvds: [
        { identifier: 'wifi', dnsServers: [main.address], default: true },
        { identifier: 'lan', dnsServers: [lanNew.address, `${HOST}:${port}`], dnsZones: ['lan.example'], noInternet: true },
      ],
    });
    const loop = await pvdns.hup();
    expect(loop.msg).toBe('reload failed; keeping the running configuration');
    // One line, with the file's line of the key, as check-config would say it; never a stack.
    expect(loop.error).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: pvds\\[1\\]\\.dnsServers\\[1\\]: `));
    expect(loop.error).toContain(`${HOST}:${port} is pvdns's own listener: queries would loop`);
    expect(loop.err).toBeUndefined();
    expect(await addressOf(dns(port), 'three.lan.example')).toBe('192.0.2.126');
    expect(await addressOf(dns(port), 'www.example.org')).toBe('192.0.2.125');
    expect(lanNew.seen).toHaveLength(0);

    // And a good file after the bad ones is taken.
    writeConfig(file, cfg(lanNew.address));
    await reloaded(pvdns);
    expect(await addressOf(dns(port), 'four.lan.example')).toBe('192.0.2.127');
    expect(pvdns.exit).toBeNull();
  });
});

describe('an empty configuration file on SIGHUP', () => {
  it('is refused like any bad file: the old listeners and PvDs keep serving, no default takes over', async () => {
    const port = await freePort(HOST);
    const cfg = {
      listen: [`${HOST}:${port}`],
      http: { listen: null },
      pvds: [
        { identifier: 'wifi', dnsServers: [main.address], default: true },
        { identifier: 'lan', dnsServers: [lanOld.address], dnsZones: ['lan.example'], noInternet: true },
      ],
    };
    const file = writeConfig(null, cfg);
    const pvdns = await Serve.start(file);
    expect(await addressOf(dns(port), 'one.lan.example')).toBe('192.0.2.126');

    // A file cut to nothing (an editor's truncate-then-write, a failed copy), then one of comments only.
    for (const text of ['', '# pvdns configuration\n# (being rewritten)\n']) {
      writeFileSync(file, text);
      const end = await pvdns.hup();
      expect(end.msg).toBe('reload failed; keeping the running configuration');
      expect(end.error).toBe(`${file}: the file has no settings (write {} to use every default)`);
      // Still the old listener, the old PvDs and their servers; the defaults (127.0.0.1:5300, the host's PvDs) did not come.
      expect(await addressOf(dns(port), 'two.lan.example')).toBe('192.0.2.126');
      expect(await addressOf(dns(port), 'www.example.org')).toBe('192.0.2.125');
    }
    expect(pvdns.count('configuration reloaded')).toBe(0);

    writeConfig(file, cfg);
    await reloaded(pvdns);
    expect(await addressOf(dns(port), 'three.lan.example')).toBe('192.0.2.126');
    expect(pvdns.exit).toBeNull();
  });
});

describe('SIGTERM', () => {
  it('answers the queries waiting for a slow upstream, then exits 0 within 3 s', async () => {
    const port = await freePort(HOST);
    const file = writeConfig(null, {
      listen: [`${HOST}:${port}`],
      http: { listen: null },
      upstream: { timeoutMs: 1000, attempts: 2 },
      pvds: [{ identifier: 'wifi', dnsServers: [slow.address], default: true }],
    });
    const pvdns = await Serve.start(file);
    const udp = Array.from({ length: 8 }, (_, i) => ask(dns(port), `slow${i}.example`, 'A', { timeoutMs: 3000 }));
    const tcp = sendTcp(dns(port), [makeQuery('slowtcp1.example', 'A'), makeQuery('slowtcp2.example', 'A')], 3000);
    // Wait until the upstream has every query: they are all in flight now.
    const until = Date.now() + 2000;
    while (slow.seen.length < 10 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(slow.seen).toHaveLength(10);

    const termAt = Date.now();
    pvdns.child.kill('SIGTERM');
    const udpReplies = await Promise.all(udp);
    const tcpReplies = await tcp;
    expect(udpReplies.map((r) => [r.packet.header.rcode, r.packet.answers[0]?.address])).toEqual(Array(8).fill([0, '192.0.2.131']));
    expect(tcpReplies.map((m) => Packet.parse(m).answers[0]?.address)).toEqual(['192.0.2.131', '192.0.2.131']);

    await Promise.race([pvdns.exited, new Promise((r) => setTimeout(r, 3500))]);
    expect(pvdns.exit).toMatchObject({ code: 0, signal: null });
    expect(pvdns.exit!.at - termAt).toBeLessThan(3000);
    expect(pvdns.lines.map((l) => l.msg)).toContain('stopped');
  });
});
