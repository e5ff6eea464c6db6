// The hot-path wire code (src/dns): reading client queries, writing upstream
// queries, checking upstream replies and composing the octets a client gets
// back. dns2 builds and decodes messages where it can express them; the
// malformations it cannot write are built byte by byte.

import type DNS from 'dns2';
import { Packet } from 'dns2';
import { soa } from '../helpers/fake-upstream.js';
import { describe, expect, it } from 'vitest';
import { ANSWER_CNAME, parseResponse, setTtls, type Answer, type Expected } from '../../src/dns/answer.js';
import { EDNS_UDP_SIZE, RCODE } from '../../src/dns/constants.js';
import { checkName, encodeName, keyToName, lowerWire, readName, wireKey } from '../../src/dns/name.js';
import { encodeQuery, PARSE_DROP, PARSE_OK, parseQuery, type WireQuery } from '../../src/dns/query.js';
import { encodeError, encodeReply, TCP_LIMIT, udpLimit } from '../../src/dns/reply.js';

// ---------------------------------------------------------------------------
// Helpers

const T = Packet.TYPE;
const OPT = 41;

interface QueryOpts {
  name?: string;
  type?: number;
  qclass?: number;
  id?: number;
  rd?: boolean;
  cd?: boolean;
  ad?: boolean;
  opcode?: number;
  /** false (default): no OPT. */
  edns?: false | { udpSize?: number; do?: boolean; version?: number; options?: DNS.Packet.EdnsOption[] };
}

/** query builds a client query with dns2. */
function query(o: QueryOpts = {}): Buffer {
  const p = new Packet();
  const h = p.header as DNS.Packet.Header & { ad: number; cd: number };
  h.id = o.id ?? 0x1234;
  h.rd = o.rd === false ? 0 : 1;
  h.cd = o.cd ? 1 : 0;
  h.ad = o.ad ? 1 : 0;
  h.opcode = o.opcode ?? 0;
  p.questions.push({ name: o.name ?? 'www.example.com', type: o.type ?? T.A, class: o.qclass ?? 1 } as DNS.Packet.Question);
  if (o.edns) {
    p.additionals.push(
      Packet.Resource.EDNS(o.edns.options ?? [], {
        udpPayloadSize: o.edns.udpSize ?? 1232,
        doFlag: o.edns.do ?? false,
        version: o.edns.version ?? 0,
      }) as DNS.Packet.Resource,
    );
  }
  return p.toBuffer();
}

/** parse runs parseQuery on a fresh WireQuery. */
function parse(msg: Buffer): { rc: number; q: WireQuery } {
  const q = {} as WireQuery;
  const rc = parseQuery(msg, q);
  return { rc, q };
}

function parsedOk(msg: Buffer): WireQuery {
  const { rc, q } = parse(msg);
  expect(rc).toBe(PARSE_OK);
  return q;
}

interface ReplyOpts {
  answers?: DNS.Packet.Resource[];
  authorities?: DNS.Packet.Resource[];
  additionals?: DNS.Packet.Resource[];
  rcode?: number;
  aa?: boolean;
  ad?: boolean;
  tc?: boolean;
  qr?: boolean;
  id?: number;
  questions?: DNS.Packet.Question[];
}

/** upstream builds an upstream's reply to `q` (raw query octets) with dns2. */
function upstream(q: Buffer, o: ReplyOpts = {}): Buffer {
  const asked = Packet.parse(q);
  const p = new Packet();
  const h = p.header as DNS.Packet.Header & { ad: number };
  h.id = o.id ?? asked.header.id;
  h.qr = o.qr === false ? 0 : 1;
  h.rd = 1;
  h.ra = 1;
  h.aa = o.aa ? 1 : 0;
  h.ad = o.ad ? 1 : 0;
  h.tc = o.tc ? 1 : 0;
  h.rcode = o.rcode ?? 0;
  p.questions.push(...(o.questions ?? asked.questions));
  p.answers.push(...(o.answers ?? []));
  p.authorities.push(...(o.authorities ?? []));
  p.additionals.push(...(o.additionals ?? []));
  return p.toBuffer();
}

const A = (name: string, address: string, ttl = 300): DNS.Packet.Resource =>
  ({ name, type: T.A, class: 1, ttl, address }) as DNS.Packet.Resource;
const NS = (name: string, ns: string, ttl = 300): DNS.Packet.Resource => ({ name, type: T.NS, class: 1, ttl, ns }) as DNS.Packet.Resource;
const EDNS = (opts: { ede?: [number, string]; extendedRcode?: number; udpSize?: number } = {}): DNS.Packet.Resource =>
  Packet.Resource.EDNS(opts.ede ? [Packet.Resource.EDNS.EDE(opts.ede[0], opts.ede[1])] : [], {
    udpPayloadSize: opts.udpSize ?? 4096,
    extendedRcode: opts.extendedRcode ?? 0,
  }) as DNS.Packet.Resource;

const expectFor = (q: WireQuery): Expected => ({ id: q.id, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass });

/** answerOf runs parseResponse and insists it accepted the reply. */
function answerOf(msg: Buffer, want: Expected): Answer {
  const r = parseResponse(msg, want);
  if (!r.ok) throw new Error(`reply refused: ${r.reason}`);
  return r.answer;
}

/** Header fields of a message, read straight from its octets. */
function hdr(m: Buffer) {
  const f = m.readUInt16BE(2);
  return {
    id: m.readUInt16BE(0),
    qr: (f >> 15) & 1,
    opcode: (f >> 11) & 0xf,
    aa: (f >> 10) & 1,
    tc: (f >> 9) & 1,
    rd: (f >> 8) & 1,
    ra: (f >> 7) & 1,
    ad: (f >> 5) & 1,
    cd: (f >> 4) & 1,
    rcode: f & 0xf,
    qd: m.readUInt16BE(4),
    an: m.readUInt16BE(6),
    ns: m.readUInt16BE(8),
    ar: m.readUInt16BE(10),
  };
}

const optOf = (p: Packet): DNS.Packet.Resource | undefined => p.additionals.find((r) => r.type === OPT);
const edeOf = (p: Packet): DNS.Packet.EdeOption | undefined =>
  (optOf(p)?.rdata as DNS.Packet.EdeOption[] | undefined)?.find((o) => o.ednsCode === 15);
/** records: a section without OPT records, as plain data for comparison. */
const records = (rs: DNS.Packet.Resource[]) =>
  rs.filter((r) => r.type !== OPT).map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);

/** Hand-built wire pieces for what dns2 cannot express. */
function rawName(name: string): Buffer {
  const parts: number[] = [];
  for (const l of name.split('.').filter(Boolean)) parts.push(l.length, ...Buffer.from(l, 'latin1'));
  parts.push(0);
  return Buffer.from(parts);
}
function rawHeader(o: { id?: number; flags?: number; qd?: number; an?: number; ns?: number; ar?: number } = {}): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(o.id ?? 0x1234, 0);
  b.writeUInt16BE(o.flags ?? 0x0100, 2);
  b.writeUInt16BE(o.qd ?? 1, 4);
  b.writeUInt16BE(o.an ?? 0, 6);
  b.writeUInt16BE(o.ns ?? 0, 8);
  b.writeUInt16BE(o.ar ?? 0, 10);
  return b;
}
function rawQuestion(name = 'www.example.com', type = 1, qclass = 1): Buffer {
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(qclass, 2);
  return Buffer.concat([rawName(name), tail]);
}
function rawOpt(o: { owner?: Buffer; udp?: number; ext?: number; version?: number; flags?: number; rdata?: Buffer } = {}): Buffer {
  const rdata = o.rdata ?? Buffer.alloc(0);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(OPT, 0);
  fixed.writeUInt16BE(o.udp ?? 1232, 2);
  fixed[4] = o.ext ?? 0;
  fixed[5] = o.version ?? 0;
  fixed.writeUInt16BE(o.flags ?? 0, 6);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([o.owner ?? Buffer.from([0]), fixed, rdata]);
}
function rawA(owner: Buffer, ttl: number, addr = [192, 0, 2, 1]): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(1, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(4, 8);
  return Buffer.concat([owner, fixed, Buffer.from(addr)]);
}
const option = (code: number, data: Buffer): Buffer => {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(data.length, 2);
  return Buffer.concat([h, data]);
};

// ---------------------------------------------------------------------------
// parseQuery

describe('parseQuery', () => {
  it('reads ID, flags, question, case-folded name key and the end of the question', () => {
    const msg = query({ id: 0xbeef, name: 'WWW.Example.COM', type: T.AAAA, cd: true });
    const q = parsedOk(msg);
    expect(q.id).toBe(0xbeef);
    expect(q.qtype).toBe(T.AAAA);
    expect(q.qclass).toBe(1);
    expect(q.nameKey).toBe('\x03www\x07example\x03com\x00'); // RFC 4343: compared without case
    expect(q.qEnd).toBe(12 + 17 + 4);
    expect(q.flags & 0x0010).toBe(0x0010);
    expect(q.edns).toBe(false);
    expect(q.udpSize).toBe(512);
    expect(q.dnssecOk).toBe(false);
  });

  describe('drops what it cannot answer at all', () => {
    const valid = query();
    const asResponse = Buffer.from(valid);
    asResponse[2]! |= 0x80;
    const cases: Array<[string, Buffer]> = [
      ['an empty datagram', Buffer.alloc(0)],
      ['11 octets (shorter than the header)', valid.subarray(0, 11)],
      ['a response (QR=1): answering it is how loops start', asResponse],
      ['a compression pointer in the question name', Buffer.concat([rawHeader(), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])])],
      ['a label longer than 63 octets', Buffer.concat([rawHeader(), rawQuestion(`${'a'.repeat(64)}.example`)])],
      ['a question name with no terminating root label', Buffer.concat([rawHeader(), Buffer.from([3, 0x77, 0x77, 0x77])])],
      ['a question cut off inside QTYPE/QCLASS', Buffer.concat([rawHeader(), rawName('www.example.com'), Buffer.from([0, 1])])],
      ['a header announcing a question that is not there', rawHeader()],
    ];
    it.each(cases)('%s', (_, msg) => {
      expect(parse(msg).rc).toBe(PARSE_DROP);
    });
  });

  describe('answers FORMERR to malformed queries (RFC 1035 §4.1.1, RFC 6891 §6.1.1)', () => {
    const q1 = rawQuestion();
    const twoQuestions = (() => {
      const p = Packet.parse(query());
      p.questions.push({ name: 'other.example', type: T.A, class: 1 } as DNS.Packet.Question);
      return p.toBuffer();
    })();
    const cases: Array<[string, Buffer, boolean]> = [
      ['QDCOUNT 0', rawHeader({ qd: 0 }), false],
      ['QDCOUNT 2', twoQuestions, false],
      ['two OPT records', Buffer.concat([rawHeader({ ar: 2 }), q1, rawOpt(), rawOpt()]), true],
      ['an OPT in the answer section', Buffer.concat([rawHeader({ an: 1 }), q1, rawOpt()]), true],
      ['an OPT in the authority section', Buffer.concat([rawHeader({ ns: 1 }), q1, rawOpt()]), true],
      ['an OPT owned by a name other than the root', Buffer.concat([rawHeader({ ar: 1 }), q1, rawOpt({ owner: rawName('x') })]), true],
      ['an OPT owned by a pointer to the root', Buffer.concat([rawHeader({ ar: 1 }), q1, rawOpt({ owner: Buffer.from([0xc0, 12 + 17 - 1]) })]), true],
      ['OPT options running past RDATA', Buffer.concat([rawHeader({ ar: 1 }), q1, rawOpt({ rdata: Buffer.from([0, 10, 0, 8, 1, 2]) })]), true],
      ['OPT RDATA too short for an option header', Buffer.concat([rawHeader({ ar: 1 }), q1, rawOpt({ rdata: Buffer.from([0, 10, 0]) })]), true],
      ['ARCOUNT 1 with no record after the question', Buffer.concat([rawHeader({ ar: 1 }), q1]), false],
      ['a record cut off inside its fixed fields', Buffer.concat([rawHeader({ an: 1 }), q1, Buffer.from([0, 0, 1, 0])]), false],
      ['a record whose RDLENGTH runs past the end', Buffer.concat([rawHeader({ ar: 1 }), q1, rawA(Buffer.from([0]), 60).subarray(0, 13)]), false],
      ['an OPT whose RDLENGTH runs past the end', Buffer.concat([rawHeader({ ar: 1 }), q1, rawOpt({ rdata: option(10, Buffer.alloc(8)) }).subarray(0, 15)]), false],
      ['OPT as the question type', query({ type: OPT }), false],
      ['a question name of 256 octets (RFC 1035 §3.1)', Buffer.concat([rawHeader(), rawQuestion(['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(62)].join('.'))]), false],
    ];
    it.each(cases)('%s', (_, msg, edns) => {
      const { rc, q } = parse(msg);
      expect(rc).toBe(RCODE.FORMERR);
      // RFC 6891 §7: a FORMERR caused by the OPT is answered with an OPT.
      expect(q.edns).toBe(edns);
    });

    it('accepts a question name of exactly 255 octets', () => {
      const name = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
      expect(parse(Buffer.concat([rawHeader(), rawQuestion(name)])).rc).toBe(PARSE_OK);
    });

    it('echoes as much of the question as it could read', () => {
      const { q } = parse(Buffer.concat([rawHeader({ ar: 2 }), q1, rawOpt(), rawOpt()]));
      expect(q.qEnd).toBe(12 + q1.length);
      expect(parse(rawHeader({ qd: 0 })).q.qEnd).toBe(12);
    });
  });

  it('ignores the contents of well-formed options it does not know (RFC 6891 §6.1.2)', () => {
    const msg = Buffer.concat([rawHeader({ ar: 1 }), rawQuestion(), rawOpt({ rdata: Buffer.concat([option(65001, Buffer.from('hi')), option(10, Buffer.alloc(8))]) })]);
    const q = parsedOk(msg);
    expect(q.edns).toBe(true);
  });

  it('answers BADVERS to EDNS version 1, and the reply carries an OPT (RFC 6891 §6.1.3)', () => {
    const { rc, q } = parse(query({ edns: { version: 1 } }));
    expect(rc).toBe(RCODE.BADVERS);
    expect(q.edns).toBe(true);
    const reply = encodeError(q, rc);
    expect(hdr(reply).rcode).toBe(0); // the low four bits of 16
    const p = Packet.parse(reply);
    expect(p.header.rcode).toBe(16); // dns2 merges the OPT's extended RCODE
    expect(optOf(p)?.extendedRcode).toBe(1);
    expect(optOf(p)?.version).toBe(0); // our own version
  });

  it('answers NOTIMP to opcodes other than QUERY, echoing the opcode (RFC 1035 §4.1.1)', () => {
    for (const opcode of [1, 2, 4, 5]) {
      const { rc, q } = parse(query({ opcode }));
      expect(rc).toBe(RCODE.NOTIMP);
      const reply = hdr(encodeError(q, rc));
      expect(reply.rcode).toBe(RCODE.NOTIMP);
      expect(reply.opcode).toBe(opcode);
    }
  });

  it.each([
    [100, 512],
    [511, 512],
    [512, 512],
    [1400, 1400],
    [4096, 4096],
  ])('reads an EDNS UDP size of %i as %i (RFC 6891 §6.2.5: below 512 counts as 512)', (size, want) => {
    const q = parsedOk(query({ edns: { udpSize: size } }));
    expect(q.edns).toBe(true);
    expect(q.udpSize).toBe(want);
  });

  it.each([true, false])('reads the DO bit (%s) (RFC 3225 §3)', (d) => {
    expect(parsedOk(query({ edns: { do: d } })).dnssecOk).toBe(d);
  });
});

// ---------------------------------------------------------------------------
// encodeQuery

describe('encodeQuery', () => {
  it.each([
    [false, false],
    [true, true],
    [true, false],
  ])('sends the question verbatim with RD, CD=%s and our own OPT with DO=%s (RFC 6891 §6.2.6)', (cd, d) => {
    const client = parsedOk(query({ name: 'Mixed.Case.Example', type: T.MX, edns: { udpSize: 4096, do: !d } }));
    const out = encodeQuery(0xabcd, client.msg.subarray(12, client.qEnd), cd, d);
    const h = hdr(out);
    expect(h).toMatchObject({ id: 0xabcd, qr: 0, opcode: 0, rd: 1, cd: cd ? 1 : 0, qd: 1, an: 0, ns: 0, ar: 1 });
    expect(out.subarray(12, client.qEnd)).toEqual(client.msg.subarray(12, client.qEnd)); // 0x20 case kept
    const p = Packet.parse(out);
    expect(p.questions[0]).toMatchObject({ name: 'Mixed.Case.Example', type: T.MX, class: 1 });
    const o = optOf(p)!;
    expect(o.class).toBe(EDNS_UDP_SIZE); // not the client's 4096
    expect(o.version).toBe(0);
    expect(o.doFlag).toBe(d);
    expect(o.rdata).toEqual([]);
    // And it is a query pvdns itself would accept.
    const back = parsedOk(out);
    expect(back.nameKey).toBe(client.nameKey);
    expect(back.dnssecOk).toBe(d);
  });
});

// ---------------------------------------------------------------------------
// parseResponse

describe('parseResponse', () => {
  const msg = query({ id: 777, name: 'www.example.com' });
  const q = parsedOk(msg);
  const want = expectFor(q);

  it('accepts the reply to the question it was sent for', () => {
    const r = parseResponse(upstream(msg, { answers: [A('www.example.com', '192.0.2.1', 300)], aa: true }), want);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.truncated).toBe(false);
    expect(r.answer).toMatchObject({ rcode: 0, an: 1, ns: 0, ar: 0, soaTtl: -1, ede: null });
    expect(r.answer.flags & 0x0400).toBe(0); // AA dropped: pvdns is no authority for what it forwards (RFC 1035 §4.1.1)
  });

  it('reports TC so the caller can retry over TCP (RFC 7766 §5)', () => {
    const r = parseResponse(upstream(msg, { tc: true }), want);
    expect(r.ok && r.truncated).toBe(true);
  });

  it('reads a TC reply no further than its question: records cut anywhere still send the query to TCP (RFC 2181 §9)', () => {
    const full = upstream(msg, { tc: true, answers: [A('www.example.com', '192.0.2.1', 300), A('www.example.com', '192.0.2.2', 300)] });
    for (const cutAt of [full.length - 1, full.length - 7, full.length - 20]) {
      const r = parseResponse(full.subarray(0, cutAt), want);
      expect(r.ok && r.truncated, `cut at ${cutAt}`).toBe(true);
    }
    // Without TC the same cut reply is malformed.
    const plain = upstream(msg, { answers: [A('www.example.com', '192.0.2.1', 300)] });
    expect(parseResponse(plain.subarray(0, plain.length - 3), want).ok).toBe(false);
  });

  describe('refuses a reply to another question, with a reason and without throwing (RFC 5452 §9.1)', () => {
    const cases: Array<[string, Buffer]> = [
      ['a wrong ID', upstream(msg, { id: 778 })],
      ['a wrong question name', upstream(msg, { questions: [{ name: 'www.example.org', type: T.A, class: 1 } as DNS.Packet.Question] })],
      ['a question name one label longer', upstream(msg, { questions: [{ name: 'x.www.example.com', type: T.A, class: 1 } as DNS.Packet.Question] })],
      ['a wrong question type', upstream(msg, { questions: [{ name: 'www.example.com', type: T.AAAA, class: 1 } as DNS.Packet.Question] })],
      ['a wrong question class', upstream(msg, { questions: [{ name: 'www.example.com', type: T.A, class: 3 } as DNS.Packet.Question] })],
      ['QR=0 (a query, not a reply)', upstream(msg, { qr: false })],
      ['no question', upstream(msg, { questions: [] })],
      ['two questions', upstream(msg, { questions: [...Packet.parse(msg).questions, ...Packet.parse(msg).questions] })],
      ['a short header', upstream(msg).subarray(0, 11)],
      ['an answer record cut short', upstream(msg, { answers: [A('www.example.com', '192.0.2.1')] }).subarray(0, 33 + 12)],
    ];
    it.each(cases)('%s', (_, reply) => {
      let r: ReturnType<typeof parseResponse> | undefined;
      expect(() => (r = parseResponse(reply, want))).not.toThrow();
      expect(r!.ok).toBe(false);
      if (r!.ok) return;
      expect(r!.reason).toMatch(/\w/);
    });
    it('names the ID as the reason for a wrong ID', () => {
      const r = parseResponse(upstream(msg, { id: 778 }), want);
      expect(!r.ok && r.reason).toMatch(/id/i);
    });
  });

  it('matches the question name without regard to case (RFC 4343 §3, RFC 5452 §9.1)', () => {
    const reply = upstream(msg, { questions: [{ name: 'WwW.EXAMPLE.Com', type: T.A, class: 1 } as DNS.Packet.Question] });
    expect(parseResponse(reply, want).ok).toBe(true);
  });

  it('removes the upstream OPT: EDNS is hop by hop (RFC 6891 §6.2.6); keeps its EDE (RFC 8914)', () => {
    const withOpt = upstream(msg, {
      answers: [A('www.example.com', '192.0.2.1')],
      additionals: [A('ns1.example.com', '192.0.2.53'), EDNS({ ede: [22, 'no reachable authority'] })],
    });
    const without = upstream(msg, { answers: [A('www.example.com', '192.0.2.1')], additionals: [A('ns1.example.com', '192.0.2.53')] });
    const a = answerOf(withOpt, want);
    expect(a.ar).toBe(1); // ARCOUNT 2 on the wire, one of them the OPT
    expect(a.body).toEqual(without.subarray(q.qEnd)); // the OPT's octets are gone
    expect(a.ede).toEqual({ code: 22, text: 'no reachable authority' });
    // A client without EDNS gets no OPT at all (RFC 6891 §7).
    const p = Packet.parse(encodeReply(q, a, udpLimit(q)));
    expect(optOf(p)).toBeUndefined();
    expect(records(p.additionals)).toEqual(records(Packet.parse(without).additionals));
  });

  it('reads the extended RCODE from the upstream OPT (RFC 6891 §6.1.3)', () => {
    const reply = Packet.parse(upstream(msg));
    reply.header.rcode = RCODE.BADVERS;
    reply.additionals.push(EDNS());
    expect(answerOf(reply.toBuffer(), want).rcode).toBe(16);
  });

  it('drops records after an OPT that sits in the middle of the additional section', () => {
    const reply = upstream(msg, {
      answers: [A('www.example.com', '192.0.2.1')],
      additionals: [A('ns1.example.com', '192.0.2.53'), EDNS(), A('ns2.example.com', '192.0.2.54')],
    });
    const a = answerOf(reply, want);
    expect(a.ar).toBe(1);
    setTtls(a, 10); // as the cache does: only the records kept are counted down
    const p = Packet.parse(encodeReply(q, a, TCP_LIMIT));
    expect(p.errors).toEqual([]);
    expect(p.additionals.map((r) => [r.name, r.address, r.ttl])).toEqual([['ns1.example.com', '192.0.2.53', 290]]);
    expect(p.answers.map((r) => r.ttl)).toEqual([290]);
  });

  it('refuses an OPT outside the additional section', () => {
    const raw = Buffer.concat([rawHeader({ flags: 0x8180, an: 1 }), rawQuestion(), rawOpt()]);
    raw.writeUInt16BE(777, 0);
    expect(parseResponse(raw, want).ok).toBe(false);
  });

  it('treats a TTL with the top bit set as zero (RFC 2181 §8)', () => {
    const reply = upstream(msg, { answers: [A('www.example.com', '192.0.2.1', 300), A('www.example.com', '192.0.2.2', 300)] });
    // The first record's TTL sits 6 octets into it: pointer(2) type(2) class(2).
    reply.writeUInt32BE(0x80000001, q.qEnd + 6);
    const a = answerOf(reply, want);
    setTtls(a, 0); // what a cache writes back into the record
    const out = encodeReply(q, a, TCP_LIMIT);
    const at = q.qEnd;
    expect(out.readUInt32BE(at + 6)).toBe(0);
    expect(out.readUInt32BE(at + 16 + 6)).toBe(300);
  });

  it('records min(SOA TTL, SOA MINIMUM) of an authority SOA for negative caching (RFC 2308 §5)', () => {
    const cases: Array<[number, number, number]> = [
      [3600, 300, 300],
      [60, 300, 60],
      [0, 300, 0],
    ];
    for (const [ttl, minimum, expected] of cases) {
      const a = answerOf(upstream(msg, { rcode: RCODE.NXDOMAIN, authorities: [soa('example.com', ttl, minimum)] }), want);
      expect(a.rcode).toBe(RCODE.NXDOMAIN);
      expect(a.soaTtl).toBe(expected);
    }
    // An SOA in the answer section (a query for the SOA itself) is not a negative-caching hint.
    const soaQ = parsedOk(query({ id: 777, name: 'example.com', type: T.SOA }));
    const pos = answerOf(upstream(soaQ.msg, { answers: [soa('example.com', 3600, 300)] }), expectFor(soaQ));
    expect(pos.soaTtl).toBe(-1);
  });
});

describe('parseResponse refuses names it cannot decode (RFC 1035 §4.1.4, RFC 3597 §4)', () => {
  // The question www.example.com A sits at 12; its labels start at 12 (www), 16 (example), 24 (com); records at 33.
  const msg = query({ id: 777, name: 'www.example.com' });
  const q = parsedOk(msg);
  const want = expectFor(q);
  const AT = q.qEnd;
  expect(AT).toBe(33);

  const ptr = (off: number): Buffer => Buffer.from([0xc0 | (off >> 8), off & 0xff]);
  const label = (text: string): Buffer => Buffer.concat([Buffer.from([text.length]), Buffer.from(text, 'latin1')]);
  /** rr is one record: owner octets, type, RDATA octets (RDLENGTH from them unless given). */
  const rr = (owner: Buffer, type: number, rdata: Buffer, rdlen = rdata.length): Buffer => {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(300, 4);
    fixed.writeUInt16BE(rdlen, 8);
    return Buffer.concat([owner, fixed, rdata]);
  };
  const addr = Buffer.from([192, 0, 2, 1]);
  /** reply is the upstream's reply to `msg` with these records (counts per section). */
  const reply = (counts: { an?: number; ns?: number; ar?: number }, ...records: Buffer[]): Buffer => {
    const m = Buffer.concat([rawHeader({ id: 777, flags: 0x8180, ...counts }), rawQuestion(), ...records]);
    return m;
  };
  const refused = (m: Buffer): string => {
    let r: ReturnType<typeof parseResponse> | undefined;
    expect(() => (r = parseResponse(m, want))).not.toThrow();
    expect(r!.ok).toBe(false);
    return r!.ok ? '' : r!.reason;
  };
  const soaTail = Buffer.alloc(20, 1);

  it.each<[string, Buffer, RegExp]>([
    ['an owner that points at itself', reply({ an: 1 }, rr(ptr(AT), T.A, addr)), /owner/],
    ['an owner that points back into its own labels (a loop through a backward pointer)', reply({ an: 1 }, rr(Buffer.concat([label('a'), ptr(AT)]), T.A, addr)), /owner/],
    // The first owner points forward at the second, which points back at the first.
    ['two owners that point at each other', reply({ an: 2 }, rr(ptr(AT + 16), T.A, addr), rr(ptr(AT), T.A, addr)), /owner/],
    ['a forward pointer, even to a good name', reply({ an: 2 }, rr(ptr(AT + 16), T.A, addr), rr(rawName('www.example.com'), T.A, addr)), /owner/],
    ['a pointer past the end of the message', reply({ an: 1 }, rr(ptr(0x3fff), T.A, addr)), /owner/],
    ['a pointer into the header', reply({ an: 1 }, rr(ptr(4), T.A, addr)), /owner/],
    ['a pointer cut short', reply({ an: 1 }, Buffer.from([0xc0])), /owner/],
    ['a reserved label type', reply({ an: 1 }, rr(Buffer.from([0x80, 0]), T.A, addr)), /owner/],
    [
      'an owner over 255 octets once decompressed',
      reply({ an: 1 }, rr(Buffer.concat([label('a'.repeat(63)), label('b'.repeat(63)), label('c'.repeat(63)), label('d'.repeat(46)), ptr(12)]), T.A, addr)),
      /owner/,
    ],
    // CNAME at 33: owner ptr(12), 10 fixed octets, RDATA at 45.
    ['a CNAME whose target points at itself', reply({ an: 1 }, rr(ptr(12), T.CNAME, Buffer.concat([label('x'), ptr(AT + 12)]))), /RDATA/],
    ['a CNAME whose target points forward', reply({ an: 1 }, rr(ptr(12), T.CNAME, Buffer.concat([label('x'), ptr(AT + 12 + 4)]))), /RDATA/],
    ['a CNAME with octets after its name', reply({ an: 1 }, rr(ptr(12), T.CNAME, Buffer.concat([label('x'), ptr(16), Buffer.from([0])]))), /RDATA/],
    ['a CNAME whose name runs past RDLENGTH', reply({ an: 1 }, rr(ptr(12), T.CNAME, Buffer.concat([label('x'), ptr(16)]), 2)), /RDATA/],
    ['an NS with no RDATA', reply({ ns: 1 }, rr(ptr(16), T.NS, Buffer.alloc(0))), /RDATA/],
    ['a PTR whose name loops', reply({ an: 1 }, rr(ptr(12), T.PTR, ptr(AT + 12))), /RDATA/],
    ['an MX without its exchange', reply({ an: 1 }, rr(ptr(12), T.MX, Buffer.from([0, 10]))), /RDATA/],
    ['an MX whose exchange loops', reply({ an: 1 }, rr(ptr(12), T.MX, Buffer.concat([Buffer.from([0, 10]), ptr(AT + 14)]))), /RDATA/],
    ['an SOA short of its counters', reply({ ns: 1 }, rr(ptr(16), T.SOA, Buffer.concat([label('ns'), ptr(16), label('h'), ptr(16), soaTail.subarray(4)]))), /RDATA/],
    ['an SOA whose RNAME loops', reply({ ns: 1 }, rr(ptr(16), T.SOA, Buffer.concat([label('ns'), ptr(16), ptr(AT + 12 + 5), soaTail]))), /RDATA/],
    ['a MINFO whose second name loops', reply({ an: 1 }, rr(ptr(12), 14, Buffer.concat([ptr(16), ptr(AT + 12 + 2)]))), /RDATA/],
    ['an MD (RFC 3597 §4 lists it) whose name loops', reply({ an: 1 }, rr(ptr(12), 3, ptr(AT + 12))), /RDATA/],
  ])('%s', (_, m, reason) => {
    expect(refused(m)).toMatch(reason);
  });

  it('takes a name of exactly 255 octets once decompressed', () => {
    const owner = Buffer.concat([label('a'.repeat(63)), label('b'.repeat(63)), label('c'.repeat(63)), label('d'.repeat(45)), ptr(12)]);
    expect(answerOf(reply({ an: 1 }, rr(owner, T.A, addr)), want).an).toBe(1);
  });

  it('takes the RDATA of other types as opaque octets, compression-like or not (RFC 3597 §4)', () => {
    // A TXT whose octets look like a looping pointer, and a type nobody knows.
    const m = reply({ an: 2 }, rr(ptr(12), T.TXT, Buffer.concat([Buffer.from([2]), ptr(AT + 12)])), rr(ptr(12), 65280, ptr(AT + 16 + 12)));
    expect(answerOf(m, want).an).toBe(2);
  });

  it('passes a well compressed reply through byte for byte, and marks an answer with a CNAME', () => {
    // answer:     www.example.com CNAME cdn.example.com  (owner → the question; target "cdn" → "example.com" in it)
    //             cdn.example.com A 192.0.2.1            (owner → the CNAME's RDATA)
    // authority:  example.com SOA ns.example.com hostmaster.example.com …
    // additional: x.cdn.example.com A …                  (a pointer → the A's owner, itself a pointer: a chain)
    //             cdn.example.com MX 10 x.cdn.example.com (pointers into RDATA and owners)
    const cname = rr(ptr(12), T.CNAME, Buffer.concat([label('cdn'), ptr(16)]));
    const cnameRdata = AT + 12;
    const aOwner = AT + cname.length;
    const a1 = rr(ptr(cnameRdata), T.A, addr);
    const soaAt = aOwner + a1.length;
    const soa1 = rr(ptr(16), T.SOA, Buffer.concat([label('ns'), ptr(16), label('hostmaster'), ptr(16), soaTail]));
    const xAt = soaAt + soa1.length;
    const x = rr(Buffer.concat([label('x'), ptr(aOwner)]), T.A, addr);
    const mx = rr(ptr(cnameRdata), T.MX, Buffer.concat([Buffer.from([0, 10]), ptr(xAt)]));
    const m = reply({ an: 2, ns: 1, ar: 2 }, cname, a1, soa1, x, mx);
    const a = answerOf(m, want);
    expect(a.body).toEqual(m.subarray(AT));
    expect(a.flags & ANSWER_CNAME).toBe(ANSWER_CNAME);
    const out = encodeReply(q, a, TCP_LIMIT);
    expect(out).toEqual(m); // the mark never reaches the wire
    const p = Packet.parse(out);
    expect(p.answers.map((r) => [r.name, r.domain ?? r.address])).toEqual([
      ['www.example.com', 'cdn.example.com'],
      ['cdn.example.com', '192.0.2.1'],
    ]);
    expect(p.additionals.map((r) => r.name)).toEqual(['x.cdn.example.com', 'cdn.example.com']);
    expect((p.additionals[1] as unknown as { exchange: string }).exchange).toBe('x.cdn.example.com');
  });

  it('marks only answers whose answer section holds a CNAME', () => {
    expect(answerOf(upstream(msg, { answers: [A('www.example.com', '192.0.2.1')] }), want).flags & ANSWER_CNAME).toBe(0);
    const inAuthority = reply({ ns: 1 }, rr(ptr(12), T.CNAME, Buffer.concat([label('cdn'), ptr(16)])));
    expect(answerOf(inAuthority, want).flags & ANSWER_CNAME).toBe(0);
  });

  it('checkName bounds a name\'s own octets by the record, not what its pointer reaches', () => {
    const m = Buffer.concat([Buffer.alloc(12), rawName('example.com'), label('www'), ptr(12)]);
    expect(checkName(m, 25, m.length)).toBe(m.length);
    expect(checkName(m, 25, 27)).toBe(-1); // "www" ends past the bound
    expect(checkName(m, 29, 31)).toBe(31); // the pointer itself is inside; example.com lies before
  });
});

// ---------------------------------------------------------------------------
// encodeReply, encodeError, udpLimit

describe('encodeReply', () => {
  /** reply runs a full exchange: client query → upstream reply → Answer → octets for the client. */
  function exchange(client: QueryOpts, up: ReplyOpts, limit?: number) {
    const msg = query(client);
    const q = parsedOk(msg);
    const a = answerOf(upstream(msg, up), expectFor(q));
    const out = encodeReply(q, a, limit ?? udpLimit(q));
    return { msg, q, a, out, p: Packet.parse(out), h: hdr(out) };
  }

  it("carries the client's ID and its question octets exactly, case included", () => {
    const msg = query({ id: 0x0f0f, name: 'WwW.ExAmPlE.CoM' });
    const q = parsedOk(msg);
    // The upstream answered with the name in another case.
    const up = upstream(msg, { questions: [{ name: 'www.example.com', type: T.A, class: 1 } as DNS.Packet.Question], answers: [A('www.example.com', '192.0.2.1')] });
    const out = encodeReply(q, answerOf(up, { ...expectFor(q), id: 0x0f0f }), udpLimit(q));
    expect(out.readUInt16BE(0)).toBe(0x0f0f);
    expect(out.subarray(12, q.qEnd)).toEqual(msg.subarray(12, q.qEnd));
    expect(Packet.parse(out).questions[0]!.name).toBe('WwW.ExAmPlE.CoM');
  });

  it.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('echoes RD=%s and CD=%s, sets QR and RA (RFC 1035 §4.1.1, RFC 4035 §3.1.6)', (rd, cd) => {
    const { h } = exchange({ rd, cd }, { answers: [A('www.example.com', '192.0.2.1')] });
    expect(h).toMatchObject({ qr: 1, ra: 1, rd: rd ? 1 : 0, cd: cd ? 1 : 0, tc: 0 });
  });

  it.each([
    // client DO, client AD, upstream AD → reply AD
    [false, false, true, 0],
    [true, false, true, 1],
    [false, true, true, 1],
    [true, true, false, 0],
  ])('sets AD only for clients that set DO or AD (DO=%s, AD=%s, upstream AD=%s → %i) (RFC 6840 §5.8)', (d, ad, upAd, want) => {
    const { h } = exchange({ ad, edns: { do: d } }, { ad: upAd, answers: [A('www.example.com', '192.0.2.1')] });
    expect(h.ad).toBe(want);
  });

  it('carries no OPT when the query had none (RFC 6891 §7)', () => {
    const { p, h } = exchange({}, { answers: [A('www.example.com', '192.0.2.1')], additionals: [EDNS()] });
    expect(optOf(p)).toBeUndefined();
    expect(h.ar).toBe(0);
  });

  it.each([true, false])('carries one OPT advertising 1232 with DO=%s echoed when the query had one (RFC 6891 §6.1.1, RFC 3225 §3)', (d) => {
    const { p, h } = exchange({ edns: { udpSize: 4096, do: d } }, { answers: [A('www.example.com', '192.0.2.1')], additionals: [EDNS()] });
    expect(p.additionals.filter((r) => r.type === OPT)).toHaveLength(1);
    expect(h.ar).toBe(1);
    const o = optOf(p)!;
    expect(o.class).toBe(1232);
    expect(o.doFlag).toBe(d);
    expect(o.version).toBe(0);
    expect(o.extendedRcode).toBe(0);
  });

  it('encodes an Extended DNS Error: INFO-CODE and UTF-8 EXTRA-TEXT (RFC 8914 §2)', () => {
    const q = parsedOk(query({ edns: {} }));
    const text = 'pvd corp.example.com: all servers unreachable — für alle';
    const p = Packet.parse(encodeError(q, RCODE.SERVFAIL, { code: 22, text }));
    expect(p.header.rcode).toBe(RCODE.SERVFAIL);
    expect(edeOf(p)).toEqual({ ednsCode: 15, infoCode: 22, extraText: text });
    // Without EDNS there is nowhere to put it.
    const plain = parsedOk(query());
    const out = encodeError(plain, RCODE.SERVFAIL, { code: 22, text });
    expect(hdr(out)).toMatchObject({ rcode: RCODE.SERVFAIL, ar: 0 });
    expect(out.length).toBe(plain.qEnd);
  });

  it('passes an upstream EDE on to an EDNS client', () => {
    const { p } = exchange({ edns: {} }, { rcode: RCODE.SERVFAIL, additionals: [EDNS({ ede: [6, 'DNSSEC bogus'] })] });
    expect(edeOf(p)).toMatchObject({ infoCode: 6, extraText: 'DNSSEC bogus' });
  });

  it('answers FORMERR for a query without a question with no question section', () => {
    const { rc, q } = parse(rawHeader({ qd: 0, id: 99 }));
    const out = encodeError(q, rc);
    expect(hdr(out)).toMatchObject({ id: 99, qr: 1, rcode: RCODE.FORMERR, qd: 0, an: 0, ns: 0, ar: 0 });
    expect(out.length).toBe(12);
  });

  describe('truncation (RFC 2181 §9, RFC 1035 §4.2.1)', () => {
    const many = (n: number, name = 'www.example.com') => Array.from({ length: n }, (_, i) => A(name, `192.0.2.${i + 1}`));

    it('a reply that fits is sent whole: 29 A records to a client without EDNS', () => {
      const { h, out, p } = exchange({}, { answers: many(29) });
      expect(out.length).toBeLessThanOrEqual(512);
      expect(h).toMatchObject({ tc: 0, an: 29 });
      expect(p.answers).toHaveLength(29);
    });

    it('an answer that does not fit in 512 octets: TC=1, empty sections, no OPT', () => {
      const { h, out, q } = exchange({}, { answers: many(40), authorities: [NS('example.com', 'ns1.example.com')] });
      expect(h).toMatchObject({ tc: 1, qd: 1, an: 0, ns: 0, ar: 0, rcode: 0 });
      expect(out.length).toBe(q.qEnd);
    });

    it('an answer that does not fit the client EDNS size: TC=1, empty sections plus the OPT (RFC 6891 §7)', () => {
      const { h, out, q, p } = exchange({ edns: { udpSize: 600 } }, { answers: many(40) });
      expect(udpLimit(q)).toBe(600);
      expect(h).toMatchObject({ tc: 1, an: 0, ns: 0, ar: 1 });
      expect(out.length).toBe(q.qEnd + 11);
      expect(optOf(p)?.class).toBe(1232);
    });

    it('the same answer fits the 1232 octets an EDNS client with a large buffer may get', () => {
      const { h, p } = exchange({ edns: { udpSize: 4096 } }, { answers: many(40) });
      expect(h).toMatchObject({ tc: 0, an: 40, ar: 1 });
      expect(p.answers).toHaveLength(40);
    });

    it('over TCP nothing is cut', () => {
      const { h } = exchange({}, { answers: many(200) }, TCP_LIMIT);
      expect(h).toMatchObject({ tc: 0, an: 200 });
    });

    it('drops the EDE before anything else (RFC 8914 §3)', () => {
      // 29 A records + OPT fit in 512; the EDE would not.
      const { h, p } = exchange({ edns: { udpSize: 512 } }, { answers: many(29), additionals: [EDNS({ ede: [3, 'stale answer served'] })] });
      expect(h).toMatchObject({ tc: 0, an: 29, ar: 1 });
      expect(optOf(p)).toBeDefined();
      expect(edeOf(p)).toBeUndefined();
      // With room to spare it is kept.
      const roomy = exchange({ edns: { udpSize: 1232 } }, { answers: many(29), additionals: [EDNS({ ede: [3, 'stale answer served'] })] });
      expect(edeOf(roomy.p)).toMatchObject({ infoCode: 3, extraText: 'stale answer served' });
    });

    it('leaves out whole additional RRsets that do not fit, without TC', () => {
      // ns1: 3 records (52 octets), ns2: 30 records (484 octets); only ns1 fits in 512.
      const { h, p } = exchange(
        {},
        {
          answers: [A('www.example.com', '192.0.2.1')],
          authorities: [NS('example.com', 'ns1.example.com'), NS('example.com', 'ns2.example.com')],
          additionals: [...many(3, 'ns1.example.com'), ...many(30, 'ns2.example.com')],
        },
      );
      expect(h).toMatchObject({ tc: 0, an: 1, ns: 2, ar: 3 });
      expect(p.additionals.map((r) => r.name)).toEqual(['ns1.example.com', 'ns1.example.com', 'ns1.example.com']);
    });

    it('leaves out the whole additional section when its first RRset does not fit, without TC', () => {
      const { h, p } = exchange({}, { answers: [A('www.example.com', '192.0.2.1')], additionals: many(40, 'ns1.example.com') });
      expect(h).toMatchObject({ tc: 0, an: 1, ar: 0 });
      expect(p.answers).toHaveLength(1);
    });

    it('keeps the answer and authority sections and the OPT when only additional data is cut', () => {
      const { h, p } = exchange(
        { edns: { udpSize: 512, do: true } },
        { answers: [A('www.example.com', '192.0.2.1')], additionals: [...many(2, 'a.example.com'), ...many(30, 'b.example.com')] },
      );
      expect(h).toMatchObject({ tc: 0, an: 1, ar: 3 });
      expect(p.additionals.filter((r) => r.type === T.A).map((r) => r.name)).toEqual(['a.example.com', 'a.example.com']);
      expect(optOf(p)?.doFlag).toBe(true);
    });
  });

  it('round trip: dns2 query → parseQuery → encodeQuery → dns2 upstream → parseResponse → encodeReply → dns2', () => {
    const clientMsg = query({ id: 4242, name: 'Mail.Example.ORG', type: T.MX, edns: { udpSize: 1400, do: true } });
    const q = parsedOk(clientMsg);
    const upQuery = encodeQuery(0x5151, q.msg.subarray(12, q.qEnd), false, q.dnssecOk);
    const asked = Packet.parse(upQuery);
    const name = asked.questions[0]!.name;
    const upReply = new Packet();
    Object.assign(upReply.header, { id: asked.header.id, qr: 1, rd: 1, ra: 1 });
    upReply.questions.push(...asked.questions);
    upReply.answers.push(
      { name, type: T.MX, class: 1, ttl: 3600, priority: 10, exchange: 'mx1.example.org' } as DNS.Packet.Resource,
      { name, type: T.MX, class: 1, ttl: 3600, priority: 20, exchange: 'mx2.example.org' } as DNS.Packet.Resource,
    );
    upReply.authorities.push(NS('example.org', 'ns1.example.org', 86400), NS('example.org', 'ns2.example.org', 86400));
    upReply.additionals.push(
      A('mx1.example.org', '192.0.2.25', 600),
      { name: 'mx1.example.org', type: T.AAAA, class: 1, ttl: 600, address: '2001:db8::25' } as DNS.Packet.Resource,
      EDNS({ ede: [0, 'from upstream'] }),
    );
    const upBuf = upReply.toBuffer();
    const a = answerOf(upBuf, { id: 0x5151, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass });
    const out = encodeReply(q, a, udpLimit(q));
    const sent = Packet.parse(upBuf);
    const got = Packet.parse(out);
    expect(got.errors).toEqual([]);
    expect(got.header.id).toBe(4242);
    expect(got.questions).toEqual(Packet.parse(clientMsg).questions);
    expect(records(got.answers)).toEqual(records(sent.answers));
    expect(records(got.authorities)).toEqual(records(sent.authorities));
    expect(records(got.additionals)).toEqual(records(sent.additionals));
    const o = optOf(got)!;
    expect(o.class).toBe(1232);
    expect(o.doFlag).toBe(true);
    expect(edeOf(got)).toMatchObject({ infoCode: 0, extraText: 'from upstream' });
  });
});

describe('udpLimit (RFC 1035 §2.3.4, RFC 6891 §6.2.5)', () => {
  it.each<[string, number, QueryOpts]>([
    ['no EDNS', 512, {}],
    ['EDNS 512', 512, { edns: { udpSize: 512 } }],
    ['EDNS 300 (floored)', 512, { edns: { udpSize: 300 } }],
    ['EDNS 1000', 1000, { edns: { udpSize: 1000 } }],
    ['EDNS 1232', 1232, { edns: { udpSize: 1232 } }],
    ['EDNS 4096 (capped at our 1232)', 1232, { edns: { udpSize: 4096 } }],
  ])('%s → %i', (_, want, o) => {
    expect(udpLimit(parsedOk(query(o)))).toBe(want);
  });
});

// ---------------------------------------------------------------------------
// setTtls

describe('setTtls', () => {
  it('counts every TTL down from the stored value and never below 0 (RFC 1035 §7.1)', () => {
    const msg = query();
    const q = parsedOk(msg);
    const a = answerOf(
      upstream(msg, { answers: [A('www.example.com', '192.0.2.1', 300), A('www.example.com', '192.0.2.2', 10)], authorities: [NS('example.com', 'ns.example.com', 120)] }),
      expectFor(q),
    );
    const ttls = () => {
      const p = Packet.parse(encodeReply(q, a, TCP_LIMIT));
      return [...p.answers, ...p.authorities].map((r) => r.ttl);
    };
    setTtls(a, 100);
    expect(ttls()).toEqual([200, 0, 20]);
    setTtls(a, 200);
    expect(ttls()).toEqual([100, 0, 0]);
    setTtls(a, 0); // from the stored TTLs, not the last written ones
    expect(ttls()).toEqual([300, 10, 120]);
  });
});

// ---------------------------------------------------------------------------
// name.ts

describe('names (RFC 1035 §3.1, §5.1)', () => {
  it.each<[string, number[], string]>([
    ['www.example.com', [3, 119, 119, 119, 7, 101, 120, 97, 109, 112, 108, 101, 3, 99, 111, 109, 0], 'www.example.com'],
    ['www.example.com.', [3, 119, 119, 119, 7, 101, 120, 97, 109, 112, 108, 101, 3, 99, 111, 109, 0], 'www.example.com'],
    ['', [0], ''],
    ['.', [0], ''],
    ['a\\.b.example', [3, 97, 46, 98, 7, 101, 120, 97, 109, 112, 108, 101, 0], 'a\\.b.example'],
    ['back\\\\slash', [10, 98, 97, 99, 107, 92, 115, 108, 97, 115, 104, 0], 'back\\\\slash'],
    ['\\000\\255x', [3, 0, 255, 120, 0], '\\000\\255x'],
    ['with\\ space', [10, 119, 105, 116, 104, 32, 115, 112, 97, 99, 101, 0], 'with\\032space'],
    ['Mixed.CASE', [5, 77, 105, 120, 101, 100, 4, 67, 65, 83, 69, 0], 'Mixed.CASE'],
  ])('encodeName(%j) and back', (text, wire, shown) => {
    const b = encodeName(text);
    expect([...b]).toEqual(wire);
    expect(readName(b, 0)).toBe(shown);
    expect(encodeName(shown)).toEqual(b); // the shown form encodes to the same octets
  });

  it.each([
    ['an empty label', 'a..example'],
    ['a label of 64 octets', `${'a'.repeat(64)}.example`],
    ['a name over 255 octets', Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.')],
    ['a character outside one octet', '例え.example'],
  ])('encodeName refuses %s', (_, text) => {
    expect(() => encodeName(text)).toThrow();
  });

  it('readName follows compression pointers and refuses loops and truncation', () => {
    const msg = Buffer.concat([Buffer.alloc(12), rawName('example.com'), Buffer.from([3, 119, 119, 119, 0xc0, 12])]);
    expect(readName(msg, 12 + 13)).toBe('www.example.com');
    const loop = Buffer.concat([Buffer.alloc(12), Buffer.from([0xc0, 12])]);
    expect(readName(loop, 12)).toBeNull();
    expect(readName(Buffer.from([3, 119, 119]), 0)).toBeNull();
    expect(readName(Buffer.from([0x40, 0]), 0)).toBeNull(); // reserved label type 01
  });

  it('readName refuses a name of more than 255 octets (RFC 1035 §3.1)', () => {
    const ok = rawName(['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.'));
    expect(ok.length).toBe(255);
    expect(readName(ok, 0)).not.toBeNull();
    const long = rawName(['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(62)].join('.'));
    expect(long.length).toBe(256);
    expect(readName(long, 0)).toBeNull();
  });

  it('lowerWire folds ASCII A–Z only (RFC 4343 §3)', () => {
    const octets = [0x41, 0x5a, 0x61, 0x7a, 0x40, 0x5b, 0x60, 0x7b, 0xc0, 0xc9, 0xde, 0xe9, 0x30, 0x2d];
    const want = [0x61, 0x7a, 0x61, 0x7a, 0x40, 0x5b, 0x60, 0x7b, 0xc0, 0xc9, 0xde, 0xe9, 0x30, 0x2d];
    const buf = Buffer.from([0xff, ...octets, 0xff]);
    const s = lowerWire(buf, 1, 1 + octets.length);
    expect([...Buffer.from(s, 'latin1')]).toEqual(want);
    expect(buf[1]).toBe(0x41); // the message itself is not touched
  });

  it('wireKey is the case-folded wire form and keyToName shows it again', () => {
    expect(wireKey('WWW.Example.COM.')).toBe('\x03www\x07example\x03com\x00');
    expect(wireKey('www.example.com')).toBe(wireKey('WWW.EXAMPLE.COM'));
    expect(wireKey('www.example.com')).not.toBe(wireKey('www.example.org'));
    expect(keyToName(wireKey('Corp.Example.COM'))).toBe('corp.example.com');
    expect(keyToName(wireKey('a\\.b.example'))).toBe('a\\.b.example');
    expect(keyToName(wireKey(''))).toBe('');
    // The key of a parent zone is a suffix of the name's key at a label boundary.
    expect(wireKey('host.corp.example.com').endsWith(wireKey('corp.example.com'))).toBe(true);
  });
});
