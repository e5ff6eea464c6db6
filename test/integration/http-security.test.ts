// The control plane against the attacks issue 14 tried: a forged Host (DNS
// rebinding), a cross-site Origin and text/plain bodies (CSRF), changes with
// no token or a wrong one, a local user who is not pvdns's, and clients
// outside http.allow reading where the host's names go. Each is tried with
// real HTTP requests against a running pvdns, and each change or refusal
// must leave its audit line.

import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { App } from '../../src/app.js';
import { checkTokenFile, loadTokenFile } from '../../src/http/token.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { call, getPvd } from '../helpers/http.js';
import { startPvdns, TEST_TOKEN, type Running } from '../helpers/pvdns.js';

/** raw sends one request with exactly the headers given (fetch would not forge Host). */
function raw(base: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: { error?: string; [k: string]: unknown } }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: url.pathname + url.search, headers, setHost: headers.host === undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: { error?: string } = {};
        try {
          parsed = JSON.parse(text) as { error?: string };
        } catch {
          parsed = { error: `(not JSON) ${text.slice(0, 80)}` };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A logger whose lines a test can read. */
function capturingLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

const up = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.7')]));
const evil = JSON.stringify({ dnsServers: ['127.0.0.53'], priority: 0 });

beforeAll(() => up.start('127.0.0.121'));
afterAll(() => up.stop());

describe('Host, Origin and media type (DNS rebinding, CSRF)', () => {
  let pvdns: Running;
  let port: string;
  const { log, lines } = capturingLog();

  beforeAll(async () => {
    pvdns = await startPvdns(
      { http: { listen: '127.0.0.1:0', token: TEST_TOKEN, allowedHosts: ['pvdns.lan'] }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] },
      { log },
    );
    port = new URL(pvdns.http).port;
  });
  afterAll(() => pvdns.stop());

  it("refuses the issue's attack: a PUT with a forged Host and text/plain, with or without the token", async () => {
    for (const auth of [{}, { authorization: `Bearer ${TEST_TOKEN}` }] as Array<Record<string, string>>) {
      const r = await raw(pvdns.http, 'PUT', '/v1/pvds/evil', { host: `attacker.example:${port}`, 'content-type': 'text/plain', ...auth }, evil);
      expect(r.status).toBe(403);
      expect(r.body.error).toMatch(/Host "attacker\.example:\d+" is not one pvdns answers to/);
    }
    expect((await getPvd(pvdns.http, 'evil')).status).toBe(404);
    // A rebound name reads nothing either: the PvDs, the events, the metrics.
    for (const path of ['/v1/pvds', '/v1/events', '/metrics', '/v1/resolve?name=x.example']) {
      expect((await raw(pvdns.http, 'GET', path, { host: `attacker.example:${port}` })).status, path).toBe(403);
    }
    expect(lines.some((l) => l.msg === 'http request refused' && l.host === `attacker.example:${port}` && l.status === 403)).toBe(true);
  });

  it('accepts loopback names and addresses, and http.allowedHosts', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `api.localhost:${port}`, `[::1]:${port}`, `pvdns.lan:${port}`, 'pvdns.lan', '127.0.0.1']) {
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { host })).status, host).toBe(200);
    }
    for (const host of [`127.0.0.1.attacker.example:${port}`, `localhost.attacker.example:${port}`, `10.0.0.1:${port}`, `127.1:${port}`, `pvdns.lan.evil:${port}`]) {
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { host })).status, host).toBe(403);
    }
  });

  it('refuses a cross-site Origin (and Sec-Fetch-Site: cross-site) with 403, before the token is looked at', async () => {
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    // The issue's flush from a foreign page with text/plain.
    const f = await raw(pvdns.http, 'POST', '/v1/cache/flush', { origin: 'http://evil.example', 'content-type': 'text/plain', ...auth }, 'x');
    expect(f.status).toBe(403);
    expect(f.body.error).toMatch(/cross-site/);
    for (const origin of ['null', 'http://evil.example:8053', 'https://127.0.0.1.evil.example', 'file://', 'chrome-extension://abc']) {
      expect((await raw(pvdns.http, 'POST', '/v1/cache/flush', { origin, ...auth })).status, origin).toBe(403);
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { origin })).status, origin).toBe(403);
    }
    expect((await raw(pvdns.http, 'POST', '/v1/cache/flush', { 'sec-fetch-site': 'cross-site', ...auth })).status).toBe(403);
    // The API's own origin and other local tools are not cross-site.
    for (const origin of [`http://127.0.0.1:${port}`, 'http://localhost:3000', `http://[::1]:${port}`]) {
      expect((await raw(pvdns.http, 'POST', '/v1/cache/flush', { origin, ...auth })).status, origin).toBe(200);
    }
  });

  it('takes bodies only as application/json (415 otherwise), and nothing changes', async () => {
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    const body = JSON.stringify({ identifier: 'media.example', dnsServers: [up.address], noInternet: true });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/jsonp']) {
      const r = await raw(pvdns.http, 'PUT', '/v1/pvds/media.example', { 'content-type': type, ...auth }, body);
      expect(r.status, type).toBe(415);
      expect(r.body.error, type).toMatch(/application\/json/);
    }
    expect((await raw(pvdns.http, 'PUT', '/v1/pvds/media.example', auth, body)).status).toBe(415); // no content-type
    expect((await getPvd(pvdns.http, 'media.example')).status).toBe(404);
    const ok = await raw(pvdns.http, 'PUT', '/v1/pvds/media.example', { 'content-type': 'Application/JSON; charset="UTF-8"', ...auth }, body);
    expect(ok.status).toBe(201);
  });

  it('leaves one audit line per change and per refusal: who, what, the outcome', async () => {
    await new Promise((r) => setTimeout(r, 1100)); // past the second the tests above spent refusal lines in
    lines.length = 0;
    const spec = { identifier: 'audit.example', dnsServers: [up.address], dnsZones: ['audit.example'], noInternet: true };
    expect((await call(pvdns.http, 'PUT', '/v1/pvds/audit.example', { body: spec, token: TEST_TOKEN })).status).toBe(201);
    expect((await call(pvdns.http, 'PUT', '/v1/pvds/audit.example', { body: spec, token: 'wrong-wrong-wrong-wrong' })).status).toBe(401);
    expect((await call(pvdns.http, 'DELETE', '/v1/pvds/audit.example')).status).toBe(401);
    expect((await call(pvdns.http, 'POST', '/v1/cache/flush?pvd=wifi', { token: TEST_TOKEN })).status).toBe(200);
    const audit = lines.filter((l) => l.audit === true);
    expect(audit).toEqual([
      expect.objectContaining({ msg: 'api change', level: 30, client: '127.0.0.1', auth: 'token', method: 'PUT', pvd: 'audit.example', status: 201, result: 'announced', dnsZones: ['audit.example'] }),
      expect.objectContaining({ msg: 'api request refused', auth: 'bad token', method: 'PUT', status: 401 }),
      expect.objectContaining({ msg: 'api request refused', auth: 'none', method: 'DELETE', status: 401 }),
      expect.objectContaining({ msg: 'api change', auth: 'token', method: 'POST', path: '/v1/cache/flush?pvd=wifi', status: 200, flushed: expect.any(Number), pvd: 'wifi' }),
    ]);
    // Reads are not audited (they would drown the changes).
    await call(pvdns.http, 'GET', '/v1/pvds');
    expect(lines.filter((l) => l.audit === true)).toHaveLength(4);
    // A request that fails before its token is looked at says so, whatever it carried.
    expect((await call(pvdns.http, 'PUT', '/v1/pvds/%ZZ', { body: spec, token: TEST_TOKEN })).status).toBe(400);
    expect(lines.at(-1)).toMatchObject({ msg: 'api change', auth: 'unchecked', status: 400 });
  });

  it('caps refusal lines at 20 a second, and the next line says how many were left out', async () => {
    await new Promise((r) => setTimeout(r, 1100)); // a fresh second
    lines.length = 0;
    const origin = { origin: 'http://evil.example' };
    await Promise.all(Array.from({ length: 60 }, () => raw(pvdns.http, 'GET', '/v1/pvds', origin)));
    expect(lines.filter((l) => l.msg === 'http request refused')).toHaveLength(20);
    await new Promise((r) => setTimeout(r, 1100));
    await raw(pvdns.http, 'GET', '/v1/pvds', origin);
    expect(lines.at(-1)).toMatchObject({ msg: 'http request refused', refusalsNotLogged: 40 });
  });
});

describe('listening on every address (0.0.0.0)', () => {
  it('takes any IP literal as Host, but an Origin only when it is the request\'s own or a loopback one', async () => {
    const pvdns = await startPvdns({ http: { listen: '0.0.0.0:0', token: TEST_TOKEN }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    const port = pvdns.app.addresses().http!.port;
    const base = `http://127.0.0.1:${port}`;
    try {
      expect((await raw(base, 'GET', '/v1/pvds', { host: `192.0.2.5:${port}` })).status).toBe(200);
      // A page served from some other address is another site, whatever address pvdns listens on.
      expect((await raw(base, 'GET', '/v1/pvds', { host: `192.0.2.5:${port}`, origin: 'http://203.0.113.5' })).status).toBe(403);
      expect((await raw(base, 'GET', '/v1/pvds', { host: `192.0.2.5:${port}`, origin: `http://192.0.2.5:${port}` })).status).toBe(200);
      expect((await raw(base, 'GET', '/v1/pvds', { host: `192.0.2.5:${port}`, origin: `http://192.0.2.5:${port + 1}` })).status).toBe(403);
      expect((await raw(base, 'GET', '/v1/pvds', { host: `192.0.2.5:${port}`, 'sec-fetch-site': 'same-origin, Cross-Site' })).status).toBe(403);
    } finally {
      await pvdns.stop();
    }
  });
});

describe('a reload changes the HTTP rules in place', () => {
  it('takes a new token, http.allow and http.allowedHosts without binding again, and ends event streams it now refuses', async () => {
    const pvdns = await startPvdns({ http: { listen: '127.0.0.1:0', token: TEST_TOKEN }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    const port = pvdns.app.addresses().http!.port;
    try {
      const stream = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(`${pvdns.http}/v1/events`, resolve).on('error', reject));
      expect(stream.statusCode).toBe(200);
      const ended = new Promise((r) => stream.on('end', r).resume());
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { host: `pvdns.lan:${port}` })).status).toBe(403);

      const next = 'another-token-0123456789abcdef';
      const config = configSchema.parse({ ...pvdns.app['config'], http: { listen: pvdns.app['config'].http.listen, token: next, allowedHosts: ['pvdns.lan'], allow: ['10.0.0.0/8'] } });
      await pvdns.app.reload(config);
      expect(pvdns.app.addresses().http!.port).toBe(port);
      await ended; // the stream's client is outside the new http.allow
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { host: `pvdns.lan:${port}` })).status).toBe(403); // http.allow
      await pvdns.app.reload(configSchema.parse({ ...config, http: { ...config.http, allow: null } }));
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', { host: `pvdns.lan:${port}` })).status).toBe(200); // allowedHosts
      expect((await call(pvdns.http, 'POST', '/v1/cache/flush', { token: TEST_TOKEN })).status).toBe(401);
      expect((await call(pvdns.http, 'POST', '/v1/cache/flush', { token: next })).status).toBe(200);
    } finally {
      await pvdns.stop();
    }
  });
});

describe('reads follow http.allow (else access.allow)', () => {
  it('refuses the PvDs, events, resolve and metrics to a client outside the list, not /healthz and /readyz', async () => {
    for (const config of [{ http: { listen: '127.0.0.1:0', token: TEST_TOKEN, allow: ['10.0.0.0/8'] } }, { access: { allow: ['10.0.0.0/8'] } }]) {
      const pvdns = await startPvdns({ ...config, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
      try {
        for (const path of ['/v1/pvds', '/v1/pvds/wifi', '/v1/events', '/v1/resolve?name=x.example', '/metrics']) {
          const r = await raw(pvdns.http, 'GET', path, {});
          expect(r.status, path).toBe(403);
          expect(r.body.error, path).toMatch(/http\.allow/);
        }
        expect((await raw(pvdns.http, 'PUT', '/v1/pvds/x.example', { 'content-type': 'application/json', authorization: `Bearer ${TEST_TOKEN}` }, '{}')).status).toBe(403);
        expect((await raw(pvdns.http, 'GET', '/healthz', {})).status).toBe(200);
        expect((await raw(pvdns.http, 'GET', '/readyz', {})).status).toBe(200);
      } finally {
        await pvdns.stop();
      }
    }
  });

  it('lets http.allow open the API to clients access.allow leaves out', async () => {
    const pvdns = await startPvdns({ access: { allow: ['10.0.0.0/8'] }, http: { listen: '127.0.0.1:0', token: TEST_TOKEN, allow: ['127.0.0.0/8'] }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    try {
      expect((await raw(pvdns.http, 'GET', '/v1/pvds', {})).status).toBe(200);
    } finally {
      await pvdns.stop();
    }
  });
});

describe('http.tokenFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-token-'));
  chmodSync(dir, 0o755); // what protects the token is the file's own mode
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes a 0600 file with a fresh token at start, takes changes with it, and a reload reads a rotated one', async () => {
    const file = join(dir, 'sub', 'token');
    const pvdns = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile: file }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    try {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
      const token = readFileSync(file, 'utf8').trim();
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const spec = { identifier: 'tf.example', dnsServers: [up.address], noInternet: true };
      expect((await call(pvdns.http, 'PUT', '/v1/pvds/tf.example', { body: spec })).status).toBe(401);
      expect((await call(pvdns.http, 'PUT', '/v1/pvds/tf.example', { body: spec, token })).status).toBe(201);

      // Rotating: write the file, reload.
      const next = 'rotated-token-0123456789-abcdef';
      writeFileSync(file, `${next}\n`, { mode: 0o600 });
      await pvdns.app.reload(pvdns.app['config']);
      expect((await call(pvdns.http, 'DELETE', '/v1/pvds/tf.example', { token })).status).toBe(401);
      expect((await call(pvdns.http, 'DELETE', '/v1/pvds/tf.example', { token: next })).status).toBe(200);
    } finally {
      await pvdns.stop();
    }
    // A second start keeps the file's token.
    const again = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile: file }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    try {
      expect((await call(again.http, 'POST', '/v1/cache/flush', { token: 'rotated-token-0123456789-abcdef' })).status).toBe(200);
    } finally {
      await again.stop();
    }
  });

  it('refuses to start with a token file others can read, or one that holds no token, naming http.tokenFile', async () => {
    const cases: Array<[string, () => void, RegExp]> = [
      ['open.token', () => writeFileSync(join(dir, 'open.token'), 'open-token-0123456789abcdef\n', { mode: 0o644 }), /readable or writable by others \(mode 0644\): chmod 600 it/],
      ['short.token', () => writeFileSync(join(dir, 'short.token'), 'short\n', { mode: 0o600 }), /no token of at least 16 characters/],
      ['bad.token', () => writeFileSync(join(dir, 'bad.token'), 'has spaces in it, which is no token\n', { mode: 0o600 }), /may only contain/],
    ];
    for (const [name, make, problem] of cases) {
      make();
      chmodSync(join(dir, name), statSync(join(dir, name)).mode & 0o777); // writeFileSync's mode is masked by umask
      const err = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile: join(dir, name) }, pvds: [] }).then(
        async (p) => {
          await p.stop();
          return null;
        },
        (e: Error) => e,
      );
      expect(err?.message, name).toMatch(/^\(config\): http\.tokenFile: /);
      expect(err?.message, name).toMatch(problem);
    }
  });

  it('refuses a token file that is a symbolic link, or in a folder others can write', async () => {
    const target = join(dir, 'real.token');
    writeFileSync(target, 'real-token-0123456789abcdef\n', { mode: 0o600 });
    chmodSync(target, 0o600);
    symlinkSync(target, join(dir, 'link.token'));
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    for (const [file, problem] of [
      [join(dir, 'link.token'), /is a symbolic link/],
      [join(shared, 'token'), /is writable by others \(mode 0777\)/],
    ] as Array<[string, RegExp]>) {
      const err = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile: file }, pvds: [] }).then(
        async (p) => {
          await p.stop();
          return null;
        },
        (e: Error) => e,
      );
      expect(err?.message, file).toMatch(problem);
    }
  });

  it.runIf(process.getuid?.() === 0)("lets check-config, run as root, check a running service's token file that its own user owns", async () => {
    // As under systemd: /run/pvdns (0700) and its token (0600) belong to the unit's dynamic user.
    const folder = join(dir, 'service');
    mkdirSync(folder, { mode: 0o700 });
    writeFileSync(join(folder, 'token'), 'service-token-0123456789abcdef\n', { mode: 0o600 });
    chownSync(folder, 65534, 65534);
    chownSync(join(folder, 'token'), 65534, 65534);
    await expect(checkTokenFile(join(folder, 'token'))).resolves.toBeUndefined();
    // serve, as root, would not take a token another user could have written.
    await expect(loadTokenFile(join(folder, 'token'))).rejects.toThrow(/belongs to uid 65534/);
    // The modes still count.
    chmodSync(join(folder, 'token'), 0o640);
    await expect(checkTokenFile(join(folder, 'token'))).rejects.toThrow(/chmod 600/);
  });

  it('refuses http.token and http.tokenFile together', () => {
    const r = configSchema.safeParse({ http: { token: TEST_TOKEN, tokenFile: '/run/pvdns/token' } });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['http', 'tokenFile']);
  });

  it.runIf(process.getuid?.() === 0)('keeps another local user out: nobody can read neither the token nor change anything without it', async () => {
    const file = join(dir, 'root.token');
    const pvdns = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile: file }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
    try {
      // A client run as uid 65534 (nobody): it tries to read the token, then changes the PvDs with what it has.
      const script = `
        const fs = require('node:fs');
        let token = 'guessed-token-0123456789';
        try { token = fs.readFileSync(${JSON.stringify(file)}, 'utf8').trim(); console.log('read the token'); } catch (e) { console.log('cannot read: ' + e.code); }
        fetch(${JSON.stringify(pvdns.http)} + '/v1/pvds/evil', { method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token }, body: ${JSON.stringify(evil)} })
          .then((r) => console.log('status ' + r.status));`;
      // Asynchronously: pvdns runs in this process and must answer meanwhile.
      const child = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534, timeout: 10_000 });
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      await new Promise((r) => child.on('close', r));
      expect(stdout).toContain('cannot read: EACCES');
      expect(stdout).toContain('status 401');
      expect((await getPvd(pvdns.http, 'evil')).status).toBe(404);
    } finally {
      await pvdns.stop();
    }
  });
});

describe('the shipped configurations take no change from a client that proved nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-shipped-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const file of ['config/default.yaml', 'docker/config.yaml', 'packaging/config.yaml']) {
    it(file, async () => {
      const shipped = parseConfig(readFileSync(file, 'utf8'), file);
      // Only what this machine needs changes: loopback ports the kernel picks, no host sources, a
      // token file (if the config has one) in a temp folder. The http keys as shipped stay.
      const cfg = configSchema.parse({
        ...shipped,
        listen: ['127.0.0.1:0'],
        http: { ...shipped.http, listen: '127.0.0.1:0', ...(shipped.http.tokenFile ? { tokenFile: join(dir, file.replace(/\W/g, '_')) } : {}) },
        log: { level: 'silent' },
        pvdSources: { ...shipped.pvdSources, host: false, directory: shipped.pvdSources.directory ? dir : null },
        pvds: [{ identifier: 'wifi', dnsServers: [up.address] }],
      });
      const app = new App(cfg, { configFile: file });
      await app.start();
      const base = `http://${app.addresses().http!.label}`;
      try {
        const body = JSON.stringify({ dnsServers: ['127.0.0.53'], priority: 0 });
        for (const headers of [{}, { authorization: 'Bearer guessed-token-0123456789' }, { authorization: 'Basic cGF0aWVudDp6ZXJv' }] as Array<Record<string, string>>) {
          const json = { 'content-type': 'application/json', ...headers };
          expect([401, 403], 'PUT').toContain((await raw(base, 'PUT', '/v1/pvds/evil', json, body)).status);
          expect([401, 403], 'DELETE').toContain((await raw(base, 'DELETE', '/v1/pvds/wifi', headers)).status);
          expect([401, 403], 'flush').toContain((await raw(base, 'POST', '/v1/cache/flush', headers)).status);
        }
        expect(app.pvds.list().map((p) => p.id)).toEqual(['wifi']);
        // Prometheus in docker/compose.yaml scrapes pvdns:8053 by the service's name.
        if (file === 'docker/config.yaml') expect((await raw(base, 'GET', '/metrics', { host: 'pvdns:8053' })).status).toBe(200);
      } finally {
        await app.stop();
      }
    });
  }
});
