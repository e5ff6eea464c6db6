// AnswerCache: answers tagged with the PvD that produced them. The key
// carries the PvD's tag, so an answer is only ever found by a query routed to
// that PvD; withdrawing a PvD drops its entries. Entries hold the answer's
// octets; their TTLs are rewritten at most once a second as they count down.

import { LRUCache } from 'lru-cache';
import { RR_STRIDE, setTtls, type Answer } from '../dns/answer.js';
import { RCODE } from '../dns/constants.js';

export interface CacheOptions {
  maxEntries: number;
  minTtl: number;
  maxTtl: number;
  negativeTtl: number;
  /** Keep expired answers to serve when the PvD's servers fail (RFC 8767). */
  serveStale: boolean;
}

/** RFC 8767 §5: how long past its TTL an answer may still be served stale (one day). */
export const MAX_STALE_MS = 86_400_000;
/** RFC 8767 §4: the TTL of a stale answer (the RECOMMENDED 30 seconds). */
export const STALE_TTL = 30;

interface Entry {
  answer: Answer;
  pvdTag: number;
  storedAt: number;
  expiresAt: number;
  /** The elapsed second the answer's TTLs were last written for. */
  patchedSec: number;
}

/**
 * answerKey is the cache key of a question in a PvD: the lower-cased wire
 * name, type, class, the DO and CD bits (answers differ with them, RFC 4035
 * §3.2.1, RFC 6840 §5.9) and the PvD's tag.
 */
export function answerKey(tag: number, nameKey: string, qtype: number, qclass: number, flags: number): string {
  return nameKey + String.fromCharCode(qtype, qclass, flags, tag & 0xffff, tag >>> 16);
}

/** First character of an nxdomainKey: 'N' (78) is no label length, so no answerKey starts with it. */
const NX_PREFIX = 'N';
const NX_MARK = 78;

/**
 * nxdomainKey is the key under which an NXDOMAIN is also kept for every type
 * of the name (RFC 2308 §5: NXDOMAIN is cached per name and class). It starts
 * with a character no wire name starts with.
 */
export function nxdomainKey(tag: number, nameKey: string, qclass: number, flags: number): string {
  return NX_PREFIX + nameKey + String.fromCharCode(qclass, flags, tag & 0xffff, tag >>> 16);
}

/** keyType is the query type of an answerKey, or -1 for an nxdomainKey (every type of the name). */
export function keyType(key: string): number {
  return key.charCodeAt(0) === NX_MARK ? -1 : key.charCodeAt(key.length - 5);
}

export class AnswerCache {
  private readonly lru: LRUCache<string, Entry> | null;
  private readonly perPvd = new Map<number, number>();
  /** Entries under an nxdomainKey: while there are none, a miss need not look for one. */
  nxdomains = 0;

  constructor(
    private readonly opts: CacheOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.lru =
      opts.maxEntries > 0
        ? new LRUCache<string, Entry>({
            max: opts.maxEntries,
            dispose: (e, key) => {
              this.perPvd.set(e.pvdTag, (this.perPvd.get(e.pvdTag) ?? 1) - 1);
              if (key.charCodeAt(0) === NX_MARK) this.nxdomains--;
            },
          })
        : null;
  }

  /** get returns a live answer with its TTLs counted down, or undefined. */
  get(key: string): Answer | undefined {
    const e = this.lru?.get(key);
    if (e === undefined) return undefined;
    const now = this.now();
    if (now >= e.expiresAt) {
      // Kept for serve-stale while it may still be served; the LRU makes room as usual.
      if (!this.opts.serveStale || now >= e.expiresAt + MAX_STALE_MS) this.lru!.delete(key);
      return undefined;
    }
    const sec = ((now - e.storedAt) / 1000) | 0;
    if (sec !== e.patchedSec) {
      setTtls(e.answer, sec);
      e.patchedSec = sec;
    }
    return e.answer;
  }

  /**
   * admit stores an upstream answer if it may be cached: a positive answer
   * for its smallest TTL (clamped to minTtl..maxTtl), a negative one for
   * min(SOA TTL, SOA MINIMUM, negativeTtl) and only with an SOA (RFC 2308
   * §5). Other RCODEs are not cached. The answer's TTLs are rewritten to the
   * clamped values whether it is kept or not, so every client sees the same
   * limits. `keep` false (its PvD was withdrawn meanwhile) only clamps.
   */
  admit(key: string, nxKey: string | null, pvdTag: number, a: Answer, keep = true): void {
    const lru = this.lru;
    if (lru !== null && lru.peek(key)?.answer === a) return;
    const ttl = this.lifetime(a);
    setTtls(a, 0);
    if (lru === null || !keep || !(ttl > 0)) return;
    const now = this.now();
    const entry: Entry = { answer: a, pvdTag, storedAt: now, expiresAt: now + ttl * 1000, patchedSec: 0 };
    this.store(key, entry);
    if (nxKey !== null && a.rcode === RCODE.NXDOMAIN && a.an === 0) {
      this.store(nxKey, entry);
      this.nxdomains++;
    }
  }

  private store(key: string, entry: Entry): void {
    this.lru!.set(key, entry);
    this.perPvd.set(entry.pvdTag, (this.perPvd.get(entry.pvdTag) ?? 0) + 1);
  }

  /** lifetime clamps the answer's stored TTLs and returns how long it may be cached, in seconds. */
  private lifetime(a: Answer): number {
    const { rr } = a;
    const { minTtl, maxTtl, negativeTtl } = this.opts;
    const authoritative = (a.an + a.ns) * RR_STRIDE;
    if (a.rcode === RCODE.NOERROR && a.an > 0) {
      let ttl = Infinity;
      for (let i = 0; i < rr.length; i += RR_STRIDE) {
        const t = Math.min(Math.max(rr[i + 2]!, minTtl), maxTtl);
        rr[i + 2] = t;
        if (i < authoritative && t < ttl) ttl = t;
      }
      return ttl;
    }
    if ((a.rcode === RCODE.NXDOMAIN || a.rcode === RCODE.NOERROR) && a.soaTtl >= 0) {
      const ttl = Math.min(a.soaTtl, negativeTtl);
      for (let i = 0; i < rr.length; i += RR_STRIDE) rr[i + 2] = Math.min(rr[i + 2]!, ttl);
      return ttl;
    }
    return 0;
  }

  /**
   * stale returns a copy of an expired answer still within MAX_STALE_MS,
   * every TTL set to 30 s and marked with an Extended DNS Error: 3 (Stale
   * Answer) or 19 (Stale NXDOMAIN Answer) (RFC 8767 §4, RFC 8914 §4.4, §4.20).
   */
  stale(key: string, why: string): Answer | undefined {
    if (!this.opts.serveStale) return undefined;
    const e = this.lru?.peek(key);
    const now = this.now();
    if (e === undefined || now < e.expiresAt || now >= e.expiresAt + MAX_STALE_MS) return undefined;
    const a = e.answer;
    const nx = a.rcode === RCODE.NXDOMAIN;
    const copy: Answer = {
      ...a,
      body: Buffer.from(a.body),
      rr: a.rr.map((v, i) => (i % RR_STRIDE === 2 ? STALE_TTL : v)),
      ede: { code: nx ? 19 : 3, text: why },
    };
    setTtls(copy, 0);
    return copy;
  }

  /** dropPvd removes every entry of a PvD; returns how many went. */
  dropPvd(pvdTag: number): number {
    if (!this.lru) return 0;
    const doomed: string[] = [];
    for (const [k, e] of this.lru.entries()) if (e.pvdTag === pvdTag) doomed.push(k);
    for (const k of doomed) this.lru.delete(k);
    this.perPvd.delete(pvdTag);
    return doomed.length;
  }

  /** dropWhere removes the entries of a PvD that `doomed` picks by answer and key; returns how many went. */
  dropWhere(pvdTag: number, doomed: (a: Answer, key: string) => boolean): number {
    if (!this.lru) return 0;
    const keys: string[] = [];
    for (const [k, e] of this.lru.entries()) if (e.pvdTag === pvdTag && doomed(e.answer, k)) keys.push(k);
    for (const k of keys) this.lru.delete(k);
    return keys.length;
  }

  /** clear removes everything. */
  clear(): void {
    this.lru?.clear();
    this.perPvd.clear();
    this.nxdomains = 0;
  }

  /** entries counts a PvD's entries (a cached NXDOMAIN counts under both its keys). */
  entries(pvdTag: number): number {
    return this.perPvd.get(pvdTag) ?? 0;
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}
