// What pvdns does with clients and octets it should not serve: access
// control, classes and query types a resolver refuses, FORMERR for what it
// can read but not accept, silence for what it cannot read or what is not a
// query at all (never a reply to a reply: no reflection loops), and surviving
// floods of malformed UDP datagrams and TCP garbage with its service intact.

import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede, makeQuery, Packet, sendRaw, sendTcp } from '../helpers/client.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- wire helpers -------------------------------------------------------

const QR = 0x8000;
const RD = 0x0100;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function wireName(name: string): Buffer {
  const parts = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function header(o: { id?: number; flags?: number; qd?: number; an?: number; ns?: number; ar?: number } = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(o.id ?? 0x2222, 0);
  h.writeUInt16BE(o.flags ?? RD, 2);
  h.writeUInt16BE(o.qd ?? 1, 4);
  h.writeUInt16BE(o.an ?? 0, 6);
  h.writeUInt16BE(o.ns ?? 0, 8);
  h.writeUInt16BE(o.ar ?? 0, 10);
  return h;
}

/** A root-owned OPT record; `rdata` as given (options, or anything). */
function optRR(rdata: Buffer = Buffer.alloc(0), owner: Buffer = Buffer.from([0])): Buffer {
  const rr = Buffer.alloc(10);
  rr.writeUInt16BE(41, 0);
  rr.writeUInt16BE(1232, 2);
  rr.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, rr, rdata]);
}

function rawQuery(name: string, o: { id?: number; type?: number; cls?: number; flags?: number; opt?: boolean } = {}): Buffer {
  const withOpt = o.opt ?? true;
  return Buffer.concat([
    header({ id: o.id, flags: o.flags, ar: withOpt ? 1 : 0 }),
    wireName(name),
    u16(o.type ?? 1),
    u16(o.cls ?? 1),
    withOpt ? optRR() : Buffer.alloc(0),
  ]);
}

/** The question's end in a query with an uncompressed name (as pvdns sends it upstream). */
function questionEnd(raw: Buffer): number {
  let off = 12;
  while (raw[off] !== 0) off += raw[off]! + 1;
  return off + 5;
}

/** A one-A-record reply to `raw`, built octet by octet: any name pvdns forwards can be answered. */
function upstreamReply(raw: Buffer): Buffer | null {
  try {
    const qEnd = questionEnd(raw);
    const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 44]);
    return Buffer.concat([header({ id: raw.readUInt16BE(0), flags: QR | RD | 0x80, an: 1 }), raw.subarray(12, qEnd), rr]);
  } catch {
    return null;
  }
}

/** A seeded PRNG (mulberry32), so a failing fuzz run can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectServed(r: Packet, label = ''): void {
  expect(r.header.rcode, label).toBe(0);
  expect(r.answers.map((x) => x.address), label).toEqual(['192.0.2.44']);
}

// ---- setup --------------------------------------------------------------

const up = new FakeUpstream((_q, { raw }) => upstreamReply(raw));
let pvdns: Running;
const sockets = new Set<{ close(): void } | net.Socket>();

beforeAll(async () => {
  await up.start('127.0.0.44');
  pvdns = await startPvdns({
    access: { allow: ['127.0.0.1/32'] },
    upstream: { timeoutMs: 400, attempts: 1 },
    tcp: { idleTimeoutMs: 1000 },
    pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }],
  });
});
afterAll(async () => {
  await pvdns.stop();
  await up.stop();
});
afterEach(() => {
  for (const s of sockets) {
    try {
      if (s instanceof net.Socket) s.destroy();
      else s.close();
    } catch {
      // already closed
    }
  }
  sockets.clear();
});

/** tcpFrom sends one framed query over TCP from `localAddress` and returns the reply, or null. */
function tcpFrom(localAddress: string, msg: Buffer, timeoutMs = 3000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: pvdns.dns.host, port: pvdns.dns.port, localAddress });
    sockets.add(s);
    let buf = Buffer.alloc(0);
    const done = (r: Buffer | null): void => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    s.on('error', () => done(null));
    s.on('close', () => done(null));
    s.on('connect', () => s.write(Buffer.concat([u16(msg.length), msg])));
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
    });
  });
}

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  sockets.add(s);
  await new Promise<void>((r) => s.bind({ address: '127.0.0.1', port: 0 }, () => r()));
  return s;
}

// ---- tests --------------------------------------------------------------

describe('access control', () => {
  it('refuses a client outside access.allow with EDE 18 and asks nobody, over UDP and TCP', async () => {
    up.seen.length = 0;
    const r = await ask(pvdns.dns, 'outsider.example.net', 'A', { from: '127.0.0.2', id: 0x0d01 });
    expect(r.packet.header.id).toBe(0x0d01);
    expect(r.packet.header.rcode).toBe(5);
    expect(r.packet.answers).toHaveLength(0);
    expect(ede(r.packet)?.infoCode).toBe(18); // RFC 8914 §4.19 Prohibited

    const t = await tcpFrom('127.0.0.2', makeQuery('outsider-tcp.example.net', 'A', { id: 0x0d02 }));
    expect(t, 'no reply over TCP').not.toBeNull();
    const tp = Packet.parse(t!);
    expect(tp.header.id).toBe(0x0d02);
    expect(tp.header.rcode).toBe(5);
    expect(ede(tp)?.infoCode).toBe(18);

    expect(up.seen).toHaveLength(0);
  });

  it('serves a client inside access.allow', async () => {
    expectServed((await ask(pvdns.dns, 'insider.example.net', 'A', { from: '127.0.0.1' })).packet);
    const t = await tcpFrom('127.0.0.1', makeQuery('insider-tcp.example.net', 'A'));
    expectServed(Packet.parse(t!));
  });
});

describe('refused queries', () => {
  it('refuses class CH queries and asks nobody', async () => {
    up.seen.length = 0;
    for (const tcp of [false, true]) {
      const msg = rawQuery('version.bind', { id: 0x0e01, type: 16, cls: 3 });
      const raw = await sendRaw(pvdns.dns, msg, { tcp });
      expect(raw, `tcp=${tcp}`).not.toBeNull();
      const r = Packet.parse(raw!);
      expect(r.header.id).toBe(0x0e01);
      expect(r.header.rcode, `tcp=${tcp}`).toBe(5);
      expect(r.answers).toHaveLength(0);
    }
    expect(up.seen).toHaveLength(0);
  });

  it('refuses zone transfers (AXFR, IXFR) over UDP and TCP and asks nobody', async () => {
    up.seen.length = 0;
    for (const type of [252, 251]) {
      for (const tcp of [false, true]) {
        const raw = await sendRaw(pvdns.dns, rawQuery('example.net', { id: 0x0e02, type }), { tcp });
        expect(raw, `type=${type} tcp=${tcp}`).not.toBeNull();
        const r = Packet.parse(raw!);
        expect(r.header.rcode, `type=${type} tcp=${tcp}`).toBe(5);
        expect(r.answers).toHaveLength(0);
      }
    }
    expect(up.seen).toHaveLength(0);
  });
});

describe('malformed queries', () => {
  const valid = rawQuery('www.example.net', { id: 0x3333 });
  const long = Array.from({ length: 5 }, () => 'a'.repeat(63)).join('.'); // 321 octets in wire form

  // Header and question can be read, so the reply can say what is wrong.
  const readable: Array<[string, Buffer]> = [
    ['QDCOUNT 0 (RFC 1035 §4.1.2)', header({ qd: 0 })],
    ['QDCOUNT 2 (RFC 9619 §4)', Buffer.concat([header({ qd: 2 }), wireName('a.example'), u16(1), u16(1), wireName('b.example'), u16(1), u16(1)])],
    ['ANCOUNT 1 with no record', Buffer.concat([header({ an: 1 }), wireName('x.example'), u16(1), u16(1)])],
    ['a valid query cut inside its OPT', valid.subarray(0, valid.length - 4)],
    ['OPT options overrunning the RDATA (RFC 6891 §6.1.2)', Buffer.concat([header({ ar: 1 }), wireName('x.example'), u16(1), u16(1), optRR(Buffer.from([0xfd, 0xe9, 0, 9, 1, 2]))])],
    ['OPT owned by a name other than the root (RFC 6891 §6.1.2)', Buffer.concat([header({ ar: 1 }), wireName('x.example'), u16(1), u16(1), optRR(Buffer.alloc(0), wireName('x.example'))])],
    ['OPT in the answer section (RFC 6891 §6.1.1)', Buffer.concat([header({ an: 1 }), wireName('x.example'), u16(1), u16(1), optRR()])],
    ['QTYPE OPT (RFC 6891 §6.1.1)', rawQuery('x.example', { type: 41 })],
    ['a name longer than 255 octets (RFC 1035 §3.1)', rawQuery(long)],
  ];

  // Nothing a reply could be built on (or a response, which is never answered).
  const unreadable: Array<[string, Buffer]> = [
    ['an empty datagram', Buffer.alloc(0)],
    ['5 octets', Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00])],
    ['11 octets', header().subarray(0, 11)],
    ['a header promising a question, and nothing else', header()],
    ['a label running past the end', Buffer.concat([header(), Buffer.from([20]), Buffer.from('short')])],
    ['a name with no type and class', Buffer.concat([header(), wireName('x.example')])],
    ['a label length of 64', Buffer.concat([header(), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0]), u16(1), u16(1)])],
    ['a label type 10 (0x80)', Buffer.concat([header(), Buffer.from([0x80, 0x61, 0]), u16(1), u16(1)])],
    ['a question name that points at itself', Buffer.concat([header(), Buffer.from([0xc0, 0x0c]), u16(1), u16(1)])],
    ['a response (QR=1) to nobody', Buffer.concat([header({ flags: QR | RD | 0x80, an: 1 }), wireName('x.example'), u16(1), u16(1), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1])])],
    ['a FORMERR response (QR=1)', Buffer.concat([header({ flags: QR | 1, qd: 0 })])],
  ];

  it('answers FORMERR (not silence) to queries it can read but not accept, with the client ID, over UDP and TCP', async () => {
    up.seen.length = 0;
    for (const [label, body] of readable) {
      const msg = Buffer.from(body);
      msg.writeUInt16BE(0x4e4e, 0);
      for (const tcp of [false, true]) {
        const raw = await sendRaw(pvdns.dns, msg, { tcp, timeoutMs: 2000 });
        expect(raw, `${label} tcp=${tcp}: no reply`).not.toBeNull();
        const r = raw!;
        expect(r.readUInt16BE(0), label).toBe(0x4e4e);
        expect(r.readUInt16BE(2) & QR, label).toBe(QR);
        expect(r.readUInt16BE(2) & 0xf, `${label} tcp=${tcp}`).toBe(1);
      }
    }
    expect(up.seen).toHaveLength(0);
  });

  it('drops datagrams it cannot read, and never answers a response (no reflection loops)', async () => {
    const results = await Promise.all(unreadable.map(([, msg]) => sendRaw(pvdns.dns, msg, { timeoutMs: 700 })));
    unreadable.forEach(([label], i) => expect(results[i], label).toBeNull());
    // ...while a valid query from the same kind of socket is answered.
    expect(await sendRaw(pvdns.dns, valid, { timeoutMs: 2000 })).not.toBeNull();
  });

  it('ignores a response sent over TCP and answers the query after it on the same connection', async () => {
    const response = unreadable.find(([l]) => l.startsWith('a response'))![1];
    const replies = await sendTcp(pvdns.dns, [response, rawQuery('after-response.example.net', { id: 0x5e5e })], 3000, 2);
    expect(replies).toHaveLength(1);
    const r = Packet.parse(replies[0]!);
    expect(r.header.id).toBe(0x5e5e);
    expectServed(r);
  });
});

describe('floods of malformed input', () => {
  it('survives thousands of malformed UDP datagrams, never answers a response, and serves normally after', async () => {
    const rnd = prng(0x9d5);
    const int = (n: number): number => Math.floor(rnd() * n);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
    const valid = rawQuery('fuzz.example.net', { id: 0x7777 });

    const datagrams: Buffer[] = [];
    for (let i = 0; i < 600; i++) datagrams.push(bytes(int(600))); // random octets
    for (let n = 0; n < valid.length; n++) datagrams.push(valid.subarray(0, n)); // every truncation
    for (let i = 0; i < 300; i++) datagrams.push(Buffer.concat([header({ id: int(65536), ar: int(3) }), bytes(int(80))])); // valid header, garbage after
    for (let i = 0; i < 100; i++) datagrams.push(header({ id: int(65536), qd: int(3), an: int(3), ns: int(3), ar: int(3) })); // header only
    for (let i = 0; i < 200; i++) {
      // responses: a real-looking one, and random octets with QR set
      const p = i % 2 ? Buffer.from(upstreamReply(valid)!) : Buffer.concat([header({ flags: QR | int(0x7fff) }), bytes(int(100))]);
      p.writeUInt16BE(int(65536), 0);
      datagrams.push(p);
    }
    for (let i = 0; i < 300; i++) {
      // oversized label lengths, somewhere in the name
      const labels = Array.from({ length: 1 + int(4) }, () => Buffer.concat([Buffer.from([1 + int(62)]), bytes(8)]));
      labels[int(labels.length)] = Buffer.concat([Buffer.from([64 + int(192)]), bytes(int(70))]);
      datagrams.push(Buffer.concat([header({ id: int(65536) }), ...labels, Buffer.from([0]), u16(1), u16(1)]));
    }
    for (let i = 0; i < 200; i++) {
      // compression loops: in the question, and in records after it
      const loop = Buffer.from([0xc0, 12 + int(4)]);
      datagrams.push(
        i % 2
          ? Buffer.concat([header({ id: int(65536) }), Buffer.from([1, 0x61]), loop, u16(1), u16(1)])
          : Buffer.concat([header({ id: int(65536), an: 1, ar: 1 }), wireName('loop.example'), u16(1), u16(1), Buffer.from([0xc0, 0x1e]), bytes(10 + int(10))]),
      );
    }
    for (let i = 0; i < 1500; i++) {
      // random mutations of a valid query
      const m = Buffer.from(valid);
      for (let k = 1 + int(4); k > 0; k--) m[int(m.length)] = int(256);
      if (rnd() < 0.1) datagrams.push(Buffer.concat([m, bytes(int(20))]));
      else datagrams.push(m);
    }
    expect(datagrams.length).toBeGreaterThan(3000);

    // Queries from one socket, responses (QR=1) from another: the second must hear nothing.
    const queries = await udpSocket();
    const responses = await udpSocket();
    const got: Buffer[] = [];
    let echoed = 0;
    queries.on('message', (m) => got.push(m));
    responses.on('message', () => echoed++);
    let sentAsResponse = 0;
    for (let i = 0; i < datagrams.length; i++) {
      const d = datagrams[i]!;
      const isResponse = d.length >= 3 && (d[2]! & 0x80) !== 0;
      if (isResponse) sentAsResponse++;
      (isResponse ? responses : queries).send(d, pvdns.dns.port, pvdns.dns.host);
      if (i % 100 === 99) await sleep(5); // let the loop breathe; drops under load are fine
    }
    await sleep(1500); // forwarded mutants get their answers (or time out upstream)

    expect(sentAsResponse).toBeGreaterThan(200);
    expect(echoed, 'pvdns answered a response').toBe(0);
    expect(got.length, 'no FORMERR/answers at all').toBeGreaterThan(0);
    for (const m of got) {
      expect(m.length).toBeGreaterThanOrEqual(12);
      expect(m.readUInt16BE(2) & QR).toBe(QR);
    }

    // Still alive and serving, over UDP and TCP.
    expectServed((await ask(pvdns.dns, 'after-udp-fuzz.example.net', 'A', { id: 0x1111 })).packet);
    expectServed((await ask(pvdns.dns, 'after-udp-fuzz-tcp.example.net', 'A', { tcp: true })).packet);
    const health = await fetch(`${pvdns.http}/healthz`);
    expect(health.status).toBe(200);
  });

  it('survives garbage on TCP connections and serves normally after, over UDP and TCP', async () => {
    const rnd = prng(0x7c9);
    const int = (n: number): number => Math.floor(rnd() * n);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));

    const sessions: Buffer[][] = [];
    for (let c = 0; c < 6; c++) {
      // random octets behind plausible length prefixes
      sessions.push(
        Array.from({ length: 5 + int(10) }, () => {
          const b = bytes(int(300));
          return Buffer.concat([u16(b.length), b]);
        }),
      );
    }
    sessions.push([Buffer.concat([u16(65535), bytes(100)])]); // a huge length, little data, then gone
    sessions.push([Buffer.concat([u16(65535), bytes(65535)])]); // a huge garbage message
    sessions.push([bytes(5000)]); // no framing at all
    sessions.push([Buffer.from([0x01])]); // half a length prefix
    sessions.push([u16(0), u16(0), u16(3), Buffer.from([1, 2, 3])]); // empty and tiny messages

    const run = (chunks: Buffer[]): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect({ host: pvdns.dns.host, port: pvdns.dns.port });
        sockets.add(s);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('data', () => undefined);
        s.on('connect', async () => {
          for (const c of chunks) {
            s.write(c);
            await sleep(int(20));
          }
          await sleep(100);
          s.destroy();
        });
      });
    await Promise.all(sessions.map(run));

    // Framing survives garbage frames: a query after them on the same connection is answered.
    const frames = [...sessions[0]!.map((f) => f.subarray(2)), Buffer.alloc(0), rawQuery('after-garbage.example.net', { id: 0x6f6f })];
    const replies = await sendTcp(pvdns.dns, frames, 3000, frames.length);
    const mine = replies.map((r) => Packet.parse(r)).find((p) => p.header.id === 0x6f6f && p.questions[0]?.name === 'after-garbage.example.net');
    expect(mine, 'the query after the garbage frames was not answered').toBeDefined();
    expectServed(mine!);

    expectServed((await ask(pvdns.dns, 'after-tcp-garbage.example.net', 'A')).packet);
    expectServed((await ask(pvdns.dns, 'after-tcp-garbage-tcp.example.net', 'A', { tcp: true })).packet);
  });
});
