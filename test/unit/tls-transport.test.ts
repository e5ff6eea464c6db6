// The DNS-over-TLS carrier (RFC 7858, RFC 8310 strict profile, RFC 7766
// pipelining) against node:tls servers on 127.0.16.x speaking DNS framing,
// with certificates from a throwaway CA made by openssl: answers, 100
// pipelined queries answered in reverse on one connection, each way a
// certificate can fail (and that the server then saw no DNS at all),
// authentication by address, opportunistic use without authentication, a
// connection killed mid-flight, session resumption, padding, handshake
// counters and the memory bounds.

import net from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TYPE } from '../../src/dns/constants.js';
import { encodeName, skipName } from '../../src/dns/name.js';
import { encodeQuery, PARSE_OK, parseQuery, type WireQuery } from '../../src/dns/query.js';
import type { Exchange, ExchangeRequest } from '../../src/upstream/exchange.js';
import type { UpstreamServer } from '../../src/upstream/server.js';
import { ServerStats } from '../../src/upstream/stats.js';
import { MAX_CONNECTIONS, SPREAD_AT, TlsTransport, type TlsOptions } from '../../src/upstream/tls.js';
import { Trust } from '../../src/upstream/trust.js';
import { testPki, type TestPki } from '../helpers/pki.js';

const ADDR = '127.0.16.1';
const SOURCE = '127.0.16.2';

// ---------------------------------------------------------------------------
// Certificates

/** The leaves: for dns.test and ADDR; for dns.test only; expired in 2020; signed by a CA nobody trusts. */
type CertName = 'good' | 'nameonly' | 'expired' | 'stranger';
let pki: TestPki<CertName>;

beforeAll(async () => {
  pki = await testPki({
    good: { dns: ['dns.test'], ips: [ADDR] },
    nameonly: { dns: ['dns.test'] },
    expired: { dns: ['dns.test'], ips: [ADDR], expired: true },
    stranger: { dns: ['dns.test'], ips: [ADDR], unknownCa: true },
  });
});

afterAll(() => pki?.remove());

// ---------------------------------------------------------------------------
// A DNS-over-TLS server

interface Received {
  conn: number;
  msg: Buffer;
  q: WireQuery;
}

type Reply = (msg: Buffer) => void;

interface DotServer {
  port: number;
  /** Every DNS message received, in order, with the connection it came on (0, 1, ...). */
  received: Received[];
  /** Octets of application data received, framing included: 0 means no query ever reached it. */
  bytes: number;
  connections: number;
  /** Remote addresses of the TCP connections, including those whose handshake failed. */
  peers: string[];
  resumed: boolean[];
  sockets: tls.TLSSocket[];
  close(): Promise<void>;
}

/** answerFor builds a reply to `msg`: its ID and question, one A record, no OPT. */
function answerFor(msg: Buffer, address = '192.0.2.1'): Buffer {
  const qEnd = skipName(msg, 12, msg.length) + 4;
  const head = Buffer.from(msg.subarray(0, qEnd));
  head.writeUInt16BE(0x8180, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(1, 6);
  head.writeUInt32BE(0, 8);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(TYPE.A, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(60, 6);
  rr.writeUInt16BE(4, 10);
  Buffer.from(address.split('.').map(Number)).copy(rr, 12);
  return Buffer.concat([head, rr]);
}

function frame(msg: Buffer): Buffer {
  const b = Buffer.alloc(2 + msg.length);
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

const servers: DotServer[] = [];

/**
 * dotServer listens on ADDR with certificate `name`; `handle` decides what to
 * do with each message (default: answer at once).
 */
async function dotServer(
  name: CertName,
  handle: (r: Received, reply: Reply, socket: tls.TLSSocket, s: DotServer) => void = (r, reply) => reply(answerFor(r.msg)),
  extra: tls.TlsOptions = {},
): Promise<DotServer> {
  const s: DotServer = {
    port: 0,
    received: [],
    bytes: 0,
    connections: 0,
    peers: [],
    resumed: [],
    sockets: [],
    close: async () => {
      for (const k of s.sockets) k.destroy();
      await new Promise<void>((res) => srv.close(() => res()));
    },
  };
  const srv = tls.createServer({ ...pki.leaves[name].pem, ...extra }, (socket) => {
    const conn = s.connections++;
    s.resumed.push(socket.isSessionReused());
    s.sockets.push(socket);
    let buf = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      s.bytes += chunk.length;
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const q = {} as WireQuery;
        expect(parseQuery(msg, q)).toBe(PARSE_OK);
        const r = { conn, msg: Buffer.from(msg), q };
        s.received.push(r);
        handle(r, (m) => socket.writable && socket.write(frame(m)), socket, s);
      }
    });
  });
  srv.on('connection', (c: net.Socket) => s.peers.push(c.remoteAddress ?? ''));
  srv.on('tlsClientError', () => {});
  await new Promise<void>((res) => srv.listen(0, ADDR, () => res()));
  s.port = (srv.address() as net.AddressInfo).port;
  servers.push(s);
  return s;
}

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const t of transports.splice(0)) t.close();
});

// ---------------------------------------------------------------------------
// The client side

const transports: TlsTransport[] = [];

function transport(opts: TlsOptions = {}, ca: string | null = pki.caPem): TlsTransport {
  const trust = new Trust();
  trust.setExtra(ca);
  const t = new TlsTransport(trust, opts);
  transports.push(t);
  return t;
}

function dot(port: number, authName: string | null, authenticate = true): UpstreamServer {
  return {
    host: ADDR,
    port,
    family: 4,
    label: `tls://${ADDR}:${port}${authName ? `#${authName}` : ''}`,
    transport: 'tls',
    authName,
    authenticate,
    path: null,
    hostName: null,
    fallback: authenticate ? null : { host: ADDR, port: 53, family: 4, label: `${ADDR}:53` },
  };
}

let nextId = 1;

function request(server: UpstreamServer, name: string, extra: Partial<ExchangeRequest> = {}): ExchangeRequest {
  const n = encodeName(name);
  const question = Buffer.alloc(n.length + 4);
  n.copy(question);
  question.writeUInt16BE(TYPE.A, n.length);
  question.writeUInt16BE(1, n.length + 2);
  const id = nextId++ & 0xffff;
  const message = encodeQuery(id, question, false, false);
  const q = {} as WireQuery;
  parseQuery(message, q);
  return {
    server,
    message,
    expect: { id, nameKey: q.nameKey, qtype: q.qtype, qclass: q.qclass },
    timeoutMs: 3000,
    sourceAddress: null,
    stats: null,
    lookup: null,
    ...extra,
  };
}

function ask(t: TlsTransport, req: ExchangeRequest): Promise<Exchange> {
  return new Promise((res) => t.exchange(req, res));
}

function answered(ex: Exchange): string {
  if (!ex.ok) return `failed ${ex.reason}: ${ex.detail}`;
  const b = ex.answer.body;
  return `${b[b.length - 4]}.${b[b.length - 3]}.${b[b.length - 2]}.${b[b.length - 1]}`;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  for (const end = performance.now() + ms; !cond(); ) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((res) => setTimeout(res, 10));
  }
}

// ---------------------------------------------------------------------------

describe('TlsTransport', () => {
  it('answers over an authenticated connection, padded, from the source address, and counts the handshake', async () => {
    const s = await dotServer('good');
    const t = transport();
    const stats = new ServerStats();
    const server = dot(s.port, 'dns.test');
    const ex = await ask(t, request(server, 'www.example.com', { stats, sourceAddress: SOURCE }));
    expect(answered(ex)).toBe('192.0.2.1');
    expect(s.received).toHaveLength(1);
    // RFC 8467 §4.1: the query arrived padded to a 128-octet block.
    expect(s.received[0]!.msg.length).toBe(128);
    expect(s.received[0]!.q.nameKey).toBe(request(server, 'www.example.com').expect.nameKey);
    expect(s.peers).toEqual([SOURCE]);
    expect(stats.handshakes.get('ok')).toBe(1);
    expect(stats.via).toBe('tls');
    expect(stats.authenticated).toBe(true);
    expect(stats.encryptionError).toBeNull();
  });

  it('pipelines 100 queries on one connection, answered in reverse order, IDs unique on it', async () => {
    const s = await dotServer('good', (_r, _reply, socket, srv) => {
      if (srv.received.length < 100) return;
      for (const r of [...srv.received].reverse()) socket.write(frame(answerFor(r.msg, `10.0.${r.q.nameKey.length}.${Number(/q(\d+)/.exec(r.msg.toString('latin1', 12))![1])}`)));
    });
    // Generous time: on a loaded machine (the whole suite at once) the one handshake must not be what fails.
    const t = transport({ connectTimeoutMs: 10_000 });
    const stats = new ServerStats();
    const server = dot(s.port, 'dns.test');
    // Every query starts with the same ID: the transport must make them unique on the connection.
    const reqs = Array.from({ length: 100 }, (_, i) => {
      const r = request(server, `q${i}.example`, { stats, timeoutMs: 20_000 });
      r.message.writeUInt16BE(7, 0);
      r.expect.id = 7;
      return r;
    });
    const results = await Promise.all(reqs.map((r) => ask(t, r)));
    results.forEach((ex, i) => expect(answered(ex)).toBe(`10.0.${reqs[i]!.expect.nameKey.length}.${i}`));
    expect(s.connections).toBe(1);
    expect(new Set(s.received.map((r) => r.msg.readUInt16BE(0))).size).toBe(100);
    for (const r of s.received) expect(r.msg.length % 128).toBe(0);
    expect(stats.handshakes.get('ok')).toBe(1);
  });

  it(`opens another connection only while ${SPREAD_AT} queries wait on every open one, at most ${MAX_CONNECTIONS}`, async () => {
    // The server holds every answer until told: outstanding queries pile up as behind a slow upstream.
    const held: Array<() => void> = [];
    const s = await dotServer('good', (r, _reply, socket) => void held.push(() => socket.write(frame(answerFor(r.msg)))));
    const t = transport();
    const server = dot(s.port, 'dns.test');
    // One query first: the connection is up before the burst.
    const first = ask(t, request(server, 'warm.example'));
    await until(() => held.length === 1);
    held.shift()!();
    expect(answered(await first)).toBe('192.0.2.1');
    // A burst of 300: the first connection takes SPREAD_AT, then others open, each taking its share.
    const burst = Array.from({ length: 300 }, (_, i) => ask(t, request(server, `b${i}.example`)));
    await until(() => held.length === 300);
    expect(s.connections).toBeGreaterThan(1);
    expect(s.connections).toBeLessThanOrEqual(MAX_CONNECTIONS);
    for (const release of held.splice(0)) release();
    for (const ex of await Promise.all(burst)) expect(answered(ex)).toBe('192.0.2.1');
    // Quiet again: a query goes to an open connection, none is opened.
    const before = s.connections;
    const after = ask(t, request(server, 'quiet.example'));
    await until(() => held.length === 1);
    held.shift()!();
    await after;
    expect(s.connections).toBe(before);
  });

  describe('a certificate that fails authentication: reason tls, one line naming what was expected, no DNS sent', () => {
    const cases: Array<[string, CertName, string | null, string]> = [
      ['a name it does not cover', 'good', 'dns.example.net', `tls certificate name mismatch: expected dns.example.net (certificate is for dns.test, ${ADDR})`],
      ['expired', 'expired', 'dns.test', 'tls certificate has expired'],
      ['from an unknown CA', 'stranger', 'dns.test', 'tls certificate signed by an unknown authority (add its CA to tls.caFile)'],
      ['without the address, authenticated by address', 'nameonly', null, `tls certificate name mismatch: expected ${ADDR} (certificate is for dns.test)`],
    ];
    for (const [what, cert, authName, detail] of cases) {
      it(what, async () => {
        const s = await dotServer(cert);
        const t = transport();
        const stats = new ServerStats();
        const server = dot(s.port, authName);
        const all = await Promise.all([1, 2, 3].map((i) => ask(t, request(server, `leak${i}.example`, { stats }))));
        for (const ex of all) expect(ex).toMatchObject({ ok: false, reason: 'tls', detail });
        expect(detail).not.toContain('\n');
        expect(s.connections + s.peers.length).toBeGreaterThan(0); // it did get as far as the handshake
        expect(s.bytes).toBe(0);
        expect(s.received).toHaveLength(0);
        expect(stats.handshakes.get('failed')).toBe(1);
        expect(stats.handshakes.get('ok')).toBeUndefined();
        expect(stats.encryptionError).toBe(detail);
      });
    }
  });

  it('authenticates a server by its address when it has no name (IP SAN), without SNI', async () => {
    let sni: string | false | undefined = undefined;
    const s = await dotServer('good', (r, reply, socket) => {
      sni = (socket as tls.TLSSocket & { servername: string | false }).servername;
      reply(answerFor(r.msg));
    });
    const t = transport();
    const ex = await ask(t, request(dot(s.port, null), 'by-address.example'));
    expect(answered(ex)).toBe('192.0.2.1');
    expect(sni).toBe(false); // RFC 6066 §3: no IP literal in SNI
  });

  it('sends the name as SNI and offers ALPN "dot"', async () => {
    let seen: [unknown, unknown] = [null, null];
    const s = await dotServer(
      'good',
      (r, reply, socket) => {
        seen = [(socket as tls.TLSSocket & { servername: string }).servername, socket.alpnProtocol];
        reply(answerFor(r.msg));
      },
      { ALPNProtocols: ['dot'] },
    );
    expect(answered(await ask(transport(), request(dot(s.port, 'dns.test'), 'sni.example')))).toBe('192.0.2.1');
    expect(seen).toEqual(['dns.test', 'dot']);
  });

  it('asks again without ALPN a server that refuses "dot"', async () => {
    const s = await dotServer('good', undefined, { ALPNProtocols: ['h2'] });
    expect(answered(await ask(transport(), request(dot(s.port, 'dns.test'), 'alpn.example')))).toBe('192.0.2.1');
  });

  it('opportunistic (not authenticated) accepts a certificate from an unknown CA, still encrypted', async () => {
    const s = await dotServer('stranger');
    const t = transport({}, null);
    const stats = new ServerStats();
    const ex = await ask(t, request(dot(s.port, null, false), 'opportunistic.example', { stats }));
    expect(answered(ex)).toBe('192.0.2.1');
    expect(stats.authenticated).toBe(false);
    expect(stats.via).toBe('tls');
    expect(stats.handshakes.get('ok')).toBe(1);
  });

  it('asks the queries outstanding on a connection the server kills once more on a new one', async () => {
    // The first connection takes 5 queries and dies without answering; the second answers.
    const s = await dotServer('good', (r, reply, socket, srv) => {
      if (r.conn > 0) return reply(answerFor(r.msg));
      if (srv.received.length === 5) socket.destroy();
    });
    const t = transport();
    const server = dot(s.port, 'dns.test');
    const results = await Promise.all([0, 1, 2, 3, 4].map((i) => ask(t, request(server, `again${i}.example`))));
    for (const ex of results) expect(answered(ex)).toBe('192.0.2.1');
    expect(s.connections).toBe(2);
    const byName = new Map<string, number[]>();
    for (const r of s.received) byName.set(r.q.nameKey, [...(byName.get(r.q.nameKey) ?? []), r.conn]);
    expect([...byName.values()]).toEqual(Array(5).fill([0, 1]));
  });

  it('asks only once more: a query lost on two connections fails as closed', async () => {
    const s = await dotServer('good', (_r, _reply, socket) => socket.destroy());
    const t = transport();
    const ex = await ask(t, request(dot(s.port, 'dns.test'), 'twice.example'));
    expect(ex).toMatchObject({ ok: false, reason: 'closed' });
    expect(s.received).toHaveLength(2);
    expect(s.connections).toBe(2);
  });

  it('resumes the TLS session on the next connection after an idle close', async () => {
    const s = await dotServer('good');
    const t = transport({ idleMs: 150 });
    const stats = new ServerStats();
    const server = dot(s.port, 'dns.test');
    expect(answered(await ask(t, request(server, 'first.example', { stats })))).toBe('192.0.2.1');
    await until(() => s.sockets[0]!.closed); // the idle close
    expect(answered(await ask(t, request(server, 'second.example', { stats })))).toBe('192.0.2.1');
    expect(s.connections).toBe(2);
    expect(s.resumed).toEqual([false, true]);
    expect(Object.fromEntries(stats.handshakes)).toEqual({ ok: 1, resumed: 1 });
  });

  it('verifies afresh once the CA is taken out of the trust: no ticket resumed, no open connection reused', async () => {
    const s = await dotServer('good');
    const t = transport();
    const server = dot(s.port, 'dns.test');
    expect(answered(await ask(t, request(server, 'first.example')))).toBe('192.0.2.1');
    t.trust.setExtra(null); // tls.caFile reloaded without the CA
    const ex = await ask(t, request(server, 'second.example'));
    expect(ex).toMatchObject({ ok: false, reason: 'tls', detail: expect.stringContaining('unknown authority') });
    expect(s.received.map((r) => r.q.nameKey.length > 0 && r.msg.toString('latin1').includes('second'))).not.toContain(true);
  });

  it('refused: unreachable; a listener that never completes the handshake: network, within the connect timeout', async () => {
    const t = transport();
    // A port nobody listens on (bound and closed at once).
    const probe = net.createServer();
    await new Promise<void>((res) => probe.listen(0, ADDR, () => res()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((res) => probe.close(() => res()));
    expect(await ask(t, request(dot(port, 'dns.test'), 'refused.example'))).toMatchObject({ ok: false, reason: 'unreachable' });

    const silent = net.createServer((c) => c.on('error', () => {}));
    const held: net.Socket[] = [];
    silent.on('connection', (c) => held.push(c));
    await new Promise<void>((res) => silent.listen(0, ADDR, () => res()));
    const sport = (silent.address() as net.AddressInfo).port;
    const stats = new ServerStats();
    const started = performance.now();
    // Two thirds of a 600 ms budget: 400 ms.
    const ex = await ask(t, request(dot(sport, 'dns.test'), 'silent.example', { timeoutMs: 600, stats }));
    const took = performance.now() - started;
    expect(ex).toStrictEqual({ ok: false, reason: 'network', detail: `tls connect to ${ADDR}:${sport} timed out` });
    // The connect timer, not the 2 s cap (nor the query's deadline: that timer is armed only once secure).
    expect(took).toBeGreaterThan(350);
    expect(took).toBeLessThan(1500);
    expect(stats.handshakes.get('failed')).toBe(1);
    for (const c of held) c.destroy();
    await new Promise<void>((res) => silent.close(() => res()));
  });

  it('a server that does not speak TLS: a tls handshake failure with OpenSSL\'s reason', async () => {
    const held: net.Socket[] = [];
    const plain = net.createServer((c) => {
      held.push(c);
      c.on('error', () => {});
      c.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((res) => plain.listen(0, ADDR, () => res()));
    const port = (plain.address() as net.AddressInfo).port;
    const ex = await ask(transport(), request(dot(port, 'dns.test'), 'plain.example'));
    expect(ex.ok).toBe(false);
    if (!ex.ok) {
      expect(ex.reason).toBe('tls');
      expect(ex.detail).toMatch(/^tls handshake failed: \S/);
      expect(ex.detail).not.toContain('\n');
    }
    for (const c of held) c.destroy();
    await new Promise<void>((res) => plain.close(() => res()));
  });

  it('fails at once beyond the queries one connection may have outstanding', async () => {
    const s = await dotServer('good', () => {}); // never answers
    const t = transport({ maxOutstanding: 5 });
    const server = dot(s.port, 'dns.test');
    const waiting = [0, 1, 2, 3, 4].map((i) => ask(t, request(server, `held${i}.example`, { timeoutMs: 500 })));
    expect(await ask(t, request(server, 'one-too-many.example'))).toStrictEqual({ ok: false, reason: 'timeout', detail: 'too many queries outstanding' });
    for (const ex of await Promise.all(waiting)) expect(ex).toMatchObject({ ok: false, reason: 'timeout' });
  });

  it('reads messages split across records and several in one, and ignores a forged reply', async () => {
    const s = await dotServer('good', (r, _reply, socket) => {
      const real = frame(answerFor(r.msg, '192.0.2.9'));
      const forged = answerFor(r.msg, '6.6.6.6');
      forged[12 + 1] ^= 0x20; // another question name (case aside: a different letter)
      forged[13] = 'z'.charCodeAt(0);
      const both = Buffer.concat([frame(forged), real]);
      // One octet at a time.
      let i = 0;
      const drip = () => {
        if (i < both.length && socket.writable) {
          socket.write(both.subarray(i, i + 1));
          i++;
          setImmediate(drip);
        }
      };
      drip();
    });
    const ex = await ask(transport(), request(dot(s.port, 'dns.test'), 'split.example'));
    expect(answered(ex)).toBe('192.0.2.9');
    expect(ex.ignored).toBe(1);
  });
});
