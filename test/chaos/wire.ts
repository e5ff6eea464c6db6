// Small DNS wire helpers for the chaos suite: its misbehaving upstream and its
// clients read and write messages here rather than with dns2, because both
// sides must survive what the suite sends on purpose (pointer loops, cut
// messages, garbage): every read is bounded and a bad message is a thrown
// error, never a hang.

export const TYPE = { A: 1, NS: 2, SOA: 6, AAAA: 28, OPT: 41, HTTPS: 65 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;

/** One question as read from a message: the name in lower case without the final dot ("" is the root). */
export interface Question {
  id: number;
  flags: number;
  name: string;
  /** The name as written, for echoing the question's case back. */
  rawName: string;
  qtype: number;
  qclass: number;
  /** The question section's octets (name, type, class) as received. */
  questionWire: Buffer;
  /** The EDNS UDP size the query advertised, or 0 without an OPT. */
  ednsSize: number;
}

/** readName reads a (possibly compressed) name at `at`: [name, offset after it]; throws on loops and overruns. */
export function readName(msg: Buffer, at: number): [string, number] {
  const labels: string[] = [];
  let pos = at;
  let end = -1;
  let jumps = 0;
  let total = 0;
  for (;;) {
    if (pos >= msg.length) throw new Error('name runs past the message');
    const len = msg[pos]!;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= msg.length) throw new Error('pointer runs past the message');
      if (++jumps > 64) throw new Error('compression pointer loop');
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1]!;
      continue;
    }
    if (len & 0xc0) throw new Error('bad label type');
    if (pos + 1 + len > msg.length) throw new Error('label runs past the message');
    total += len + 1;
    if (total > 255) throw new Error('name too long');
    labels.push(msg.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return [labels.join('.'), end];
}

/** encodeName writes a name ("" or "." is the root) without compression. */
export function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** parseQuery reads a query's header, first question and EDNS size; throws when it cannot. */
export function parseQuery(msg: Buffer): Question {
  if (msg.length < 12) throw new Error('short message');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (msg.readUInt16BE(4) < 1) throw new Error('no question');
  const [rawName, after] = readName(msg, 12);
  if (after + 4 > msg.length) throw new Error('question runs past the message');
  const qtype = msg.readUInt16BE(after);
  const qclass = msg.readUInt16BE(after + 2);
  let ednsSize = 0;
  // The OPT, if any, is in the additional section after the question (queries carry nothing else before it).
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  if (an === 0 && ns === 0 && ar > 0) {
    try {
      let pos = after + 4;
      for (let i = 0; i < ar; i++) {
        const [, p] = readName(msg, pos);
        const type = msg.readUInt16BE(p);
        if (type === TYPE.OPT) ednsSize = msg.readUInt16BE(p + 2);
        pos = p + 10 + msg.readUInt16BE(p + 8);
      }
    } catch {
      // an unreadable additional section: no EDNS
    }
  }
  return {
    id,
    flags,
    name: rawName.toLowerCase(),
    rawName,
    qtype,
    qclass,
    questionWire: Buffer.from(msg.subarray(12, after + 4)),
    ednsSize,
  };
}

/** A record to write: owner (null: the question's name, by a pointer to offset 12), type, ttl, rdata. */
export interface Rr {
  owner: string | null;
  type: number;
  ttl: number;
  rdata: Buffer;
}

export interface ReplyOptions {
  rcode?: number;
  answers?: Rr[];
  authority?: Rr[];
  tc?: boolean;
  aa?: boolean;
  /** Add an OPT with this UDP size (0: none). */
  edns?: number;
}

/** buildReply answers question `q` (its ID, question and RD bit echoed). */
export function buildReply(q: Question, o: ReplyOptions = {}): Buffer {
  const answers = o.answers ?? [];
  const authority = o.authority ?? [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(FLAG_QR | (o.aa === false ? 0 : FLAG_AA) | (o.tc ? FLAG_TC : 0) | (q.flags & FLAG_RD) | FLAG_RA | (o.rcode ?? 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authority.length, 8);
  header.writeUInt16BE(o.edns ? 1 : 0, 10);
  const parts: Buffer[] = [header, q.questionWire];
  for (const rr of [...answers, ...authority]) parts.push(encodeRr(rr));
  if (o.edns) parts.push(Buffer.from([0, 0, TYPE.OPT, o.edns >> 8, o.edns & 0xff, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

function encodeRr(rr: Rr): Buffer {
  const owner = rr.owner === null ? Buffer.from([0xc0, 12]) : encodeName(rr.owner);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(rr.type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(rr.ttl, 4);
  fixed.writeUInt16BE(rr.rdata.length, 8);
  return Buffer.concat([owner, fixed, rr.rdata]);
}

/** soaRdata is an SOA's RDATA (names uncompressed) with `minimum` as its negative TTL. */
export function soaRdata(zone: string, minimum: number): Buffer {
  const nums = Buffer.alloc(20);
  nums.writeUInt32BE(1, 0); // serial
  nums.writeUInt32BE(3600, 4);
  nums.writeUInt32BE(600, 8);
  nums.writeUInt32BE(86400, 12);
  nums.writeUInt32BE(minimum, 16);
  void zone;
  return Buffer.concat([encodeName('ns.chaos-upstream'), encodeName('hostmaster.chaos-upstream'), nums]);
}

export function ipv4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** ipv6 writes an address in full or with one "::". */
export function ipv6(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** encodeQuery is a client's query: RD set, and an OPT with `edns` as UDP size when non-zero. */
export function encodeQuery(id: number, name: string, qtype: number, edns = 1232): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(FLAG_RD, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(edns ? 1 : 0, 10);
  const tail = Buffer.from([qtype >> 8, qtype & 0xff, 0, 1]);
  const parts = [header, encodeName(name), tail];
  if (edns) parts.push(Buffer.from([0, 0, TYPE.OPT, edns >> 8, edns & 0xff, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

/** What a client reads of a reply. */
export interface Reply {
  id: number;
  flags: number;
  rcode: number;
  tc: boolean;
  /** The question's name in lower case. */
  name: string;
  qtype: number;
  /** A and AAAA addresses of the answer section, as text (AAAA in full, uncompressed groups). */
  addresses: string[];
  answerCount: number;
  /** Whether the authority section has an SOA (a proper negative answer). */
  soa: boolean;
}

/** parseReply reads a reply; throws on anything malformed (the client counts that as a wrong answer). */
export function parseReply(msg: Buffer): Reply {
  if (msg.length < 12) throw new Error('short reply');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  let pos = 12;
  let name = '';
  let qtype = 0;
  for (let i = 0; i < qd; i++) {
    const [n, p] = readName(msg, pos);
    if (p + 4 > msg.length) throw new Error('question runs past the reply');
    if (i === 0) {
      name = n.toLowerCase();
      qtype = msg.readUInt16BE(p);
    }
    pos = p + 4;
  }
  const addresses: string[] = [];
  let soa = false;
  for (let i = 0; i < an + ns; i++) {
    const [, p] = readName(msg, pos);
    if (p + 10 > msg.length) throw new Error('record runs past the reply');
    const type = msg.readUInt16BE(p);
    const len = msg.readUInt16BE(p + 8);
    const at = p + 10;
    if (at + len > msg.length) throw new Error('rdata runs past the reply');
    if (i < an && type === TYPE.A && len === 4) addresses.push(`${msg[at]}.${msg[at + 1]}.${msg[at + 2]}.${msg[at + 3]}`);
    if (i < an && type === TYPE.AAAA && len === 16) addresses.push(ipv6Text(msg.subarray(at, at + 16)));
    if (i >= an && type === TYPE.SOA) soa = true;
    pos = at + len;
  }
  return { id, flags, rcode: flags & 0xf, tc: (flags & FLAG_TC) !== 0, name, qtype, addresses, answerCount: an, soa };
}
