// HttpsTransport (src/upstream/https.ts), the DoH carrier, against
// node:http2 servers on 127.0.17.x with certificates from a throwaway CA made
// with openssl: answers (ID 0 and the media type on the wire, padded),
// 100 queries multiplexed on one session and answered out of order, the TLS
// failures a user meets (wrong name, expired, unknown CA) with nothing sent,
// HTTP statuses, host names looked up through the PvD by TTL, a session lost
// mid-flight, GOAWAY and TLS resumption, the connect and query timeouts.

import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RCODE } from '../../src/dns/constants.js';
import { wireKey } from '../../src/dns/name.js';
import type { Exchange, ExchangeRequest, HostLookup } from '../../src/upstream/exchange.js';
import { HttpsTransport, MAX_OUTSTANDING } from '../../src/upstream/https.js';
import { parseServer, type UpstreamServer } from '../../src/upstream/server.js';
import { ServerStats } from '../../src/upstream/stats.js';
import { Trust } from '../../src/upstream/trust.js';
import { buildReply, encodeQuery, ipv4, parseQuery, TYPE } from '../chaos/wire.js';
import { testPki, type TestPki } from '../helpers/pki.js';

/** One request as the DoH server saw it. */
interface Seen {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** Which TLS connection (1, 2...) it came on. */
  connection: number;
}

type Responder = (body: Buffer, stream: http2.ServerHttp2Stream, seen: Seen) => void;

/** answerA answers a query with one A record, 192.0.2.N where N comes from the name's first label ("q7" → 7). */
function answerA(body: Buffer, stream: http2.ServerHttp2Stream): void {
  const q = parseQuery(body);
  const n = Number(/^q(\d+)/.exec(q.name)?.[1] ?? 1);
  const reply = buildReply(q, { answers: [{ owner: null, type: TYPE.A, ttl: 300, rdata: ipv4(`192.0.2.${n % 256}`) }] });
  if (stream.destroyed) return;
  stream.respond({ ':status': 200, 'content-type': 'application/dns-message', 'content-length': reply.length, 'cache-control': 'max-age=0' });
  stream.end(reply);
}

class DohServer {
  readonly seen: Seen[] = [];
  /** TCP connections accepted, TLS connections established, and of those resumed. */
  tcp = 0;
  connections = 0;
  resumed = 0;
  port = 0;
  respond: Responder = answerA;
  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(
    readonly host: string,
    pem: { key: string; cert: string },
  ) {
    this.server = http2.createSecureServer({ ...pem, allowHTTP1: false });
    this.server.on('connection', () => this.tcp++);
    this.server.on('secureConnection', (s) => {
      this.connections++;
      if (s.isSessionReused()) this.resumed++;
    });
    this.server.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
      s.on('error', () => {});
    });
    this.server.on('stream', (stream, headers) => {
      const conn = this.connections;
      const chunks: Buffer[] = [];
      stream.on('error', () => {});
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const seen = { headers, body: Buffer.concat(chunks), connection: conn };
        this.seen.push(seen);
        this.respond(seen.body, stream, seen);
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, this.host, resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** reset forgets what was seen and drops every session (the next query opens a new one). */
  reset(): void {
    this.seen.length = 0;
    this.tcp = this.connections = this.resumed = 0;
    this.respond = answerA;
    for (const s of this.sessions) s.destroy();
  }

  async stop(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function server(text: string): UpstreamServer {
  const s = parseServer(text, 'strict');
  if (typeof s === 'string') throw new Error(s);
  return s;
}

let nextId = 1;
function request(srv: UpstreamServer, name: string, opts: Partial<ExchangeRequest> = {}): ExchangeRequest {
  const id = nextId++ & 0xffff || 1;
  return {
    server: srv,
    message: encodeQuery(id, name, TYPE.A),
    expect: { id, nameKey: wireKey(name), qtype: TYPE.A, qclass: 1 },
    timeoutMs: 3000,
    sourceAddress: null,
    stats: null,
    lookup: null,
    ...opts,
  };
}

function ask(t: HttpsTransport, req: ExchangeRequest): Promise<Exchange> {
  return new Promise((resolve) => t.exchange(req, resolve));
}

/** The A record's last octet of an answer (answerA's N). */
function answered(ex: Exchange): number {
  if (!ex.ok) throw new Error(`no answer: ${ex.reason} ${ex.detail}`);
  return ex.answer.body[ex.answer.body.length - 1]!;
}

let pki: TestPki<'good' | 'expired' | 'stranger'>;
let trust: Trust;
let good: DohServer;
let expired: DohServer;
let stranger: DohServer;
let t: HttpsTransport;

beforeAll(async () => {
  // A leaf for dns.test and 127.0.17.1, the same expired, and the same from a CA nobody trusts.
  const leaf = { dns: ['dns.test'], ips: ['127.0.17.1'] };
  pki = await testPki({ good: leaf, expired: { ...leaf, expired: true }, stranger: { ...leaf, unknownCa: true } });
  trust = new Trust();
  trust.setExtra(pki.caPem);
  good = await new DohServer('127.0.17.1', pki.leaves.good.pem).start();
  expired = await new DohServer('127.0.17.2', pki.leaves.expired.pem).start();
  stranger = await new DohServer('127.0.17.3', pki.leaves.stranger.pem).start();
});

afterAll(async () => {
  await Promise.all([good?.stop(), expired?.stop(), stranger?.stop()]);
  pki?.remove();
});

afterEach(() => {
  t?.close();
  good.reset();
  vi.restoreAllMocks();
});

describe('HttpsTransport', () => {
  it('answers over HTTP/2: a padded POST of application/dns-message with ID 0, the name in :authority and SNI', async () => {
    t = new HttpsTransport(trust);
    const stats = new ServerStats();
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    const req = request(srv, 'q7.example', { stats });
    const id = req.expect.id;
    const ex = await ask(t, req);
    expect(answered(ex)).toBe(7);
    // The caller's query keeps its ID: an opportunistic fallback sends it in the clear.
    expect(req.expect.id).toBe(id);
    expect(req.message.readUInt16BE(0)).toBe(id);
    expect(ex.ok && ex.answer.an).toBe(1);
    expect(good.seen).toHaveLength(1);
    const seen = good.seen[0]!;
    expect(seen.headers[':method']).toBe('POST');
    expect(seen.headers[':path']).toBe('/dns-query');
    expect(seen.headers[':authority']).toBe(`dns.test:${good.port}`);
    expect(seen.headers['content-type']).toBe('application/dns-message');
    expect(seen.headers.accept).toBe('application/dns-message');
    expect(seen.body.readUInt16BE(0)).toBe(0); // RFC 8484 §4.1
    expect(seen.body.length % 128).toBe(0); // RFC 8467 §4.1
    expect(parseQuery(seen.body).name).toBe('q7.example');
    expect(stats.via).toBe('https');
    expect(stats.authenticated).toBe(true);
    expect(stats.handshakes.get('ok')).toBe(1);
  });

  it('authenticates a server written by address alone against the IP in its certificate', async () => {
    t = new HttpsTransport(trust);
    const ex = await ask(t, request(server(`https://127.0.17.1:${good.port}/dns-query`), 'q9.example'));
    expect(answered(ex)).toBe(9);
    expect(good.seen[0]!.headers[':authority']).toBe(`127.0.17.1:${good.port}`);
  });

  it('multiplexes 100 concurrent queries on one session, answered out of order', async () => {
    t = new HttpsTransport(trust);
    const held: Array<() => void> = [];
    good.respond = (body, stream) => {
      held.push(() => answerA(body, stream));
      // All in, then answered last first.
      if (held.length === 100) for (const f of held.reverse()) f();
    };
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => ask(t, request(srv, `q${i}.example`))));
    expect(results.map(answered)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(good.tcp).toBe(1);
    expect(good.connections).toBe(1);
    expect(new Set(good.seen.map((s) => s.connection))).toEqual(new Set([1]));
  });

  it.each([
    ['a name the certificate does not cover', () => good, '#wrong.test', 'tls certificate name mismatch: expected wrong.test'],
    ['an expired certificate', () => expired, '#dns.test', 'tls certificate has expired'],
    ['a certificate from an unknown CA', () => stranger, '#dns.test', 'tls certificate signed by an unknown authority'],
  ])('fails %s as tls, sending nothing', async (_what, which, name, detail) => {
    t = new HttpsTransport(trust);
    const doh = which();
    const stats = new ServerStats();
    const ex = await ask(t, request(server(`https://${doh.host}:${doh.port}/dns-query${name}`), 'q1.example', { stats }));
    // The shared wording (tls-failure.ts) may say more after it: what the certificate covers, where to add a CA.
    expect(ex).toMatchObject({ ok: false, reason: 'tls', detail: expect.stringMatching(new RegExp(`^${detail}( \\(|$)`)) });
    expect(doh.seen).toHaveLength(0);
    expect(stats.handshakes.get('failed')).toBe(1);
    expect(stats.encryptionError).toBe((ex as { detail: string }).detail);
  });

  it('fails a 404 as http, naming the status', async () => {
    t = new HttpsTransport(trust);
    good.respond = (_body, stream) => {
      stream.respond({ ':status': 404, 'content-type': 'text/plain' });
      stream.end('no such path');
    };
    const ex = await ask(t, request(server(`https://127.0.17.1:${good.port}/wrong#dns.test`), 'q1.example'));
    expect(ex).toEqual({ ok: false, reason: 'http', detail: 'https status 404 Not Found' });
  });

  it('answers a 502 with SERVFAIL whose EDE names the status', async () => {
    t = new HttpsTransport(trust);
    good.respond = (_body, stream) => {
      stream.respond({ ':status': 502 });
      stream.end();
    };
    const ex = await ask(t, request(server(`https://127.0.17.1:${good.port}/dns-query#dns.test`), 'q1.example'));
    expect(ex.ok).toBe(true);
    if (!ex.ok) return;
    expect(ex.answer.rcode).toBe(RCODE.SERVFAIL);
    expect(ex.answer.ede).toEqual({ code: 23, text: 'https status 502' });
  });

  it('fails a 200 of another media type as http, naming it', async () => {
    t = new HttpsTransport(trust);
    good.respond = (_body, stream) => {
      stream.respond({ ':status': 200, 'content-type': 'text/html; charset=utf-8' });
      stream.end('<html></html>');
    };
    const ex = await ask(t, request(server(`https://127.0.17.1:${good.port}/dns-query#dns.test`), 'q1.example'));
    expect(ex).toEqual({ ok: false, reason: 'http', detail: 'https response is text/html, not application/dns-message' });
  });

  it('cuts a body over 65535 octets and fails it', async () => {
    t = new HttpsTransport(trust);
    good.respond = (_body, stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/dns-message' });
      stream.end(Buffer.alloc(70_000));
    };
    const ex = await ask(t, request(server(`https://127.0.17.1:${good.port}/dns-query#dns.test`), 'q1.example'));
    expect(ex).toEqual({ ok: false, reason: 'http', detail: 'https response over 65535 bytes' });
  });

  it('resolves a host name through req.lookup, one lookup for queries that wait on it, again after its TTL', async () => {
    t = new HttpsTransport(trust);
    let calls = 0;
    const lookup: HostLookup = (name, done) => {
      calls++;
      expect(name).toBe('dns.test');
      setTimeout(() => done({ ok: true, addresses: [{ address: '127.0.17.1', family: 4 }], ttlS: 1 }), 30);
    };
    const srv = server(`https://dns.test:${good.port}/dns-query`);
    const first = await Promise.all([1, 2, 3].map((i) => ask(t, request(srv, `q${i}.example`, { lookup }))));
    expect(first.map(answered)).toEqual([1, 2, 3]);
    expect(calls).toBe(1);
    expect(good.seen[0]!.headers[':authority']).toBe(`dns.test:${good.port}`);
    // Within the TTL (1 s, raised to the 5 s floor): no lookup.
    const now = performance.now.bind(performance);
    let shift = 4000;
    vi.spyOn(performance, 'now').mockImplementation(() => now() + shift);
    expect(answered(await ask(t, request(srv, 'q4.example', { lookup })))).toBe(4);
    expect(calls).toBe(1);
    shift = 6000;
    expect(answered(await ask(t, request(srv, 'q5.example', { lookup })))).toBe(5);
    expect(calls).toBe(2);
  });

  it('fails queries as network when the host name cannot be resolved', async () => {
    t = new HttpsTransport(trust);
    const srv = server(`https://dns.test:${good.port}/dns-query`);
    const lookup: HostLookup = (_name, done) => done({ ok: false, detail: 'dns.test A: SERVFAIL' });
    expect(await ask(t, request(srv, 'q1.example', { lookup }))).toEqual({ ok: false, reason: 'network', detail: 'cannot resolve dns.test: dns.test A: SERVFAIL' });
    const none = await ask(t, request(srv, 'q1.example', { lookup: null }));
    expect(none).toMatchObject({ ok: false, reason: 'network', detail: expect.stringMatching(/^cannot resolve dns.test: /) });
    expect(good.tcp).toBe(0);
  });

  it('asks once more on a new session when the session dies mid-flight, and only once', async () => {
    t = new HttpsTransport(trust);
    good.respond = (body, stream, seen) => {
      if (seen.connection === 1) stream.session?.socket.destroy();
      else answerA(body, stream);
    };
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    expect(answered(await ask(t, request(srv, 'q3.example')))).toBe(3);
    expect(good.seen.map((s) => s.connection)).toEqual([1, 2]);
    expect(good.connections).toBe(2);

    good.respond = (_body, stream) => stream.session?.socket.destroy();
    good.seen.length = 0;
    const ex = await ask(t, request(srv, 'q4.example'));
    expect(ex).toMatchObject({ ok: false, reason: 'closed' });
    expect(good.seen).toHaveLength(2);
  });

  it('opens a new session after GOAWAY, resuming the TLS session', async () => {
    t = new HttpsTransport(trust);
    const stats = new ServerStats();
    good.respond = (body, stream) => {
      answerA(body, stream);
      stream.session?.close(); // GOAWAY once this stream is done
    };
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    expect(answered(await ask(t, request(srv, 'q1.example', { stats })))).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(answered(await ask(t, request(srv, 'q2.example', { stats })))).toBe(2);
    expect(good.connections).toBe(2);
    expect(good.resumed).toBe(1);
    expect(stats.handshakes.get('ok')).toBe(1);
    expect(stats.handshakes.get('resumed')).toBe(1);
  });

  it('verifies afresh once the CA is taken out of the trust: no ticket resumed, no open session reused', async () => {
    const own = new Trust();
    own.setExtra(pki.caPem);
    t = new HttpsTransport(own);
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    expect(answered(await ask(t, request(srv, 'q1.example')))).toBe(1);
    own.setExtra(null); // tls.caFile reloaded without the CA
    const ex = await ask(t, request(srv, 'q2.example'));
    expect(ex).toMatchObject({ ok: false, reason: 'tls', detail: expect.stringContaining('unknown authority') });
    expect(good.seen).toHaveLength(1);
  });

  it('fails a connect that does not finish in time as network (not timeout), and a slow answer as timeout', async () => {
    t = new HttpsTransport(trust);
    // Accepts TCP, never speaks TLS.
    const socks = new Set<net.Socket>();
    const mute = net.createServer((s) => socks.add(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.17.4', r));
    const port = (mute.address() as net.AddressInfo).port;
    try {
      const ex = await ask(t, request(server(`https://127.0.17.4:${port}/dns-query#dns.test`), 'q1.example', { timeoutMs: 300 }));
      expect(ex).toEqual({ ok: false, reason: 'network', detail: `https connect to 127.0.17.4:${port} timed out` });
    } finally {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
    good.respond = () => {};
    const slow = await ask(t, request(server(`https://127.0.17.1:${good.port}/dns-query#dns.test`), 'q1.example', { timeoutMs: 300 }));
    expect(slow).toMatchObject({ ok: false, reason: 'timeout' });
  });

  it.each([
    ['no ALPN', undefined],
    ['HTTP/1.1 only', ['http/1.1']],
  ])('fails a server with %s as tls: no HTTP/2', async (_what, alpn) => {
    t = new HttpsTransport(trust);
    const h1 = tls.createServer({ ...pki.leaves.good.pem, ...(alpn ? { ALPNProtocols: alpn } : {}) }, (s) => s.on('error', () => {}));
    h1.on('tlsClientError', () => {});
    await new Promise<void>((r) => h1.listen(0, '127.0.17.1', r));
    const port = (h1.address() as net.AddressInfo).port;
    try {
      const ex = await ask(t, request(server(`https://127.0.17.1:${port}/dns-query#dns.test`), 'q1.example'));
      expect(ex).toEqual({ ok: false, reason: 'tls', detail: 'https server did not offer HTTP/2' });
    } finally {
      await new Promise<void>((r) => h1.close(() => r()));
    }
  });

  it('reports a refused connection as unreachable', async () => {
    t = new HttpsTransport(trust);
    const ex = await ask(t, request(server('https://127.0.17.5:1/dns-query#dns.test'), 'q1.example'));
    expect(ex).toMatchObject({ ok: false, reason: 'unreachable' });
  });

  it(`fails at once beyond ${MAX_OUTSTANDING} queries outstanding`, async () => {
    t = new HttpsTransport(trust);
    good.respond = () => {};
    const srv = server(`https://127.0.17.1:${good.port}/dns-query#dns.test`);
    const held = Array.from({ length: MAX_OUTSTANDING }, (_, i) => ask(t, request(srv, `q${i}.example`, { timeoutMs: 2000 })));
    const ex = await ask(t, request(srv, 'over.example'));
    expect(ex).toEqual({ ok: false, reason: 'timeout', detail: `https: ${MAX_OUTSTANDING} queries already outstanding to this server` });
    good.reset(); // drops the session: the held ones are asked once more, then fail or time out
    await Promise.all(held);
  });
});
