// ServerHealth: what pvdns knows of one DNS server's reachability, after the
// address states of draft-ietf-multi6-failure-detection applied to DNS
// servers. An answer is positive feedback; a timeout is a negative hint that
// makes a server suspect, and repeated timeouts or a hard negative hint
// (ICMP port unreachable, connection refused, no route) make it down. A down
// server is tested one probe at a time, with exponential back-off, until it
// answers again. Results age: a suspect verdict fades after a while, so an
// old failure does not outweigh what is known of the other servers for ever.

/** The state of one server. */
export type ServerState = 'untested' | 'operational' | 'suspect' | 'down';

/** Consecutive timeouts that turn a suspect server into a down one. */
export const DOWN_AFTER = 2;
/** After this long without news, a suspect server ranks like an untested one. */
export const SUSPECT_FADES_MS = 60_000;

export interface ProbeTiming {
  /** The first probe of a down server comes this long after it went down. */
  initialMs: number;
  /** The gap doubles after every failed probe, up to this. */
  maxMs: number;
}

/** What a failed exchange says about the server: a timeout, or a hard negative hint. */
export type FailureKind = 'timeout' | 'unreachable';

export class ServerHealth {
  state: ServerState = 'untested';
  /** Epoch milliseconds of the last state change. */
  since = Date.now();
  /** performance.now() of the last result, the age of what we know. */
  lastResultAt = -Infinity;
  /** Smoothed round-trip time in milliseconds (RFC 6298's 1/8 gain), null before the first answer. */
  srttMs: number | null = null;
  lastError: string | null = null;
  /** The kind of the last failure, null after an answer. */
  lastFailure: FailureKind | null = null;
  /** Failures since the last answer. */
  failures = 0;
  /** The gap before the next probe of a down server, and when that probe is due (performance.now()). */
  backoffMs: number;
  nextProbeAt = Infinity;

  constructor(private readonly timing: ProbeTiming) {
    this.backoffMs = timing.initialMs;
  }

  /** answered records an answer after `rttMs`; true when the state changed. */
  answered(rttMs: number, now: number): boolean {
    this.srttMs = this.srttMs === null ? rttMs : this.srttMs + (rttMs - this.srttMs) / 8;
    this.failures = 0;
    this.lastError = null;
    this.lastFailure = null;
    this.lastResultAt = now;
    this.backoffMs = this.timing.initialMs;
    this.nextProbeAt = Infinity;
    return this.moveTo('operational');
  }

  /**
   * failed records a failure; true when the state changed. `probe` marks the
   * result of a probe: only a failed probe doubles the gap to the next one —
   * queries that were already on their way when the server went down and
   * fail afterwards say nothing new.
   */
  failed(kind: FailureKind, detail: string, now: number, probe = false): boolean {
    this.failures++;
    this.lastError = detail;
    this.lastFailure = kind;
    this.lastResultAt = now;
    if (this.state === 'down') {
      if (probe) {
        this.backoffMs = Math.min(this.backoffMs * 2, this.timing.maxMs);
        this.nextProbeAt = now + this.backoffMs;
      }
      return false;
    }
    if (kind === 'unreachable' || this.failures >= DOWN_AFTER) {
      this.backoffMs = this.timing.initialMs;
      this.nextProbeAt = now + this.backoffMs;
      return this.moveTo('down');
    }
    return this.moveTo('suspect');
  }

  /** usable says whether queries may be sent to the server now (anything but down). */
  get usable(): boolean {
    return this.state !== 'down';
  }

  /**
   * rank orders servers for choosing a new primary: operational first, then
   * untested, then suspect — a suspect verdict older than SUSPECT_FADES_MS
   * ranks as untested — and down last.
   */
  rank(now: number): number {
    switch (this.state) {
      case 'operational':
        return 0;
      case 'untested':
        return 1;
      case 'suspect':
        return now - this.lastResultAt > SUSPECT_FADES_MS ? 1 : 2;
      case 'down':
        return 3;
    }
  }

  private moveTo(state: ServerState): boolean {
    if (this.state === state) return false;
    this.state = state;
    this.since = Date.now();
    return true;
  }
}
