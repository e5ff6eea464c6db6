// The process a host test runs inside resolved's network namespace: a
// ResolvedBackend on the private bus (DBUS_SYSTEM_BUS_ADDRESS), as root or as
// another user, printing one JSON line per event on stdout:
//   {"type":"start","name":…,"links":[…] | null}   then   {"type":"report","links":[…]}
// It stands in for pvdns's host source: like that source with its netlink
// monitor, it calls refresh() when a link comes or goes, here from
// `ip -o monitor link` (PVDNS_RUNNER_IP_MONITOR=1).
// resolved.test.ts bundles it with esbuild, so it runs where the test's
// user can read it.

import { spawn } from 'node:child_process';
import { ResolvedBackend } from '../../src/pvd/sources/resolved.js';

const say = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const backend = new ResolvedBackend({ pollMs: Number(process.env.PVDNS_RUNNER_POLL_MS ?? 1000) });
const links = await backend.start((l) => say({ type: 'report', links: l }));
say({ type: 'start', name: backend.name, links });
if (process.env.PVDNS_RUNNER_IP_MONITOR === '1') {
  const mon = spawn('ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
  mon.stdout.on('data', () => backend.refresh());
  process.on('exit', () => mon.kill());
}
process.on('SIGTERM', () => {
  backend.stop();
  process.exit(0);
});
