// ServerStats: one upstream server's counters as plain numbers, bumped by the
// pool and its transports and read at scrape time (metrics.ts).

import { Buckets, LATENCY_BUCKETS } from '../metrics/collected.js';

/** The result label of pvdns_upstream_tls_handshakes_total. */
export type HandshakeResult = 'ok' | 'resumed' | 'failed';

export class ServerStats {
  /** Queries sent to the server, every transport together. */
  requests = 0;
  /** Of those, sent in the clear to an opportunistic server's fallback address. */
  fallbackRequests = 0;
  /** By reason: timeout, unreachable, network, closed, tls, http, servfail, refused, formerr, notimp, mismatch, truncated. */
  readonly errors = new Map<string, number>();
  readonly rtt = new Buckets(LATENCY_BUCKETS);
  /** TLS handshakes (DoT and DoH), by result. */
  readonly handshakes = new Map<HandshakeResult, number>();
  /**
   * What an encrypted server is spoken to with now, as the API shows it:
   * null before the first exchange; "tls"/"https" once encrypted;
   * "cleartext" while an opportunistic server falls back.
   */
  via: 'tls' | 'https' | 'cleartext' | null = null;
  /** Whether the last handshake checked the certificate against the name or address. */
  authenticated: boolean | null = null;
  /** Times an opportunistic server fell back to the clear because encryption failed. */
  downgrades = 0;
  /** Why encryption is not in use (opportunistic fallback) or last failed; null when it works. */
  encryptionError: string | null = null;

  count(reason: string, n = 1): void {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + n);
  }

  handshake(result: HandshakeResult): void {
    this.handshakes.set(result, (this.handshakes.get(result) ?? 0) + 1);
  }
}
