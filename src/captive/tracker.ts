// CaptiveTracker: whether each PvD is behind a captive portal that rewrites
// DNS. States per PvD: unknown → open or captive. Evidence comes from:
//
// - probes, through the PvD's own cleartext servers (Pvd.clearServers: a
//   portal answers port 53, not its encrypted resolver), every captive.probeIntervalS
//   while the PvD is in use (and every 10 s while captive, so a login is
//   noticed soon), at once when the PvD is announced or updated, and soon
//   after an answer looked suspicious:
//   names that cannot exist (any address is a rewrite) and the canary name
//   (captive.canary: known addresses, or at least a public one);
// - answers on the query path (noteAnswer): an address already known as the
//   portal's is a rewrite; a private address for a name the PvD does not own,
//   or one address for several unrelated names, makes pvdns probe at once;
// - the RFC 8908 API of a PvD with a captivePortal URI, whose `captive`
//   overrides the heuristics while it answers validly (RFC 8952 §2.1: the
//   network's explicit word beats guessing).
//
// A PvD nobody used since its last round (no upstream answer) is not probed
// on the clock: its next round waits for its next upstream answer, which
// brings it at once when the interval has passed (issue 19: an idle pvdns
// does not wake up, nor send probes, for nothing). A portal that appears
// meanwhile shows in the answers that wake it.
//
// A PvD with noInternet (RFC 8801 §3.4.4) is never probed: a portal holds
// back the Internet, which such a PvD does not offer, and its servers (a
// split-DNS VPN's) may refuse every name but their own, the probes' included.
// Its RFC 8908 API, when it names one, is still read.

import type { Logger } from 'pino';
import { RR_STRIDE, type Answer } from '../dns/answer.js';
import { TYPE } from '../dns/constants.js';
import { encodeName, wireKey } from '../dns/name.js';
import { questionMessage } from '../dns/query.js';
import type { AskPvd, Pvd } from '../pvd/model.js';
import type { CaptiveView } from '../pvd/view.js';
import { fetchCaptiveApi, UNRESTRICTED, type CaptiveApiState, type PvdLookup } from './api.js';
import { addressesOf, judgeCanary, judgeMissing, probeNames, specialAt, type ProbeVerdict } from './evidence.js';

export type CaptiveState = 'unknown' | 'open' | 'captive';

export interface CaptiveOptions {
  /** Seconds between probe rounds; 0 turns the DNS heuristics off (a PvD's RFC 8908 API is still read). */
  probeIntervalS: number;
  canary: { name: string; addresses: string[] };
}

/** Told when a PvD's state changes. */
export type CaptiveChanged = (pvd: Pvd, state: CaptiveState, previous: CaptiveState) => void;

/** While captive, probes and API reads come at least this often, so a login is noticed soon. */
const CAPTIVE_RECHECK_MS = 10_000;
/**
 * A suspicious answer makes pvdns probe at once, but not within this long of
 * the last round: a home network's own private names would otherwise keep
 * it probing.
 */
const SUSPICION_GAP_MS = 15_000;
/** How often the RFC 8908 API is read when the DNS heuristics are off. */
const API_INTERVAL_MS = 60_000;
/**
 * The API is never read more often than this, whatever it or the probe
 * interval says; but for one read at once when DNS stops being rewritten
 * while it says captive (the user has logged in, RFC 8908 §6).
 */
const API_MIN_MS = 10_000;
/** Rewritten probe answers in one round that make a PvD captive: two of three (standards.md §5.5 H1). */
const REWRITES_TO_CAPTIVE = 2;
const API_TIMEOUT_MS = 5_000;
/** One address for this many unrelated names within the window looks like a portal answering everything (H2). */
const SAME_ADDRESS_NAMES = 3;
const SAME_ADDRESS_WINDOW_MS = 60_000;
/** Portal addresses remembered per PvD. */
const MAX_PORTAL_ADDRESSES = 64;
/** The captiveReason of a PvD not probed for its noInternet. */
const NOT_PROBED = 'not probed: the PvD has noInternet, and a captive portal holds back the Internet';

interface Tracked {
  pvd: Pvd;
  state: CaptiveState;
  since: number;
  reason: string | null;
  /** Addresses seen in rewritten answers: the portal's (or the ad server's). */
  portal: Set<string>;
  rewrites: number;
  timer: NodeJS.Timeout | null;
  /** Bumped when the PvD's network changes (servers, source address, API URI) and on close: older results are ignored. */
  generation: number;
  /** Bumped on every change of state: an answer whose query left before a change is not trusted after it. */
  transitions: number;
  probing: boolean;
  /** Evidence of a portal came while a round was out (its encrypted servers failing it): one more round at once. */
  again: boolean;
  lastProbeAt: number;
  /** An upstream answer came in the PvD since its last round began; without one its rounds on the clock wait (see the top of this file). */
  used: boolean;
  /** The last valid RFC 8908 document, and the last error reading it. */
  api: CaptiveApiState | null;
  apiError: string | null;
  apiTimer: NodeJS.Timeout | null;
  /** A read of the API is under way. */
  apiReading: boolean;
  /** What the last conclusive probe round saw: rewritten DNS (true) or clean (false); null before one. */
  dnsRewritten: boolean | null;
  /** H2: address set → the unrelated names it answered lately. */
  sameAddress: Map<string, Set<string>>;
  sameAddressSince: number;
}

export class CaptiveTracker {
  private readonly byTag = new Map<number, Tracked>();
  private running = false;

  constructor(
    private readonly ask: AskPvd,
    private readonly onChange: CaptiveChanged,
    private readonly log: Logger,
    private opts: CaptiveOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** start lets probes and API reads go out (check-config never sends any). */
  start(): void {
    this.running = true;
    for (const t of this.byTag.values()) this.kick(t);
  }

  /** setOptions applies a reloaded configuration: the next rounds follow it. */
  setOptions(opts: CaptiveOptions): void {
    this.opts = opts;
    if (this.running) for (const t of this.byTag.values()) this.kick(t);
  }

  /** track takes a PvD as announced or updated: probes and the API at once. */
  track(pvd: Pvd): void {
    let t = this.byTag.get(pvd.tag);
    if (t === undefined) {
      t = {
        pvd, state: 'unknown', since: this.now(), reason: null, portal: new Set(), rewrites: 0, timer: null, generation: 0, transitions: 0,
        probing: false, again: false, lastProbeAt: -Infinity, used: true, api: null, apiError: null, apiTimer: null, apiReading: false, dnsRewritten: null, sameAddress: new Map(), sameAddressSince: this.now(),
      };
      this.byTag.set(pvd.tag, t);
      if (this.running) this.kick(t);
      return;
    }
    const before = t.pvd;
    t.pvd = pvd;
    // Only a change of network starts over; a new priority or expiry changes nothing here.
    const servers = (p: Pvd): string => p.servers.map((x) => x.label).join();
    const apiChanged = before.captivePortal !== pvd.captivePortal;
    const reach = before.noInternet !== pvd.noInternet;
    if (servers(before) === servers(pvd) && before.sourceAddress === pvd.sourceAddress && !apiChanged && !reach) return;
    t.generation++;
    t.probing = false;
    t.portal.clear();
    t.dnsRewritten = null;
    if (apiChanged) {
      t.api = null;
      t.apiError = null;
      // Without probes nothing else can decide: the API's verdict goes with it.
      if (this.opts.probeIntervalS === 0) this.set(t, 'unknown', 'captive-portal API removed');
    }
    // Now noInternet: what the probes found no longer holds (the API's word does).
    if (pvd.noInternet && t.api === null && t.state !== 'unknown') this.set(t, 'unknown', NOT_PROBED);
    if (this.running) this.kick(t);
  }

  untrack(pvd: Pvd): void {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return;
    this.stopTimers(t);
    t.generation++;
    this.byTag.delete(pvd.tag);
  }

  close(): void {
    this.running = false;
    for (const t of this.byTag.values()) {
      this.stopTimers(t);
      t.generation++;
    }
  }

  /** stateOf is a PvD's state: unknown, open or captive. */
  stateOf(pvd: Pvd): CaptiveState {
    return this.byTag.get(pvd.tag)?.state ?? 'unknown';
  }

  /** isCaptive is what routing and the cache ask on the query path. */
  isCaptive(pvd: Pvd): boolean {
    return this.byTag.get(pvd.tag)?.state === 'captive';
  }

  /** epoch counts a PvD's state changes: the captive stage compares it before and after a query. */
  epoch(pvd: Pvd): number {
    return this.byTag.get(pvd.tag)?.transitions ?? 0;
  }

  /** watching says whether answers in the PvD are worth a look (probes on, or portal addresses known). */
  watching(pvd: Pvd): boolean {
    const t = this.byTag.get(pvd.tag);
    return t !== undefined && (this.opts.probeIntervalS > 0 || t.portal.size > 0);
  }

  /**
   * hosts lists the names to route to the PvD while it is captive, so the
   * user reaches its portal (see portalHosts); none otherwise: the names come
   * from the network, which may not keep any of them once the portal is gone.
   */
  hosts(pvd: Pvd): string[] {
    const t = this.byTag.get(pvd.tag);
    if (t?.state !== 'captive') return [];
    return portalHosts(pvd.captivePortal, [t.api?.userPortalUrl, t.api?.venueInfoUrl]);
  }

  /**
   * portalName says whether a name (wire key) is the captive PvD's portal's
   * own: one of `hosts` or a name under it. A PvD with encrypted servers
   * asks these, and only these, through its cleartext servers while captive.
   */
  portalName(pvd: Pvd, nameKey: string): boolean {
    const t = this.byTag.get(pvd.tag);
    if (t?.state !== 'captive') return false;
    for (const h of this.hosts(pvd)) {
      const k = wireKey(h);
      if (nameKey === k || (nameKey.length > k.length && nameKey.endsWith(k) && isLabelStart(nameKey, nameKey.length - k.length))) return true;
    }
    return false;
  }

  /**
   * loginAt says where the user of a captive PvD logs in: the RFC 8908 API's
   * user-portal-url, else the address its rewritten answers pointed at, else
   * null.
   */
  loginAt(pvd: Pvd): string | null {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return null;
    if (t.api?.userPortalUrl) return t.api.userPortalUrl;
    const first = t.portal.values().next().value;
    return first === undefined ? null : first.includes(':') ? `http://[${first}]/` : `http://${first}/`;
  }

  /** rewrites counts the rewritten answers seen per PvD id, for metrics. */
  *counts(): Iterable<{ pvd: Pvd; state: CaptiveState; rewrites: number }> {
    for (const t of this.byTag.values()) yield { pvd: t.pvd, state: t.state, rewrites: t.rewrites };
  }

  view(pvd: Pvd): CaptiveView {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return { captive: null, captiveState: 'unknown', userPortalUrl: null, venueInfoUrl: null, captiveSince: null, captiveReason: null, portalAddresses: [], captiveApiError: null };
    return {
      captive: t.state === 'unknown' ? null : t.state === 'captive',
      captiveState: t.state,
      userPortalUrl: t.api?.userPortalUrl ?? null,
      venueInfoUrl: t.api?.venueInfoUrl ?? null,
      captiveSince: new Date(t.since).toISOString(),
      captiveReason: t.reason,
      portalAddresses: [...t.portal],
      captiveApiError: t.apiError,
    };
  }

  /**
   * noteAnswer looks at an upstream answer in the PvD for signs of a portal.
   * `owned` says whether the name lies in a zone the PvD claims (its own
   * names may well be private). Returns true when the answer is a rewrite:
   * it holds an address known to be the portal's.
   */
  noteAnswer(pvd: Pvd, nameKey: string, a: Answer, owned: boolean): boolean {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return false;
    if (!t.used) {
      t.used = true;
      this.wake(t);
    }
    // One pass over the records' octets: how many addresses, whether one is special, where the first is.
    const { rr, body } = a;
    let count = 0;
    let special = false;
    let first = 0;
    let firstLen = 0;
    for (let i = 0; i < a.an; i++) {
      const ttlAt = rr[i * RR_STRIDE + 1]!;
      const type = body.readUInt16BE(ttlAt - 4);
      const len = body.readUInt16BE(ttlAt + 4);
      if (!((type === TYPE.A && len === 4) || (type === TYPE.AAAA && len === 16))) continue;
      if (count++ === 0) [first, firstLen] = [ttlAt + 6, len];
      if (!special) special = specialAt(body, ttlAt + 6, len);
    }
    if (count === 0) return false;
    if (t.portal.size > 0 && addressesOf(a).some((x) => t.portal.has(x))) {
      t.rewrites++;
      if (t.state !== 'captive') this.suspect(t);
      return true;
    }
    if (owned) return false;
    if (special) {
      this.suspect(t);
      return false;
    }
    // A portal answers with one address; CDNs mostly with several.
    if (count === 1) this.sameAddress(t, nameKey, body.toString('latin1', first, first + firstLen));
    return false;
  }

  /** sameAddress watches for one address answering several unrelated names (standards.md §5.5 H2). */
  private sameAddress(t: Tracked, nameKey: string, address: string): void {
    const now = this.now();
    if (now - t.sameAddressSince > SAME_ADDRESS_WINDOW_MS || t.sameAddress.size > 1024) {
      t.sameAddress.clear();
      t.sameAddressSince = now;
    }
    let names = t.sameAddress.get(address);
    if (names === undefined) t.sameAddress.set(address, (names = new Set()));
    names.add(lastLabels(nameKey, 2));
    if (names.size >= SAME_ADDRESS_NAMES) {
      t.sameAddress.delete(address);
      this.suspect(t);
    }
  }

  /**
   * evidence probes the PvD soon (not within SUSPICION_GAP_MS of the last
   * round): something besides an answer suggests a portal, such as its
   * encrypted servers all failing at once.
   */
  evidence(pvd: Pvd): void {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined || t.state === 'captive') return;
    // A round out now is the one that failed: the next goes at once (in the clear, see App.probeInClear).
    if (t.probing) t.again = true;
    else this.suspect(t);
  }

  /** suspect probes soon: an answer looked rewritten. */
  private suspect(t: Tracked): void {
    if (!this.running || this.opts.probeIntervalS === 0 || t.probing || t.pvd.noInternet) return;
    if (this.now() - t.lastProbeAt < SUSPICION_GAP_MS) return;
    this.schedule(t, 0);
  }

  /** kick probes and reads the API now, and arranges the next rounds. */
  private kick(t: Tracked): void {
    // Said in the view, so a PvD left unknown is not taken for one whose probes failed.
    if (t.state === 'unknown') {
      const skipped = this.opts.probeIntervalS > 0 && t.pvd.noInternet;
      if (skipped && t.reason === null) t.reason = NOT_PROBED;
      else if (!skipped && t.reason === NOT_PROBED) t.reason = null;
    }
    if (this.opts.probeIntervalS > 0 && !t.pvd.noInternet) this.schedule(t, 0);
    else if (t.timer !== null) {
      clearTimeout(t.timer);
      t.timer = null;
    }
    this.readApiSoon(t, 0);
  }

  /** schedule arranges the next round; an `onClock` round is skipped when the PvD was not used since the last (wake brings it). */
  private schedule(t: Tracked, delayMs: number, onClock = false): void {
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      t.timer = null;
      if (onClock && !t.used && t.state !== 'captive') return;
      this.probe(t).catch((err: unknown) => this.fault(t, err, 'probe'));
    }, delayMs);
    t.timer.unref();
  }

  /**
   * wake brings the round of a PvD whose round on the clock was skipped (no
   * timer, no round out): at once when the interval since the last has passed.
   */
  private wake(t: Tracked): void {
    if (!this.running || this.opts.probeIntervalS === 0 || t.pvd.noInternet || t.pvd.clearServers.length === 0 || t.probing || t.timer !== null) return;
    this.schedule(t, Math.max(0, t.lastProbeAt + this.intervalMs - this.now()));
  }

  private get intervalMs(): number {
    return this.opts.probeIntervalS * 1000;
  }

  /** probe runs one round: two names that cannot exist and the canary, in parallel. */
  private async probe(t: Tracked): Promise<void> {
    // Probes go to the PvD's cleartext servers (a portal answers port 53 only); a PvD with none (DNS over HTTPS by host name) is not probed.
    if (t.probing || this.byTag.get(t.pvd.tag) !== t || t.pvd.clearServers.length === 0 || t.pvd.noInternet) return;
    const generation = t.generation;
    t.probing = true;
    t.used = false;
    t.lastProbeAt = this.now();
    const missing = probeNames();
    const canary = this.opts.canary;
    let verdicts: ProbeVerdict[];
    try {
      const answers = await Promise.all([...missing, canary.name].map((n) => this.ask(t.pvd, questionMessage(encodeName(n), TYPE.A))));
      verdicts = [
        ...missing.map((n, i) => judgeMissing(n, answers[i]!)),
        judgeCanary(canary.name, answers[missing.length]!, new Set(canary.addresses), t.portal),
      ];
    } catch (err) {
      verdicts = [{ kind: 'unknown', why: String(err) }];
    }
    if (t.generation !== generation || this.byTag.get(t.pvd.tag) !== t) return;
    t.probing = false;
    this.conclude(t, verdicts);
    const again = t.again && t.state !== 'captive';
    t.again = false;
    if (this.running && this.opts.probeIntervalS > 0) {
      if (again) this.schedule(t, 0);
      else if (t.state === 'captive') this.schedule(t, Math.min(this.intervalMs, CAPTIVE_RECHECK_MS));
      else this.schedule(t, this.intervalMs, true);
    }
  }

  /**
   * conclude turns a probe round into a state, unless the PvD's API has
   * spoken: two rewritten answers of three make it captive (one alone, a
   * stale canary list say, proves nothing), a round without a rewrite opens
   * it, timeouts and failures change nothing.
   */
  private conclude(t: Tracked, verdicts: ProbeVerdict[]): void {
    const rewritten = verdicts.filter((v) => v.kind === 'rewritten');
    t.rewrites += rewritten.length;
    if (rewritten.length >= REWRITES_TO_CAPTIVE) {
      for (const v of rewritten) for (const x of v.addresses) if (t.portal.size < MAX_PORTAL_ADDRESSES) t.portal.add(x);
    }
    const clean = rewritten.length === 0 && verdicts.some((v) => v.kind === 'clean');
    const wasRewritten = t.dnsRewritten;
    if (rewritten.length >= REWRITES_TO_CAPTIVE) t.dnsRewritten = true;
    else if (clean) t.dnsRewritten = false;
    if (t.api !== null) {
      // RFC 8908: the network's own word decides. DNS that was rewritten and is not any more says the user
      // has logged in, when the client "SHOULD query the API server again" (§6): now, not at the next round.
      if (clean && wasRewritten === true && t.state === 'captive' && !t.apiReading && t.pvd.captivePortal !== null) this.readApiSoon(t, 0);
      return;
    }
    if (rewritten.length >= REWRITES_TO_CAPTIVE) this.set(t, 'captive', `DNS rewritten: ${rewritten[0]!.why}`);
    else if (clean) this.set(t, 'open', 'probes answered as they should');
  }

  /** readApiSoon reads the PvD's RFC 8908 API after `delayMs`, when it has one. */
  private readApiSoon(t: Tracked, delayMs: number): void {
    if (t.apiTimer !== null) clearTimeout(t.apiTimer);
    t.apiTimer = null;
    const uri = t.pvd.captivePortal;
    if (uri === null || !this.running) return;
    t.apiTimer = setTimeout(() => this.readApi(t, uri).catch((err: unknown) => this.fault(t, err, 'api')), delayMs);
    t.apiTimer.unref();
  }

  private async readApi(t: Tracked, uri: string): Promise<void> {
    t.apiTimer = null;
    const generation = t.generation;
    let doc: CaptiveApiState | null = null;
    let error: string | null = null;
    if (uri === UNRESTRICTED) {
      doc = { captive: false, userPortalUrl: null, venueInfoUrl: null, secondsRemaining: null, canExtendSession: null };
    } else {
      t.apiReading = true;
      try {
        doc = await fetchCaptiveApi(uri, this.lookupIn(t.pvd), { localAddress: t.pvd.sourceAddress, timeoutMs: API_TIMEOUT_MS });
      } catch (err) {
        error = (err as Error).message;
      } finally {
        t.apiReading = false;
      }
    }
    if (t.generation !== generation || this.byTag.get(t.pvd.tag) !== t) return;
    if (error !== null) {
      if (t.apiError !== error) this.log.warn({ pvd: t.pvd.id, uri, error }, 'captive-portal API not read; keeping the last valid state');
      t.apiError = error;
    } else {
      const hostsBefore = this.hosts(t.pvd).join();
      const urlsBefore = `${t.api?.userPortalUrl} ${t.api?.venueInfoUrl}`;
      t.apiError = null;
      t.api = doc;
      const state = doc!.captive ? 'captive' : 'open';
      const reason = `captive-portal API (RFC 8908) says captive: ${doc!.captive}`;
      if (t.state !== state) this.set(t, state, reason);
      else {
        t.reason = reason;
        // The same state, but another portal named: its routes and the view change.
        if (this.hosts(t.pvd).join() !== hostsBefore || `${doc!.userPortalUrl} ${doc!.venueInfoUrl}` !== urlsBefore) this.onChange(t.pvd, state, state);
      }
    }
    if (uri === UNRESTRICTED) return;
    // Read again on the usual schedule (never more often than API_MIN_MS); before the session runs out when a document just read says when (RFC 8908 §5).
    const base = Math.max(this.opts.probeIntervalS > 0 ? this.intervalMs : API_INTERVAL_MS, API_MIN_MS);
    let next = t.state === 'captive' ? API_MIN_MS : base;
    const left = error === null ? doc!.secondsRemaining : null;
    if (error === null && !doc!.captive && left !== null) next = Math.min(next, Math.max(API_MIN_MS, left * 1000));
    this.readApiSoon(t, next);
  }

  /** lookupIn resolves a host's A and AAAA records through the PvD's own (cleartext) servers. */
  private lookupIn(pvd: Pvd): PvdLookup {
    return async (host) => {
      // Asked of the cleartext servers, as the probes are: with none there is nothing to ask.
      if (pvd.clearServers.length === 0) throw new Error(`${host} cannot be looked up: pvd ${pvd.identifier} has no cleartext DNS server`);
      const name = encodeName(host);
      const [a, aaaa] = await Promise.all([this.ask(pvd, questionMessage(name, TYPE.A)), this.ask(pvd, questionMessage(name, TYPE.AAAA))]);
      return [...addressesOf(a), ...addressesOf(aaaa)];
    };
  }

  private set(t: Tracked, state: CaptiveState, reason: string): void {
    if (t.state === state) {
      t.reason = reason;
      return;
    }
    const previous = t.state;
    t.state = state;
    t.since = this.now();
    t.reason = reason;
    t.transitions++;
    if (state === 'open') t.portal.clear(); // a portal gone: its addresses may be anyone's now
    this.log.info({ pvd: t.pvd.id, captiveState: state, previous, reason, portalAddresses: [...t.portal] }, 'captive state changed');
    this.onChange(t.pvd, state, previous);
    // Found captive by its DNS while its API has not been read (its host may not have resolved
    // before the probes went in the clear): read it now, for where to log in.
    if (state === 'captive' && t.api === null && this.running) this.readApiSoon(t, 0);
  }

  /** fault logs a failure inside pvdns itself and keeps the PvD's rounds going. */
  private fault(t: Tracked, err: unknown, what: 'probe' | 'api'): void {
    this.log.error({ err, pvd: t.pvd.id }, `captive-portal ${what === 'api' ? 'API read' : 'probe'} failed inside pvdns`);
    if (!this.running || this.byTag.get(t.pvd.tag) !== t) return;
    if (what === 'api') {
      if (t.apiTimer === null && t.pvd.captivePortal !== null) this.readApiSoon(t, API_INTERVAL_MS);
      return;
    }
    t.probing = false;
    if (this.opts.probeIntervalS > 0 && t.timer === null) this.schedule(t, this.intervalMs, true);
  }

  private stopTimers(t: Tracked): void {
    if (t.timer !== null) clearTimeout(t.timer);
    if (t.apiTimer !== null) clearTimeout(t.apiTimer);
    t.timer = null;
    t.apiTimer = null;
  }
}

/**
 * portalHosts lists the names a captive PvD resolves for itself: its
 * captive-portal API's host, and the hosts of the URIs the API names (user
 * portal, venue info) when they are that host or lie under it. Everything
 * here comes from the network (RFC 8910 options are the network's word), so
 * nothing beyond its own portal's names is pulled to it.
 */
export function portalHosts(apiUri: string | null, named: ReadonlyArray<string | null | undefined>): string[] {
  const api = hostOf(apiUri);
  if (api === null) return [];
  const out = new Set([api]);
  for (const uri of named) {
    const host = hostOf(uri);
    if (host !== null && (host === api || host.endsWith(`.${api}`))) out.add(host);
  }
  return [...out];
}

/** hostOf is the host name of a URI, lower-cased; null for none, an IP literal, the unrestricted URN, or no valid DNS name. */
function hostOf(uri: string | null | undefined): string | null {
  if (!uri || uri === UNRESTRICTED || !URL.canParse(uri)) return null;
  const host = new URL(uri).hostname.toLowerCase().replace(/\.$/, '');
  if (host === '' || /^[\d.]+$/.test(host) || host.startsWith('[')) return null;
  try {
    encodeName(host); // labels of 1–63 octets, 255 in all
    return host;
  } catch {
    return null;
  }
}

/** isLabelStart says whether offset `at` of a wire key begins a label (walking its length octets from the start). */
function isLabelStart(nameKey: string, at: number): boolean {
  let off = 0;
  while (off < at) off += nameKey.charCodeAt(off) + 1;
  return off === at;
}

/** lastLabels is the wire key of a name's last `n` labels ("www.example.com", 2 → "example.com"). */
function lastLabels(nameKey: string, n: number): string {
  const starts: number[] = [];
  for (let off = 0; off < nameKey.length && nameKey.charCodeAt(off) !== 0; off += nameKey.charCodeAt(off) + 1) starts.push(off);
  return starts.length <= n ? nameKey : nameKey.slice(starts[starts.length - n]);
}
