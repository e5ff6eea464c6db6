// The PvD-tagged answer cache (src/cache/answer-cache.ts), with an injected
// clock: what is kept and for how long, TTLs counting down as clients see
// them, negative caching per RFC 2308, and per-PvD bookkeeping.

import type DNS from 'dns2';
import { Packet } from 'dns2';
import { soa } from '../helpers/fake-upstream.js';
import { beforeEach, describe, expect, it } from 'vitest';
import { AnswerCache, answerKey, nxdomainKey, type CacheOptions } from '../../src/cache/answer-cache.js';
import { parseResponse, type Answer } from '../../src/dns/answer.js';
import { RCODE } from '../../src/dns/constants.js';
import { wireKey } from '../../src/dns/name.js';
import { PARSE_OK, parseQuery, type WireQuery } from '../../src/dns/query.js';
import { encodeReply, TCP_LIMIT } from '../../src/dns/reply.js';

const T = Packet.TYPE;
const NAME = 'www.example.com';
const OPTS: CacheOptions = { maxEntries: 1000, minTtl: 0, maxTtl: 86400, negativeTtl: 900, serveStale: false };

const A = (address: string, ttl: number, name = NAME): DNS.Packet.Resource => ({ name, type: T.A, class: 1, ttl, address }) as DNS.Packet.Resource;
const NS = (ttl: number): DNS.Packet.Resource => ({ name: 'example.com', type: T.NS, class: 1, ttl, ns: 'ns.example.com' }) as DNS.Packet.Resource;
const CNAME = (ttl: number, target: string): DNS.Packet.Resource => ({ name: NAME, type: T.CNAME, class: 1, ttl, domain: target }) as DNS.Packet.Resource;
const SOA = (ttl: number, minimum: number): DNS.Packet.Resource => soa('example.com', ttl, minimum);

interface Upstream {
  name?: string;
  type?: number;
  rcode?: number;
  answers?: DNS.Packet.Resource[];
  authorities?: DNS.Packet.Resource[];
  additionals?: DNS.Packet.Resource[];
}

/** answer is what an upstream's reply becomes: built with dns2, read by parseResponse. */
function answer(o: Upstream = {}): Answer {
  const name = o.name ?? NAME;
  const type = o.type ?? T.A;
  const p = new Packet();
  Object.assign(p.header, { id: 7, qr: 1, rd: 1, ra: 1, rcode: o.rcode ?? 0 });
  p.questions.push({ name, type, class: 1 } as DNS.Packet.Question);
  p.answers.push(...(o.answers ?? []));
  p.authorities.push(...(o.authorities ?? []));
  p.additionals.push(...(o.additionals ?? []));
  const r = parseResponse(p.toBuffer(), { id: 7, nameKey: wireKey(name), qtype: type, qclass: 1 });
  if (!r.ok) throw new Error(r.reason);
  return r.answer;
}

/** seen is the reply a client asking `name`/`type` would get with this answer, decoded. */
function seen(a: Answer, name = NAME, type: number = T.A) {
  const p = new Packet();
  p.header.id = 99;
  p.questions.push({ name, type, class: 1 } as DNS.Packet.Question);
  const q = {} as WireQuery;
  expect(parseQuery(p.toBuffer(), q)).toBe(PARSE_OK);
  const r = Packet.parse(encodeReply(q, a, TCP_LIMIT));
  return {
    rcode: r.header.rcode,
    answers: r.answers.map((x) => x.ttl),
    authorities: r.authorities.map((x) => x.ttl),
    additionals: r.additionals.map((x) => x.ttl),
  };
}

const TAG = 1;
const key = (name = NAME, type: number = T.A, tag = TAG, flags = 0): string => answerKey(tag, wireKey(name), type, 1, flags);
const nxKey = (name = NAME, tag = TAG, flags = 0): string => nxdomainKey(tag, wireKey(name), 1, flags);

const START = Date.UTC(2026, 10, 25, 9, 0, 0);
let now = START;
/** at sets the clock to `s` seconds after the start. */
const at = (s: number): void => {
  now = START + Math.round(s * 1000);
};
const clock = (): number => now;
const cacheWith = (opts: Partial<CacheOptions> = {}): AnswerCache => new AnswerCache({ ...OPTS, ...opts }, clock);

beforeEach(() => at(0));

describe('positive answers', () => {
  it('are kept for the smallest answer/authority TTL; additional data does not shorten it (RFC 2181 §5.2)', () => {
    const c = cacheWith();
    c.admit(key(), nxKey(), TAG, answer({ answers: [A('192.0.2.1', 300), A('192.0.2.2', 120)], authorities: [NS(200)], additionals: [A('192.0.2.53', 30, 'ns.example.com')] }));
    at(31);
    expect(c.get(key())).toBeDefined();
    at(119.999);
    const a = c.get(key());
    expect(a).toBeDefined();
    expect(seen(a!)).toMatchObject({ answers: [181, 1], authorities: [81], additionals: [0] });
    at(120);
    expect(c.get(key())).toBeUndefined();
  });

  it('count their TTLs down per whole second (RFC 1035 §7.1)', () => {
    const c = cacheWith();
    c.admit(key(), null, TAG, answer({ answers: [A('192.0.2.1', 300)] }));
    const ttlAt = (s: number): number => {
      at(s);
      return seen(c.get(key())!).answers[0]!;
    };
    expect(ttlAt(0)).toBe(300);
    expect(ttlAt(0.999)).toBe(300);
    expect(ttlAt(1)).toBe(299);
    expect(ttlAt(59.5)).toBe(241);
    expect(ttlAt(299.5)).toBe(1);
  });

  it('are gone once expired, and no longer counted', () => {
    const c = cacheWith();
    c.admit(key(), null, TAG, answer({ answers: [A('192.0.2.1', 60)] }));
    expect(c.entries(TAG)).toBe(1);
    at(60);
    expect(c.get(key())).toBeUndefined();
    expect(c.size).toBe(0);
    expect(c.entries(TAG)).toBe(0);
  });

  it('keep the answer whole: a record with a longer TTL counts down with it', () => {
    const c = cacheWith();
    const a = answer({ answers: [A('192.0.2.1', 3600)], authorities: [NS(60)] });
    c.admit(key(), null, TAG, a);
    at(59);
    expect(seen(c.get(key())!)).toMatchObject({ answers: [3541], authorities: [1] });
    at(60);
    expect(c.get(key())).toBeUndefined();
  });

  it('are clamped to maxTtl, and the client that caused the lookup already sees it', () => {
    const c = cacheWith({ maxTtl: 3600 });
    const a = answer({ answers: [A('192.0.2.1', 999_999)] });
    c.admit(key(), null, TAG, a);
    expect(seen(a).answers).toEqual([3600]);
    at(3599);
    expect(seen(c.get(key())!).answers).toEqual([1]);
    at(3600);
    expect(c.get(key())).toBeUndefined();
  });

  it('are raised to minTtl', () => {
    const c = cacheWith({ minTtl: 60 });
    const a = answer({ answers: [A('192.0.2.1', 5), A('192.0.2.2', 120)] });
    c.admit(key(), null, TAG, a);
    expect(seen(a).answers).toEqual([60, 120]);
    at(59);
    expect(seen(c.get(key())!).answers).toEqual([1, 61]);
    at(60);
    expect(c.get(key())).toBeUndefined();
  });

  it('with a TTL of 0 are not cached (RFC 1035 §3.2.1)', () => {
    const c = cacheWith();
    c.admit(key(), null, TAG, answer({ answers: [A('192.0.2.1', 0)] }));
    c.admit(key('two.example.com'), null, TAG, answer({ name: 'two.example.com', answers: [A('192.0.2.1', 300, 'two.example.com'), A('192.0.2.2', 0, 'two.example.com')] }));
    expect(c.get(key())).toBeUndefined();
    expect(c.get(key('two.example.com'))).toBeUndefined();
    expect(c.size).toBe(0);
    expect(c.entries(TAG)).toBe(0);
  });
});

describe('negative answers (RFC 2308)', () => {
  const nxdomain = (soaTtl = 3600, minimum = 300): Answer => answer({ rcode: RCODE.NXDOMAIN, authorities: [SOA(soaTtl, minimum)] });
  const nodata = (soaTtl = 3600, minimum = 300): Answer => answer({ type: T.AAAA, authorities: [SOA(soaTtl, minimum)] });

  it.each([
    ['NXDOMAIN', nxdomain, T.A],
    ['NODATA', nodata, T.AAAA],
  ] as const)('%s with SOA TTL 3600, MINIMUM 300 is cached 300 s with the SOA TTL counting down (RFC 2308 §5, §6)', (_, make, type) => {
    const c = cacheWith();
    const a = make();
    c.admit(key(NAME, type), nxKey(), TAG, a);
    expect(seen(a, NAME, type).authorities).toEqual([300]); // the first client sees what later ones will
    at(100);
    const hit = c.get(key(NAME, type));
    expect(hit).toBeDefined();
    expect(seen(hit!, NAME, type)).toMatchObject({ rcode: make === nxdomain ? RCODE.NXDOMAIN : RCODE.NOERROR, answers: [], authorities: [200] });
    at(299);
    expect(seen(c.get(key(NAME, type))!, NAME, type).authorities).toEqual([1]);
    at(301);
    expect(c.get(key(NAME, type))).toBeUndefined();
  });

  it('uses the SOA TTL when it is below MINIMUM (RFC 2308 §5)', () => {
    const c = cacheWith();
    c.admit(key(), nxKey(), TAG, nxdomain(60, 300));
    at(59);
    expect(seen(c.get(key())!).authorities).toEqual([1]);
    at(60);
    expect(c.get(key())).toBeUndefined();
  });

  it('is capped by cache.negativeTtl', () => {
    const c = cacheWith({ negativeTtl: 900 });
    const a = nxdomain(86400, 86400);
    c.admit(key(), nxKey(), TAG, a);
    expect(seen(a).authorities).toEqual([900]);
    at(899);
    expect(c.get(key())).toBeDefined();
    at(900);
    expect(c.get(key())).toBeUndefined();
  });

  it.each<[string, Upstream]>([
    ['NXDOMAIN without an SOA', { rcode: RCODE.NXDOMAIN }],
    ['NXDOMAIN with only NS records in authority', { rcode: RCODE.NXDOMAIN, authorities: [NS(3600)] }],
    ['NODATA without an SOA', { type: T.AAAA }],
    ['NXDOMAIN whose SOA TTL is 0', { rcode: RCODE.NXDOMAIN, authorities: [SOA(0, 300)] }],
    ['NXDOMAIN whose SOA MINIMUM is 0', { rcode: RCODE.NXDOMAIN, authorities: [SOA(300, 0)] }],
  ])('%s is not cached (RFC 2308 §5: SHOULD NOT)', (_, up) => {
    const c = cacheWith();
    c.admit(key(NAME, up.type ?? T.A), nxKey(), TAG, answer(up));
    expect(c.get(key(NAME, up.type ?? T.A))).toBeUndefined();
    expect(c.get(nxKey())).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it.each([
    ['SERVFAIL', RCODE.SERVFAIL],
    ['REFUSED', RCODE.REFUSED],
    ['FORMERR', RCODE.FORMERR],
    ['NOTIMP', RCODE.NOTIMP],
  ])('%s is not cached, even with an SOA', (_, rcode) => {
    const c = cacheWith();
    c.admit(key(), nxKey(), TAG, answer({ rcode, authorities: [SOA(3600, 300)] }));
    expect(c.get(key())).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('NXDOMAIN is also kept for every other type of the name (RFC 2308 §5)', () => {
    const c = cacheWith();
    c.admit(key(NAME, T.A), nxKey(), TAG, nxdomain());
    expect(c.get(key(NAME, T.AAAA))).toBeUndefined(); // a different question...
    const other = c.get(nxKey()); // ...that the name-wide entry answers
    expect(other).toBeDefined();
    at(100);
    expect(seen(c.get(nxKey())!, NAME, T.MX)).toMatchObject({ rcode: RCODE.NXDOMAIN, authorities: [200] });
    expect(c.get(nxKey('other.example.com'))).toBeUndefined();
    at(300);
    expect(c.get(nxKey())).toBeUndefined();
  });

  it('NODATA says nothing about other types of the name (RFC 2308 §5)', () => {
    const c = cacheWith();
    c.admit(key(NAME, T.AAAA), nxKey(), TAG, nodata());
    expect(c.get(key(NAME, T.AAAA))).toBeDefined();
    expect(c.get(nxKey())).toBeUndefined();
    expect(c.get(key(NAME, T.A))).toBeUndefined();
  });

  it('NXDOMAIN at the end of a CNAME chain is about the target, not the name asked (RFC 2308 §2.1)', () => {
    const c = cacheWith();
    c.admit(key(), nxKey(), TAG, answer({ rcode: RCODE.NXDOMAIN, answers: [CNAME(300, 'gone.example.net')], authorities: [SOA(3600, 300)] }));
    expect(c.get(key())).toBeDefined();
    expect(c.get(nxKey())).toBeUndefined();
  });
});

describe('keys', () => {
  it('never collide across PvD tags, names, types, classes or DO/CD flags', () => {
    const keys = new Set<string>();
    let n = 0;
    for (const tag of [1, 2, 0xffff, 0x10000, 0x10001, 0x7fffffff]) {
      for (const name of ['www.example.com', 'www.example.co', 'example.com', '']) {
        for (const flags of [0, 1, 2, 3]) {
          keys.add(nxdomainKey(tag, wireKey(name), 1, flags));
          n++;
          for (const type of [T.A, T.AAAA, T.MX]) {
            for (const qclass of [1, 3]) {
              keys.add(answerKey(tag, wireKey(name), type, qclass, flags));
              n++;
            }
          }
        }
      }
    }
    expect(keys.size).toBe(n);
  });

  it('an answer learned in one PvD is not found by a query routed to another (RFC 8801 §3.4.4)', () => {
    const c = cacheWith();
    c.admit(key(NAME, T.A, 1), nxKey(NAME, 1), 1, answer({ rcode: RCODE.NXDOMAIN, authorities: [SOA(3600, 300)] }));
    c.admit(key('b.example.com', T.A, 1), null, 1, answer({ name: 'b.example.com', answers: [A('192.0.2.1', 300, 'b.example.com')] }));
    for (const tag of [2, 0x10001]) {
      expect(c.get(key(NAME, T.A, tag))).toBeUndefined();
      expect(c.get(nxKey(NAME, tag))).toBeUndefined();
      expect(c.get(key('b.example.com', T.A, tag))).toBeUndefined();
    }
    expect(c.get(key(NAME, T.A, 1))).toBeDefined();
  });
});

describe('per-PvD bookkeeping', () => {
  const pos = (name: string): Answer => answer({ name, answers: [A('192.0.2.1', 300, name)] });

  it('dropPvd removes that PvD’s entries only', () => {
    const c = cacheWith();
    for (const n of ['a', 'b', 'c']) c.admit(key(`${n}.example`, T.A, 1), null, 1, pos(`${n}.example`));
    for (const n of ['a', 'd']) c.admit(key(`${n}.example`, T.A, 2), null, 2, pos(`${n}.example`));
    expect([c.entries(1), c.entries(2), c.size]).toEqual([3, 2, 5]);
    expect(c.dropPvd(1)).toBe(3);
    expect([c.entries(1), c.entries(2), c.size]).toEqual([0, 2, 2]);
    expect(c.get(key('a.example', T.A, 1))).toBeUndefined();
    expect(c.get(key('a.example', T.A, 2))).toBeDefined();
    expect(c.get(key('d.example', T.A, 2))).toBeDefined();
    expect(c.dropPvd(1)).toBe(0);
  });

  it('counts an NXDOMAIN under both its keys, and drops both', () => {
    const c = cacheWith();
    c.admit(key(), nxKey(), TAG, answer({ rcode: RCODE.NXDOMAIN, authorities: [SOA(3600, 300)] }));
    expect(c.entries(TAG)).toBe(2);
    expect(c.size).toBe(2);
    expect(c.dropPvd(TAG)).toBe(2);
    expect(c.get(nxKey())).toBeUndefined();
    expect(c.entries(TAG)).toBe(0);
  });

  it('evicts, when full, an entry not used since the last sweep, and keeps counts right', () => {
    const c = cacheWith({ maxEntries: 3 });
    c.admit(key('a.example', T.A, 1), null, 1, pos('a.example'));
    c.admit(key('b.example', T.A, 1), null, 1, pos('b.example'));
    c.get(key('a.example', T.A, 1)); // a is used, b is not
    c.admit(key('c.example', T.A, 2), null, 2, pos('c.example'));
    c.admit(key('d.example', T.A, 2), null, 2, pos('d.example')); // evicts b, the first unused
    expect(c.size).toBe(3);
    expect([c.entries(1), c.entries(2)]).toEqual([1, 2]);
    expect(c.get(key('b.example', T.A, 1))).toBeUndefined();
    expect(c.get(key('a.example', T.A, 1))).toBeDefined(); // used again: survives the next sweep
    c.admit(key('e.example', T.A, 2), null, 2, pos('e.example')); // evicts c
    c.admit(key('f.example', T.A, 2), null, 2, pos('f.example')); // passes a (clearing its mark), evicts d
    c.admit(key('g.example', T.A, 1), null, 1, pos('g.example')); // evicts e, never used
    expect([c.entries(1), c.entries(2), c.size]).toEqual([2, 1, 3]);
    expect(c.get(key('e.example', T.A, 2))).toBeUndefined();
    c.admit(key('h.example', T.A, 2), null, 2, pos('h.example')); // a's mark is gone: a goes now
    expect(c.get(key('a.example', T.A, 1))).toBeUndefined();
    expect(c.dropPvd(2)).toBe(2);
    expect([c.entries(1), c.entries(2), c.size]).toEqual([1, 0, 1]);
    expect(c.get(key('g.example', T.A, 1))).toBeDefined();
  });

  it('finds every entry again when full, however many passes the hand makes', () => {
    const c = cacheWith({ maxEntries: 100 });
    for (let i = 0; i < 1000; i++) {
      c.admit(key(`n${i}.example`, T.A, 1), null, 1, pos(`n${i}.example`));
      if (i % 3 === 0) c.get(key(`n${i}.example`, T.A, 1));
      expect(c.size).toBe(Math.min(i + 1, 100));
    }
    // The newest entry is always kept; every key in the cache still finds its own answer.
    expect(seen(c.get(key('n999.example', T.A, 1))!, 'n999.example').rcode).toBe(RCODE.NOERROR);
    let found = 0;
    for (let i = 0; i < 1000; i++) if (c.get(key(`n${i}.example`, T.A, 1)) !== undefined) found++;
    expect(found).toBe(100);
    expect(c.entries(1)).toBe(100);
  });

  it('keeps counts right when an entry is overwritten', () => {
    const c = cacheWith();
    c.admit(key(), null, TAG, answer({ answers: [A('192.0.2.1', 300)] }));
    c.admit(key(), null, TAG, answer({ answers: [A('192.0.2.2', 600)] }));
    expect(c.entries(TAG)).toBe(1);
    expect(c.size).toBe(1);
    expect(seen(c.get(key())!).answers).toEqual([600]); // the newer answer
    expect(c.dropPvd(TAG)).toBe(1);
    expect(c.entries(TAG)).toBe(0);
  });

  it('clear empties every PvD', () => {
    const c = cacheWith();
    c.admit(key(NAME, T.A, 1), null, 1, pos(NAME));
    c.admit(key(NAME, T.A, 2), null, 2, pos(NAME));
    c.clear();
    expect([c.size, c.entries(1), c.entries(2)]).toEqual([0, 0, 0]);
    expect(c.get(key(NAME, T.A, 1))).toBeUndefined();
  });
});

describe('configuration edge cases', () => {
  it('maxEntries 0 turns the cache off', () => {
    const c = cacheWith({ maxEntries: 0 });
    c.admit(key(), nxKey(), TAG, answer({ answers: [A('192.0.2.1', 300)] }));
    c.admit(key('nx.example.com'), nxKey('nx.example.com'), TAG, answer({ name: 'nx.example.com', rcode: RCODE.NXDOMAIN, authorities: [SOA(3600, 300)] }));
    expect(c.get(key())).toBeUndefined();
    expect(c.get(nxKey('nx.example.com'))).toBeUndefined();
    expect([c.size, c.entries(TAG), c.dropPvd(TAG)]).toEqual([0, 0, 0]);
  });

  it('admitting the same answer object twice (coalesced queries) neither resets its TTLs nor extends its life', () => {
    const c = cacheWith();
    const a = answer({ answers: [A('192.0.2.1', 300)] });
    c.admit(key(), nxKey(), TAG, a);
    at(100);
    expect(seen(c.get(key())!).answers).toEqual([200]);
    c.admit(key(), nxKey(), TAG, a);
    expect(c.entries(TAG)).toBe(1);
    expect(seen(c.get(key())!).answers).toEqual([200]);
    at(150);
    expect(seen(c.get(key())!).answers).toEqual([150]);
    at(300);
    expect(c.get(key())).toBeUndefined();
    expect(c.entries(TAG)).toBe(0);
  });
});
