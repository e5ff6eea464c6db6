// A coverage-guided fuzzer of pvdns's wire parsing and query path, in
// process: mutated client queries go through the real QueryHandler and
// pipeline (access, local names, routing, cache, coalescing, rebinding,
// captive and DNS64 stages), and the upstream's answers to them are mutated
// too (parseResponse, the cache's TTL walk, DNS64's record decoding). V8's
// precise block coverage decides which inputs join the corpus: an input that
// reaches code no earlier input reached is kept and mutated further.
//
// It fails on a crash (an exception out of pvdns, or an "internal error"
// answer), a hang (a query neither answered nor dropped within 2 s), or a
// reply that is not a well-formed DNS message answering the query.
// FUZZ_SECONDS bounds each target's run (default 10).

import { Session } from 'node:inspector/promises';
import { Packet } from 'dns2';
import type DNS from 'dns2';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { parseResponse } from '../../src/dns/answer.js';
import { configSchema } from '../../src/config/schema.js';
import type { QueryHandler, ReplySink } from '../../src/server/handler.js';
import type { ExchangeDone, ExchangeRequest, Transport } from '../../src/upstream/exchange.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 10);
const T = Packet.TYPE;

// ---------------------------------------------------------------- randomness and mutation

let seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const FIRST_SEED = seed;
/** rand is a small PRNG (mulberry32), so a failing run can be replayed with FUZZ_SEED. */
function rand(n: number): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (((t ^ (t >>> 14)) >>> 0) % n) >>> 0;
}

const INTERESTING = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xc0, 0xff, 0x29, 0x0c];

/** mutate applies 1–4 structure-blind mutations: the parsers must survive anything. */
function mutate(input: Buffer, corpus: Buffer[]): Buffer {
  let b = Buffer.from(input);
  for (let k = 1 + rand(4); k > 0; k--) {
    const at = b.length ? rand(b.length) : 0;
    switch (rand(9)) {
      case 0: // flip a bit
        if (b.length) b[at]! ^= 1 << rand(8);
        break;
      case 1: // an interesting byte
        if (b.length) b[at] = INTERESTING[rand(INTERESTING.length)]!;
        break;
      case 2: // a random byte
        if (b.length) b[at] = rand(256);
        break;
      case 3: // cut the tail
        b = b.subarray(0, at);
        break;
      case 4: // delete a few bytes
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rand(8))]);
        break;
      case 5: // insert a few bytes
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + rand(8) }, () => rand(256))), b.subarray(at)]);
        break;
      case 6: // a section count (QD, AN, NS or AR) set to something else
        if (b.length >= 12) b.writeUInt16BE([0, 1, 2, 3, 255, 0xffff][rand(6)]!, 4 + 2 * rand(4));
        break;
      case 7: // duplicate a slice (repeated labels, records)
        if (b.length) {
          const len = 1 + rand(Math.min(32, b.length - at));
          b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
        }
        break;
      case 8: // splice with another input
        if (corpus.length) {
          const other = corpus[rand(corpus.length)]!;
          b = Buffer.concat([b.subarray(0, at), other.subarray(rand(other.length + 1))]);
        }
        break;
    }
  }
  return b.length > 4096 ? b.subarray(0, 4096) : b;
}

// ---------------------------------------------------------------- seeds

function query(name: string, type: number, o: { id?: number; edns?: boolean; do?: boolean; cd?: boolean; options?: DNS.Packet.EdnsOption[] } = {}): Buffer {
  const p = new Packet();
  p.header.id = o.id ?? 0x1234;
  p.header.rd = 1;
  (p.header as DNS.Packet.Header & { cd: number }).cd = o.cd ? 1 : 0;
  p.questions.push({ name, type, class: 1 } as DNS.Packet.Question);
  if (o.edns !== false) p.additionals.push(Packet.Resource.EDNS(o.options ?? [], { udpPayloadSize: 1232, doFlag: o.do ?? false }));
  return p.toBuffer();
}

const QUERY_SEEDS = [
  query('www.example.com', T.A),
  query('www.example.com', T.AAAA, { do: true, cd: true }),
  query('v4only.nat.example', T.AAAA),
  query(`1.0.2.0.0.0.0.c.${'0.'.repeat(12)}4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa`, T.PTR),
  query('localhost', T.A, { edns: false }),
  query('x.corp.example', T.MX),
  query('1.1.168.192.in-addr.arpa', T.PTR),
  query('big.example', T.TXT, { options: [{ code: 10, data: Buffer.alloc(8, 7) } as unknown as DNS.Packet.EdnsOption] }),
  query('evil.home.example', T.A),
  query('example', T.ANY),
];

/** The records of an upstream answer (no header, no question): patched in after the real question. */
function records(rrs: DNS.Packet.Resource[], authorities: DNS.Packet.Resource[] = []): { body: Buffer; an: number; ns: number } {
  const p = new Packet();
  p.questions.push({ name: 'q.example', type: T.A, class: 1 } as DNS.Packet.Question);
  p.answers.push(...rrs);
  p.authorities.push(...authorities);
  const wire = p.toBuffer();
  let off = 12; // skip the question: only the records are kept
  while (wire[off] !== 0) off += wire[off]! + 1;
  return { body: wire.subarray(off + 5), an: rrs.length, ns: authorities.length };
}

const rr = (name: string, type: number, data: Record<string, unknown>): DNS.Packet.Resource => ({ name, type, class: 1, ttl: 300, ...data }) as DNS.Packet.Resource;
const SOA = { name: 'example', type: T.SOA, class: 1, ttl: 300, primary: 'ns.example', admin: 'h.example', serial: 1, refresh: 1, retry: 1, expiration: 1, minimum: 300 } as DNS.Packet.Resource;
const ANSWER_SEEDS = [
  records([rr('q.example', T.A, { address: '192.0.2.1' })]),
  records([rr('q.example', T.CNAME, { domain: 'r.example' }), rr('r.example', T.A, { address: '10.0.0.1' })]),
  records([rr('q.example', T.AAAA, { address: '64:ff9b::c000:201' })]),
  records([], [SOA]),
  records([rr('q.example', T.TXT, { data: 'x'.repeat(200) })]),
  records([rr('q.example', T.MX, { exchange: 'mx.example', priority: 10 })]),
];

// ---------------------------------------------------------------- the target

/** An upstream whose answer to each query is a mutated one: parsed by pvdns as a real reply would be. */
class FuzzUpstream implements Transport {
  corpus: Buffer[] = ANSWER_SEEDS.map((s) => Buffer.concat([Buffer.from([s.an >> 8, s.an & 0xff, s.ns >> 8, s.ns & 0xff]), s.body]));
  next: Buffer | null = null;

  query(req: ExchangeRequest, done: ExchangeDone): void {
    this.answer(req, done);
  }
  tcp(req: ExchangeRequest, done: ExchangeDone): void {
    this.answer(req, done);
  }
  private answer(req: ExchangeRequest, done: ExchangeDone): void {
    const pick = this.next ?? this.corpus[rand(this.corpus.length)]!;
    // Header: the query's ID, QR, RD, RA, a random RCODE now and then; the query's question; then the mutated records.
    let qEnd = 12;
    while (qEnd < req.message.length && req.message[qEnd] !== 0) qEnd += req.message[qEnd]! + 1;
    qEnd += 5;
    const head = Buffer.from(req.message.subarray(0, qEnd));
    head.writeUInt16BE(0x8180 | (rand(8) === 0 ? rand(16) : 0), 2);
    head.writeUInt16BE(pick.length >= 2 ? pick.readUInt16BE(0) : 0, 6);
    head.writeUInt16BE(pick.length >= 4 ? pick.readUInt16BE(2) : 0, 8);
    head.writeUInt16BE(0, 10);
    const msg = Buffer.concat([head, pick.subarray(4)]);
    const r = parseResponse(msg, req.expect);
    // A reply pvdns cannot take is ignored as a forgery would be. A real exchange would then wait for
    // the query's budget; here it fails at once (as a socket error would), so the fuzzer keeps its pace.
    queueMicrotask(() => done(r.ok ? { ok: true, answer: r.answer, truncated: r.truncated } : { ok: false, reason: 'network', detail: `fuzz: ${r.reason}` }));
  }
}

/** validReply checks a reply as a strict client would: header, one question, records that end exactly at the end. */
function validReply(reply: Buffer, queryId: number): string | null {
  if (reply.length < 12) return 'shorter than a header';
  if (reply.readUInt16BE(0) !== queryId) return 'wrong ID';
  if (!(reply.readUInt16BE(2) & 0x8000)) return 'QR not set';
  const counts = [4, 6, 8, 10].map((o) => reply.readUInt16BE(o));
  if (counts[0]! > 1) return 'more than one question';
  const name = (off: number): number => {
    for (let hops = 0; ; ) {
      if (off >= reply.length) return -1;
      const len = reply[off]!;
      if (len === 0) return off + 1;
      if ((len & 0xc0) === 0xc0) {
        if (off + 1 >= reply.length || ++hops > 64) return -1;
        const target = ((len & 0x3f) << 8) | reply[off + 1]!;
        if (target >= off) return -1; // pointers point backwards (RFC 1035 §4.1.4)
        return off + 2;
      }
      if (len & 0xc0) return -1;
      off += len + 1;
    }
  };
  let off = 12;
  if (counts[0]) {
    off = name(off);
    if (off < 0 || off + 4 > reply.length) return 'bad question';
    off += 4;
  }
  let opts = 0;
  for (let i = 0; i < counts[1]! + counts[2]! + counts[3]!; i++) {
    off = name(off);
    if (off < 0 || off + 10 > reply.length) return `bad record ${i}`;
    if (reply.readUInt16BE(off) === 41) opts++;
    off += 10 + reply.readUInt16BE(off + 8);
    if (off > reply.length) return `record ${i} runs past the end`;
  }
  if (off !== reply.length) return `${reply.length - off} octets after the last record`;
  if (opts > 1) return 'more than one OPT';
  return null;
}

describe('fuzzing the wire parsers and the query path', () => {
  const upstream = new FuzzUpstream();
  const errors: string[] = [];
  let app: App;
  let handler: QueryHandler;
  let session: Session;
  const seen = new Set<string>();

  beforeAll(async () => {
    const log = pino({ level: 'error' }, { write: (s: string) => errors.push(s) });
    const cfg = configSchema.parse({
      listen: ['127.0.0.1:0'],
      http: { listen: null },
      pvdSources: { host: false },
      captive: { probeIntervalS: 0 },
      cache: { maxEntries: 5000, serveStale: true },
      upstream: { timeoutMs: 200, attempts: 2, queryTimeoutMs: 600 }, // well inside the 2 s that count as a hang
      pvds: [
        { identifier: 'home', dnsServers: ['127.0.0.140', '127.0.0.141'], default: true, rebindProtection: true, dnsZones: ['home.example'], prefixes: ['192.168.0.0/16'], dns64: 'off' },
        { identifier: 'nat', dnsServers: ['127.0.0.142'], dnsZones: ['nat.example'], noInternet: true, dns64: '2001:db8:64::/96', dns64Synthesize: true },
        { identifier: 'corp', dnsServers: ['127.0.0.143'], dnsZones: ['corp.example'], noInternet: true, dns64: 'off' },
      ],
    });
    app = new App(cfg, { configFile: null, log, transport: upstream });
    await app.start();
    // The handler every listener feeds: the whole query path, without sockets in between.
    handler = (app as unknown as { handler: QueryHandler }).handler;
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.startPreciseCoverage', { callCount: false, detailed: true });
  });
  afterAll(async () => {
    await session.post('Profiler.stopPreciseCoverage');
    session.disconnect();
    await app.stop();
  });

  /** newCoverage says whether the last input reached a block of pvdns's own code not reached before. */
  async function newCoverage(): Promise<boolean> {
    const { result } = await session.post('Profiler.takePreciseCoverage');
    let found = false;
    for (const script of result) {
      if (!script.url.includes('/src/')) continue;
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          if (r.count === 0) continue;
          const key = `${script.url}:${r.startOffset}:${r.endOffset}`;
          if (!seen.has(key)) {
            seen.add(key);
            found = true;
          }
        }
      }
    }
    return found;
  }

  /** run sends one query through the handler and checks what comes back; null when fine. */
  function run(msg: Buffer): Promise<string | null> {
    return new Promise((resolve) => {
      const id = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
      const timer = setTimeout(() => resolve(`hang: no reply within 2 s to ${msg.toString('hex')}`), 2000);
      const sink: ReplySink = {
        reply: (out) => {
          clearTimeout(timer);
          const bad = validReply(out, id);
          resolve(bad === null ? null : `invalid reply (${bad}) to ${msg.toString('hex')}: ${out.toString('hex')}`);
        },
      };
      let status: number;
      try {
        status = handler.handle(msg, '127.0.0.1', 40000, rand(4) === 0 ? 'tcp' : 'udp', sink);
      } catch (err) {
        clearTimeout(timer);
        resolve(`crash: ${(err as Error).stack} on ${msg.toString('hex')}`);
        return;
      }
      if (status === 0) {
        clearTimeout(timer);
        resolve(null); // dropped: unreadable, and nothing to answer
      }
    });
  }

  it(`finds no crash, hang or malformed reply in ${SECONDS} s of mutated queries and upstream answers (seed ${FIRST_SEED})`, async () => {
    const queries = [...QUERY_SEEDS];
    const deadline = Date.now() + SECONDS * 1000;
    let execs = 0;
    const failures: string[] = [];
    while (Date.now() < deadline && failures.length < 5) {
      // Alternate: a mutated query with a seed answer, or a seed query with a mutated answer.
      const mutateQuery = rand(2) === 0;
      const q = mutateQuery ? mutate(queries[rand(queries.length)]!, queries) : queries[rand(QUERY_SEEDS.length)]!;
      const base = upstream.corpus[rand(upstream.corpus.length)]!;
      const a = mutateQuery ? null : mutate(base, upstream.corpus);
      upstream.next = a;
      // A fresh ID each time, so the cache and coalescing do not hide the answer.
      if (q.length >= 2) q.writeUInt16BE(rand(65536), 0);
      const bad = await run(q);
      execs++;
      if (bad !== null) failures.push(bad);
      if (await newCoverage()) {
        if (mutateQuery) queries.push(q);
        else if (a !== null) upstream.corpus.push(a);
      }
      if (execs % 500 === 0) (app as unknown as { cache: { clear(): void } }).cache.clear(); // keep misses coming
    }
    await new Promise((r) => setTimeout(r, 300)); // late errors
    const internal = errors.filter((e) => e.includes('inside pvdns'));
    console.log(`[fuzz] seed ${FIRST_SEED}: ${execs} executions in ${SECONDS} s, corpus ${queries.length} queries + ${upstream.corpus.length} answers, ${seen.size} blocks reached`);
    expect(failures).toEqual([]);
    expect(internal).toEqual([]);
    expect(execs).toBeGreaterThan(100);
  }, SECONDS * 1000 + 60_000);
});
