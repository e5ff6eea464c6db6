#!/usr/bin/env node
// The floor of Node and pvdns's UDP addon at a fixed rate: a bare "DNS
// server" that answers each query with itself (QR set), read with recvmmsg
// and sent with sendmmsg by batch exactly as pvdns's listener does, with no
// pvdns code in between. Run dnsperf's fixed-rate hit latency against it,
// pvdns and Unbound one after another (bench/README.md, "The latency
// floor"): what pvdns adds to the tail is its difference from this.
//
//   node bench/node-floor.mjs [address] [port]     (default 127.0.0.13 5313)
//
// Needs the addon (npm install builds it into build/Release/).

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const addon = require('../build/Release/pvdns_udp.node');
const [address = '127.0.0.13', port = '5313'] = process.argv.slice(2);
const BATCH = addon.BATCH;
const META = 8;
const SLOT = 4096;
const rx = Buffer.alloc(BATCH * SLOT);
const meta = new Int32Array(BATCH * META);
const outMeta = new Int32Array(BATCH * META);
const out = [];
const socket = new addon.UdpSocket(4);
const bound = socket.bind(address, Number(port), false);
if (bound < 0) throw new Error(`cannot bind ${address}:${port} (errno ${-bound})`);
socket.start(rx, meta, SLOT, (n) => {
  if (n <= 0) return;
  for (let i = 0; i < n; i++) {
    const len = meta[i * META];
    // A copy, as pvdns makes (a query may outlive its batch there).
    const msg = Buffer.allocUnsafe(len);
    rx.copy(msg, 0, i * SLOT, i * SLOT + len);
    msg[2] |= 0x80;
    for (let k = 0; k < META; k++) outMeta[i * META + k] = meta[i * META + k];
    out[i] = msg;
  }
  socket.sendBatch(out, outMeta, n);
});
process.stderr.write(`node-floor: answering on ${address}:${port}\n`);
