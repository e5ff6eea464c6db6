// The HTTP audit trail: every change made through the API, and every request
// refused (401, 403, 415), is one log line at info with `audit: true`.
// Changes need the token, so their lines are few; refusals can be made by
// anyone — any web page can fire requests at 127.0.0.1 — so their lines are
// capped per second, and the next line written says how many were left out.

import type { Logger } from 'pino';

/** Refusal lines written per second at most; the rest are counted. */
const REFUSALS_PER_SECOND = 20;

export class AuditLog {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** change logs a change the API made (or tried to make with the token). */
  change(fields: Record<string, unknown>): void {
    this.log.info({ audit: true, ...fields }, 'api change');
  }

  /** note logs something worth auditing that changes nothing (a client attaching to the query monitor). */
  note(fields: Record<string, unknown>, msg: string): void {
    this.log.info({ audit: true, ...fields }, msg);
  }

  /** refused logs a refused request, unless this second's share is spent. */
  refused(fields: Record<string, unknown>, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= 1000) {
      this.windowStart = t;
      this.inWindow = 0;
    }
    if (this.inWindow >= REFUSALS_PER_SECOND) {
      this.suppressed++;
      return;
    }
    this.inWindow++;
    const notLogged = this.suppressed;
    this.suppressed = 0;
    this.log.info({ audit: true, ...fields, ...(notLogged > 0 ? { refusalsNotLogged: notLogged } : {}) }, msg);
  }
}
