// DdrTracker: Discovery of Designated Resolvers (RFC 9462) per PvD. A PvD
// with `ddr` on asks each of its cleartext servers (Pvd.ddrServers) for
// `_dns.resolver.arpa` SVCB (§4), turns the ServiceMode records into DoT and
// DoH servers (RFC 9461), verifies each (§4.2; opportunistically §4.3 where
// the PvD's mode allows it) and reports the list of designated resolvers in
// use, which the forwarder asks before the PvD's own servers.
//
// When it asks again: when the SVCB record's TTL runs out (§4.1: a
// designation holds for the record's lifetime), after NXDOMAIN, NODATA or a
// failure with back-off, at once when the PvD's cleartext servers, mode or
// source address change (a new network: what the old one designated no
// longer holds), and when asked to (recheck: a captive portal opened, the
// designated resolvers all failed). A re-check that finds nothing usable
// empties the list: the PvD's own servers are used again.

import type { Logger } from 'pino';
import { type Answer } from '../dns/answer.js';
import { rcodeName, RCODE, TYPE } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { questionMessage } from '../dns/query.js';
import { answerSections } from '../dns/records.js';
import type { Pvd } from '../pvd/model.js';
import type { DdrView } from '../pvd/view.js';
import { parseServer, type UpstreamServer } from '../upstream/server.js';
import { candidatesOf, readSvcb, type Candidate, type Svcb } from './svcb.js';
import { opportunisticProblem } from './verify.js';
import ipaddr from 'ipaddr.js';

export type { DdrView } from '../pvd/view.js';

/** One designated resolver in use for a PvD. */
export interface Designated {
  /** The server as the transports take it. */
  server: UpstreamServer;
  /** verified: RFC 9462 §4.2's checks passed; opportunistic: used under §4.3 without them. */
  discovery: 'verified' | 'opportunistic';
  /** The label of the cleartext server that designated it. */
  from: string;
  /** The SVCB TargetName. */
  target: string;
  /** When the designation's TTL runs out (epoch ms). */
  expiresAt: number;
}

/** The outcome of one discovery, the `result` of pvdns_ddr_discoveries_total. */
export type DdrResult = 'verified' | 'opportunistic' | 'rejected' | 'none' | 'error';
export const DDR_RESULTS: readonly DdrResult[] = ['verified', 'opportunistic', 'rejected', 'none', 'error'];

export interface DdrOptions {
  /** Asks one cleartext server of the PvD, past the cache; never rejects (Forwarder.askServer). */
  askServer: (pvd: Pvd, server: UpstreamServer, msg: Buffer) => Promise<Answer>;
  /** RFC 9462 §4.2's checks: null when `candidate` is verified as designated by `unencrypted`, else why not (verifyDesignated). */
  verify: (pvd: Pvd, candidate: UpstreamServer, unencrypted: UpstreamServer) => Promise<string | null>;
  /** Told when the designated resolvers in use (or how they were discovered) change, with why in plain words. */
  onChange: (pvd: Pvd, designated: readonly Designated[], why: string) => void;
  log: Logger;
  now?: () => number;
}

/** The query DDR sends (RFC 9462 §4): SVCB for the special-use name. */
export const DDR_NAME = '_dns.resolver.arpa';
const SVCB_QUERY = questionMessage(encodeName(DDR_NAME), TYPE.SVCB);

/** Bounds on the wait until the SVCB record's TTL runs out. */
const MIN_TTL_S = 5;
const MAX_TTL_S = 86_400;
/** After NXDOMAIN, NODATA or a failure: the next try comes after this, doubling up to the cap. */
const RETRY_FIRST_MS = 30_000;
const RETRY_MAX_MS = 3_600_000;
/**
 * A PvD just announced or changed is asked this long after: its first
 * moments belong to what routes its names (an RFC 8801 PvD's Additional
 * Information is fetched through it, its routing gate held meanwhile), and
 * a designation a second later costs nothing.
 */
const ANNOUNCE_DELAY_MS = 1_000;
/** recheck runs at once, but not within this long of the last check's start. */
const RECHECK_GAP_MS = 5_000;
/** Distinct failures remembered per PvD so each is warned of once. */
const MAX_WARNED = 32;

const NO_DESIGNATED: readonly Designated[] = Object.freeze([]);

type State = DdrView['state'];

interface Tracked {
  pvd: Pvd;
  designated: readonly Designated[];
  rejected: Array<{ address: string; reason: string }>;
  state: State;
  lastError: string | null;
  checkedAt: number | null;
  /** When the last check began: recheck keeps RECHECK_GAP_MS from it. */
  startedAt: number;
  nextAt: number | null;
  timer: NodeJS.Timeout | null;
  /** Why the scheduled (or running) check happens, for the change it may bring. */
  cause: 'start' | 'ttl' | 'retry' | string;
  checking: boolean;
  /** A recheck asked for while a check ran: its reason. */
  pending: string | null;
  retryMs: number;
  /** Bumped by every start-over: a check begun before is ignored. */
  generation: number;
  warned: Set<string>;
  results: Record<DdrResult, number>;
}

/** What one check found. */
interface Found {
  designated: Designated[];
  rejected: Array<{ address: string; reason: string }>;
  /** Servers that answered with SVCB records, NXDOMAIN/NODATA, or not at all. */
  records: number;
  errors: string[];
  /** The smallest TTL of the records, in s; -1 with none. */
  ttl: number;
}

export class DdrTracker {
  private readonly byTag = new Map<number, Tracked>();
  private running = false;
  private readonly now: () => number;

  constructor(private readonly o: DdrOptions) {
    this.now = o.now ?? Date.now;
  }

  /** start lets discovery send queries (check-config never does). */
  start(): void {
    this.running = true;
    for (const t of this.byTag.values()) if (t.pvd.ddr) this.schedule(t, 0, 'start');
  }

  /**
   * track takes a PvD as announced or updated. A change of its cleartext
   * servers, configured encryption or source address starts over at once:
   * what was designated is dropped, since it was verified against the old
   * resolver (RFC 9462 §4.2) or network (§4.3).
   */
  track(pvd: Pvd): void {
    let t = this.byTag.get(pvd.tag);
    if (t === undefined) {
      t = {
        pvd, designated: NO_DESIGNATED, rejected: [], state: pvd.ddr ? 'checking' : 'off', lastError: null, checkedAt: null, startedAt: -Infinity, nextAt: null, timer: null,
        cause: 'start', checking: false, pending: null, retryMs: RETRY_FIRST_MS, generation: 0, warned: new Set(), results: zeroResults(),
      };
      this.byTag.set(pvd.tag, t);
      if (pvd.ddr && this.running) this.schedule(t, ANNOUNCE_DELAY_MS, 'start');
      return;
    }
    const before = t.pvd;
    t.pvd = pvd;
    const same = before.ddr === pvd.ddr && labels(before.ddrServers) === labels(pvd.ddrServers) && before.encryptionConfigured === pvd.encryptionConfigured && before.sourceAddress === pvd.sourceAddress;
    if (same) return;
    this.startOver(t);
    if (!pvd.ddr) {
      t.state = 'off';
      this.set(t, NO_DESIGNATED, 'discovery of designated resolvers is off for this PvD');
      return;
    }
    t.state = 'checking';
    this.set(t, NO_DESIGNATED, "the PvD's cleartext servers, encryption or source address changed: discovering again");
    if (this.running) this.schedule(t, ANNOUNCE_DELAY_MS, 'start');
  }

  /** untrack forgets a withdrawn PvD (its forwarder entries go with it). */
  untrack(pvd: Pvd): void {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return;
    this.startOver(t);
    this.byTag.delete(pvd.tag);
  }

  close(): void {
    this.running = false;
    for (const t of this.byTag.values()) {
      this.clearTimer(t);
      t.generation++;
      t.checking = false;
    }
  }

  /**
   * recheck asks again now (a captive portal opened, the designated
   * resolvers failed), but not within 5 s of the last check's start.
   */
  recheck(pvd: Pvd, why: string): void {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined || !t.pvd.ddr || !this.running) return;
    if (t.checking) {
      t.pending = why;
      return;
    }
    const wait = Math.max(0, t.startedAt + RECHECK_GAP_MS - this.now());
    if (t.nextAt !== null && t.nextAt <= this.now() + wait) return; // one is due sooner anyway
    this.schedule(t, wait, why);
  }

  /** designated lists the designated resolvers in use for a PvD, in the order they are asked. */
  designated(pvd: Pvd): readonly Designated[] {
    return this.byTag.get(pvd.tag)?.designated ?? NO_DESIGNATED;
  }

  view(pvd: Pvd): DdrView {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined || !pvd.ddr) return { state: 'off', designated: [], rejected: [], lastError: null, checkedAt: null, nextCheckAt: null };
    return {
      state: t.state,
      designated: t.designated.map((d) => ({ address: d.server.label, transport: d.server.transport, authName: d.target, discovery: d.discovery, from: d.from })),
      rejected: t.rejected.map((r) => ({ ...r })),
      lastError: t.lastError,
      checkedAt: t.checkedAt === null ? null : new Date(t.checkedAt).toISOString(),
      nextCheckAt: t.nextAt === null ? null : new Date(t.nextAt).toISOString(),
    };
  }

  /** counts lists each PvD's discoveries by result, for pvdns_ddr_discoveries_total. */
  *counts(): Iterable<{ pvd: Pvd; result: DdrResult; value: number }> {
    for (const t of this.byTag.values()) for (const result of DDR_RESULTS) if (t.results[result] > 0) yield { pvd: t.pvd, result, value: t.results[result] };
  }

  private startOver(t: Tracked): void {
    this.clearTimer(t);
    t.generation++;
    t.checking = false;
    t.pending = null;
    t.retryMs = RETRY_FIRST_MS;
    t.rejected = [];
    t.lastError = null;
    t.checkedAt = null;
    t.warned.clear();
  }

  private schedule(t: Tracked, delayMs: number, cause: string): void {
    this.clearTimer(t);
    if (!this.running) return;
    t.cause = cause;
    t.nextAt = this.now() + delayMs;
    t.timer = setTimeout(() => {
      t.timer = null;
      t.nextAt = null;
      void this.check(t);
    }, delayMs);
    t.timer.unref();
  }

  /** check runs one discovery and applies it; a fault inside pvdns is logged and retried later. */
  private async check(t: Tracked): Promise<void> {
    const generation = t.generation;
    const current = (): boolean => this.running && t.generation === generation && this.byTag.get(t.pvd.tag) === t;
    t.checking = true;
    t.startedAt = this.now();
    try {
      const found = await this.discover(t.pvd);
      if (!current()) return;
      t.checking = false;
      this.apply(t, found);
    } catch (err) {
      this.o.log.error({ err, pvd: t.pvd.id }, 'designated resolver discovery failed inside pvdns');
      if (!current()) return;
      t.checking = false;
      this.schedule(t, RETRY_MAX_MS, 'retry');
      return;
    }
    if (t.pending !== null && current()) {
      const why = t.pending;
      t.pending = null;
      this.recheck(t.pvd, why);
    }
  }

  /** discover asks each cleartext server in turn and verifies what they designate. */
  private async discover(pvd: Pvd): Promise<Found> {
    const found: Found = { designated: [], rejected: [], records: 0, errors: [], ttl: -1 };
    const keyed: Array<{ d: Designated; priority: number; order: number }> = [];
    let order = 0;
    for (const clear of pvd.ddrServers) {
      const a = await this.o.askServer(pvd, clear, SVCB_QUERY);
      if (a.rcode !== RCODE.NOERROR && a.rcode !== RCODE.NXDOMAIN) {
        found.errors.push(`${clear.label}: ${rcodeName(a.rcode)}${a.ede ? ` (${a.ede.text})` : ''}`);
        continue;
      }
      if (a.rcode === RCODE.NXDOMAIN) continue;
      const { records, skipped } = readSvcb(SVCB_QUERY, a);
      for (const s of skipped) found.rejected.push({ address: clear.label, reason: s });
      for (const rec of records) {
        found.records++;
        found.ttl = found.ttl < 0 ? rec.ttl : Math.min(found.ttl, rec.ttl);
        const resolved = rec.ipv4hint.length + rec.ipv6hint.length > 0 ? [] : await this.resolveTarget(pvd, clear, rec);
        const { candidates, problems } = candidatesOf(rec, resolved);
        for (const p of problems) found.rejected.push({ address: clear.label, reason: p });
        for (const c of candidates) {
          const d = await this.judge(pvd, clear, c, found);
          if (d !== null) keyed.push({ d, priority: c.priority, order: order++ });
        }
      }
    }
    // By SvcPriority, then the order of the cleartext servers and of their records; once per server.
    keyed.sort((x, y) => x.priority - y.priority || x.order - y.order);
    // A server the PvD already lists (an opportunistic PvD's own "tls://ADDR:853") is not listed twice: the pool keys servers by label.
    const seen = new Set<string>(pvd.servers.map((s) => s.label));
    for (const { d } of keyed) {
      if (seen.has(d.server.label)) {
        if (pvd.servers.some((s) => s.label === d.server.label)) found.rejected.push({ address: d.server.label, reason: "already one of the PvD's own servers" });
        continue;
      }
      seen.add(d.server.label);
      found.designated.push(d);
    }
    return found;
  }

  /** judge verifies one candidate (RFC 9462 §4.2), else sees whether §4.3 lets it be used; null when neither. */
  private async judge(pvd: Pvd, clear: UpstreamServer, c: Candidate, found: Found): Promise<Designated | null> {
    const expiresAt = this.now() + c.ttl * 1000;
    const failed = await this.o.verify(pvd, c.server, clear);
    if (failed === null) return { server: c.server, discovery: 'verified', from: clear.label, target: c.target, expiresAt };
    const mode = pvd.encryptionConfigured;
    const opp = opportunisticProblem(c.server, clear, mode);
    if (opp === null) {
      // §4.3: the opportunistic privacy profile (RFC 7858 §4.1): TLS without authentication, the same address in the clear while TLS fails.
      const s = parseServer(c.server.label.replace(/#[^#]*$/, ''), 'opportunistic');
      if (typeof s !== 'string') return { server: s, discovery: 'opportunistic', from: clear.label, target: c.target, expiresAt };
    }
    // What §4.3 says is worth saying only to a PvD that asked for opportunistic encryption.
    found.rejected.push({ address: c.server.label, reason: mode === 'opportunistic' && opp !== null ? `${failed}; ${opp}` : failed });
    return null;
  }

  /** resolveTarget looks up a TargetName's A and AAAA through the server that designated it (RFC 9462 §4: no hints given). */
  private async resolveTarget(pvd: Pvd, clear: UpstreamServer, rec: Svcb): Promise<string[]> {
    const out: string[] = [];
    for (const type of [TYPE.A, TYPE.AAAA]) {
      const q = questionMessage(encodeName(rec.target), type);
      const a = await this.o.askServer(pvd, clear, q);
      if (a.rcode !== RCODE.NOERROR) continue;
      const s = answerSections(q, a);
      for (const r of s?.answer ?? []) {
        if (r.type === TYPE.A && r.rdata.length === 4) out.push(ipaddr.fromByteArray([...r.rdata]).toString());
        if (r.type === TYPE.AAAA && r.rdata.length === 16) out.push(ipaddr.fromByteArray([...r.rdata]).toString());
      }
    }
    return out;
  }

  /** apply takes one check's result: the list in use, the view, the next check. */
  private apply(t: Tracked, f: Found): void {
    const now = this.now();
    const cause = t.cause;
    t.checkedAt = now;
    t.rejected = f.rejected;
    let result: DdrResult;
    let next: number;
    let why: string;
    if (f.designated.length > 0) {
      t.retryMs = RETRY_FIRST_MS;
      t.lastError = null;
      const verified = f.designated.some((d) => d.discovery === 'verified');
      result = verified ? 'verified' : 'opportunistic';
      t.state = result;
      const first = f.designated[0]!;
      why =
        first.discovery === 'verified'
          ? `verified: ${first.target} covers ${hostOf(first.from)}`
          : `opportunistic: ${first.target} at ${first.server.host}, the address of ${first.from} (RFC 9462 §4.3)`;
      next = clampS(f.ttl, MIN_TTL_S, MAX_TTL_S) * 1000;
      this.set(t, f.designated, why);
    } else {
      const failure = f.records > 0 ? (f.rejected[0]?.reason ?? 'no usable designated resolver') : f.errors.length > 0 ? f.errors.join('; ') : null;
      if (f.records > 0) {
        // Designations found, none allowed: asked again when the record runs out (a new certificate may come).
        result = 'rejected';
        t.state = 'unverified';
        t.lastError = null;
        next = clampS(f.ttl, MIN_TTL_S, MAX_TTL_S) * 1000;
        why = failure!;
      } else if (f.errors.length > 0 && f.errors.length === t.pvd.ddrServers.length) {
        result = 'error';
        t.state = 'error';
        t.lastError = failure;
        next = t.retryMs;
        t.retryMs = Math.min(t.retryMs * 2, RETRY_MAX_MS);
        why = `_dns.resolver.arpa could not be asked: ${failure}`;
      } else {
        // NXDOMAIN, NODATA or no usable record: no designation; asked again with back-off.
        result = 'none';
        t.state = 'none';
        t.lastError = f.errors.length > 0 ? failure : null;
        next = t.retryMs;
        t.retryMs = Math.min(t.retryMs * 2, RETRY_MAX_MS);
        why = f.rejected.length > 0 ? f.rejected.map((r) => r.reason).join('; ') : '_dns.resolver.arpa has no SVCB record (no designated resolver)';
      }
      if (cause === 'ttl' && result !== 'rejected') why = `SVCB TTL ran out and ${result === 'error' ? `_dns.resolver.arpa could not be asked: ${failure}` : '_dns.resolver.arpa no longer answers'}`;
      if (result === 'error') {
        // A designation keeps for its TTL while it cannot be re-checked (RFC 9462 §4.1); expired ones go.
        const kept = t.designated.filter((d) => d.expiresAt > now);
        if (kept.length > 0) next = Math.min(next, Math.min(...kept.map((d) => d.expiresAt)) - now + 1);
        this.set(t, kept, why);
      } else {
        this.set(t, NO_DESIGNATED, why);
      }
      this.warnOnce(t, why);
    }
    for (const r of t.rejected) this.warnOnce(t, `${r.address}: ${r.reason}`);
    t.results[result]++;
    this.schedule(t, next, result === 'verified' || result === 'opportunistic' || result === 'rejected' ? 'ttl' : 'retry');
  }

  /** set records the designated list and reports a change of its servers or their discovery. */
  private set(t: Tracked, designated: readonly Designated[], why: string): void {
    const key = (l: readonly Designated[]): string => l.map((d) => `${d.server.label} ${d.discovery}`).join();
    const changed = key(t.designated) !== key(designated);
    t.designated = designated;
    if (!changed) return;
    this.o.log.info({ pvd: t.pvd.id, designated: designated.map((d) => `${d.server.label} (${d.discovery}, from ${d.from})`), why }, 'designated resolvers changed');
    this.o.onChange(t.pvd, designated, why);
  }

  private warnOnce(t: Tracked, what: string): void {
    if (t.warned.has(what)) return;
    if (t.warned.size >= MAX_WARNED) return;
    t.warned.add(what);
    this.o.log.warn({ pvd: t.pvd.id, problem: what }, 'designated resolver discovery');
  }

  private clearTimer(t: Tracked): void {
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = null;
    t.nextAt = null;
  }
}

function zeroResults(): Record<DdrResult, number> {
  return { verified: 0, opportunistic: 0, rejected: 0, none: 0, error: 0 };
}

function labels(servers: readonly UpstreamServer[]): string {
  return servers.map((s) => s.label).join();
}

function clampS(s: number, lo: number, hi: number): number {
  return Math.min(Math.max(s, lo), hi);
}

/** hostOf is the address of a cleartext server's label ("127.0.30.1:53" → "127.0.30.1"). */
function hostOf(label: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(label) ?? /^(.*):\d+$/.exec(label);
  return m ? m[1]! : label;
}
