// ServerHealth: what pvdns knows of one DNS server's reachability, after the
// address states of draft-ietf-multi6-failure-detection applied to DNS
// servers. Its first rule is the one this follows: a host must not conclude
// a failure from a few negative hints.
//
// - An answer (any answer: SERVFAIL and REFUSED say the server is there) is
//   positive feedback and makes the server operational at once.
// - A query that got no answer within its retransmission timeout is a
//   negative hint. One makes the server suspect; it is down only when it has
//   stopped answering everything: no answer at all to DOWN_AFTER_QUERIES
//   queries sent over at least DOWN_AFTER_MS since its last answer. A lost
//   packet, or one name the server never answers while it answers others,
//   is not a dead server (that is the failure cache's business, RFC 9520 §3).
// - A hard negative hint (ICMP port or host unreachable on UDP) makes it
//   down at once: nobody listens there.
// - Down is not dark: the pool still sends real queries to a down server, one
//   at a time, and the first answer brings it back; a probe tests it in the
//   background while no query does.
//
// It also keeps the server's retransmission timeout, RFC 6298 style: a
// smoothed RTT and its variance give RTO = SRTT + 4·RTTVAR, kept between
// MIN_RTO_MS and the configured ceiling, doubled for every try that went
// unanswered while the server answered nothing at all (RFC 6298 §5.5) and
// reset by the next answer: a busy server on a lossy link keeps a short RTO,
// a silent one backs off. Every
// try has its own ID, so an answer tells exactly which try it answers and
// every RTT sample is unambiguous (Karn's problem does not arise).

/** The state of one server. */
export type ServerState = 'untested' | 'operational' | 'suspect' | 'down';

/** Queries with no answer since the server's last answer before it is down... */
export const DOWN_AFTER_QUERIES = 5;
/** ...sent over at least this long. */
export const DOWN_AFTER_MS = 2000;
/** After this long without news, a suspect server ranks like an untested one. */
export const SUSPECT_FADES_MS = 60_000;
/** The retransmission timeout's floor, in milliseconds (Unbound's is 50). */
export const MIN_RTO_MS = 50;
/** The retransmission timeout before the first RTT sample (RFC 6298 §2.1 says 1 s for TCP; DNS needs less). */
export const INITIAL_RTO_MS = 400;

export interface ProbeTiming {
  /** The first probe of a down server comes this long after it went down. */
  initialMs: number;
  /** The gap doubles after every failed probe, up to this. */
  maxMs: number;
}

export class ServerHealth {
  state: ServerState = 'untested';
  /** Epoch milliseconds of the last state change. */
  since = Date.now();
  /** performance.now() of the last result, the age of what we know. */
  lastResultAt = -Infinity;
  /** performance.now() of the last answer. */
  lastAnswerAt = -Infinity;
  /** Smoothed round-trip time in milliseconds (RFC 6298's 1/8 gain), null before the first answer. */
  srttMs: number | null = null;
  /** Its mean deviation (RFC 6298's 1/4 gain). */
  rttvarMs = 0;
  lastError: string | null = null;
  /** Whether the last failure was a hard negative hint; null after an answer. */
  lastFailure: 'timeout' | 'unreachable' | null = null;
  /** Queries sent since the last answer that got none (each query counted once). */
  unanswered = 0;
  /** performance.now() at which the earliest of those was sent. */
  silentSince = Infinity;
  /** Tries unanswered in a row: the RTO doubles with each (RFC 6298 §5.5). */
  private backoffs = 0;
  /** The gap before the next probe of a down server, and when that probe is due (performance.now()). */
  backoffMs: number;
  nextProbeAt = Infinity;

  constructor(private readonly timing: ProbeTiming) {
    this.backoffMs = timing.initialMs;
  }

  /**
   * rto is how long a try waits for its answer before the query is sent
   * again, at most `ceilingMs`.
   */
  rto(ceilingMs: number): number {
    const base = this.srttMs === null ? INITIAL_RTO_MS : Math.max(MIN_RTO_MS, this.srttMs + 4 * this.rttvarMs);
    return Math.min(ceilingMs, base * 2 ** Math.min(this.backoffs, 10));
  }

  /** answered records an answer after `rttMs` (null: no RTT sample, e.g. over TCP); true when the state changed. */
  answered(rttMs: number | null, now: number): boolean {
    if (rttMs !== null) {
      if (this.srttMs === null) {
        this.srttMs = rttMs;
        this.rttvarMs = rttMs / 2;
      } else {
        this.rttvarMs += (Math.abs(this.srttMs - rttMs) - this.rttvarMs) / 4;
        this.srttMs += (rttMs - this.srttMs) / 8;
      }
    }
    this.unanswered = 0;
    this.silentSince = Infinity;
    this.backoffs = 0;
    this.lastError = null;
    this.lastFailure = null;
    this.lastResultAt = now;
    this.lastAnswerAt = now;
    this.backoffMs = this.timing.initialMs;
    this.nextProbeAt = Infinity;
    return this.moveTo('operational');
  }

  /**
   * unansweredTry records a try that got no answer within its RTO; true
   * when the state changed. `firstSentAt` is when the same
   * query was first sent to this server: if the server has answered anything
   * since, its silence is about this query's name (RFC 9520 §3: the failure
   * cache's business), not about the server, and counts for nothing. A query
   * counts once toward the server's silence (`firstForQuery`), however many
   * tries it took.
   */
  unansweredTry(firstSentAt: number, now: number, firstForQuery: boolean): boolean {
    this.lastResultAt = now;
    if (firstSentAt < this.lastAnswerAt) return false;
    this.backoffs++;
    this.lastError = 'timeout';
    this.lastFailure ??= 'timeout';
    if (firstForQuery) {
      this.unanswered++;
      if (firstSentAt < this.silentSince) this.silentSince = firstSentAt;
    }
    if (this.state === 'down') return false;
    if (this.unanswered >= DOWN_AFTER_QUERIES && now - this.silentSince >= DOWN_AFTER_MS) return this.goDown(now);
    return this.moveTo('suspect');
  }

  /** unreachable records a hard negative hint (ICMP unreachable): down at once; true when the state changed. */
  unreachable(detail: string, now: number): boolean {
    this.lastError = detail;
    this.lastFailure = 'unreachable';
    this.lastResultAt = now;
    return this.state === 'down' ? false : this.goDown(now);
  }

  /**
   * probeFailed records a probe of a down server, sent at `sentAt`, that got
   * no answer within its wait (the current gap) or failed sooner: the next
   * probe goes one gap after it, and waits twice as long, up to the maximum
   * — one probe at a time, a packet per gap.
   */
  probeFailed(detail: string, sentAt: number, now: number): void {
    this.lastError = detail;
    this.lastResultAt = now;
    this.nextProbeAt = Math.max(now, sentAt + this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.timing.maxMs);
  }

  /** usable says whether the server is asked as a matter of course (anything but down). */
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

  private goDown(now: number): boolean {
    this.backoffMs = this.timing.initialMs;
    this.nextProbeAt = now + this.backoffMs;
    return this.moveTo('down');
  }

  private moveTo(state: ServerState): boolean {
    if (this.state === state) return false;
    this.state = state;
    this.since = Date.now();
    return true;
  }
}
