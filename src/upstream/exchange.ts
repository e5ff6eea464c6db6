// One query to one upstream server and its outcome. The Transport interface
// is what the pool depends on, so tests can script upstreams without sockets.

import type { Answer, Expected } from '../dns/answer.js';
import type { UpstreamServer } from './server.js';
import type { ServerStats } from './stats.js';

/**
 * Why an exchange gave no answer; the reason label of
 * pvdns_upstream_errors_total. `unreachable` is a hard negative hint: ICMP
 * port or host unreachable, a TCP reset. `tls` is a TLS handshake that
 * failed (the certificate, the protocol); `http` a DoH exchange the server
 * refused with an HTTP status: both say the server cannot be used as it is.
 */
export type FailureReason = 'timeout' | 'unreachable' | 'network' | 'closed' | 'tls' | 'http';

export type Exchange =
  | { ok: true; answer: Answer; truncated: boolean; ignored?: number }
  | { ok: false; reason: FailureReason; detail: string; ignored?: number };

export interface ExchangeRequest {
  server: UpstreamServer;
  /** The query's octets, ID included. */
  message: Buffer;
  expect: Expected;
  timeoutMs: number;
  /** Bind the socket here: the PvD's source address (RFC 8801 §3.4.4). */
  sourceAddress: string | null;
  /** The server's counters in its pool: transports count handshakes and fallbacks there. */
  stats: ServerStats | null;
  /**
   * Resolves a DoH server's host name through the same PvD's other servers
   * (RFC 8484 §10); null where the pool has none to ask.
   */
  lookup: HostLookup | null;
}

/** The addresses of a name and how long they may be used (the answer's TTL), or why there are none. */
export type HostLookupResult = { ok: true; addresses: Array<{ address: string; family: 4 | 6 }>; ttlS: number } | { ok: false; detail: string };
export type HostLookup = (name: string, done: (r: HostLookupResult) => void) => void;

/** ExchangeDone receives an exchange's outcome, exactly once. */
export type ExchangeDone = (r: Exchange) => void;

/**
 * Transport sends one query to a server and calls back with the outcome
 * (callbacks, not promises: this is the per-miss path).
 */
export interface Transport {
  /**
   * query sends one try over the server's own transport: UDP for a
   * cleartext server, its TLS or HTTP/2 connection for an encrypted one
   * (or, for an opportunistic one whose encryption fails, its cleartext
   * fallback). It may rewrite the query's ID (and `expect.id`) to keep IDs
   * unique per socket or connection.
   */
  query(req: ExchangeRequest, done: ExchangeDone): void;
  /** tcp asks again over TCP after a truncated UDP answer (an encrypted server: over its own stream). */
  tcp(req: ExchangeRequest, done: ExchangeDone): void;
  /**
   * stream says whether a try to `server` goes over a stream now (TLS,
   * HTTPS: never lost in transit, so never sent twice on it); absent: its
   * transport is not 'udp'.
   */
  stream?(server: UpstreamServer): boolean;
  /**
   * retryEncryption forgets that an opportunistic server's encryption failed:
   * its next query tries TLS again at once (after a captive portal opened).
   */
  retryEncryption?(server: UpstreamServer): void;
  /** close releases sockets; exchanges in flight still finish. */
  close?(): void;
}

/** networkFailure classifies a socket error. */
export function networkFailure(err: NodeJS.ErrnoException): Exchange & { ok: false } {
  const code = err.code ?? 'EIO';
  // ICMP port unreachable on a connected UDP socket, or a TCP RST: nobody listens.
  if (code === 'ECONNREFUSED') return { ok: false, reason: 'unreachable', detail: 'connection refused' };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return { ok: false, reason: 'unreachable', detail: code };
  return { ok: false, reason: 'network', detail: code };
}
