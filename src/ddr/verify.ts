// Verified discovery of a designated resolver (RFC 9462 §4.2): a TLS
// handshake with the candidate, whose certificate must chain to a root
// pvdns trusts (tls.caFile included), be valid for the SVCB TargetName, and
// name the unencrypted resolver's IP address in a subjectAltName iPAddress
// entry. And the rule for opportunistic discovery (§4.3), which skips the
// last check for a resolver on a private or local address.

import net from 'node:net';
import type tls from 'node:tls';
import { loadTls } from '../node-http.js';
import ipaddr from 'ipaddr.js';
import { checkIdentity, tlsFailure } from '../upstream/tls-failure.js';
import type { Trust } from '../upstream/trust.js';
import type { UpstreamServer } from '../upstream/server.js';

/** How long one verification handshake may take. */
const VERIFY_TIMEOUT_MS = 5000;

export interface VerifyOptions {
  trust: Trust;
  /** The PvD's source address (pvd.sourceAddress): the handshake leaves from the PvD's own link. */
  sourceAddress?: string | null;
  timeoutMs?: number;
}

/**
 * verifyDesignated performs RFC 9462 §4.2's checks on `candidate` (a server
 * from candidatesOf: its authName is the TargetName) designated by
 * `unencrypted`. Null when it passes; else one line saying why not. Offers
 * the ALPN of its protocol ("dot" or "h2", RFC 9461 §4) with SNI the
 * TargetName. Never rejects.
 */
export function verifyDesignated(candidate: UpstreamServer, unencrypted: UpstreamServer, opts: VerifyOptions): Promise<string | null> {
  const target = candidate.authName;
  if (target === null) return Promise.resolve(`${candidate.label} has no TargetName to verify`);
  return new Promise((resolve) => {
    let done = false;
    const finish = (why: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const options: tls.ConnectionOptions & { localAddress?: string } = {
      host: candidate.host,
      port: candidate.port,
      // §4.2 check 2: the TargetName is the reference identity (RFC 6125), sent as SNI.
      servername: net.isIP(target) === 0 ? target : undefined,
      ALPNProtocols: [candidate.transport === 'https' ? 'h2' : 'dot'],
      // §4.2 check 1: the chain up to a trust anchor (RFC 5280 §6), the same anchors the transports use.
      secureContext: opts.trust.context(),
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => checkIdentity(target, cert),
    };
    if (opts.sourceAddress) options.localAddress = opts.sourceAddress;
    const socket = loadTls().connect(options);
    const timer = setTimeout(() => finish(`${candidate.label}: no TLS handshake within ${opts.timeoutMs ?? VERIFY_TIMEOUT_MS} ms`), opts.timeoutMs ?? VERIFY_TIMEOUT_MS);
    timer.unref();
    socket.once('secureConnect', () => {
      // §4.2 check 3: the designating resolver's own address, in an iPAddress SAN.
      const cert = socket.getPeerCertificate();
      finish(coversAddress(cert, unencrypted.host) ? null : `certificate for ${target} does not cover ${unencrypted.host} (RFC 9462 §4.2)`);
    });
    socket.once('error', (err: NodeJS.ErrnoException & { reason?: string; cert?: tls.PeerCertificate }) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
        finish(`${candidate.label}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.code.toLowerCase()}`);
        return;
      }
      finish(`${candidate.label}: ${tlsFailure(err, target).detail}`);
    });
  });
}

/** coversAddress says whether a certificate names `address` in a subjectAltName iPAddress entry (RFC 5280 §4.2.1.6). */
export function coversAddress(cert: tls.PeerCertificate, address: string): boolean {
  const want = canonical(address);
  if (want === null) return false;
  for (const entry of (cert.subjectaltname ?? '').split(', ')) {
    if (!entry.startsWith('IP Address:')) continue;
    if (canonical(entry.slice('IP Address:'.length)) === want) return true;
  }
  return false;
}

function canonical(text: string): string | null {
  try {
    const a = ipaddr.process(text.trim());
    return a.toNormalizedString();
  } catch {
    return null;
  }
}

/**
 * opportunisticProblem says why a candidate that failed verification may
 * not be used by opportunistic discovery (RFC 9462 §4.3), or null when it
 * may: the PvD's encryption must be `opportunistic` (pvdns never lowers a
 * stricter mode); the unencrypted resolver's address must be private or
 * local — §4.3 names RFC 1918 private addresses, ULAs (RFC 4193) and
 * link-local addresses, and speaks of "private or local" addresses, which
 * pvdns reads as including loopback (a resolver on this host: no public CA
 * certifies 127.0.0.1 either); and the designated resolver must be at the
 * same IP address (§4.3: "as long as the IP address of the Encrypted
 * Resolver does not differ from the IP address of the Unencrypted Resolver").
 */
export function opportunisticProblem(candidate: UpstreamServer, unencrypted: UpstreamServer, encryption: string | null): string | null {
  if (encryption !== 'opportunistic') return 'opportunistic discovery needs encryption: opportunistic (RFC 9462 §4.3)';
  if (!isPrivateOrLocal(unencrypted.host)) return `${unencrypted.host} is not a private or local address: opportunistic discovery is not allowed (RFC 9462 §4.3)`;
  if (canonical(candidate.host) !== canonical(unencrypted.host)) return `${candidate.host} differs from ${unencrypted.host}: opportunistic discovery is not allowed (RFC 9462 §4.3)`;
  return null;
}

/** isPrivateOrLocal: RFC 1918, RFC 4193 ULA, link-local (RFC 3927, RFC 4291) and loopback addresses. */
export function isPrivateOrLocal(address: string): boolean {
  try {
    const range = ipaddr.process(address).range();
    return range === 'private' || range === 'uniqueLocal' || range === 'linkLocal' || range === 'loopback';
  } catch {
    return false;
  }
}
