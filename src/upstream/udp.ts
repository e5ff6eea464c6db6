// A query over UDP from a fresh socket: a random source port, connected to
// the server so the kernel drops datagrams from any other address and port
// and reports ICMP port-unreachable as ECONNREFUSED. Every datagram that
// arrives is still checked (ID and question, RFC 5452 §9.1); a forged one is
// ignored and the real answer still accepted.

import dgram from 'node:dgram';
import { parseResponse } from '../dns/answer.js';
import { networkFailure, type Exchange, type ExchangeRequest } from './exchange.js';
import { randomPort } from './random.js';

/** literalLookup resolves IP literals synchronously: dgram's default defers every call. */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}

const BIND_TRIES = 8;

/** udpExchange sends one query and resolves with its answer or why there is none; it never rejects. */
export function udpExchange(req: ExchangeRequest): Promise<Exchange> {
  const { server } = req;
  return new Promise<Exchange>((resolve) => {
    let socket: dgram.Socket | null = null;
    let done = false;
    let ignored = 0;
    const finish = (r: Exchange): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.close();
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, reason: 'timeout', detail: ignored ? `timeout (${ignored} mismatched replies ignored)` : 'timeout' }),
      req.timeoutMs,
    );
    const onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
      if (rinfo.port !== server.port || rinfo.address !== server.host) {
        ignored++;
        return;
      }
      const r = parseResponse(msg, req.expect);
      if (r.ok) finish({ ok: true, answer: r.answer, truncated: r.truncated });
      else ignored++;
    };
    const attempt = (n: number): void => {
      const s = (socket = dgram.createSocket({ type: server.family === 6 ? 'udp6' : 'udp4', lookup: literalLookup }));
      s.once('error', (err: NodeJS.ErrnoException) => {
        // A random port may be taken: draw another on a new socket.
        if (err.code === 'EADDRINUSE' && n + 1 < BIND_TRIES && !done) {
          s.close();
          attempt(n + 1);
        } else finish(networkFailure(err));
      });
      // The last try lets the kernel choose, which cannot collide.
      s.bind({ port: n + 1 < BIND_TRIES ? randomPort() : 0, address: req.sourceAddress ?? undefined, exclusive: true }, () => {
        if (done) return;
        s.removeAllListeners('error');
        s.on('error', (err: NodeJS.ErrnoException) => finish(networkFailure(err)));
        s.on('message', onMessage);
        s.connect(server.port, server.host, () => {
          if (!done) s.send(req.message);
        });
      });
    };
    attempt(0);
  });
}
