// AnswerCache: answers tagged with the PvD that produced them. The key
// carries the PvD's tag, so an answer is only ever found by a query routed to
// that PvD; withdrawing a PvD drops its entries. Entries hold the answer's
// octets; their TTLs are rewritten at most once a second as they count down.
//
// The store is written for the hit path and for memory (measured by `npm run
// bench`): a Map from key to slot, the per-entry numbers in typed arrays, the
// octets in an Arena, and CLOCK replacement — a hit sets one bit instead of
// relinking a list, and an entry not used since the hand last passed it is
// the one that goes. An entry costs about 480 bytes, its octets included.

import { RR_STRIDE, setTtls, type Answer } from '../dns/answer.js';
import { RCODE } from '../dns/constants.js';
import { Arena } from './arena.js';

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

/** Slots are allocated in steps, so an idle cache with a large maxEntries costs little. */
const FIRST_SLOTS = 1024;

// Keys are built in one scratch buffer and read out as one flat latin1
// string: half the memory of a concatenated string, and no flattening when
// the Map hashes it.
const scratch = Buffer.allocUnsafe(512);

function tail(at: number, qclass: number, flags: number, tag: number): string {
  scratch[at] = qclass >>> 8;
  scratch[at + 1] = qclass;
  scratch[at + 2] = flags;
  scratch[at + 3] = tag >>> 24;
  scratch[at + 4] = tag >>> 16;
  scratch[at + 5] = tag >>> 8;
  scratch[at + 6] = tag;
  return scratch.toString('latin1', 0, at + 7);
}

/**
 * answerKey is the cache key of a question in a PvD: the lower-cased wire
 * name, type, class, the DO and CD bits (answers differ with them, RFC 4035
 * §3.2.1, RFC 6840 §5.9) and the PvD's tag. A wire key is latin1 (one octet
 * per character), so it is copied exactly.
 */
export function answerKey(tag: number, nameKey: string, qtype: number, qclass: number, flags: number): string {
  const n = scratch.write(nameKey, 0, 'latin1');
  scratch[n] = qtype >>> 8;
  scratch[n + 1] = qtype;
  return tail(n + 2, qclass, flags, tag);
}

/** First character of an nxdomainKey: 'N' (78) is no label length, so no answerKey starts with it. */
const NX_MARK = 78;

/**
 * nxdomainKey is the key under which an NXDOMAIN is also kept for every type
 * of the name (RFC 2308 §5: NXDOMAIN is cached per name and class). It starts
 * with a character no wire name starts with.
 */
export function nxdomainKey(tag: number, nameKey: string, qclass: number, flags: number): string {
  scratch[0] = NX_MARK;
  return tail(1 + scratch.write(nameKey, 1, 'latin1'), qclass, flags, tag);
}

/** keyType is the query type of an answerKey, or -1 for an nxdomainKey (every type of the name). */
export function keyType(key: string): number {
  if (key.charCodeAt(0) === NX_MARK) return -1;
  return (key.charCodeAt(key.length - 9) << 8) | key.charCodeAt(key.length - 8);
}

export class AnswerCache {
  private readonly index = new Map<string, number>();
  private readonly arena = new Arena();
  private readonly perPvd = new Map<number, number>();
  // Per slot; a slot is free when its key is undefined.
  private keys: (string | undefined)[] = [];
  private answers: (Answer | undefined)[] = [];
  private storedAt = new Float64Array(0);
  private expiresAt = new Float64Array(0);
  /** The elapsed second the answer's TTLs were last written for. */
  private patchedSec = new Int32Array(0);
  private tags = new Uint32Array(0);
  /** CLOCK's reference bits: set by a hit, cleared as the hand passes. */
  private used = new Uint8Array(0);
  private readonly free: number[] = [];
  /** Slots handed out so far (free or not); the hand sweeps [0, top). */
  private top = 0;
  private hand = 0;
  /** Entries under an nxdomainKey: while there are none, a miss need not look for one. */
  nxdomains = 0;

  constructor(
    private readonly opts: CacheOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** get returns a live answer with its TTLs counted down, or undefined. */
  get(key: string): Answer | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    const now = this.now();
    if (now >= this.expiresAt[slot]!) {
      // Kept for serve-stale while it may still be served; CLOCK makes room as usual.
      if (!this.opts.serveStale || now >= this.expiresAt[slot]! + MAX_STALE_MS) this.remove(slot);
      return undefined;
    }
    const a = this.answers[slot]!;
    const sec = ((now - this.storedAt[slot]!) / 1000) | 0;
    if (sec !== this.patchedSec[slot]) {
      setTtls(a, sec);
      this.patchedSec[slot] = sec;
    }
    this.used[slot] = 1;
    return a;
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
    const held = this.index.get(key);
    if (held !== undefined && this.answers[held] === a) return;
    const ttl = this.lifetime(a);
    setTtls(a, 0);
    if (this.opts.maxEntries === 0 || !keep || !(ttl > 0)) return;
    this.arena.adopt(a);
    const now = this.now();
    const expiresAt = now + ttl * 1000;
    this.store(key, pvdTag, a, now, expiresAt);
    if (nxKey !== null && a.rcode === RCODE.NXDOMAIN && a.an === 0) this.store(nxKey, pvdTag, a, now, expiresAt);
  }

  private store(key: string, pvdTag: number, a: Answer, now: number, expiresAt: number): void {
    let slot = this.index.get(key);
    if (slot !== undefined) this.release(slot);
    else {
      slot = this.take();
      this.index.set(key, slot);
    }
    this.keys[slot] = key;
    this.answers[slot] = a;
    this.storedAt[slot] = now;
    this.expiresAt[slot] = expiresAt;
    this.patchedSec[slot] = 0;
    this.tags[slot] = pvdTag;
    this.used[slot] = 0;
    this.perPvd.set(pvdTag, (this.perPvd.get(pvdTag) ?? 0) + 1);
    if (key.charCodeAt(0) === NX_MARK) this.nxdomains++;
  }

  /** take finds a slot for a new key: a free one, a new one, or CLOCK's victim when full. */
  private take(): number {
    const free = this.free.pop();
    if (free !== undefined) return free;
    if (this.top < this.keys.length) return this.top++;
    if (this.top < this.opts.maxEntries) {
      this.grow(Math.min(this.opts.maxEntries, Math.max(FIRST_SLOTS, this.top * 2)));
      return this.top++;
    }
    // Full: every slot below top holds an entry. The hand clears reference
    // bits until it finds an entry not used since its last pass.
    for (;;) {
      const slot = this.hand;
      this.hand = slot + 1 === this.top ? 0 : slot + 1;
      if (this.used[slot] === 1) this.used[slot] = 0;
      else {
        this.index.delete(this.keys[slot]!);
        this.release(slot);
        return slot;
      }
    }
  }

  private grow(size: number): void {
    const grown = <T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const next = make(size);
      next.set(old);
      return next;
    };
    this.storedAt = grown(this.storedAt, (n) => new Float64Array(n));
    this.expiresAt = grown(this.expiresAt, (n) => new Float64Array(n));
    this.patchedSec = grown(this.patchedSec, (n) => new Int32Array(n));
    this.tags = grown(this.tags, (n) => new Uint32Array(n));
    this.used = grown(this.used, (n) => new Uint8Array(n));
    this.keys.length = size;
    this.answers.length = size;
  }

  /** release forgets a slot's entry in the counts; its key stays in the index (the caller decides). */
  private release(slot: number): void {
    const tag = this.tags[slot]!;
    this.perPvd.set(tag, (this.perPvd.get(tag) ?? 1) - 1);
    if (this.keys[slot]!.charCodeAt(0) === NX_MARK) this.nxdomains--;
  }

  /** remove deletes a slot's entry and frees the slot. */
  private remove(slot: number): void {
    this.index.delete(this.keys[slot]!);
    this.release(slot);
    this.keys[slot] = undefined;
    this.answers[slot] = undefined;
    this.used[slot] = 0;
    this.free.push(slot);
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
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    const now = this.now();
    const expiresAt = this.expiresAt[slot]!;
    if (now < expiresAt || now >= expiresAt + MAX_STALE_MS) return undefined;
    const a = this.answers[slot]!;
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
    return this.dropWhere(pvdTag, () => true);
  }

  /** dropWhere removes the entries of a PvD that `doomed` picks by answer and key; returns how many went. */
  dropWhere(pvdTag: number, doomed: (a: Answer, key: string) => boolean): number {
    let n = 0;
    for (let slot = 0; slot < this.top; slot++) {
      const key = this.keys[slot];
      if (key !== undefined && this.tags[slot] === pvdTag && doomed(this.answers[slot]!, key)) {
        this.remove(slot);
        n++;
      }
    }
    if (this.perPvd.get(pvdTag) === 0) this.perPvd.delete(pvdTag);
    return n;
  }

  /** clear removes everything. */
  clear(): void {
    this.index.clear();
    this.perPvd.clear();
    this.keys = [];
    this.answers = [];
    this.storedAt = new Float64Array(0);
    this.expiresAt = new Float64Array(0);
    this.patchedSec = new Int32Array(0);
    this.tags = new Uint32Array(0);
    this.used = new Uint8Array(0);
    this.free.length = 0;
    this.top = 0;
    this.hand = 0;
    this.nxdomains = 0;
  }

  /** entries counts a PvD's entries (a cached NXDOMAIN counts under both its keys). */
  entries(pvdTag: number): number {
    return this.perPvd.get(pvdTag) ?? 0;
  }

  get size(): number {
    return this.index.size;
  }
}
