// A query over TCP (RFC 7766): used when a UDP answer came back truncated.
// One connection per exchange for now; connection reuse with pipelining
// (RFC 7766 §6.2.1) belongs to the upstream health work.

import net from 'node:net';
import { parseResponse } from '../dns/answer.js';
import { networkFailure, type Exchange, type ExchangeDone, type ExchangeRequest } from './exchange.js';

/** tcpExchange sends one length-prefixed query and calls back with the matching reply or why there is none. */
export function tcpExchange(req: ExchangeRequest, resolve: ExchangeDone): void {
  const { server } = req;
  let done = false;
  let pending: Buffer = Buffer.alloc(0);
  const socket = net.connect({
    host: server.host,
    port: server.port,
    family: server.family,
    localAddress: req.sourceAddress ?? undefined,
    noDelay: true,
    lookup: (host, _opts, cb) => (cb as (e: null, a: string, f: number) => void)(null, host, server.family),
  });
  const finish = (r: Exchange): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
    resolve(r);
  };
  const timer = setTimeout(() => finish({ ok: false, reason: 'timeout', detail: 'timeout (tcp)' }), req.timeoutMs);
  socket.on('error', (err) => finish(networkFailure(err)));
  socket.on('close', () => finish({ ok: false, reason: 'closed', detail: 'tcp connection closed without an answer' }));
  socket.on('connect', () => {
    const framed = Buffer.allocUnsafe(2 + req.message.length);
    framed.writeUInt16BE(req.message.length, 0);
    req.message.copy(framed, 2);
    socket.write(framed);
  });
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 2) {
      const len = pending.readUInt16BE(0);
      if (pending.length < 2 + len) break;
      const msg = pending.subarray(2, 2 + len);
      pending = pending.subarray(2 + len);
      const r = parseResponse(msg, req.expect);
      if (r.ok) return finish(r);
    }
  });
}
