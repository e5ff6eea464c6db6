// Runs inside a test's network namespace (`ip netns exec NS node raw-child.mjs MODE`)
// and prints JSON lines for test/host/netlink.test.ts: the build's LinkMonitor
// ("monitor") or RA receiver ("ra"). Times are absolute milliseconds
// (performance.timeOrigin + now), comparable with the parent's.

import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

const dist = new URL('../../dist/', import.meta.url);
const now = () => performance.timeOrigin + performance.now();
const out = (obj) => process.stdout.write(`${JSON.stringify({ t: now(), ...obj })}\n`);
const mode = process.argv[2];

if (mode === 'monitor') {
  const { LinkMonitor, linkPrefixes } = await import(new URL('pvd/sources/netlink.js', dist).href);
  // RCVBUF shrinks the socket's queue so the test can overrun it.
  const mon = new LinkMonitor(process.env.RCVBUF ? { receiveBuffer: Number(process.env.RCVBUF) } : {});
  const snapshot = () =>
    Object.fromEntries([...mon.links().values()].map((l) => [l.ifname, { ifindex: l.ifindex, up: l.up, addresses: l.addresses, prefixes: linkPrefixes(l) }]));
  mon.on('changed', (names) => out({ changed: [...names].sort(), overruns: mon.overruns, links: snapshot() }));
  const ok = await mon.start();
  out({ ready: ok, why: mon.unavailable, links: snapshot() });
  // "block MS" on stdin: keep the event loop busy, as a loaded pvdns would be.
  createInterface({ input: process.stdin }).on('line', (line) => {
    const m = /^block (\d+)$/.exec(line.trim());
    if (!m) return;
    const until = now() + Number(m[1]);
    out({ blocked: true });
    while (now() < until);
    out({ unblocked: true });
  });
} else if (mode === 'ra') {
  const { openRaReceiver } = await import(new URL('native/icmp6.js', dist).href);
  try {
    openRaReceiver((ra) => out({ ra: { payload: ra.payload.toString('hex'), source: ra.source, ifindex: ra.ifindex, hopLimit: ra.hopLimit } }));
    out({ ready: true });
  } catch (err) {
    out({ ready: false, error: err.message, code: err.code });
    process.exit(0);
  }
} else {
  console.error(`raw-child: unknown mode ${mode}`);
  process.exit(2);
}
process.stdin.on('end', () => process.exit(0)); // the test ends us by closing stdin
process.stdin.resume();
