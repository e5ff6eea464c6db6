// The example VPN hooks (packaging/hooks/) run as a VPN client runs them: the
// PvD file each writes is one pvdns takes, and "down" removes it; through the
// API (PVDNS_API), each announces and withdraws its PvD at a real pvdns that
// wants a bearer token, taken from $PVDNS_TOKEN or from the token file pvdns
// writes, and a hook with no token, or a wrong one, fails saying why.

import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePvdInput } from '../../src/pvd/input.js';
import { getPvd } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const HOOKS = join(import.meta.dirname, '..', '..', 'packaging', 'hooks');
const dir = mkdtempSync(join(tmpdir(), 'pvdns-hooks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The hook's environment: PATH and the PvD folder, nothing of the test runner's own (no token leaks in). */
const hookEnv = (env: Record<string, string>): Record<string, string> => ({ PATH: process.env.PATH!, PVD_DIR: dir, ...env });

/**
 * runStatus runs a hook: its exit status and what it said on stderr. Asynchronously: the pvdns it
 * calls runs in this process, and a synchronous child would stop it from answering.
 */
const runStatus = (hook: string, args: string[], env: Record<string, string>): Promise<{ status: number; stderr: string }> =>
  new Promise((resolve) => {
    execFile('sh', [join(HOOKS, hook), ...args], { env: hookEnv(env), encoding: 'utf8', timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stderr });
    });
  });

/** run runs a hook that must succeed. */
const run = async (hook: string, args: string[], env: Record<string, string>): Promise<void> => {
  const r = await runStatus(hook, args, env);
  expect(r, `${hook} ${args.join(' ')}`).toEqual({ status: 0, stderr: '' });
};

const WG = { PVD_ID: 'corp.example.com', PVD_SERVERS: '"10.8.0.1", "10.8.0.2"', PVD_ZONES: '"corp.example.com"', PVD_PREFIXES: '"10.8.0.0/16"' };

describe('VPN hooks', () => {
  it('wireguard-pvd.sh writes the PvD file on up and removes it on down', async () => {
    await run('wireguard-pvd.sh', ['up', 'wg0'], WG);
    const file = join(dir, 'corp.example.com.json');
    const spec = parsePvdInput(JSON.parse(readFileSync(file, 'utf8')));
    expect(spec).toMatchObject({ identifier: 'corp.example.com', dnsServers: ['10.8.0.1', '10.8.0.2'], dnsZones: ['corp.example.com'], prefixes: ['10.8.0.0/16'], noInternet: true, interface: 'wg0' });
    await run('wireguard-pvd.sh', ['down', 'wg0'], { PVD_ID: 'corp.example.com' });
    expect(existsSync(file)).toBe(false);
  });

  it('openvpn-pvd.sh takes the DNS servers and domains the server pushed', async () => {
    const env = { script_type: 'up', dev: 'tun0', foreign_option_1: 'dhcp-option DNS 10.9.0.53', foreign_option_2: 'dhcp-option DOMAIN lab.example', foreign_option_3: 'dhcp-option DNS 10.9.0.54' };
    await run('openvpn-pvd.sh', [], env);
    const file = join(dir, 'vpn-tun0.json');
    expect(parsePvdInput(JSON.parse(readFileSync(file, 'utf8')))).toMatchObject({ identifier: 'vpn-tun0', dnsServers: ['10.9.0.53', '10.9.0.54'], dnsZones: ['lab.example'], interface: 'tun0' });
    await run('openvpn-pvd.sh', [], { ...env, script_type: 'down' });
    expect(existsSync(file)).toBe(false);
  });
});

describe('VPN hooks through the API, with a token', () => {
  const TOKEN = 'hooks-token-0123456789abcdef';
  let pvdns: Running;
  // A token file as pvdns writes one (mode 0600), for a pvdns whose http.token is the same.
  const tokenFile = join(dir, 'token');

  beforeAll(async () => {
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    pvdns = await startPvdns({ http: { listen: '127.0.0.1:0', token: TOKEN } });
  });
  afterAll(() => pvdns?.stop());

  it('wireguard-pvd.sh announces the PvD with the token from $PVDNS_TOKEN and withdraws it', async () => {
    await run('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVDNS_API: pvdns.http, PVDNS_TOKEN: TOKEN });
    const r = await getPvd(pvdns.http, 'corp.example.com');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ source: 'api', dnsZones: ['corp.example.com'], prefixes: ['10.8.0.0/16'], noInternet: true, interface: 'wg0' });
    expect(r.body.servers.map((s) => s.address)).toEqual(['10.8.0.1:53', '10.8.0.2:53']);
    await run('wireguard-pvd.sh', ['down', 'wg0'], { PVD_ID: 'corp.example.com', PVDNS_API: pvdns.http, PVDNS_TOKEN: TOKEN });
    expect((await getPvd(pvdns.http, 'corp.example.com')).status).toBe(404);
  });

  it('wireguard-pvd.sh reads the token from $PVDNS_TOKEN_FILE when $PVDNS_TOKEN is not set', async () => {
    await run('wireguard-pvd.sh', ['up', 'wg1'], { ...WG, PVD_ID: 'file.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: tokenFile });
    expect((await getPvd(pvdns.http, 'file.example')).body).toMatchObject({ source: 'api', interface: 'wg1' });
    await run('wireguard-pvd.sh', ['down', 'wg1'], { PVD_ID: 'file.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: tokenFile });
    expect((await getPvd(pvdns.http, 'file.example')).status).toBe(404);
  });

  it('openvpn-pvd.sh announces and withdraws through the API with the token file', async () => {
    const env = { script_type: 'up', dev: 'tun3', foreign_option_1: 'dhcp-option DNS 10.9.0.53', foreign_option_2: 'dhcp-option DOMAIN lab.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: tokenFile };
    await run('openvpn-pvd.sh', [], env);
    const r = await getPvd(pvdns.http, 'vpn-tun3');
    expect(r.body).toMatchObject({ source: 'api', dnsZones: ['lab.example'], interface: 'tun3', noInternet: true });
    expect(existsSync(join(dir, 'vpn-tun3.json'))).toBe(false); // the API, not a file
    await run('openvpn-pvd.sh', [], { ...env, script_type: 'down' });
    expect((await getPvd(pvdns.http, 'vpn-tun3')).status).toBe(404);
  });

  it('fails on up, saying which file it could not read, when there is no token; down still lets the tunnel go', async () => {
    const missing = join(dir, 'no-such-token');
    const up = await runStatus('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVD_ID: 'none.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: missing });
    expect(up.status).toBe(1);
    expect(up.stderr.trim()).toBe(`wireguard-pvd.sh: no pvdns API token: PVDNS_TOKEN is empty and ${missing} cannot be read (pvdns writes it at start; run as root or set PVDNS_TOKEN_FILE)`);
    expect((await getPvd(pvdns.http, 'none.example')).status).toBe(404);
    // An empty file is no token either.
    const empty = join(dir, 'empty-token');
    writeFileSync(empty, '', { mode: 0o600 });
    expect((await runStatus('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: empty })).stderr).toMatch(/no pvdns API token/);
    const down = await runStatus('wireguard-pvd.sh', ['down', 'wg0'], { PVD_ID: 'none.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: missing });
    expect(down.status).toBe(0);
    expect(down.stderr).toMatch(/no pvdns API token/);
    const ovpn = await runStatus('openvpn-pvd.sh', [], { script_type: 'up', dev: 'tun4', foreign_option_1: 'dhcp-option DNS 10.9.0.53', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: missing });
    expect(ovpn.status).toBe(1);
    expect(ovpn.stderr).toMatch(/^openvpn-pvd\.sh: no pvdns API token: .*no-such-token cannot be read/);
  });

  it("fails on up with pvdns's refusal when the token is wrong, and changes nothing", async () => {
    const r = await runStatus('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVD_ID: 'wrong.example', PVDNS_API: pvdns.http, PVDNS_TOKEN: 'not-the-token-0123456789' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^wireguard-pvd\\.sh: PUT ${pvdns.http}/v1/pvds/wrong\\.example: pvdns answered 40[13] \\{"error":`));
    expect((await getPvd(pvdns.http, 'wrong.example')).status).toBe(404);
  });

  it('says so when nothing answers at PVDNS_API', async () => {
    const r = await runStatus('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVDNS_API: 'http://127.0.0.1:9', PVDNS_TOKEN: TOKEN });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/wireguard-pvd\.sh: PUT http:\/\/127\.0\.0\.1:9\/v1\/pvds\/corp\.example\.com: no answer from pvdns/);
  });
});

describe('VPN hooks with the token file pvdns makes (http.tokenFile)', () => {
  const tokenDir = mkdtempSync(join(tmpdir(), 'pvdns-hooks-run-'));
  const tokenFile = join(tokenDir, 'token');
  let pvdns: Running;

  beforeAll(async () => {
    chmodSync(tokenDir, 0o700);
    pvdns = await startPvdns({ http: { listen: '127.0.0.1:0', tokenFile } });
  });
  afterAll(async () => {
    await pvdns?.stop();
    rmSync(tokenDir, { recursive: true, force: true });
  });

  it('reads the token pvdns wrote at start (mode 0600) and announces the PvD', async () => {
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    await run('wireguard-pvd.sh', ['up', 'wg0'], { ...WG, PVD_ID: 'made.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: tokenFile });
    expect((await getPvd(pvdns.http, 'made.example')).body).toMatchObject({ source: 'api', interface: 'wg0' });
    await run('wireguard-pvd.sh', ['down', 'wg0'], { PVD_ID: 'made.example', PVDNS_API: pvdns.http, PVDNS_TOKEN_FILE: tokenFile });
    expect((await getPvd(pvdns.http, 'made.example')).status).toBe(404);
  });
});
