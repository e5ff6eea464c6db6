// A per-client rate limit (access.rateLimit, off by default): a token bucket
// per client address, `qps` tokens a second up to `burst`. A client over it
// gets REFUSED or nothing, as configured. Buckets are kept for the clients
// seen lately, at most MAX_CLIENTS of them (a spoofed-source flood must not
// grow the table without bound).

export interface RateLimitOptions {
  /** Queries per second per client address; 0: no limit. */
  qps: number;
  /** Queries a client may send at once after being quiet. */
  burst: number;
  /** What a client over its rate gets. */
  action: 'refuse' | 'drop';
}

/** Clients with a bucket at most; past that the table starts over (every bucket full again). */
const MAX_CLIENTS = 65_536;

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Queries refused or dropped, for pvdns_ratelimited_total. */
  limited = 0;

  constructor(
    readonly opts: RateLimitOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get enabled(): boolean {
    return this.opts.qps > 0;
  }

  /** allow takes a token from the client's bucket; false when it has none left. */
  allow(client: string): boolean {
    const now = this.now();
    let b = this.buckets.get(client);
    if (b === undefined) {
      if (this.buckets.size >= MAX_CLIENTS) this.buckets.clear();
      b = { tokens: this.opts.burst, at: now };
      this.buckets.set(client, b);
    } else {
      b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.qps);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    this.limited++;
    return false;
  }
}
