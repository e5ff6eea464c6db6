// Background probes: the questions pvdns asks a PvD for itself — captive-portal
// probes (and its RFC 8908 API host's lookups) and Pref64 discovery (RFC
// 7050) — counted apart from clients' queries. Their exchanges move their
// servers' health like any answer, but a refusal or a timeout of one is no
// client's error: it is counted here, in pvdns_probes_total{pvd,kind,result},
// and never in pvdns_upstream_errors_total (Query.background).

import type { Registry } from 'prom-client';
import { ANSWER_TRANSIENT, type Answer } from '../dns/answer.js';
import { EDE, RCODE } from '../dns/constants.js';
import { CollectedValue, type Sample } from '../metrics/collected.js';
import type { Query } from './query.js';

/** What a probe was for: captive (portal probes and API host lookups) or dns64 (Pref64 discovery). */
export type ProbeKind = 'captive' | 'dns64';

/**
 * How a probe's exchange ended: ok (an answer: NOERROR or NXDOMAIN, rewritten
 * or not), refused (REFUSED, from every server asked), servfail, timeout (no
 * server answered), unreachable (none could be reached: ICMP, a failed
 * connection), error (another RCODE, no server to ask, or shed).
 */
export type ProbeResult = 'ok' | 'refused' | 'servfail' | 'timeout' | 'unreachable' | 'error';

/**
 * probeResult tells how a probe's exchange ended from its answer and what
 * the pool noted on its query (failedRcode: the last server that answered
 * but could not resolve). `immediate`: answered without asking anyone (no
 * server, upstream.maxInflight reached).
 */
export function probeResult(q: Query, a: Answer, immediate: boolean): ProbeResult {
  if (a.rcode === RCODE.NOERROR || a.rcode === RCODE.NXDOMAIN) return 'ok';
  if (a.rcode === RCODE.REFUSED) return 'refused';
  if (immediate || (a.flags & ANSWER_TRANSIENT) !== 0 || a.rcode !== RCODE.SERVFAIL) return 'error';
  // The pool's own SERVFAIL: what the servers said, or that none said anything.
  if (q.failedRcode === RCODE.REFUSED) return 'refused';
  if (q.failedRcode === RCODE.SERVFAIL) return 'servfail';
  if (q.failedRcode >= 0) return 'error';
  return a.ede?.code === EDE.NETWORK_ERROR ? 'unreachable' : 'timeout';
}

/** ProbeCounts counts background probes per PvD id, kind and result, in plain numbers read at scrape time. */
export class ProbeCounts {
  private readonly byPvd = new Map<string, Map<string, number>>();

  count(pvdId: string, kind: ProbeKind, result: ProbeResult): void {
    let m = this.byPvd.get(pvdId);
    if (m === undefined) this.byPvd.set(pvdId, (m = new Map()));
    const key = `${kind} ${result}`;
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  /** forget drops a withdrawn PvD's series. */
  forget(pvdId: string): void {
    this.byPvd.delete(pvdId);
  }

  *samples(): Iterable<Sample> {
    for (const [pvd, m] of this.byPvd) {
      for (const [key, value] of m) {
        const [kind, result] = key.split(' ') as [string, string];
        yield { labels: { pvd, kind, result }, value };
      }
    }
  }

  /** register exposes pvdns_probes_total. */
  register(registry: Registry): void {
    new CollectedValue(
      'pvdns_probes_total',
      "Questions pvdns asked a PvD's servers for itself, by kind (captive: portal probes and its API host's lookups; dns64: Pref64 discovery) and result (ok, refused, servfail, timeout, unreachable, error); never counted in pvdns_upstream_errors_total.",
      'counter',
      () => this.samples(),
    ).register(registry);
  }
}
