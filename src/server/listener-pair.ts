// A DNS listener: UDP and TCP on one address, bound together. With port 0
// the kernel picks the UDP port and TCP takes the same one, retrying if it
// is taken. Used for `listen` and for each PvD's own `listen`.

import type { Logger } from 'pino';
import type { SocketAddress } from '../config/address.js';
import type { ConfigError } from '../config/load.js';
import { bind } from './bind.js';
import type { QueryHandler } from './handler.js';
import { TcpListener, type TcpOptions } from './tcp.js';
import { createUdpListener, type UdpListener } from './udp.js';

export interface ListenerPair {
  /** The address as configured. */
  label: string;
  udp: UdpListener;
  tcp: TcpListener;
}

/**
 * bindPair binds UDP and TCP on `addr` for `handler`; a failure is thrown
 * as `error` makes it (a ConfigError naming the key), after closing what
 * was opened.
 */
export async function bindPair(addr: SocketAddress, handler: QueryHandler, tcp: TcpOptions, log: Logger, error: (problem: string) => ConfigError): Promise<ListenerPair> {
  for (let tries = 0; ; tries++) {
    const udp = createUdpListener(addr, handler, log);
    await bind(error, `${addr.label} (UDP)`, () => udp.start());
    const tcpAddr = addr.port === 0 ? { ...addr, port: udp.address.port } : addr;
    const t = new TcpListener(tcpAddr, handler, { ...tcp }, log);
    try {
      await t.start();
    } catch (err) {
      await udp.stop();
      if (addr.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && tries < 20) continue;
      await bind(error, `${tcpAddr.label} (TCP)`, () => Promise.reject(err));
    }
    return { label: addr.label, udp, tcp: t };
  }
}
