// PvDs learned from the host (pvdSources.host): systemd-resolved's per-link
// DNS, fed to a running pvdns as recorded resolvectl output that changes
// while it runs, with fake link servers on 127.0.0.50–52. A link coming up
// is announced, a change updates its PvD, a link going away withdraws it,
// and a VPN's routing domain routes its names to it alone.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import type { RunTool } from '../../src/pvd/sources/host.js';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { call, eventually, getPvd, listPvds } from '../helpers/http.js';

const emptyResolvConf = join(mkdtempSync(join(tmpdir(), 'pvdns-host-')), 'resolv.conf');
writeFileSync(emptyResolvConf, '# no nameserver\n');

describe('PvDs from the host (systemd-resolved)', () => {
  const lan = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.50')]));
  const vpn = new FakeUpstream((q) => answer(q, [a(q, '10.8.0.50')]));
  const lte = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.52')]));
  let app: App;
  let dns: { host: string; port: number };
  let http: string;
  /** What resolvectl prints now: "dns", "domain", "default-route" and "dnsovertls" output. */
  const out: Record<string, string> = {};
  const runTool: RunTool = (cmd, args) => Promise.resolve(cmd === 'resolvectl' ? (out[args.at(-1)!] ?? null) : null);
  const links = (rows: Array<[string, string, string, string]>): void => {
    out.dns = `Global:\n${rows.map(([n, s], i) => `Link ${i + 2} (${n}): ${s}`).join('\n')}\n`;
    out.domain = `Global:\n${rows.map(([n, , d], i) => `Link ${i + 2} (${n}): ${d}`).join('\n')}\n`;
    out['default-route'] = `Global: no\n${rows.map(([n, , , r], i) => `Link ${i + 2} (${n}): ${r}`).join('\n')}\n`;
    out.dnsovertls = `Global: no\n${rows.map(([n], i) => `Link ${i + 2} (${n}): no`).join('\n')}\n`;
  };

  beforeAll(async () => {
    await lan.start('127.0.0.50');
    await vpn.start('127.0.0.51');
    await lte.start('127.0.0.52');
    links([['eth0', lan.address, 'home.example', 'yes']]);
    const cfg = configSchema.parse({
      listen: ['127.0.0.1:0'],
      http: { listen: '127.0.0.1:0' },
      log: { level: 'silent' },
      captive: { probeIntervalS: 0 },
      // A resolv.conf with no nameserver: when every link goes, the fallback "system" PvD has none.
      pvdSources: { host: true, hostBackend: 'resolvectl', hostPollIntervalS: 1, resolvConf: emptyResolvConf },
    });
    app = new App(cfg, { configFile: null, log: createLogger('silent'), runTool });
    await app.start();
    const bound = app.addresses();
    dns = { host: bound.dns[0]!.host, port: bound.dns[0]!.port };
    http = `http://${bound.http!.label}`;
  });
  afterAll(async () => {
    await app.stop();
    await Promise.all([lan.stop(), vpn.stop(), lte.stop()]);
  });

  it('makes one PvD per link, the default route a default PvD', async () => {
    const pvds = await listPvds(http);
    expect(pvds.map((p) => [p.identifier, p.source, p.origin, p.interface, p.default, p.dnsZones])).toEqual([
      ['eth0', 'host', 'resolvectl (polled every 1 s)', 'eth0', true, ['home.example']],
    ]);
    // Which way the host is read is said once for all its PvDs, too.
    expect((await call<{ sources: unknown }>(http, 'GET', '/v1/pvds')).body.sources).toEqual([{ source: 'host', via: 'resolvectl (polled every 1 s)' }]);
    expect((await ask(dns, 'www.example.org', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.50']);
  });

  it("announces a VPN link when it comes up, and sends its routing domain's names to it alone", async () => {
    links([
      ['eth0', lan.address, 'home.example', 'yes'],
      ['wg0', vpn.address, '~corp.example.com', 'no'],
    ]);
    await eventually('wg0 to be announced', async () => (await getPvd(http, 'wg0')).status === 200, 5000);
    expect((await getPvd(http, 'wg0')).body).toMatchObject({ source: 'host', default: false, dnsZones: ['corp.example.com'] });
    lan.seen.length = 0;
    expect((await ask(dns, 'git.corp.example.com', 'A')).packet.answers.map((x) => x.address)).toEqual(['10.8.0.50']);
    expect((await ask(dns, 'www2.example.org', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.50']);
    expect(lan.names()).toEqual(['www2.example.org']); // the corporate name never reached the LAN's server
  });

  it("updates a link's PvD when its servers change, and skips a server that is pvdns itself", async () => {
    links([
      ['eth0', `${lte.address} ${dns.host}:${dns.port}`, 'home.example', 'yes'],
      ['wg0', vpn.address, '~corp.example.com', 'no'],
    ]);
    await eventually('eth0 to move to the new server', async () => (await getPvd(http, 'eth0')).body.servers.map((s) => s.address).join() === `${lte.address}`, 5000);
    expect((await ask(dns, 'other.example.org', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.52']);
  });

  it('withdraws a link that goes away: its names route elsewhere', async () => {
    links([['eth0', lte.address, 'home.example', 'yes']]);
    await eventually('wg0 to be withdrawn', async () => (await getPvd(http, 'wg0')).status === 404, 5000);
    expect((await ask(dns, 'git2.corp.example.com', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.52']);
  });
});
