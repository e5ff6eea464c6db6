// CNAME chains across messages (src/dns/chain.ts): finding where a chain
// leaves for a name that must be answered elsewhere, in compressed answers
// and in any record order; and joining the chain's start to the answer for
// its target from another message, every name written out uncompressed so
// the joined body follows any question. Messages are built byte by byte:
// the point is what compression pointers do.

import { Packet } from 'dns2';
import { describe, expect, it } from 'vitest';
import { ANSWER_CNAME, parseResponse, type Answer } from '../../src/dns/answer.js';
import { findChainCut, joinChain } from '../../src/dns/chain.js';
import { RCODE, TYPE } from '../../src/dns/constants.js';
import { encodeName, readName, wireKey } from '../../src/dns/name.js';
import { encodeReply, TCP_LIMIT } from '../../src/dns/reply.js';
import { answerSections } from '../../src/dns/records.js';
import { parseQuery, PARSE_OK, questionMessage } from '../../src/dns/query.js';
import type { Query } from '../../src/resolve/query.js';

const DNAME = 39;

const ptr = (off: number): Buffer => Buffer.from([0xc0 | (off >> 8), off & 0xff]);
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);

/** rr is one IN record with TTL 300: owner octets, type, RDATA octets. */
function rr(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(300, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

/** Msg builds a reply after the question `name` A, tracking offsets for pointers. */
class Msg {
  readonly parts: Buffer[] = [];
  size = 0;
  readonly query: Buffer;
  constructor(
    name: string,
    private readonly counts: { an: number; ns?: number },
    qtype: number = TYPE.A,
  ) {
    this.query = questionMessage(encodeName(name), qtype);
    this.query.writeUInt16BE(0x4242, 0);
    this.size = this.query.length;
  }
  /** add appends a record and returns the offset it starts at. */
  add(rec: Buffer): number {
    const at = this.size;
    this.parts.push(rec);
    this.size += rec.length;
    return at;
  }
  /** reply is the upstream's message; answer is what parseResponse makes of it. */
  reply(rcode = 0): Buffer {
    const head = Buffer.from(this.query.subarray(0, 12));
    head.writeUInt16BE(0x8180 | rcode, 2);
    head.writeUInt16BE(this.counts.an, 6);
    head.writeUInt16BE(this.counts.ns ?? 0, 8);
    return Buffer.concat([head, this.query.subarray(12), ...this.parts]);
  }
  answer(rcode = 0): { q: Query; a: Answer } {
    const q = { flags: 0 } as Query;
    expect(parseQuery(this.query, q)).toBe(PARSE_OK);
    const r = parseResponse(this.reply(rcode), { id: 0x4242, nameKey: q.nameKey, qtype: q.qtype, qclass: 1 });
    if (!r.ok) throw new Error(r.reason);
    return { q, a: r.answer };
  }
}

const label = (text: string): Buffer => Buffer.concat([Buffer.from([text.length]), Buffer.from(text, 'latin1')]);
const addr = (...o: number[]): Buffer => Buffer.from(o);
const soaRdata = (mname: Buffer, rname: Buffer): Buffer => Buffer.concat([mname, rname, Buffer.alloc(20, 1)]);

/**
 * wifiAnswer: the answer a default PvD gives for WWW.Public.Example, compressed
 * the way servers do, with a lie about a name under corp.example:
 *   www.public.example   CNAME cdn.Public.Example   (owner → question; target "cdn" → "public.example" in it)
 *   cdn.public.example   CNAME Host.CORP.example    (owner → the first RDATA; target "host.corp" → "example" in the question)
 *   host.corp.example    A     203.0.113.66         (owner → the second RDATA)
 */
function wifiAnswer(order: 'in order' | 'address first' = 'in order'): { msg: Msg; q: Query; a: Answer } {
  const msg = new Msg('WWW.Public.Example', { an: 3, ns: 1 });
  // Question name at 12: "www" 12, "public" 16, "example" 23, root 31.
  if (order === 'in order') {
    const c1 = msg.add(rr(ptr(12), TYPE.CNAME, Buffer.concat([label('cdn'), ptr(16)])));
    const c2 = msg.add(rr(ptr(c1 + 12), TYPE.CNAME, Buffer.concat([label('Host'), label('CORP'), ptr(23)])));
    msg.add(rr(ptr(c2 + 12), TYPE.A, addr(203, 0, 113, 66)));
  } else {
    const lie = msg.add(rr(Buffer.concat([label('host'), label('corp'), ptr(23)]), TYPE.A, addr(203, 0, 113, 66)));
    const c2 = msg.add(rr(Buffer.concat([label('cdn'), ptr(16)]), TYPE.CNAME, ptr(lie)));
    msg.add(rr(ptr(12), TYPE.CNAME, ptr(c2)));
  }
  msg.add(rr(ptr(16), TYPE.SOA, soaRdata(Buffer.concat([label('ns'), ptr(16)]), Buffer.concat([label('hostmaster'), ptr(16)]))));
  return { msg, ...msg.answer() };
}

/** corpAnswer: corp's own answer for host.corp.example: the address and its zone's SOA, compressed against its question. */
function corpAnswer(rcode = 0): { msg: Msg; q: Query; a: Answer } {
  const msg = new Msg('host.corp.example', { an: rcode === 0 ? 1 : 0, ns: 1 });
  // "host" 12, "corp" 17, "example" 22.
  if (rcode === 0) msg.add(rr(ptr(12), TYPE.A, addr(10, 8, 1, 7)));
  msg.add(rr(ptr(17), TYPE.SOA, soaRdata(Buffer.concat([label('ns'), ptr(17)]), Buffer.concat([label('admin'), ptr(17)]))));
  return { msg, ...msg.answer(rcode) };
}

const corpZone = wireKey('corp.example');
const inCorp = (key: string): boolean => key.endsWith(corpZone);
const question = (q: Query): Buffer => q.msg.subarray(0, q.qEnd);

/** shown decodes an answer's records after `q` as name/type/data triples. */
function shown(q: Buffer, a: Answer): { answer: string[]; authority: string[]; additional: string[] } {
  const s = answerSections(q, a)!;
  const text = (r: { name: Buffer; type: number; rdata: Buffer }): string => {
    const data = r.type === TYPE.A ? [...r.rdata].join('.') : r.type === TYPE.SOA || r.type === TYPE.CNAME || r.type === DNAME ? readName(r.rdata, 0) : r.rdata.toString('hex');
    return `${readName(r.name, 0)} ${r.type} ${data}`;
  };
  return { answer: s.answer.map(text), authority: s.authority.map(text), additional: s.additional.map(text) };
}

describe('findChainCut', () => {
  it('walks a compressed chain from the question name and stops at the first target the caller claims', () => {
    const { q, a } = wifiAnswer();
    expect(a.flags & ANSWER_CNAME).toBe(ANSWER_CNAME);
    const asked: string[] = [];
    const cut = findChainCut(question(q), q.nameKey, a, (t) => (asked.push(t), inCorp(t)));
    expect(asked).toEqual([wireKey('cdn.public.example'), wireKey('host.corp.example')]); // lower-cased keys
    expect(cut).toEqual({ owners: [wireKey('www.public.example'), wireKey('cdn.public.example')], target: wireKey('host.corp.example') });
  });

  it('finds the chain whatever the order of the records', () => {
    const { q, a } = wifiAnswer('address first');
    expect(findChainCut(question(q), q.nameKey, a, inCorp)?.target).toBe(wireKey('host.corp.example'));
  });

  it('returns null when no target is claimed, when the chain does not start at the question, and for a loop', () => {
    const { q, a } = wifiAnswer();
    expect(findChainCut(question(q), q.nameKey, a, () => false)).toBeNull();
    expect(findChainCut(question(q), wireKey('other.example'), a, () => true)).toBeNull();
    // a CNAME b, b CNAME a, inside one answer: each followed once, then the walk ends.
    const loop = new Msg('a.example', { an: 2 });
    const first = loop.add(rr(ptr(12), TYPE.CNAME, encodeName('b.example')));
    loop.add(rr(ptr(first + 12), TYPE.CNAME, ptr(12)));
    const l = loop.answer();
    const seen: string[] = [];
    expect(findChainCut(question(l.q), l.q.nameKey, l.a, (t) => (seen.push(t), false))).toBeNull();
    expect(seen).toEqual([wireKey('b.example'), wireKey('a.example')]);
  });
});

describe('joinChain', () => {
  it("keeps the chain up to the cut, drops the first answer's word on the target, and appends the target's answer uncompressed", () => {
    const wifi = wifiAnswer();
    const corp = corpAnswer();
    const cut = findChainCut(question(wifi.q), wifi.q.nameKey, wifi.a, inCorp)!;
    const j = joinChain(question(wifi.q), wifi.a, cut.owners, question(corp.q), corp.a, ANSWER_CNAME)!;
    expect(j).toMatchObject({ rcode: 0, an: 3, ns: 1, ar: 0, flags: ANSWER_CNAME, ede: null, soaTtl: corp.a.soaTtl });
    const want = {
      answer: [`WWW.Public.Example 5 cdn.Public.Example`, `cdn.Public.Example 5 Host.CORP.Example`, `host.corp.example 1 10.8.1.7`],
      authority: ['corp.example 6 ns.corp.example'],
      additional: [],
    };
    expect(shown(question(wifi.q), j)).toEqual(want);
    // No name in the body points anywhere: it reads the same after a question of another length.
    const other = questionMessage(encodeName('a.much.longer.question.name.example'), TYPE.A);
    expect(shown(other, j)).toEqual(want);
    // And a client gets it as a well-formed reply.
    const p = Packet.parse(encodeReply(wifi.q, j, TCP_LIMIT));
    expect(p.answers.map((r) => [r.name.toLowerCase(), r.domain ?? r.address])).toEqual([
      ['www.public.example', 'cdn.Public.Example'],
      ['cdn.public.example', 'Host.CORP.Example'],
      ['host.corp.example', '10.8.1.7'],
    ]);
  });

  it("carries the target's RCODE and negative answer (RFC 6604 §2)", () => {
    const wifi = wifiAnswer('address first');
    const corp = corpAnswer(RCODE.NXDOMAIN);
    const cut = findChainCut(question(wifi.q), wifi.q.nameKey, wifi.a, inCorp)!;
    const j = joinChain(question(wifi.q), wifi.a, cut.owners, question(corp.q), corp.a, ANSWER_CNAME)!;
    expect(j.rcode).toBe(RCODE.NXDOMAIN);
    expect(shown(question(wifi.q), j)).toEqual({
      // Put back in chain order; names as written, the pointers into the question reading its case.
      answer: ['WWW.Public.Example 5 cdn.Public.Example', 'cdn.Public.Example 5 host.corp.Example'],
      authority: ['corp.example 6 ns.corp.example'],
      additional: [],
    });
  });

  it('keeps a DNAME above a kept CNAME (RFC 6672 §2.3), not one elsewhere', () => {
    const msg = new Msg('www.public.example', { an: 4 });
    // "www" 12, "public" 16, "example" 23.
    msg.add(rr(ptr(16), DNAME, encodeName('corp.example'))); // public.example DNAME corp.example
    msg.add(rr(encodeName('ublic.example'), DNAME, encodeName('x.example'))); // not above: a suffix string, not a zone
    msg.add(rr(ptr(12), TYPE.CNAME, encodeName('www.corp.example')));
    msg.add(rr(encodeName('www.corp.example'), TYPE.A, addr(203, 0, 113, 66)));
    const { q, a } = msg.answer();
    const cut = findChainCut(question(q), q.nameKey, a, inCorp)!;
    const corp = new Msg('www.corp.example', { an: 1 });
    corp.add(rr(ptr(12), TYPE.A, addr(10, 8, 1, 8)));
    const c = corp.answer();
    const j = joinChain(question(q), a, cut.owners, question(c.q), c.a, ANSWER_CNAME)!;
    expect(shown(question(q), j).answer).toEqual(['public.example 39 corp.example', 'www.public.example 5 www.corp.example', 'www.corp.example 1 10.8.1.8']);
  });
});
