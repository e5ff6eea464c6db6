// What a failed TLS handshake means, in one line a user can act on: shared by
// the DoT (tls.ts) and DoH (https.ts) carriers, so both say the same thing
// about the same certificate (RFC 8310 §8: strict authentication).

import type tls from 'node:tls';
import { loadTls } from '../node-http.js';
import type { Exchange } from './exchange.js';

/** Node's certificate verification codes that mean the chain does not lead to a root pvdns trusts. */
const UNKNOWN_AUTHORITY = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'INVALID_CA',
]);

/**
 * tlsFailure turns an error during the handshake (after TCP connected) into
 * one line saying what a user can act on: which name the certificate had
 * to cover, that it expired, that its issuer is not trusted.
 */
export function tlsFailure(err: NodeJS.ErrnoException & { reason?: string; cert?: tls.PeerCertificate }, expected: string): Exchange & { ok: false } {
  const code = err.code ?? '';
  const fail = (detail: string): Exchange & { ok: false } => ({ ok: false, reason: 'tls', detail });
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = (err.cert?.subjectaltname ?? '')
      .split(', ')
      .filter((n) => n !== '')
      .map((n) => n.replace(/^DNS:|^IP Address:/, ''));
    const shown = names.length > 4 ? [...names.slice(0, 4), '…'] : names;
    return fail(`tls certificate name mismatch: expected ${expected}${shown.length > 0 ? ` (certificate is for ${shown.join(', ')})` : ''}`);
  }
  if (code === 'CERT_HAS_EXPIRED') return fail('tls certificate has expired');
  if (code === 'CERT_NOT_YET_VALID') return fail('tls certificate is not yet valid (check the clock)');
  if (UNKNOWN_AUTHORITY.has(code)) return fail('tls certificate signed by an unknown authority (add its CA to tls.caFile)');
  if (code === 'CERT_REVOKED') return fail('tls certificate has been revoked');
  if (code === 'CERT_SIGNATURE_FAILURE' || code === 'CERT_CHAIN_TOO_LONG' || code === 'HOSTNAME_MISMATCH') {
    return fail(`tls certificate rejected: ${code.toLowerCase().replace(/_/g, ' ')}`);
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return fail('tls handshake failed: connection reset by the server');
  const reason = err.reason ?? err.message.split('\n')[0]!.replace(/^.*:/, '').trim();
  return fail(`tls handshake failed: ${reason || code || 'unknown error'}`);
}

/**
 * checkIdentity is tls.checkServerIdentity without its fallback to the
 * Subject's common name: RFC 8310 §8.1 says a client "MUST NOT inspect the
 * Subject field" when authenticating a DNS server (and RFC 6125 §6.4.4 bars
 * the CN where a subjectAltName of the type exists); Node 24 still accepts a
 * certificate with no subjectAltName whose CN is the name.
 */
export function checkIdentity(expected: string, cert: tls.PeerCertificate): Error | undefined {
  if (!cert.subjectaltname) {
    const err = new Error(`certificate has no subjectAltName for ${expected}`) as NodeJS.ErrnoException & { cert?: tls.PeerCertificate };
    err.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
    err.cert = cert;
    return err;
  }
  return loadTls().checkServerIdentity(expected, cert);
}
