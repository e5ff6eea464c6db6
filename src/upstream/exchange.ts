// One query to one upstream server and its outcome. The Transport interface
// is what the pool depends on, so tests can script upstreams without sockets.

import type { Answer, Expected } from '../dns/answer.js';
import type { SocketAddress } from '../config/address.js';

/**
 * Why an exchange gave no answer; the reason label of
 * pvdns_upstream_errors_total. `unreachable` is a hard negative hint: ICMP
 * port or host unreachable, a TCP reset.
 */
export type FailureReason = 'timeout' | 'unreachable' | 'network' | 'closed';

export type Exchange =
  | { ok: true; answer: Answer; truncated: boolean; ignored?: number }
  | { ok: false; reason: FailureReason; detail: string; ignored?: number };

export interface ExchangeRequest {
  server: SocketAddress;
  /** The query's octets, ID included. */
  message: Buffer;
  expect: Expected;
  timeoutMs: number;
  /** Bind the socket here: the PvD's source address (RFC 8801 §3.4.4). */
  sourceAddress: string | null;
}

/** ExchangeDone receives an exchange's outcome, exactly once. */
export type ExchangeDone = (r: Exchange) => void;

/**
 * Transport sends one query over UDP or TCP and calls back with the
 * outcome (callbacks, not promises: this is the per-miss path).
 */
export interface Transport {
  /** udp may rewrite the query's ID (and `expect.id`) to keep IDs unique per socket. */
  udp(req: ExchangeRequest, done: ExchangeDone): void;
  tcp(req: ExchangeRequest, done: ExchangeDone): void;
  /** close releases sockets; exchanges in flight still finish. */
  close?(): void;
}

/** networkFailure classifies a socket error. */
export function networkFailure(err: NodeJS.ErrnoException): Exchange {
  const code = err.code ?? 'EIO';
  // ICMP port unreachable on a connected UDP socket, or a TCP RST: nobody listens.
  if (code === 'ECONNREFUSED') return { ok: false, reason: 'unreachable', detail: 'connection refused' };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return { ok: false, reason: 'unreachable', detail: code };
  return { ok: false, reason: 'network', detail: code };
}
