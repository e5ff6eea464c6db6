// UpstreamPool: one PvD's DNS servers. A query tries them in configured
// order, at most `attempts` of them, each for `timeoutMs`; a truncated UDP
// answer is asked again over TCP from the same server (RFC 7766 §5). Health
// state and server selection (issue 5) will replace the fixed order here.

import type { SocketAddress } from '../config/address.js';
import type { Answer } from '../dns/answer.js';
import { RCODE, rcodeName } from '../dns/constants.js';
import { encodeQuery } from '../dns/query.js';
import { Buckets, LATENCY_BUCKETS } from '../metrics/collected.js';
import type { FailureReason, Transport } from './exchange.js';
import { randomU16 } from './random.js';

export interface PoolOptions {
  timeoutMs: number;
  attempts: number;
  sourceAddress: string | null;
}

/** UpstreamQuestion is what the pool needs to know of a client's query. */
export interface UpstreamQuestion {
  /** The question section as the client wrote it. */
  question: Buffer;
  nameKey: string;
  qtype: number;
  qclass: number;
  cd: boolean;
  dnssecOk: boolean;
}

export interface Failure {
  server: string;
  reason: FailureReason;
  detail: string;
}

export type Outcome = { ok: true; answer: Answer; server: string } | { ok: false; failures: Failure[] };

/** ServerStats counts one server's exchanges as plain numbers (read at scrape time). */
export class ServerStats {
  requests = 0;
  readonly errors = new Map<FailureReason, number>();
  readonly rtt = new Buckets(LATENCY_BUCKETS);

  fail(reason: FailureReason): void {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + 1);
  }
}

/** RCODEs that say "this server could not answer": the next server is asked. */
const SERVER_FAILURES = new Set<number>([RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP]);

export class UpstreamPool {
  readonly stats = new Map<string, ServerStats>();

  constructor(
    readonly pvdId: string,
    readonly servers: readonly SocketAddress[],
    private readonly opts: PoolOptions,
    private readonly transport: Transport,
    private readonly clock: () => number = () => performance.now(),
  ) {
    for (const s of servers) this.stats.set(s.label, new ServerStats());
  }

  /** resolve asks the servers in turn until one answers; it never rejects. */
  async resolve(uq: UpstreamQuestion): Promise<Outcome> {
    const failures: Failure[] = [];
    const tries = Math.min(this.opts.attempts, this.servers.length);
    for (let i = 0; i < tries; i++) {
      const server = this.servers[i]!;
      const stats = this.stats.get(server.label)!;
      const id = randomU16();
      const req = {
        server,
        message: encodeQuery(id, uq.question, uq.cd, uq.dnssecOk),
        expect: { id, nameKey: uq.nameKey, qtype: uq.qtype, qclass: uq.qclass },
        timeoutMs: this.opts.timeoutMs,
        sourceAddress: this.opts.sourceAddress,
      };
      const started = this.clock();
      stats.requests++;
      let ex = await this.transport.udp(req);
      if (ex.ok && ex.truncated) {
        stats.requests++;
        ex = await this.transport.tcp(req);
      }
      if (!ex.ok) {
        stats.fail(ex.reason);
        failures.push({ server: server.label, reason: ex.reason, detail: ex.detail });
        continue;
      }
      stats.rtt.observe((this.clock() - started) / 1000);
      const a = ex.answer;
      if (!SERVER_FAILURES.has(a.rcode)) return { ok: true, answer: a, server: server.label };
      stats.fail('rcode');
      const ede = a.ede ? ` (EDE ${a.ede.code}${a.ede.text ? `: ${a.ede.text}` : ''})` : '';
      failures.push({ server: server.label, reason: 'rcode', detail: `answered ${rcodeName(a.rcode)}${ede}` });
    }
    return { ok: false, failures };
  }
}
