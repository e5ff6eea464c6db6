// `pvdns status` and `pvdns query` as a user runs them (node dist/cli.js,
// built by pretest) against a running pvdns, here one in this process: so
// the CLI is spawned asynchronously, never with spawnSync, which would
// block the pvdns it talks to.

import { execFile } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import type { TranslateResult } from '../../src/resolve/translate.js';
import { a, answer, FakeUpstream, Packet, type Resource } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

/** closedPort returns a port on `host` that was free a moment ago (nothing listens there). */
async function closedPort(host: string): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((res) => srv.listen({ host, port: 0 }, () => res()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

const CLI = join(import.meta.dirname, '../../dist/cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Answers A with 192.0.2.<octet> and AAAA with 2001:db8::<octet> (RFC 5952 form when rendered). */
function upstream(octet: number): FakeUpstream {
  return new FakeUpstream((q) => {
    const question = q.questions[0]!;
    if (question.type === Packet.TYPE.AAAA) {
      return answer(q, [{ name: question.name, type: Packet.TYPE.AAAA, class: 1, ttl: 120, address: `2001:0db8:0000:0000:0000:0000:0000:0${octet}` } as Resource]);
    }
    return answer(q, [a(q, `192.0.2.${octet}`, 300)]);
  });
}

describe('pvdns status and pvdns query', () => {
  const wifi = upstream(134);
  const corp = upstream(135);
  const dead = new FakeUpstream(() => null); // never answers
  let pvdns: Running;
  let server: string;

  beforeAll(async () => {
    await wifi.start('127.0.0.134');
    await corp.start('127.0.0.135');
    await dead.start('127.0.0.136');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 1000, attempts: 2 },
      pvds: [
        { identifier: 'corp.example.com', dnsServers: [corp.address], dnsZones: ['corp.example.com'], prefixes: ['10.8.0.0/16'], noInternet: true, dns64: '2001:db8:64::/96', dns64Synthesize: true },
        { identifier: 'wifi', dnsServers: [wifi.address], default: true, priority: 10 },
        { identifier: 'lab', dnsServers: [dead.address], dnsZones: ['lab.example'], noInternet: true, expires: '2099-01-01T00:00:00Z' },
        { identifier: 'bare', dnsServers: [], dnsZones: ['bare.example'], noInternet: true },
      ],
    });
    server = pvdns.http;
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), corp.stop(), dead.stop()]);
  });
  beforeEach(() => {
    for (const u of [wifi, corp, dead]) u.seen.length = 0;
  });

  describe('status', () => {
    it('lists every PvD with its source, routing traits, zones and servers with their state', async () => {
      // Give the servers a state: wifi answers, lab's server does not, corp is not asked.
      expect((await cli('query', 'status-probe.example', '--server', server)).code).toBe(0);
      expect((await cli('query', 'x.lab.example', '--server', server)).code).toBe(5); // SERVFAIL

      const r = await cli('status', '--server', server);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // First where names no PvD claims go (wifi alone: the others are noInternet), then the PvDs.
      const [routing, blank, ...lines] = r.stdout.trimEnd().split('\n');
      expect([routing, blank]).toEqual(['default route: wifi; skipped: corp.example.com (noInternet), lab (noInternet), bare (noInternet)', '']);
      const block = (id: string): string[] => {
        const at = lines.findIndex((l) => l.startsWith(`${id} (`));
        expect(at, `a block for ${id} in:\n${r.stdout}`).toBeGreaterThanOrEqual(0);
        const end = lines.findIndex((l, i) => i > at && !l.startsWith(' '));
        return lines.slice(at, end === -1 ? undefined : end);
      };
      // In the API's order (declaration order).
      expect(lines.filter((l) => !l.startsWith(' ')).map((l) => l.split(' ')[0])).toEqual(['corp.example.com', 'wifi', 'lab', 'bare']);

      const c = block('corp.example.com');
      expect(c[0]).toBe('corp.example.com (config, not default, noInternet, 0 cached)');
      expect(c).toContain('  zones:    corp.example.com');
      expect(c).toContain('  prefixes: 10.8.0.0/16');
      expect(c).toContain('  nat64:    2001:db8:64::/96 (synthesized by pvdns, from config)');
      expect(block('wifi').some((x) => x.includes('nat64'))).toBe(false); // dns64 off: no line
      expect(c.find((l) => l.includes(corp.address))).toMatch(new RegExp(`^  server ${corp.address}\\s+untested\\s*$`));

      const w = block('wifi');
      expect(w[0]).toBe('wifi (config, default, priority 10, 1 cached)');
      expect(w.find((l) => l.includes(wifi.address))).toMatch(new RegExp(`^  server ${wifi.address}\\s+operational\\s+rtt \\d+\\.\\d ms$`));

      const l = block('lab');
      expect(l[0]).toBe('lab (config, not default, noInternet, 0 cached, expires 2099-01-01T00:00:00.000Z)');
      expect(l.find((x) => x.includes(dead.address))).toMatch(new RegExp(`^  server ${dead.address}\\s+suspect\\s+\\(.+\\)$`));

      expect(block('bare')).toContain('  no DNS servers');
    });

    it('prints the API\'s JSON with --json', async () => {
      const r = await cli('status', '--json', '--server', server);
      expect(r.code).toBe(0);
      const printed = JSON.parse(r.stdout) as { pvds: PvdView[] };
      const api = (await (await fetch(`${server}/v1/pvds`)).json()) as { pvds: PvdView[] };
      expect(printed).toEqual(api);
      expect(printed.pvds.map((p) => p.identifier)).toEqual(['corp.example.com', 'wifi', 'lab', 'bare']);
    });

    it('accepts the server URL with a trailing slash', async () => {
      const r = await cli('status', '--server', `${server}/`);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^default route: wifi; skipped: [^\n]+\n\ncorp\.example\.com \(/);
    });
  });

  describe('query', () => {
    it('says which PvD and server answered and prints the records', async () => {
      const r = await cli('query', 'git.corp.example.com', 'A', '--server', server);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`git.corp.example.com A: NOERROR from pvd corp.example.com (server ${corp.address})\n  git.corp.example.com.\t300\tA\t192.0.2.135\n`);
      expect(corp.names()).toEqual(['git.corp.example.com']);
      expect(wifi.seen).toHaveLength(0);
    });

    it('asks for the TYPE given, A by default, and prints addresses in RFC 5952 form', async () => {
      const r = await cli('query', 'v6.example.org', 'AAAA', '--server', server);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`v6.example.org AAAA: NOERROR from pvd wifi (server ${wifi.address})\n  v6.example.org.\t120\tAAAA\t2001:db8::134\n`);
      const d = await cli('query', 'v4.example.org', '--server', server);
      expect(d.stdout.split('\n')[0]).toBe(`v4.example.org A: NOERROR from pvd wifi (server ${wifi.address})`);
      expect(wifi.seen.map((s) => [s.name, s.type])).toEqual([
        ['v6.example.org', Packet.TYPE.AAAA],
        ['v4.example.org', Packet.TYPE.A],
      ]);
    });

    it('says when the answer came from the cache', async () => {
      await cli('query', 'twice.example.org', 'A', '--server', server);
      const r = await cli('query', 'twice.example.org', 'A', '--server', server);
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe('twice.example.org A: NOERROR from pvd wifi, cached');
      expect(wifi.names()).toEqual(['twice.example.org']);
    });

    it('says when pvdns answered itself', async () => {
      const r = await cli('query', 'localhost', 'A', '--server', server);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^localhost A: NOERROR from pvdns itself\n  localhost\.\t\d+\tA\t127\.0\.0\.1\n$/);
    });

    it('prints the extended error of a SERVFAIL', async () => {
      const r = await cli('query', 'host.bare.example', 'A', '--server', server);
      expect(r.code).toBe(5);
      expect(r.stdout).toBe('host.bare.example A: SERVFAIL from pvd bare\n  extended error 22: pvd bare: no DNS servers\n');
    });

    it('resolves in exactly the PvD given with --pvd', async () => {
      const r = await cli('query', 'www.example.org', 'A', '--pvd', 'corp.example.com', '--server', server);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`www.example.org A: NOERROR from pvd corp.example.com (server ${corp.address})\n  www.example.org.\t300\tA\t192.0.2.135\n`);
      expect(corp.names()).toEqual(['www.example.org']); // a name corp does not claim, asked of corp only
      expect(wifi.seen).toHaveLength(0);
    });

    it('prints the API\'s JSON with --json', async () => {
      const r = await cli('query', 'json.corp.example.com', 'A', '--json', '--server', server);
      expect(r.code).toBe(0);
      const printed = JSON.parse(r.stdout) as TranslateResult;
      expect(printed).toEqual({
        pvd: 'corp.example.com',
        name: 'json.corp.example.com',
        type: 'A',
        rcode: 'NOERROR',
        answers: [{ name: 'json.corp.example.com', type: 'A', ttl: 300, data: '192.0.2.135' }],
        cached: false,
        synthesized: false,
        captive: false,
        server: corp.address,
        ede: null,
      });
      // The same JSON as the API gives (now from the cache).
      const api = (await (await fetch(`${server}/v1/resolve?name=json.corp.example.com&type=A`)).json()) as TranslateResult;
      expect({ ...api, cached: false, server: corp.address, answers: api.answers.map((x) => ({ ...x, ttl: 300 })) }).toEqual(printed);
    });
  });

  describe('errors', () => {
    it('exits 1 with one line on stderr for an unknown PvD', async () => {
      const r = await cli('query', 'www.example.org', 'A', '--pvd', 'nosuch', '--server', server);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('pvdns: no PvD "nosuch"\n');
      expect(wifi.seen).toHaveLength(0);
    });

    it('exits 1 with one line on stderr for a type that is not a record type', async () => {
      const r = await cli('query', 'www.example.org', 'NOSUCHTYPE', '--server', server);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('pvdns: type: "NOSUCHTYPE" is not a record type\n');
    });

    it('exits 1 saying it cannot reach the API when nothing listens at --server', async () => {
      for (const args of [['status'], ['query', 'www.example.org'], ['status', '--json']]) {
        const r = await cli(...args, '--server', 'http://127.0.0.1:1');
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/^pvdns: cannot reach the pvdns API at http:\/\/127\.0\.0\.1:1\b/);
        expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      }
      // A port where nothing listens: the reason is the connection's.
      const port = await closedPort('127.0.0.148');
      const r = await cli('status', '--server', `http://127.0.0.148:${port}`);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`pvdns: cannot reach the pvdns API at http://127.0.0.148:${port}: ECONNREFUSED (is pvdns running with http.listen there?)\n`);
    });

    it('reaches a pvdns whose http.listen is on a port that browsers block (e.g. 10080)', async () => {
      // pvdns accepts any port for http.listen; the CLI must be able to talk to it there.
      let other: Running | null = null;
      for (const port of [10080, 6665, 6666, 6667, 6668, 6669, 6697]) {
        other = await startPvdns({ http: { listen: `127.0.0.149:${port}` }, pvds: [{ identifier: 'wifi', dnsServers: [wifi.address] }] }, { host: '127.0.0.149' }).catch(() => null);
        if (other) break;
      }
      expect(other, 'a free fetch-blocked port on 127.0.0.149').not.toBeNull();
      try {
        expect((await fetch(`${other!.http}/healthz`).catch(() => null)) === null).toBe(true); // fetch() refuses this port
        const r = await cli('status', '--server', other!.http);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^default route: wifi\n\nwifi \(config, default/);
      } finally {
        await other!.stop();
      }
    });

    it('exits 2 with usage on a usage error', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['query'], /usage: pvdns query NAME \[TYPE\]/],
        [['query', 'a.example', 'A', 'extra'], /usage: pvdns query NAME \[TYPE\]/],
        [['status', 'extra'], /status takes no arguments/],
        [['status', '--frobnicate'], /^pvdns: status: unknown option --frobnicate\n/],
        [['query', 'a.example', '--pvd'], /--pvd/],
      ];
      for (const [args, message] of cases) {
        const r = await cli(...args, '--server', server);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.stdout, args.join(' ')).toBe('');
        expect(r.stderr, args.join(' ')).toMatch(message);
      }
      expect(wifi.seen).toHaveLength(0);
    });
  });
});
