// EDNS and the message rules a client sees (RFC 1035, RFC 6891, RFC 3225,
// RFC 2181 §9): one OPT, BADVERS, OPT only when asked, pvdns's own 1232-octet
// size with the client's DO echoed, the client's ID and question (case
// included) on every reply, truncation to the client's UDP size, TCP
// carrying the whole answer, TC from an upstream retried over TCP, and EDNS
// as hop-by-hop: the client's options never reach the upstream.
//
// Queries and replies are built and read octet by octet here, so the test
// sees exactly what went over the wire (dns2 folds the extended RCODE into
// the header and drops unknown EDNS options).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRaw, sendTcp } from '../helpers/client.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

// ---- wire helpers -------------------------------------------------------

const QR = 0x8000;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const DO = 0x8000;

interface OptSpec {
  udpSize?: number;
  extRcode?: number;
  version?: number;
  do?: boolean;
  options?: Array<[number, Buffer]>;
}

interface QuerySpec {
  id?: number;
  name?: string;
  type?: number;
  cls?: number;
  flags?: number;
  /** Overrides the header's QDCOUNT; `noQuestion` leaves the question section out. */
  qdcount?: number;
  noQuestion?: boolean;
  opts?: OptSpec[];
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function wireName(name: string): Buffer {
  const trimmed = name.replace(/\.$/, '');
  if (trimmed === '') return Buffer.from([0]);
  const parts = trimmed.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function optRR(o: OptSpec): Buffer {
  const rdata = Buffer.concat((o.options ?? []).map(([code, data]) => Buffer.concat([u16(code), u16(data.length), data])));
  const rr = Buffer.alloc(11);
  rr[0] = 0; // owner: root
  rr.writeUInt16BE(41, 1);
  rr.writeUInt16BE(o.udpSize ?? 1232, 3);
  rr[5] = o.extRcode ?? 0;
  rr[6] = o.version ?? 0;
  rr.writeUInt16BE(o.do ? DO : 0, 7);
  rr.writeUInt16BE(rdata.length, 9);
  return Buffer.concat([rr, rdata]);
}

function query(s: QuerySpec): Buffer {
  const opts = s.opts ?? [];
  const question = s.noQuestion ? Buffer.alloc(0) : Buffer.concat([wireName(s.name ?? 'www.example.net'), u16(s.type ?? 1), u16(s.cls ?? 1)]);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(s.id ?? 0x1234, 0);
  h.writeUInt16BE(s.flags ?? RD, 2);
  h.writeUInt16BE(s.qdcount ?? (s.noQuestion ? 0 : 1), 4);
  h.writeUInt16BE(opts.length, 10);
  return Buffer.concat([h, question, ...opts.map(optRR)]);
}

function skipName(buf: Buffer, off: number): number {
  for (;;) {
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2;
    off += len + 1;
  }
}

interface Opt {
  udpSize: number;
  extRcode: number;
  version: number;
  do: boolean;
  options: Array<[number, Buffer]>;
}

interface Wire {
  size: number;
  id: number;
  qr: boolean;
  opcode: number;
  tc: boolean;
  /** The header's 4-bit RCODE only. */
  rcode: number;
  qd: number;
  an: number;
  ns: number;
  ar: number;
  /** The question section's octets. */
  question: Buffer;
  opts: Opt[];
  /** The A addresses in the answer section. */
  addresses: string[];
}

function parse(buf: Buffer): Wire {
  const flags = buf.readUInt16BE(2);
  const w: Wire = {
    size: buf.length,
    id: buf.readUInt16BE(0),
    qr: (flags & QR) !== 0,
    opcode: (flags >> 11) & 0xf,
    tc: (flags & TC) !== 0,
    rcode: flags & 0xf,
    qd: buf.readUInt16BE(4),
    an: buf.readUInt16BE(6),
    ns: buf.readUInt16BE(8),
    ar: buf.readUInt16BE(10),
    question: Buffer.alloc(0),
    opts: [],
    addresses: [],
  };
  let off = 12;
  for (let i = 0; i < w.qd; i++) off = skipName(buf, off) + 4;
  w.question = Buffer.from(buf.subarray(12, off));
  for (let i = 0; i < w.an + w.ns + w.ar; i++) {
    off = skipName(buf, off);
    const type = buf.readUInt16BE(off);
    const cls = buf.readUInt16BE(off + 2);
    const ttl = buf.readUInt32BE(off + 4);
    const rdlen = buf.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (type === 41) {
      const options: Array<[number, Buffer]> = [];
      for (let o = rdata; o < rdata + rdlen; ) {
        const len = buf.readUInt16BE(o + 2);
        options.push([buf.readUInt16BE(o), Buffer.from(buf.subarray(o + 4, o + 4 + len))]);
        o += 4 + len;
      }
      w.opts.push({ udpSize: cls, extRcode: ttl >>> 24, version: (ttl >>> 16) & 0xff, do: (ttl & DO) !== 0, options });
    } else if (type === 1 && i < w.an && rdlen === 4) {
      w.addresses.push([...buf.subarray(rdata, rdata + 4)].join('.'));
    }
    off = rdata + rdlen;
  }
  expect(off, 'reply has trailing or missing octets').toBe(buf.length);
  return w;
}

/** The question's end in a query whose name is uncompressed (as pvdns sends it upstream). */
function questionEnd(raw: Buffer): number {
  let off = 12;
  while (raw[off] !== 0) off += raw[off]! + 1;
  return off + 5;
}

/**
 * upstreamReply answers the query `raw` with `n` A records (owners compressed
 * against the question), optionally TC, with the question lower-cased, and
 * with an OPT of the upstream's own when `opt` is given.
 */
function upstreamReply(raw: Buffer, n: number, o: { tc?: boolean; opt?: OptSpec } = {}): Buffer {
  const qEnd = questionEnd(raw);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(raw.readUInt16BE(0), 0);
  h.writeUInt16BE(QR | RD | RA | (o.tc ? TC : 0), 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(n, 6);
  h.writeUInt16BE(o.opt ? 1 : 0, 10);
  const question = Buffer.from(raw.subarray(12, qEnd));
  for (let i = 0; i < qEnd - 12 - 4; i++) if (question[i]! >= 0x41 && question[i]! <= 0x5a) question[i]! |= 0x20;
  const rrs = Array.from({ length: n }, (_, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt16BE(0xc00c, 0);
    r.writeUInt16BE(1, 2);
    r.writeUInt16BE(1, 4);
    r.writeUInt32BE(300, 6);
    r.writeUInt16BE(4, 10);
    r[12] = 198;
    r[13] = 51;
    r[14] = 100 + (i >> 8);
    r[15] = i & 0xff;
    return r;
  });
  return Buffer.concat([h, question, ...rrs, o.opt ? optRR(o.opt) : Buffer.alloc(0)]);
}

async function udp(server: { host: string; port: number }, msg: Buffer): Promise<Wire> {
  const raw = await sendRaw(server, msg, { timeoutMs: 3000 });
  expect(raw, 'no reply over UDP').not.toBeNull();
  return parse(raw!);
}

async function tcp(server: { host: string; port: number }, msg: Buffer): Promise<Wire> {
  const [raw] = await sendTcp(server, [msg], 3000);
  expect(raw, 'no reply over TCP').toBeDefined();
  return parse(raw!);
}

// ---- tests --------------------------------------------------------------

describe('EDNS and message rules', () => {
  // What the upstream answers, by (lower-cased) name; it always sends an OPT of its own
  // (4096, with an option of its own) so that the test sees pvdns replace it.
  const upstreamOpt: OptSpec = { udpSize: 4096, options: [[65002, Buffer.from('upstream')]] };
  const up = new FakeUpstream((q, { raw, transport }) => {
    const name = q.questions[0]!.name.toLowerCase();
    switch (name) {
      case 'forty.example.net':
        return upstreamReply(raw, 40, { opt: upstreamOpt });
      case 'twentyfive.example.net':
        return upstreamReply(raw, 25, { opt: upstreamOpt });
      case 'hundred.example.net':
        // Honest about its 1232-octet limit: over UDP it says TC, over TCP it sends all.
        return transport === 'udp' ? upstreamReply(raw, 0, { tc: true, opt: upstreamOpt }) : upstreamReply(raw, 100);
      case 'tc.example.net':
        return transport === 'udp' ? upstreamReply(raw, 5, { tc: true, opt: upstreamOpt }) : upstreamReply(raw, 30);
      default:
        return upstreamReply(raw, 1, { opt: upstreamOpt });
    }
  });
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.41');
    pvdns = await startPvdns({
      upstream: { timeoutMs: 1500, attempts: 1 },
      pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  const askedUpstream = (name: string): number => up.names().filter((n) => n === name).length;

  describe('OPT handling (RFC 6891)', () => {
    it('answers FORMERR, with an OPT, to a query with two OPT records, and asks nobody', async () => {
      // RFC 6891 §6.1.1: more than one OPT ⇒ FORMERR; the reply still carries an OPT (§7).
      const r = await udp(pvdns.dns, query({ id: 0x0a01, name: 'twoopt.example.net', opts: [{ udpSize: 1232 }, { udpSize: 4096 }] }));
      expect(r.id).toBe(0x0a01);
      expect(r.qr).toBe(true);
      expect(r.rcode).toBe(1);
      expect(r.opts).toHaveLength(1);
      expect(askedUpstream('twoopt.example.net')).toBe(0);
    });

    it('answers BADVERS to an OPT of version 1 and asks nobody', async () => {
      // RFC 6891 §6.1.3: BADVERS = 16 = extended RCODE 1 in the OPT, RCODE 0 in the header,
      // with an OPT carrying the version the responder implements (0).
      const r = await udp(pvdns.dns, query({ id: 0x0a02, name: 'v1.example.net', opts: [{ version: 1 }] }));
      expect(r.id).toBe(0x0a02);
      expect(r.rcode).toBe(0);
      expect(r.opts).toHaveLength(1);
      expect(r.opts[0]!.extRcode).toBe(1);
      expect(r.opts[0]!.version).toBe(0);
      expect((r.opts[0]!.extRcode << 4) | r.rcode).toBe(16);
      expect(r.an).toBe(0);
      expect(askedUpstream('v1.example.net')).toBe(0);
    });

    it('sends no OPT to a client that sent none, even though the upstream sent one', async () => {
      // RFC 6891 §7: no OPT in the request ⇒ the responder MUST NOT include one.
      const r = await udp(pvdns.dns, query({ id: 0x0a03, name: 'plain.example.net' }));
      expect(r.rcode).toBe(0);
      expect(r.addresses).toEqual(['198.51.100.0']);
      expect(r.opts).toHaveLength(0);
      expect(r.ar).toBe(0);
      expect(askedUpstream('plain.example.net')).toBe(1);
    });

    it('answers an EDNS query with its own OPT: 1232 octets, version 0, the DO bit echoed', async () => {
      // RFC 6891 §6.1.1 (an OPT in the reply), §6.2.6 (own size, not the upstream's 4096),
      // RFC 3225 §3 (DO copied into the response).
      for (const dnssecOk of [true, false]) {
        const name = `do-${dnssecOk}.example.net`;
        const r = await udp(pvdns.dns, query({ id: 0x0a04, name, opts: [{ udpSize: 4096, do: dnssecOk }] }));
        expect(r.rcode, name).toBe(0);
        expect(r.addresses, name).toEqual(['198.51.100.0']);
        expect(r.opts, name).toHaveLength(1);
        expect(r.opts[0]!.udpSize, name).toBe(1232);
        expect(r.opts[0]!.version, name).toBe(0);
        expect(r.opts[0]!.extRcode, name).toBe(0);
        expect(r.opts[0]!.do, name).toBe(dnssecOk);
      }
    });

    it("does not forward the client's EDNS options upstream: pvdns sends its own OPT (1232, the client's DO)", async () => {
      // RFC 6891 §6.1.1: OPT RRs MUST NOT be forwarded; §6.2.6: a caching forwarder runs
      // separate transactions; RFC 3225 §3: the DO bit goes upstream.
      const cookie = Buffer.from('0123456789abcdef', 'hex'); // a client cookie (RFC 7873)
      for (const dnssecOk of [true, false]) {
        const name = `options-${dnssecOk}.example.net`;
        const msg = query({
          name,
          opts: [{ udpSize: 4096, do: dnssecOk, options: [[65001, Buffer.from('private')], [10, cookie]] }],
        });
        const r = await udp(pvdns.dns, msg);
        expect(r.rcode, name).toBe(0);
        const seen = up.seen.filter((s) => s.name.toLowerCase() === name);
        expect(seen, name).toHaveLength(1);
        const sent = parse(seen[0]!.raw);
        expect(sent.opts, name).toHaveLength(1);
        expect(sent.opts[0]!.udpSize, name).toBe(1232);
        expect(sent.opts[0]!.version, name).toBe(0);
        expect(sent.opts[0]!.do, name).toBe(dnssecOk);
        expect(sent.opts[0]!.options, name).toEqual([]);
        expect(seen[0]!.raw.includes(Buffer.from('private')), name).toBe(false);
        expect(seen[0]!.raw.includes(cookie), name).toBe(false);
      }
    });
  });

  describe('header and question (RFC 1035 §4.1)', () => {
    it('answers FORMERR to a query without a question', async () => {
      // RFC 1035 §4.1.2: a QUERY asks one question; pvdns has nothing to answer without one.
      const r = await udp(pvdns.dns, query({ id: 0x0b01, noQuestion: true }));
      expect(r.id).toBe(0x0b01);
      expect(r.qr).toBe(true);
      expect(r.rcode).toBe(1);
      expect(r.opts).toHaveLength(0);
    });

    it('answers FORMERR with an OPT to a query without a question that carries an OPT', async () => {
      // RFC 6891 §6.1.1: "If an OPT record is present in a received request, compliant
      // responders MUST include an OPT record in their respective responses" (§7: FORMERR too).
      // (RFC 7873 §5.4 clients send exactly this to learn a server cookie.)
      const cookie = Buffer.from('0123456789abcdef', 'hex');
      const r = await udp(pvdns.dns, query({ id: 0x0b02, noQuestion: true, opts: [{ udpSize: 1232, options: [[10, cookie]] }] }));
      expect(r.id).toBe(0x0b02);
      expect(r.rcode).toBe(1);
      expect(r.opts).toHaveLength(1);
    });

    it('answers NOTIMP to opcode STATUS, echoing the opcode, and asks nobody', async () => {
      // RFC 1035 §4.1.1: OPCODE is copied into the response; only QUERY is implemented.
      const r = await udp(pvdns.dns, query({ id: 0x0b03, name: 'status.example.net', flags: (2 << 11) | RD, opts: [{}] }));
      expect(r.id).toBe(0x0b03);
      expect(r.qr).toBe(true);
      expect(r.opcode).toBe(2);
      expect(r.rcode).toBe(4);
      expect(askedUpstream('status.example.net')).toBe(0);
    });

    it("replies with the client's ID and question exactly as written, from upstream and from cache, over UDP and TCP", async () => {
      // RFC 1035 §4.1.1 (ID copied), RFC 4343 §4.1 (case preserved); the upstream answers in
      // lower case, so the case can only come from the client's own query.
      const cases: Array<{ id: number; name: string; tcp: boolean }> = [
        { id: 0xbeef, name: 'WwW.ExAmPlE.CoM', tcp: false }, // upstream
        { id: 0x0001, name: 'wWw.eXaMpLe.cOm', tcp: false }, // cache
        { id: 0xfffe, name: 'WWW.EXAMPLE.COM', tcp: true }, // cache, TCP
        { id: 0x7777, name: 'Mixed.CASE.Example.Com', tcp: true }, // upstream, TCP
      ];
      for (const c of cases) {
        for (const edns of [false, true]) {
          const msg = query({ id: c.id, name: c.name, opts: edns ? [{}] : [] });
          const r = c.tcp ? await tcp(pvdns.dns, msg) : await udp(pvdns.dns, msg);
          const label = `${c.name} tcp=${c.tcp} edns=${edns}`;
          expect(r.id, label).toBe(c.id);
          expect(r.qd, label).toBe(1);
          expect(r.question.equals(msg.subarray(12, 12 + r.question.length)), label).toBe(true);
          expect(r.question.toString('latin1'), label).toContain(c.name.split('.')[0]!);
          expect(r.addresses, label).toEqual(['198.51.100.0']);
        }
      }
      expect(askedUpstream('www.example.com')).toBe(1);
      expect(askedUpstream('mixed.case.example.com')).toBe(1);
    });
  });

  describe('truncation (RFC 1035 §4.2.1, RFC 2181 §9, RFC 6891 §6.2.3–§6.2.5, §7)', () => {
    it('truncates a 40-record answer to TC=1 within 512 octets for a client without EDNS', async () => {
      const r = await udp(pvdns.dns, query({ id: 0x0c01, name: 'forty.example.net' }));
      expect(r.id).toBe(0x0c01);
      expect(r.rcode).toBe(0);
      expect(r.tc).toBe(true);
      expect(r.size).toBeLessThanOrEqual(512);
      expect(r.an).toBeLessThan(40);
      expect(r.opts).toHaveLength(0);
    });

    it('sends the same 40 records whole to a client advertising 4096 (under pvdns’s 1232)', async () => {
      const r = await udp(pvdns.dns, query({ id: 0x0c02, name: 'forty.example.net', opts: [{ udpSize: 4096 }] }));
      expect(r.tc).toBe(false);
      expect(r.an).toBe(40);
      expect(r.addresses).toHaveLength(40);
      expect(r.size).toBeGreaterThan(512);
      expect(r.size).toBeLessThanOrEqual(1232);
    });

    it('sends the 40 records whole over TCP to a client without EDNS', async () => {
      const r = await tcp(pvdns.dns, query({ id: 0x0c03, name: 'forty.example.net' }));
      expect(r.id).toBe(0x0c03);
      expect(r.tc).toBe(false);
      expect(r.an).toBe(40);
    });

    it('treats an advertised size below 512 as 512', async () => {
      // RFC 6891 §6.2.5: values lower than 512 MUST be treated as equal to 512.
      const r = await udp(pvdns.dns, query({ id: 0x0c04, name: 'twentyfive.example.net', opts: [{ udpSize: 300 }] }));
      expect(r.size).toBeGreaterThan(300);
      expect(r.tc).toBe(false);
      expect(r.an).toBe(25);
    });

    it('caps a client’s 4096 at its own 1232: a 100-record answer is TC=1 over UDP, with an OPT', async () => {
      // RFC 6891 §7: the minimal truncated reply is header, question and OPT.
      const r = await udp(pvdns.dns, query({ id: 0x0c05, name: 'hundred.example.net', opts: [{ udpSize: 4096 }] }));
      expect(r.id).toBe(0x0c05);
      expect(r.rcode).toBe(0);
      expect(r.tc).toBe(true);
      expect(r.size).toBeLessThanOrEqual(1232);
      expect(r.an).toBeLessThan(100);
      expect(r.opts).toHaveLength(1);
      expect(r.opts[0]!.udpSize).toBe(1232);
    });

    it('sends the 100 records whole over TCP', async () => {
      const r = await tcp(pvdns.dns, query({ id: 0x0c06, name: 'hundred.example.net', opts: [{ udpSize: 4096 }] }));
      expect(r.tc).toBe(false);
      expect(r.an).toBe(100);
      expect(new Set(r.addresses).size).toBe(100);
      expect(r.size).toBeGreaterThan(1232);
    });

    it('asks an upstream that answered TC=1 over UDP again over TCP and returns the whole answer', async () => {
      // RFC 7766 §5 / RFC 1035 §4.2.2: a truncated UDP answer is retried over TCP.
      const r = await udp(pvdns.dns, query({ id: 0x0c07, name: 'tc.example.net', opts: [{ udpSize: 1232 }] }));
      expect(r.rcode).toBe(0);
      expect(r.tc).toBe(false);
      expect(r.an).toBe(30);
      const seen = up.seen.filter((s) => s.name.toLowerCase() === 'tc.example.net').map((s) => s.transport);
      expect(seen).toEqual(['udp', 'tcp']);
    });
  });
});
