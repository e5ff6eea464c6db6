// Runs inside one of test/host/ra.test.ts's network namespaces and prints
// JSON lines:
//   feed    (the host's namespace): the build's RaFeed on the addon's real RA
//           receiver, each announce and withdraw; with PVD_INFO_CA set, it
//           fetches PvD Additional Information with fetchPvdInfo, the lookup
//           answering PVD_INFO_ADDR as the PvD's own servers would.
//   server  (the router's namespace): serves PVD_INFO_JSON over HTTPS on
//           [PVD_INFO_ADDR]:443 as application/pvd+json ("$HOST" in it
//           replaced by the request's host name).

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

const dist = new URL('../../dist/', import.meta.url);
const out = (obj) => process.stdout.write(`${JSON.stringify({ t: Date.now(), ...obj })}\n`);
const env = process.env;
const mode = process.argv[2];

if (mode === 'server') {
  const server = createServer({ key: readFileSync(env.PVD_INFO_KEY), cert: readFileSync(env.PVD_INFO_CERT) }, (req, res) => {
    out({ served: { path: req.url, from: req.socket.remoteAddress } });
    res.writeHead(200, { 'content-type': 'application/pvd+json' });
    // "$HOST" in the object stands for the name asked for: one server for several PvD IDs.
    res.end(env.PVD_INFO_JSON.replaceAll('$HOST', (req.headers.host ?? '').replace(/:\d+$/, '')));
  });
  server.on('error', (err) => out({ ready: false, error: err.message }));
  server.listen(443, env.PVD_INFO_ADDR, () => out({ ready: true }));
} else if (mode === 'feed') {
  const { RaFeed } = await import(new URL('pvd/sources/ra.js', dist).href);
  const { openRaReceiver } = await import(new URL('native/icmp6.js', dist).href);
  const { fetchPvdInfo } = await import(new URL('pvd/sources/pvd-info.js', dist).href);
  let fetchInfo;
  if (env.PVD_INFO_CA) {
    const { createSecureContext } = await import('node:tls');
    const secureContext = createSecureContext({ ca: readFileSync(env.PVD_INFO_CA) });
    fetchInfo = async (id, via) => {
      out({ fetch: { id, via } });
      const r = await fetchPvdInfo(id, { lookup: async () => [env.PVD_INFO_ADDR], secureContext, localAddress: via.localAddress, advertisedPrefixes: via.prefixes });
      out({ fetched: typeof r === 'string' ? { problem: r } : r });
      return r;
    };
  }
  const feed = new RaFeed({ receiver: openRaReceiver, fetchInfo });
  try {
    await feed.start({
      sync() {},
      announce: (spec) => out({ announce: spec }),
      withdraw: (id) => out({ withdraw: id }),
      hold: () => () => {},
    });
    out({ ready: true });
  } catch (err) {
    out({ ready: false, error: err.message });
    process.exit(0);
  }
  process.stdin.on('end', () => feed.stop());
} else {
  console.error(`ra-child: unknown mode ${mode}`);
  process.exit(2);
}
process.stdin.on('end', () => process.exit(0)); // the test ends us by closing stdin
process.stdin.resume();
