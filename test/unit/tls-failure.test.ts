// The one-line reasons a failed handshake is given, shared by DoT and DoH,
// and the identity check that refuses a certificate named only by its CN.

import type tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { checkIdentity, tlsFailure } from '../../src/upstream/tls-failure.js';

const cert = (fields: Partial<tls.PeerCertificate>): tls.PeerCertificate => ({ subject: { CN: 'dns.example.net' }, ...fields }) as tls.PeerCertificate;

describe('checkIdentity (RFC 8310 §8.1)', () => {
  it('refuses a certificate with no subjectAltName even when its CN is the name', () => {
    const err = checkIdentity('dns.example.net', cert({})) as NodeJS.ErrnoException | undefined;
    expect(err?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(tlsFailure(err!, 'dns.example.net').detail).toBe('tls certificate name mismatch: expected dns.example.net');
  });

  it('accepts the name or the address in the subjectAltName, and nothing else', () => {
    expect(checkIdentity('dns.example.net', cert({ subjectaltname: 'DNS:dns.example.net, IP Address:192.0.2.53' }))).toBeUndefined();
    expect(checkIdentity('192.0.2.53', cert({ subjectaltname: 'DNS:dns.example.net, IP Address:192.0.2.53' }))).toBeUndefined();
    const err = checkIdentity('192.0.2.54', cert({ subjectaltname: 'DNS:dns.example.net, IP Address:192.0.2.53' }));
    expect(tlsFailure(err!, '192.0.2.54').detail).toBe('tls certificate name mismatch: expected 192.0.2.54 (certificate is for dns.example.net, 192.0.2.53)');
  });

  it('says what to do about the usual verification errors', () => {
    const e = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
    expect(tlsFailure(e('CERT_HAS_EXPIRED'), 'x').detail).toBe('tls certificate has expired');
    expect(tlsFailure(e('SELF_SIGNED_CERT_IN_CHAIN'), 'x').detail).toBe('tls certificate signed by an unknown authority (add its CA to tls.caFile)');
    expect(tlsFailure(e('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'x').reason).toBe('tls');
  });
});
