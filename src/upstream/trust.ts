// Trust: the certificate authorities encrypted upstreams are checked against
// (RFC 8310 §8: the strict profile authenticates the server) — the system's
// store (/etc/ssl/certs, as Debian and the Docker image keep it), Node's
// bundled roots, and tls.caFile's PEM for a private PKI. The context is made
// once per CA file, not per connection: parsing ~700 roots takes tens of ms.

import type { SecureContext } from 'node:tls';
import { loadTls } from '../node-http.js';

export class Trust {
  private ctx: SecureContext | null = null;
  private extra: string | null = null;

  /** setExtra replaces tls.caFile's PEM (null: none); the next connection uses the new trust. */
  setExtra(pem: Buffer | string | null): void {
    const text = pem === null ? null : pem.toString();
    if (text === this.extra && this.ctx !== null) return;
    this.extra = text;
    this.ctx = null;
  }

  /** context is the secure context every encrypted upstream connection verifies with. */
  context(): SecureContext {
    if (this.ctx === null) {
      const tls = loadTls();
      const ca = [...new Set([...tls.getCACertificates('system'), ...tls.getCACertificates('bundled')])];
      if (this.extra !== null) ca.push(this.extra);
      this.ctx = tls.createSecureContext({ ca });
    }
    return this.ctx;
  }
}
