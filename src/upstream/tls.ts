// Placeholder until the tls carrier lands (issue 16): every exchange fails as a TLS failure.

import type { ExchangeDone, ExchangeRequest } from './exchange.js';
import type { Carrier } from './transports.js';
import type { Trust } from './trust.js';

export class TlsTransport implements Carrier {
  constructor(readonly trust: Trust) {}

  exchange(_req: ExchangeRequest, done: ExchangeDone): void {
    done({ ok: false, reason: 'tls', detail: 'tls transport not built yet' });
  }

  close(): void {}
}
