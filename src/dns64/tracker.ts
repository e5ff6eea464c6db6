// Pref64Tracker: each PvD's NAT64 prefixes and who synthesizes with them.
// A PvD with `dns64: auto` learns its prefixes by asking AAAA ipv4only.arpa
// of its own servers only (RFC 7050 §3, RFC 8880 §7.1 item 3), again 10 s
// before the answer's TTL runs out (RFC 7050 §3 N6), when the PvD is updated
// and when its servers change; a configured prefix (as from an RA PREF64
// option, RFC 8781 §5.1: scoped to its PvD) is used as given. A change is
// reported, so the cache can drop what was synthesized with the old one.
//
// A PvD with noInternet (RFC 8801 §3.4.4) is not asked: NAT64 is a way to the
// IPv4 Internet, which such a PvD does not offer, and its servers (a
// split-DNS VPN's) may refuse every name but their own, ipv4only.arpa
// included. It has no DNS64 unless its prefix is configured (or pvdns
// synthesizes with the Well-Known Prefix, dns64Synthesize).

import type { Logger } from 'pino';
import { RR_STRIDE, type Answer } from '../dns/answer.js';
import { rcodeName, RCODE, TYPE } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { questionMessage } from '../dns/query.js';
import ipaddr from 'ipaddr.js';
import type { AskPvd, Pvd } from '../pvd/model.js';
import type { Dns64View } from '../pvd/view.js';
import { reverseZones } from '../pvd/reverse.js';
import { prefixesFromAddresses, WELL_KNOWN_NAME } from './discover.js';
import { isWellKnown, parsePref64, WELL_KNOWN_PREFIX, type Pref64 } from './prefix.js';
import { aaaaAddresses, minAaaaTtl } from './synthesize.js';

/**
 * Who makes the PvD's AAAA records from A records: nobody (`off`, or `none`
 * when discovery found no NAT64), not known yet (`discovering`), the PvD's
 * own resolver (`network`), or pvdns (`pvdns`, dns64Synthesize).
 */
export type Dns64Role = 'off' | 'discovering' | 'none' | 'network' | 'pvdns';

/** Dns64Info is what the query path reads of a PvD: fixed until the next change. */
export interface Dns64Info {
  /** The Pref64::/n set, in the order learned; empty when the PvD has none (known). */
  readonly prefixes: readonly Pref64[];
  /** pvdns synthesizes for this PvD. */
  readonly synthesize: boolean;
  /**
   * The ip6.arpa zones whose PTR queries route to this PvD: those of
   * configured prefixes, of prefixes pvdns synthesizes with, and of the
   * Well-Known Prefix. A discovered network-specific prefix claims nothing:
   * an untrusted network (RFC 7050 §3.1) must not pull the reverse lookups
   * of address space that may be someone else's.
   */
  readonly reverseZones: readonly string[];
}

/** Told of a change of a PvD's prefixes or of who synthesizes, with what the query path saw before and sees now. */
export type Pref64Changed = (pvd: Pvd, before: Dns64Info, after: Dns64Info) => void;

/** RFC 7050 §3 N6: rediscover this long before the prefixes' TTL runs out. */
const REFRESH_BEFORE_S = 10;
/** Bounds on the gap between discoveries that succeeded (or found no NAT64). */
const MIN_REFRESH_S = 5;
const MAX_REFRESH_S = 86_400;
/** A negative answer is obeyed for its TTL (RFC 7050 §3 N5), at least this long. */
const MIN_NEGATIVE_S = 60;
/** After a failed discovery (timeout, SERVFAIL), the next try comes after this, doubling up to the cap. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

const DISCOVERY_QUERY = questionMessage(encodeName(WELL_KNOWN_NAME), TYPE.AAAA);

const NO_DNS64: Dns64Info = Object.freeze({ prefixes: Object.freeze([]), synthesize: false, reverseZones: Object.freeze([]) });

interface Tracked {
  pvd: Pvd;
  info: Dns64Info;
  role: Dns64Role;
  source: 'discovery' | 'config' | 'default' | null;
  timer: NodeJS.Timeout | null;
  nextAt: number | null;
  retryMs: number;
  /** Bumped by every change of the PvD: an answer to an older discovery is ignored. */
  generation: number;
  lastError: string | null;
  /** Set while a new PvD takes its first state: nothing is reported. */
  quiet: boolean;
}

export class Pref64Tracker {
  private readonly byTag = new Map<number, Tracked>();
  private running = false;

  constructor(
    private readonly ask: AskPvd,
    private readonly onChange: Pref64Changed,
    private readonly log: Logger,
  ) {}

  /** info is what the query path needs of a PvD's DNS64: its prefixes and whether pvdns synthesizes. */
  info(pvd: Pvd): Dns64Info {
    return this.byTag.get(pvd.tag)?.info ?? NO_DNS64;
  }

  /** start lets discovery send queries (check-config never does). */
  start(): void {
    this.running = true;
    for (const t of this.byTag.values()) if (discovers(t.pvd)) this.discover(t, 0);
  }

  /** track takes a PvD as announced or updated: a configured prefix now, discovery at once. */
  track(pvd: Pvd): void {
    let t = this.byTag.get(pvd.tag);
    // A new PvD's first state is part of its announcement, not a change.
    const quiet = t === undefined;
    if (t === undefined) {
      t = { pvd, info: NO_DNS64, role: 'discovering', source: null, timer: null, nextAt: null, retryMs: RETRY_FIRST_MS, generation: 0, lastError: null, quiet };
      this.byTag.set(pvd.tag, t);
    }
    t.quiet = quiet;
    t.pvd = pvd;
    t.generation++;
    t.retryMs = RETRY_FIRST_MS;
    t.lastError = null;
    this.clearTimer(t);
    if (pvd.dns64 === 'off') {
      this.set(t, [], 'off', null);
    } else if (pvd.dns64 !== 'auto') {
      const p = parsePref64(pvd.dns64);
      this.set(t, typeof p === 'string' ? [] : [p], pvd.dns64Synthesize ? 'pvdns' : 'network', 'config');
    } else if (pvd.servers.length + pvd.designated.length === 0) {
      this.set(t, [], 'none', null);
    } else if (pvd.noInternet) {
      // Not asked (see the top); pvdns's own synthesis uses the Well-Known Prefix (RFC 6147 §5.2).
      if (pvd.dns64Synthesize) this.set(t, [WELL_KNOWN_PREFIX], 'pvdns', 'default');
      else this.set(t, [], 'none', null);
    } else {
      // What discovery found before the update stays until discovery says otherwise.
      if (t.source === 'discovery') this.set(t, t.info.prefixes, this.roleFor(pvd, 'network'), 'discovery');
      else if (!((t.role === 'none' && !pvd.dns64Synthesize) || (t.source === 'default' && pvd.dns64Synthesize))) this.set(t, [], 'discovering', null);
      if (this.running) this.discover(t, 0);
    }
    t.quiet = false;
  }

  /** untrack forgets a withdrawn PvD. */
  untrack(pvd: Pvd): void {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return;
    this.clearTimer(t);
    t.generation++;
    this.byTag.delete(pvd.tag);
  }

  view(pvd: Pvd): Dns64View {
    const t = this.byTag.get(pvd.tag);
    if (t === undefined) return { pref64: null, dns64: pvd.dns64 === 'off' ? 'off' : 'discovering', pref64Source: null, pref64NextCheck: null, pref64Error: null };
    return {
      pref64: t.role === 'discovering' || t.role === 'off' ? null : t.info.prefixes.map((p) => p.text),
      dns64: t.role,
      pref64Source: t.source,
      pref64NextCheck: t.nextAt === null ? null : new Date(t.nextAt).toISOString(),
      pref64Error: t.lastError,
    };
  }

  close(): void {
    this.running = false;
    for (const t of this.byTag.values()) this.clearTimer(t);
  }

  /** discover asks the PvD's servers for AAAA ipv4only.arpa after `delayMs`. */
  private discover(t: Tracked, delayMs: number): void {
    this.clearTimer(t);
    if (!this.running) return;
    const generation = t.generation;
    const current = (): boolean => this.running && t.generation === generation && this.byTag.get(t.pvd.tag) === t;
    t.nextAt = Date.now() + delayMs;
    t.timer = setTimeout(() => {
      t.timer = null;
      t.nextAt = null;
      this.ask(t.pvd, DISCOVERY_QUERY)
        .then(
          (a) => current() && this.learn(t, a),
          (err: unknown) => current() && this.failed(t, String(err)),
        )
        .catch((err: unknown) => {
          // A fault in pvdns itself while applying the answer: say so, and try again later.
          this.log.error({ err, pvd: t.pvd.id }, 'pref64 discovery failed inside pvdns');
          if (current()) this.discover(t, RETRY_MAX_MS);
        });
    }, delayMs);
    t.timer.unref();
  }

  /** learn applies a discovery answer (RFC 7050 §3). */
  private learn(t: Tracked, a: Answer): void {
    // REFUSED is a server's definite word that it does not resolve the name
    // for us (an authoritative-only server): it is no DNS64, as for NODATA.
    if (a.rcode !== RCODE.NOERROR && a.rcode !== RCODE.NXDOMAIN && a.rcode !== RCODE.REFUSED) {
      this.failed(t, `${rcodeName(a.rcode)}${a.ede ? `: ${a.ede.text}` : ''}`);
      return;
    }
    t.retryMs = RETRY_FIRST_MS;
    t.lastError = null;
    const found = a.rcode === RCODE.NOERROR ? prefixesFromAddresses(aaaaAddresses(a)) : [];
    if (found.length > 0) {
      this.set(t, found, this.roleFor(t.pvd, 'network'), 'discovery');
      const ttl = minAaaaTtl(a);
      const wait = ttl > 2 * REFRESH_BEFORE_S ? ttl - REFRESH_BEFORE_S : ttl / 2;
      this.discover(t, clampS(wait, MIN_REFRESH_S, MAX_REFRESH_S) * 1000);
      return;
    }
    // No NAT64 here (NXDOMAIN, NODATA, REFUSED, or AAAA records without a well-known address at an RFC 6052 place).
    if (t.pvd.dns64Synthesize) this.set(t, [WELL_KNOWN_PREFIX], 'pvdns', 'default'); // RFC 6147 §5.2
    else this.set(t, [], 'none', null);
    const negative = a.an > 0 ? minTtl(a) : a.soaTtl;
    this.discover(t, clampS(negative, MIN_NEGATIVE_S, MAX_REFRESH_S) * 1000);
  }

  /** failed keeps what was known and tries again later, with back-off. */
  private failed(t: Tracked, why: string): void {
    // One warning per run of failures; the retries after it log at debug.
    if (t.lastError === null) this.log.warn({ pvd: t.pvd.id, error: why, retryInMs: t.retryMs }, 'pref64 discovery failed; retrying with back-off');
    else this.log.debug({ pvd: t.pvd.id, error: why, retryInMs: t.retryMs }, 'pref64 discovery failed again');
    t.lastError = why;
    // RFC 6147 §5.2: a DNS64 with no prefix uses the Well-Known Prefix — meanwhile, for pvdns's own synthesis.
    if (t.role === 'discovering' && t.pvd.dns64Synthesize) this.set(t, [WELL_KNOWN_PREFIX], 'pvdns', 'default');
    const wait = t.retryMs;
    t.retryMs = Math.min(t.retryMs * 2, RETRY_MAX_MS);
    this.discover(t, wait);
  }

  private roleFor(pvd: Pvd, otherwise: Dns64Role): Dns64Role {
    return pvd.dns64Synthesize ? 'pvdns' : otherwise;
  }

  /** set records the prefixes and role, and reports a change of either. */
  private set(t: Tracked, prefixes: readonly Pref64[], role: Dns64Role, source: Tracked['source']): void {
    const old = t.info;
    const before = old.prefixes;
    const synthesize = role === 'pvdns' && prefixes.length > 0;
    const same = before.length === prefixes.length && before.every((p, i) => p.text === prefixes[i]!.text);
    const changed = !same || t.role !== role;
    const trusted = (p: Pref64): boolean => source === 'config' || synthesize || isWellKnown(p);
    const sourceChanged = source !== t.source;
    t.role = role;
    t.source = source;
    if (!same || old.synthesize !== synthesize || sourceChanged) {
      t.info = Object.freeze({
        prefixes: Object.freeze([...prefixes]),
        synthesize,
        reverseZones: Object.freeze(prefixes.filter(trusted).flatMap((p) => reverseZones(ipaddr.fromByteArray([...p.bytes]), p.length))),
      });
    }
    if (!changed || t.quiet) return;
    this.log.info({ pvd: t.pvd.id, pref64: prefixes.map((p) => p.text), before: before.map((p) => p.text), dns64: role, source }, 'pref64 changed');
    this.onChange(t.pvd, old, t.info);
  }

  private clearTimer(t: Tracked): void {
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = null;
    t.nextAt = null;
  }
}

/** discovers says whether a PvD learns its prefixes by asking (RFC 7050): dns64 auto, servers, and the Internet. */
function discovers(p: Pvd): boolean {
  return p.dns64 === 'auto' && p.servers.length + p.designated.length > 0 && !p.noInternet;
}

function clampS(s: number, lo: number, hi: number): number {
  return Math.min(Math.max(s, lo), hi);
}

/** minTtl is the smallest TTL of an answer's records. */
function minTtl(a: Answer): number {
  let ttl = Infinity;
  for (let i = 2; i < a.rr.length; i += RR_STRIDE) ttl = Math.min(ttl, a.rr[i]!);
  return ttl === Infinity ? -1 : ttl;
}
