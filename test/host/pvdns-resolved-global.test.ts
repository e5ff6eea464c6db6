// pvdns beside a real systemd-resolved 252 (resolved-harness.ts) whose only
// servers are global, the most common DNS over TLS setup: resolved.conf's
// DNS=10.77.9.9#dns.test and DNSOverTLS=yes, no link with servers. pvdns's
// `system` PvD is those servers, strict, and nothing is asked in the clear —
// not even the 10.77.9.9 that resolv.conf names (uplink mode): a recording
// UDP listener on 10.77.9.9:53 hears nothing while pvdns answers SERVFAIL
// (nothing serves DNS over TLS there).

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onLines, startResolved, type Resolved } from './resolved-harness.js';

const ROOT = resolvePath(import.meta.dirname, '../..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A UDP listener that prints one line per datagram it receives. */
const RECORDER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, from) => console.log('query ' + from.address + ' ' + m.length));
s.bind(53, '10.77.9.9', () => console.log('ready'));
`;

let r: Resolved;
let pvdns: ChildProcess;
let recorder: ChildProcess;
const heard: string[] = [];
const pvdnsLog: string[] = [];

type View = { identifier: string; encryption?: string; default?: boolean; origin?: string; servers?: Array<{ address: string; transport: string; authName: string | null; fallback: string | null }> };

describe('pvdns beside a systemd-resolved with global DNS over TLS only (resolved.conf DNS=ADDR#NAME, DNSOverTLS=yes)', () => {
  beforeAll(async () => {
    r = await startResolved({ name: 'global', resolvedConf: ['DNS=10.77.9.9#dns.test', 'DNSOverTLS=yes'] });
    // A link with the global server's address and the default route, but no servers of its own.
    await r.addLink('up0');
    await r.exec('ip', ['addr', 'add', '10.77.9.9/24', 'dev', 'up0']);
    recorder = r.spawn(process.execPath, ['-e', RECORDER]);
    await new Promise<void>((ready) => onLines(recorder, (line) => (line === 'ready' ? ready() : heard.push(line))));
    const config = join(r.dir, 'pvdns.yaml');
    // resolv.conf names the same server (uplink mode): read, it would be asked on port 53 in the clear.
    writeFileSync(join(r.dir, 'resolv.conf'), 'nameserver 10.77.9.9\n');
    writeFileSync(
      config,
      JSON.stringify({
        listen: ['127.0.0.1:5300'],
        http: { listen: '127.0.0.1:8053' },
        log: { level: 'info' },
        captive: { probeIntervalS: 0 },
        cache: { maxTtl: 0 },
        pvdSources: { host: true, hostBackend: 'resolved', resolvConf: join(r.dir, 'resolv.conf') },
        forwardTestNames: true, // its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
      }),
    );
    pvdns = r.spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve', '--config', config], { cwd: r.dir });
    onLines(pvdns, (line) => pvdnsLog.push(line));
    pvdns.stderr!.on('data', (d: Buffer) => pvdnsLog.push(d.toString()));
  }, 60_000);

  afterAll(async () => {
    pvdns?.kill('SIGTERM');
    recorder?.kill('SIGTERM');
    await r?.stop();
  });

  it('shows resolved\'s global servers as the strict `system` PvD, TLS authenticated as the name written, no fallback to the clear', async () => {
    let system: View | undefined;
    for (let i = 0; i < 250 && system?.servers?.length !== 1; i++) {
      await sleep(40);
      const out = await r.exec('curl', ['-s', 'http://127.0.0.1:8053/v1/pvds']).catch(() => ({ stdout: '' }));
      if (!out.stdout.startsWith('{') && !out.stdout.startsWith('[')) continue;
      const body = JSON.parse(out.stdout) as { pvds?: View[] } | View[];
      system = (Array.isArray(body) ? body : (body.pvds ?? [])).find((p) => p.identifier === 'system');
    }
    if (!system) throw new Error(`no system PvD; pvdns said: ${pvdnsLog.slice(-8).join(' | ')}`);
    expect([system.encryption, system.default, system.origin]).toEqual(['strict', true, 'resolved (D-Bus)']);
    expect(system.servers!.map((s) => [s.address, s.transport, s.authName, s.fallback])).toEqual([['tls://10.77.9.9:853#dns.test', 'tls', 'dns.test', null]]);
  });

  it('asks nothing in the clear: a name gets SERVFAIL (no DoT server there) and 10.77.9.9:53 hears no query', async () => {
    const { stdout } = await r.exec('dig', ['@127.0.0.1', '-p', '5300', '+tries=1', '+time=8', 'www.example.com', 'A']);
    expect(stdout).toMatch(/status: SERVFAIL/);
    await sleep(200);
    expect(heard).toEqual([]);
    // The recorder does hear a query sent to it in the clear (what pvdns would have sent reading resolv.conf).
    await r.exec('dig', ['@10.77.9.9', '+tries=1', '+time=1', 'www.example.com', 'A']).catch(() => undefined);
    expect(heard).toHaveLength(1);
  });
});
