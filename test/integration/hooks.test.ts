// The example VPN hooks (packaging/hooks/) run as a VPN client runs them: the
// PvD file each writes is one pvdns takes, and "down" removes it.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePvdInput } from '../../src/pvd/input.js';

const HOOKS = join(import.meta.dirname, '..', '..', 'packaging', 'hooks');
const dir = mkdtempSync(join(tmpdir(), 'pvdns-hooks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (hook: string, args: string[], env: Record<string, string>): void => {
  execFileSync('sh', [join(HOOKS, hook), ...args], { env: { PATH: process.env.PATH!, PVD_DIR: dir, ...env } });
};

describe('VPN hooks', () => {
  it('wireguard-pvd.sh writes the PvD file on up and removes it on down', () => {
    run('wireguard-pvd.sh', ['up', 'wg0'], { PVD_ID: 'corp.example.com', PVD_SERVERS: '"10.8.0.1", "10.8.0.2"', PVD_ZONES: '"corp.example.com"', PVD_PREFIXES: '"10.8.0.0/16"' });
    const file = join(dir, 'corp.example.com.json');
    const spec = parsePvdInput(JSON.parse(readFileSync(file, 'utf8')));
    expect(spec).toMatchObject({ identifier: 'corp.example.com', dnsServers: ['10.8.0.1', '10.8.0.2'], dnsZones: ['corp.example.com'], prefixes: ['10.8.0.0/16'], noInternet: true, interface: 'wg0' });
    run('wireguard-pvd.sh', ['down', 'wg0'], { PVD_ID: 'corp.example.com' });
    expect(existsSync(file)).toBe(false);
  });

  it('openvpn-pvd.sh takes the DNS servers and domains the server pushed', () => {
    const env = { script_type: 'up', dev: 'tun0', foreign_option_1: 'dhcp-option DNS 10.9.0.53', foreign_option_2: 'dhcp-option DOMAIN lab.example', foreign_option_3: 'dhcp-option DNS 10.9.0.54' };
    run('openvpn-pvd.sh', [], env);
    const file = join(dir, 'vpn-tun0.json');
    expect(parsePvdInput(JSON.parse(readFileSync(file, 'utf8')))).toMatchObject({ identifier: 'vpn-tun0', dnsServers: ['10.9.0.53', '10.9.0.54'], dnsZones: ['lab.example'], interface: 'tun0' });
    run('openvpn-pvd.sh', [], { ...env, script_type: 'down' });
    expect(existsSync(file)).toBe(false);
  });
});
