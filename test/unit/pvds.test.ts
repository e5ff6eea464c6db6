// Where PvDs come from and when they go: the implicit "system" PvD from
// resolv.conf (never pvdns itself), and withdrawal when `expires` passes
// (RFC 8801 §4.3).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { ConfigError } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { changedKeys, pvdFromSpec } from '../../src/pvd/model.js';
import { PvdRegistry } from '../../src/pvd/registry.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { syncSource } from '../../src/pvd/sources/sync.js';

const resolvConf = (text: string): string => {
  const file = join(mkdtempSync(join(tmpdir(), 'pvdns-resolv-')), 'resolv.conf');
  writeFileSync(file, text);
  return file;
};

const app = (config: Record<string, unknown>): App =>
  new App(configSchema.parse({ http: { listen: null }, log: { level: 'silent' }, ...config }), { configFile: 'test.yaml', log: createLogger('silent') });

describe('the system PvD (pvdSources.host)', () => {
  it('takes the resolv.conf nameservers as a default PvD, skipping pvdns\'s own listener', async () => {
    const a = app({
      listen: ['127.0.0.47:53'],
      pvdSources: { host: true, resolvConf: resolvConf('# local\nnameserver 127.0.0.47\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\n') },
    });
    await a.preview(); // validates and announces, binds nothing
    const system = a.pvds.get('system');
    expect(system?.servers.map((s) => s.label)).toEqual(['192.0.2.53:53', '[2001:db8::53]:53']);
    expect(system?.isDefault).toBe(true);
    expect(a.routeTable().defaultRoute.pvds.map((p) => p.id)).toEqual(['system']);
  });

  it('is absent with pvdSources.host: false, and server-less when resolv.conf names no nameserver', async () => {
    const off = app({ pvdSources: { host: false, resolvConf: '/nonexistent/resolv.conf' } });
    await off.preview(); // resolvConf is not read, so not checked
    expect(off.pvds.get('system')).toBeUndefined();
    const empty = app({ pvdSources: { host: true, resolvConf: resolvConf('# no nameserver here\nsearch example.com\n') } });
    await empty.preview();
    expect(empty.pvds.get('system')?.servers).toEqual([]);
    expect(empty.readiness()).toEqual({ ready: false, reason: 'listeners not bound yet' });
  });

  it('refuses a resolvConf that cannot be read while pvdSources.host is true, naming the key', async () => {
    const missing = app({ pvdSources: { host: true, resolvConf: '/nonexistent/resolv.conf' } });
    await expect(missing.preview()).rejects.toThrow(ConfigError);
    await expect(missing.preview()).rejects.toThrow(
      'test.yaml: pvdSources.resolvConf: cannot read /nonexistent/resolv.conf: ENOENT (pvdSources.host is true: its "system" PvD takes the nameservers there)',
    );
    const folder = app({ pvdSources: { host: true, resolvConf: tmpdir() } });
    await expect(folder.preview()).rejects.toThrow(`test.yaml: pvdSources.resolvConf: cannot read ${tmpdir()}: EISDIR`);
    expect(missing.pvds.list()).toEqual([]);
  });

  it('refuses a configured server that is pvdns itself, naming the key', async () => {
    const a = app({ listen: ['127.0.0.1:5300'], pvdSources: { host: false }, pvds: [{ identifier: 'loop', dnsServers: ['192.0.2.1', '127.0.0.1:5300'] }] });
    await expect(a.preview()).rejects.toThrow(ConfigError);
    await expect(a.preview()).rejects.toThrow("test.yaml: pvds[0].dnsServers[1]: 127.0.0.1:5300 is pvdns's own listener: queries would loop");
  });
});

describe('reload', () => {
  it('changes nothing when the new configuration would loop', async () => {
    const base = { listen: ['127.0.0.1:5300'], pvdSources: { host: false } };
    const a = app({ ...base, pvds: [{ identifier: 'wifi', dnsServers: ['192.0.2.1'] }] });
    await a.preview();
    const next = configSchema.parse({ ...base, http: { listen: null }, pvds: [{ identifier: 'lan', dnsServers: ['127.0.0.1:5300'] }] });
    await expect(a.reload(next)).rejects.toThrow(/pvds\[0\]\.dnsServers\[0\]: 127\.0\.0\.1:5300 is pvdns's own listener/);
    expect(a.pvds.list().map((p) => p.id)).toEqual(['wifi']);
  });

  it('announces, updates and withdraws PvDs to match the new file', async () => {
    const base = { pvdSources: { host: false }, http: { listen: null }, log: { level: 'silent' } };
    const a = app({ ...base, pvds: [{ identifier: 'wifi', dnsServers: ['192.0.2.1'] }, { identifier: 'vpn', dnsServers: ['10.8.0.1'], dnsZones: ['corp.example'] }] });
    await a.preview();
    const wifiTag = a.pvds.get('wifi')!.tag;
    await a.reload(configSchema.parse({ ...base, pvds: [{ identifier: 'wifi', dnsServers: ['192.0.2.2'] }, { identifier: 'cell', dnsServers: ['198.51.100.1'] }] }));
    expect(a.pvds.list().map((p) => p.id)).toEqual(['wifi', 'cell']);
    expect(a.pvds.get('wifi')!.servers.map((s) => s.label)).toEqual(['192.0.2.2:53']);
    expect(a.pvds.get('wifi')!.tag).toBe(wifiTag); // an update keeps the PvD's identity (and cache namespace)
  });
});

describe('PvD expiry', () => {
  const spec = (expires: string | null) => pvdSpecSchema.parse({ identifier: 'Hotel.Example', dnsServers: ['192.0.2.1'], expires });

  it('withdraws a PvD when its expires time passes', async () => {
    const registry = new PvdRegistry();
    const withdrawn: string[] = [];
    registry.on('withdrawn', (p, reason) => withdrawn.push(`${p.id}:${reason}`));
    expect(registry.announce(pvdFromSpec(spec(new Date(Date.now() + 80).toISOString()), 'config', 0))).toBe('announced');
    expect(registry.get('HOTEL.example.')?.identifier).toBe('Hotel.Example'); // case-insensitive, trailing dot ignored (RFC 8801 §3.4)
    await new Promise((r) => setTimeout(r, 200));
    expect(withdrawn).toEqual(['hotel.example:expired']);
    expect(registry.size).toBe(0);
    registry.close();
  });

  it('refuses a PvD that has already expired', () => {
    const registry = new PvdRegistry();
    expect(registry.announce(pvdFromSpec(spec('2020-01-01T00:00:00Z'), 'config', 0))).toBe('expired');
    expect(registry.size).toBe(0);
  });
});

describe('syncSource', () => {
  const spec = (id: string, server = '192.0.2.1') => pvdSpecSchema.parse({ identifier: id, dnsServers: [server] });

  it('tells listeners once per sync, after the PvDs\' own events (1,000 PvDs: one route rebuild, not 1,000)', () => {
    const registry = new PvdRegistry();
    const heard: string[] = [];
    registry.on('announced', (p) => heard.push(`announced ${p.id} (${registry.size} held)`));
    registry.on('updated', (p) => heard.push(`updated ${p.id}`));
    registry.on('withdrawn', (p) => heard.push(`withdrawn ${p.id}`));
    registry.on('changed', () => heard.push('changed'));

    syncSource(registry, 'config', Array.from({ length: 1000 }, (_, i) => spec(`pvd-${i}`)));
    expect(heard.filter((h) => h === 'changed')).toHaveLength(1);
    expect(heard.at(-1)).toBe('changed');
    expect(heard[0]).toBe('announced pvd-0 (1000 held)'); // the registry had changed in full before anyone heard
    expect(heard).toHaveLength(1001);

    heard.length = 0;
    syncSource(registry, 'config', [spec('pvd-1', '192.0.2.2'), spec('pvd-0'), spec('new')]);
    expect(heard).toEqual([
      'updated pvd-1',
      'updated pvd-0', // its place in the order changed
      'announced new (3 held)',
      ...Array.from({ length: 998 }, (_, i) => `withdrawn pvd-${i + 2}`),
      'changed',
    ]);

    heard.length = 0;
    syncSource(registry, 'config', [spec('pvd-1', '192.0.2.2'), spec('pvd-0'), spec('new')]);
    expect(heard).toEqual([]); // nothing changed: nothing to hear
    registry.close();
  });

  it('a single announce outside a sync is heard at once, its own event first', () => {
    const registry = new PvdRegistry();
    const heard: string[] = [];
    registry.on('announced', (p) => heard.push(`announced ${p.id}`));
    registry.on('changed', () => heard.push('changed'));
    registry.announce(pvdFromSpec(spec('wifi'), 'api', 0));
    expect(heard).toEqual(['announced wifi', 'changed']);
    registry.close();
  });
});

describe('changedKeys (the pvd-updated event)', () => {
  const make = (spec: Record<string, unknown>) => pvdFromSpec(pvdSpecSchema.parse({ identifier: 'vpn', dnsServers: ['10.8.0.1'], dnsZones: ['corp.example'], ...spec }), 'api', 0);

  it('names each key an update changed, by the keys a PvD is written with, and nothing for the same PvD', () => {
    expect(changedKeys(make({}), make({}))).toEqual([]);
    expect(changedKeys(make({}), make({ dnsServers: ['10.8.0.2'], priority: 5 }))).toEqual(['dnsServers', 'priority']);
    expect(changedKeys(make({}), make({ noInternet: true }))).toEqual(['noInternet', 'default']);
    expect(changedKeys(make({}), make({ rebindProtection: true, captivePortal: 'https://portal.example/api', dns64Synthesize: true }))).toEqual(['dns64Synthesize', 'captivePortal', 'rebindProtection']);
    expect(changedKeys(make({}), make({ dnsZones: ['corp.example', 'corp.example.net'], expires: '2099-01-01T00:00:00Z' }))).toEqual(['dnsZones', 'expires']);
  });
});
