// FaultyUpstream: a misbehaving DNS server for the chaos suite, run inside the
// test process on a 127.0.0.x address (UDP and TCP on one port), whose faults
// the test switches at run time.
//
// What it serves when nothing is wrong (authoritative-style: AA and RA set,
// the question and RD echoed, an OPT of 1232 when the query had one):
// - any name under chaos.test: an A and an AAAA derived from the name
//   (expectedA/expectedAAAA: public-looking addresses, so no forwarder's
//   rebinding or captive-portal heuristics take them for a rewrite), TTL 10 s
//   or N for a label "ttlN"; a name whose first label starts with "nx" is
//   NXDOMAIN; other types are NODATA; both with the zone's SOA;
// - example.com (pvdns's captive-portal canary): A 93.184.215.14 and an AAAA;
// - ipv4only.arpa (RFC 7050 discovery): A 192.0.0.170/171, AAAA NODATA;
// - ". NS" (pvdns's health probe): NS ns.chaos-upstream;
// - every other name (pvdns's random captive-portal probe names among them):
//   NXDOMAIN with the root's SOA.
//
// The faults (the `faults` object, and dropNext/setTcp/flap):
// - dropQueries / dropReplies: each UDP query / reply lost with that chance;
// - silent: nothing is answered (UDP or TCP);
// - rule(q): per question, one Action — never answer it, an RCODE (REFUSED,
//   SERVFAIL), answer late, a bad reply (garbage, cut, a compression-pointer
//   loop, a wrong ID, or from a wrong port: a second socket) in place of or
//   ahead of the real one, TC=1 whose TCP retry is reset, an oversized UDP
//   answer, or a cut answer with TC=1;
// - dropNext(name): lose exactly one query (or reply) for that name;
// - setTcp('refused'): the TCP listener is closed (connections refused);
// - rrl: response-rate limiting like nsd's RRL: a token bucket per source /24
//   (rate per second, a second's worth of burst); UDP answers over it are
//   dropped, except every `slip`th, which gets an empty TC=1 answer. TCP is
//   never limited.
//
// It counts and logs what it received and what it did (stats, perName, log).

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import {
  FLAG_QR,
  FLAG_RA,
  FLAG_TC,
  RCODE,
  TYPE,
  buildReply,
  encodeName,
  ipv4,
  ipv6,
  ipv6Text,
  parseQuery,
  soaRdata,
  type Question,
  type Rr,
} from './wire.js';

export const ZONE = 'chaos.test';
export const CANARY = { name: 'example.com', a: '93.184.215.14', aaaa: '2606:2800:21f:cb07:6820:80da:af6b:8b2c' };
const DEFAULT_TTL = 10;
const NEGATIVE_TTL = 10;

/** fnv1a is a 32-bit FNV-1a hash of a name: the seed of everything derived from it. */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Public /8s only: no address here is private, shared, loopback, reserved or documentation space. */
const FIRST_OCTETS = [23, 34, 45, 52, 62, 81, 93, 104, 151, 185];

export function expectedA(name: string): string {
  const h = fnv1a(name.toLowerCase());
  return `${FIRST_OCTETS[h % FIRST_OCTETS.length]}.${(h >>> 8) & 0xff}.${(h >>> 16) & 0xff}.${((h >>> 24) % 254) + 1}`;
}

/** expectedAAAA, written as the clients read addresses (ipv6Text: eight groups, no zero compression). */
export function expectedAAAA(name: string): string {
  const h = fnv1a(name.toLowerCase());
  const g = fnv1a(name.toLowerCase(), 0x12345678);
  return ipv6Text(ipv6(`2a01:4f8:${(h >>> 16).toString(16)}:${(h & 0xffff).toString(16)}::${(g & 0xffff).toString(16)}`));
}

/** ttlOf: N for a label "ttlN", else DEFAULT_TTL. */
export function ttlOf(name: string): number {
  const m = /(?:^|\.)ttl(\d+)\./.exec(`${name}.`);
  return m ? Number(m[1]) : DEFAULT_TTL;
}

/** What a correct answer to (name, qtype) is. */
export type Expectation = { kind: 'address'; address: string } | { kind: 'nxdomain' } | { kind: 'nodata' };

export function expected(name: string, qtype: number): Expectation {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n === CANARY.name) {
    if (qtype === TYPE.A) return { kind: 'address', address: CANARY.a };
    if (qtype === TYPE.AAAA) return { kind: 'address', address: ipv6Text(ipv6(CANARY.aaaa)) };
    return { kind: 'nodata' };
  }
  if (!n.endsWith(`.${ZONE}`)) return { kind: 'nxdomain' };
  if (n.split('.')[0]!.startsWith('nx')) return { kind: 'nxdomain' };
  if (qtype === TYPE.A) return { kind: 'address', address: expectedA(n) };
  if (qtype === TYPE.AAAA) return { kind: 'address', address: expectedAAAA(n) };
  return { kind: 'nodata' };
}

/** A bad reply: random octets, the real reply cut short (no TC), a pointer loop, a wrong ID, or the real reply from a wrong port. */
export type Bad = 'garbage' | 'cut' | 'loop' | 'wrong-id' | 'wrong-port';
export const BAD_KINDS: readonly Bad[] = ['garbage', 'cut', 'loop', 'wrong-id', 'wrong-port'];

export type Action =
  /** Never answer (UDP or TCP). */
  | { kind: 'drop' }
  /** Answer with this RCODE and nothing else. */
  | { kind: 'rcode'; rcode: number }
  /** Answer after `ms`. */
  | { kind: 'delay'; ms: number }
  /** Over UDP a bad reply, in place of the real one or `thenRealMs` ahead of it. TCP answers normally. */
  | { kind: 'bad'; bad: Bad; thenRealMs?: number }
  /** Over UDP an empty TC=1 answer; over TCP the connection is reset. */
  | { kind: 'tc-no-tcp' }
  /** Over UDP the answer padded with more A records to about `size` octets, without TC, whatever the query's EDNS size. */
  | { kind: 'oversized'; size: number }
  /** Over UDP the answer cut in the middle of a record, with TC=1; over TCP the whole answer. */
  | { kind: 'cut-tc' };

export type Transport = 'udp' | 'tcp';

export interface Faults {
  /** Chance that a UDP query is lost before the server sees it. */
  dropQueries: number;
  /** Chance that a UDP reply is lost on its way back. */
  dropReplies: number;
  /** Answer nothing at all. */
  silent: boolean;
  /** Per-question fault, or null for a correct answer. */
  rule: ((q: Question, transport: Transport) => Action | null) | null;
  /** Response-rate limiting of UDP answers, per source /24; null: none. */
  rrl: { rate: number; slip: number } | null;
}

export interface Stats {
  /** Queries received (before any drop), by transport. */
  udp: number;
  tcp: number;
  unparsable: number;
  /** Replies sent with the real answer (UDP and TCP; delayed ones when sent). */
  answered: number;
  droppedQueries: number;
  droppedReplies: number;
  /** Queries not answered because the server was silent. */
  silenced: number;
  /** Queries a rule left unanswered. */
  neverAnswered: number;
  rcode: number;
  delayed: number;
  bad: number;
  tc: number;
  tcpReset: number;
  oversized: number;
  rrlDropped: number;
  rrlSlipped: number;
}

export interface LogEntry {
  /** performance.now() when the query arrived. */
  t: number;
  name: string;
  qtype: number;
  transport: Transport;
  from: string;
  what: string;
}

const LOG_CAP = 500_000;

function emptyStats(): Stats {
  return {
    udp: 0, tcp: 0, unparsable: 0, answered: 0, droppedQueries: 0, droppedReplies: 0, silenced: 0, neverAnswered: 0,
    rcode: 0, delayed: 0, bad: 0, tc: 0, tcpReset: 0, oversized: 0, rrlDropped: 0, rrlSlipped: 0,
  };
}

interface Bucket {
  tokens: number;
  at: number;
  excess: number;
}

export class FaultyUpstream {
  faults: Faults = { dropQueries: 0, dropReplies: 0, silent: false, rule: null, rrl: null };
  stats: Stats = emptyStats();
  /** Queries received per lower-cased name (UDP and TCP, dropped ones included). */
  readonly perName = new Map<string, number>();
  readonly log: LogEntry[] = [];
  host = '';
  port = 0;
  /** One-shot losses armed by dropNext, and when each fired (performance.now()). */
  private readonly once = new Map<string, { direction: 'query' | 'reply'; firedAt: number | null }>();
  private udp: dgram.Socket | null = null;
  /** The second socket wrong-port replies come from. */
  private other: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  private tcpState: 'on' | 'refused' = 'on';
  private readonly conns = new Set<net.Socket>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  async start(host: string): Promise<this> {
    for (let tries = 0; ; tries++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((res, rej) => {
        udp.once('error', rej);
        udp.bind({ address: host, port: 0 }, () => res());
      });
      const port = udp.address().port;
      const tcp = await this.listen(host, port);
      if (tcp) {
        this.udp = udp;
        this.tcp = tcp;
        this.host = host;
        this.port = port;
        break;
      }
      udp.close();
      if (tries > 20) throw new Error(`no port free for UDP and TCP on ${host}`);
    }
    // A big receive buffer: hundreds of queries a second arrive while the test process is busy.
    this.udp.setRecvBufferSize(4 << 20);
    this.udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
    this.udp.on('error', () => undefined);
    this.other = dgram.createSocket('udp4');
    await new Promise<void>((res) => this.other!.bind({ address: host, port: 0 }, () => res()));
    return this;
  }

  /** address is "host:port", as a PvD's dnsServers entry. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** reset clears the faults, the counts and the log (after a warm-up). */
  reset(): void {
    this.faults = { dropQueries: 0, dropReplies: 0, silent: false, rule: null, rrl: null };
    this.stats = emptyStats();
    this.perName.clear();
    this.log.length = 0;
    this.once.clear();
    this.buckets.clear();
  }

  /** dropNext loses exactly one UDP query (or its reply) for `name`, the next to arrive. */
  dropNext(name: string, direction: 'query' | 'reply' = 'query'): void {
    this.once.set(name.toLowerCase(), { direction, firedAt: null });
  }

  /** firedAt says when the loss armed for `name` happened (performance.now()), or null. */
  firedAt(name: string): number | null {
    return this.once.get(name.toLowerCase())?.firedAt ?? null;
  }

  /** setTcp closes the TCP listener (connections refused, open ones reset) or opens it again on the same port. */
  async setTcp(state: 'on' | 'refused'): Promise<void> {
    if (state === this.tcpState || this.stopped) return;
    this.tcpState = state;
    if (state === 'refused') {
      const tcp = this.tcp;
      this.tcp = null;
      for (const s of this.conns) s.resetAndDestroy();
      await new Promise<void>((res) => (tcp ? tcp.close(() => res()) : res()));
    } else {
      this.tcp = await this.listen(this.host, this.port);
      if (!this.tcp) throw new Error(`could not listen on TCP ${this.address} again`);
    }
  }

  /** flap makes the server silent and back in turn — up `upMs`, down `downMs` — for `forMs`, then leaves it up. */
  flap(upMs: number, downMs: number, forMs: number): void {
    const end = performance.now() + forMs;
    const step = (up: boolean): void => {
      if (this.stopped) return;
      if (performance.now() >= end) {
        this.faults.silent = false;
        return;
      }
      this.faults.silent = !up;
      this.later(() => step(!up), up ? upMs : downMs);
    };
    step(true);
    this.later(() => {
      this.faults.silent = false;
    }, forMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.conns) s.destroy();
    const close = (s: dgram.Socket | null): Promise<void> => new Promise((res) => (s ? s.close(() => res()) : res()));
    await close(this.udp);
    await close(this.other);
    await new Promise<void>((res) => (this.tcp ? this.tcp.close(() => res()) : res()));
    this.udp = this.other = null;
    this.tcp = null;
  }

  // ------------------------------------------------------------ UDP

  /** intake reads a query and counts it; null when it cannot be read. `note` logs what became of it. */
  private intake(msg: Buffer, transport: 'udp' | 'tcp', from: string): { q: Question; now: number; note: (what: string) => void } | null {
    const now = performance.now();
    this.stats[transport]++;
    let q: Question;
    try {
      q = parseQuery(msg);
    } catch {
      this.stats.unparsable++;
      return null;
    }
    this.perName.set(q.name, (this.perName.get(q.name) ?? 0) + 1);
    const note = (what: string): void => {
      if (this.log.length < LOG_CAP) this.log.push({ t: now, name: q.name, qtype: q.qtype, transport, from, what });
    };
    return { q, now, note };
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const got = this.intake(msg, 'udp', `${rinfo.address}:${rinfo.port}`);
    if (got === null) return;
    const { q, now, note } = got;
    if (this.faults.silent) {
      this.stats.silenced++;
      return note('silent');
    }
    if (Math.random() < this.faults.dropQueries) {
      this.stats.droppedQueries++;
      return note('query lost');
    }
    const once = this.once.get(q.name);
    if (once && once.firedAt === null && once.direction === 'query') {
      once.firedAt = now;
      this.stats.droppedQueries++;
      return note('query lost (once)');
    }
    const action = this.faults.rule?.(q, 'udp') ?? null;
    const send = (reply: Buffer, real: boolean, from: dgram.Socket | null = this.udp): void => this.sendUdp(q, reply, rinfo, real, from);
    switch (action?.kind) {
      case undefined:
        note('answered');
        return send(this.fit(q, this.answer(q)), true);
      case 'drop':
        this.stats.neverAnswered++;
        return note('never answered');
      case 'rcode':
        this.stats.rcode++;
        note(`rcode ${action.rcode}`);
        return send(buildReply(q, { rcode: action.rcode, edns: q.ednsSize ? 1232 : 0 }), false);
      case 'delay':
        this.stats.delayed++;
        note(`delayed ${action.ms} ms`);
        return this.later(() => send(this.fit(q, this.answer(q)), true), action.ms);
      case 'bad': {
        this.stats.bad++;
        note(`bad reply: ${action.bad}${action.thenRealMs !== undefined ? ', then the real one' : ''}`);
        const real = this.fit(q, this.answer(q));
        if (action.bad === 'wrong-port') send(real, false, this.other);
        else send(this.badReply(q, action.bad, real), false);
        if (action.thenRealMs !== undefined) this.later(() => send(real, true), action.thenRealMs);
        return;
      }
      case 'tc-no-tcp':
        this.stats.tc++;
        note('TC=1, no TCP');
        return send(buildReply(q, { tc: true, edns: q.ednsSize ? 1232 : 0 }), false);
      case 'oversized': {
        this.stats.oversized++;
        note(`oversized to ${action.size} octets`);
        return send(this.answer(q, action.size), true);
      }
      case 'cut-tc': {
        note('cut, TC=1');
        const full = this.answer(q, 0, 2, false);
        const cut = Buffer.from(full.subarray(0, full.length - 7));
        cut.writeUInt16BE(cut.readUInt16BE(2) | FLAG_TC, 2);
        return send(cut, false);
      }
    }
  }

  /** sendUdp sends a reply unless the server went silent, RRL holds it back, or it is lost. */
  private sendUdp(q: Question, reply: Buffer, to: dgram.RemoteInfo, real: boolean, from: dgram.Socket | null): void {
    if (!from || this.stopped || this.faults.silent) return;
    const rrl = this.faults.rrl;
    if (rrl && !this.take(to.address, rrl.rate)) {
      const b = this.buckets.get(prefix24(to.address))!;
      b.excess++;
      if (rrl.slip > 0 && b.excess % rrl.slip === 0) {
        this.stats.rrlSlipped++;
        from.send(buildReply(q, { tc: true, edns: q.ednsSize ? 1232 : 0 }), to.port, to.address);
      } else {
        this.stats.rrlDropped++;
      }
      return;
    }
    if (Math.random() < this.faults.dropReplies) {
      this.stats.droppedReplies++;
      return;
    }
    const once = this.once.get(q.name);
    if (real && once && once.firedAt === null && once.direction === 'reply') {
      once.firedAt = performance.now();
      this.stats.droppedReplies++;
      return;
    }
    if (real) this.stats.answered++;
    from.send(reply, to.port, to.address);
  }

  /** take takes a token from the source's /24 bucket; false when it is empty. */
  private take(address: string, rate: number): boolean {
    const key = prefix24(address);
    const now = performance.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: rate, at: now, excess: 0 };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** fit truncates a reply that does not fit the query's UDP size to its question, with TC=1. */
  private fit(q: Question, reply: Buffer): Buffer {
    const limit = Math.max(512, q.ednsSize);
    return reply.length <= limit ? reply : buildReply(q, { tc: true, edns: q.ednsSize ? 1232 : 0 });
  }

  private badReply(q: Question, bad: Exclude<Bad, 'wrong-port'>, real: Buffer): Buffer {
    switch (bad) {
      case 'garbage': {
        const b = randomBytes(20 + Math.floor(Math.random() * 80));
        b.writeUInt16BE(q.id, 0);
        b[2] = b[2]! | 0x80;
        return b;
      }
      case 'cut': {
        // The real answer cut inside its first record, the counts left as they were, no TC.
        const at = 12 + q.questionWire.length + 2 + Math.floor(Math.random() * 10);
        return Buffer.from(real.subarray(0, Math.min(at, real.length - 1)));
      }
      case 'loop': {
        // One answer whose owner name is a compression pointer to itself.
        const header = Buffer.alloc(12);
        header.writeUInt16BE(q.id, 0);
        header.writeUInt16BE(FLAG_QR | FLAG_RA | (q.flags & 0x0100), 2);
        header.writeUInt16BE(1, 4);
        header.writeUInt16BE(1, 6);
        const at = 12 + q.questionWire.length;
        const rr = Buffer.from([0xc0 | (at >> 8), at & 0xff, 0, TYPE.A, 0, 1, 0, 0, 0, 60, 0, 4, ...ipv4(expectedA(q.name))]);
        return Buffer.concat([header, q.questionWire, rr]);
      }
      case 'wrong-id': {
        const b = Buffer.from(real);
        b.writeUInt16BE(q.id ^ 0x5a5a, 0);
        return b;
      }
    }
  }

  // ------------------------------------------------------------ TCP

  private listen(host: string, port: number): Promise<net.Server | null> {
    const tcp = net.createServer((s) => this.onTcp(s));
    return new Promise((res) => {
      tcp.once('error', () => res(null));
      tcp.listen({ host, port }, () => res(tcp));
    });
  }

  private onTcp(s: net.Socket): void {
    this.conns.add(s);
    s.on('close', () => this.conns.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + msg.length);
        this.onTcpQuery(msg, s);
      }
    });
  }

  private onTcpQuery(msg: Buffer, s: net.Socket): void {
    const got = this.intake(msg, 'tcp', `${s.remoteAddress}:${s.remotePort}`);
    if (got === null) return;
    const { q, note } = got;
    const send = (reply: Buffer, real: boolean): void => {
      if (s.destroyed || this.stopped || this.faults.silent) return;
      if (real) this.stats.answered++;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(reply.length);
      s.write(Buffer.concat([len, reply]));
    };
    if (this.faults.silent) {
      this.stats.silenced++;
      return note('silent');
    }
    const action = this.faults.rule?.(q, 'tcp') ?? null;
    switch (action?.kind) {
      case 'drop':
        this.stats.neverAnswered++;
        return note('never answered');
      case 'rcode':
        this.stats.rcode++;
        note(`rcode ${action.rcode}`);
        return send(buildReply(q, { rcode: action.rcode, edns: q.ednsSize ? 1232 : 0 }), false);
      case 'delay':
        this.stats.delayed++;
        note(`delayed ${action.ms} ms`);
        return this.later(() => send(this.answer(q), true), action.ms);
      case 'tc-no-tcp':
        this.stats.tcpReset++;
        note('TCP reset');
        s.resetAndDestroy();
        return;
      case 'oversized':
        note('answered (oversized)');
        return send(this.answer(q, action.size), true);
      default:
        note('answered');
        return send(this.answer(q), true);
    }
  }

  // ------------------------------------------------------------ the zone

  /**
   * answer is the correct reply to `q`; `padTo` adds A records until the
   * message is about that long (an oversized answer), `extra` adds that
   * many more A records after the expected one; withOpt false leaves the
   * OPT out (so that a cut falls inside a record).
   */
  private answer(q: Question, padTo = 0, extra = 0, withOpt = true): Buffer {
    const edns = q.ednsSize && withOpt ? 1232 : 0;
    const n = q.name;
    const exp = expected(n, q.qtype);
    if (n === '' && q.qtype === TYPE.NS) {
      return buildReply(q, { answers: [{ owner: null, type: TYPE.NS, ttl: 3600, rdata: encodeName('ns.chaos-upstream') }], edns });
    }
    if (n === 'ipv4only.arpa') {
      if (q.qtype === TYPE.A) {
        return buildReply(q, {
          answers: ['192.0.0.170', '192.0.0.171'].map((a): Rr => ({ owner: null, type: TYPE.A, ttl: 3600, rdata: ipv4(a) })),
          edns,
        });
      }
      return buildReply(q, { authority: [soa('arpa')], edns });
    }
    const zone = n === CANARY.name ? CANARY.name : n === ZONE || n.endsWith(`.${ZONE}`) ? ZONE : '';
    if (exp.kind === 'nxdomain' && n !== ZONE && n !== '') return buildReply(q, { rcode: RCODE.NXDOMAIN, authority: [soa(zone)], edns });
    if (exp.kind !== 'address') return buildReply(q, { authority: [soa(zone)], edns });
    const ttl = n === CANARY.name ? 300 : ttlOf(n);
    const type = q.qtype;
    const rdata = type === TYPE.A ? ipv4(exp.address) : ipv6(exp.address);
    const answers: Rr[] = [{ owner: null, type, ttl, rdata }];
    const h = fnv1a(n);
    let i = 0;
    const filler = (): Rr => {
      i++;
      return { owner: null, type: TYPE.A, ttl, rdata: ipv4(`${FIRST_OCTETS[(h + i) % FIRST_OCTETS.length]}.${(h >>> 8) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`) };
    };
    for (let k = 0; k < extra; k++) answers.push(filler());
    if (padTo > 0) {
      const base = 12 + q.questionWire.length + 16 + 11;
      while (base + (answers.length - 1) * 16 < padTo) answers.push(filler());
    }
    return buildReply(q, { answers, edns });
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }
}

function soa(zone: string): Rr {
  return { owner: zone, type: TYPE.SOA, ttl: NEGATIVE_TTL, rdata: soaRdata(zone, NEGATIVE_TTL) };
}

function prefix24(address: string): string {
  return address.split('.').slice(0, 3).join('.');
}

export { FLAG_QR, FLAG_RA, FLAG_TC, RCODE, TYPE };
