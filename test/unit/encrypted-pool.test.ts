// The pool and ServerTransports with scripted carriers: what strict,
// opportunistic and off do with an encrypted server's failures, that a stream
// try is not sent again on its own connection, and that a DoH host name is
// resolved through the PvD's other servers only.

import { describe, expect, it } from 'vitest';
import type { Answer } from '../../src/dns/answer.js';
import { RCODE, TYPE } from '../../src/dns/constants.js';
import type { Exchange, ExchangeDone, ExchangeRequest } from '../../src/upstream/exchange.js';
import { UpstreamPool } from '../../src/upstream/pool.js';
import { parseServer, type Encryption, type UpstreamServer } from '../../src/upstream/server.js';
import { RETRY_ENCRYPTION_MS, ServerTransports, type Carrier } from '../../src/upstream/transports.js';
import { answerTo, upstreamQuestion } from '../helpers/scripted-upstream.js';

/** A carrier that records what it was given and answers as `script` says (null: never). */
class Scripted implements Carrier {
  readonly seen: ExchangeRequest[] = [];
  constructor(private readonly script: (req: ExchangeRequest) => Exchange | null) {}
  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.seen.push(req);
    const r = this.script(req);
    if (r !== null) queueMicrotask(() => done(r));
  }
  close(): void {}
}

function servers(mode: Encryption, ...texts: string[]): UpstreamServer[] {
  return texts.map((t) => {
    const r = parseServer(t, mode);
    if (typeof r === 'string') throw new Error(r);
    return r;
  });
}

function pool(list: UpstreamServer[], carriers: { udp?: Carrier; tls?: Carrier; https?: Carrier }, clock = () => performance.now()): UpstreamPool {
  const none = new Scripted(() => null);
  const t = new ServerTransports({ udp: carriers.udp ?? none, tcp: none, tls: carriers.tls ?? none, https: carriers.https ?? none }, clock);
  return new UpstreamPool('corp', 'corp', list, { timeoutMs: 100, attempts: 3, queryTimeoutMs: 400, sourceAddress: null, probe: { initialMs: 10_000, maxMs: 10_000 } }, t, clock);
}

const tlsFailure: Exchange = { ok: false, reason: 'tls', detail: 'tls certificate name mismatch: expected dns.example.net' };

describe('strict', () => {
  it('a TLS failure is a server failure: SERVFAIL with an EDE naming the PvD and the reason, and nothing in the clear', async () => {
    const udp = new Scripted(answerTo);
    const tls = new Scripted(() => tlsFailure);
    const p = pool(servers('strict', 'tls://192.0.2.53#dns.example.net'), { udp, tls });
    const a: Answer = await p.resolve(upstreamQuestion('www.example.com', TYPE.A));
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(a.ede?.text).toBe('pvd corp: all servers unreachable (tls://192.0.2.53:853#dns.example.net tls certificate name mismatch: expected dns.example.net)');
    expect(udp.seen).toHaveLength(0);
    expect(p.health[0]!.state).toBe('down');
    expect(p.statsOf[0]!.errors.get('tls')).toBe(1);
  });

  it('a slow stream is not asked the same query twice: the one try stays outstanding, and its late answer is taken', async () => {
    let held: [ExchangeRequest, ExchangeDone] | null = null;
    const tls: Carrier = {
      exchange: (req, done) => {
        if (held === null) held = [req, done];
        else throw new Error('sent twice');
      },
      close: () => undefined,
    };
    const p = pool(servers('strict', 'tls://192.0.2.53#dns.example.net'), { tls });
    const pending = p.resolve(upstreamQuestion('slow.example.com', TYPE.A));
    await new Promise((r) => setTimeout(r, 250)); // two RTOs and more
    const [req, done] = held!;
    done(answerTo(req));
    expect((await pending).rcode).toBe(RCODE.NOERROR);
  });

  it('goes on to the next encrypted server when the first is slow', async () => {
    const tls = new Scripted((req) => (req.server.host === '192.0.2.54' ? answerTo(req) : null));
    const p = pool(servers('strict', 'tls://192.0.2.53#a.example', 'tls://192.0.2.54#b.example'), { tls });
    const a = await p.resolve(upstreamQuestion('www.example.com', TYPE.A));
    expect(a.rcode).toBe(RCODE.NOERROR);
    expect(tls.seen.map((r) => r.server.host)).toEqual(['192.0.2.53', '192.0.2.54']);
  });
});

describe('opportunistic', () => {
  it('falls back to the cleartext address at once when TLS fails, stays there, and tries TLS again later', async () => {
    let now = 1_000_000;
    const clock = (): number => now;
    const udp = new Scripted(answerTo);
    const tls = new Scripted(() => ({ ok: false, reason: 'unreachable', detail: 'connection refused' }));
    const list = servers('opportunistic', '192.0.2.53');
    const p = pool(list, { udp, tls }, clock);
    expect((await p.resolve(upstreamQuestion('a.example.com', TYPE.A))).rcode).toBe(RCODE.NOERROR);
    expect(tls.seen).toHaveLength(1);
    expect(udp.seen.map((r) => r.server.label)).toEqual(['192.0.2.53:53']);
    expect(p.statsOf[0]).toMatchObject({ via: 'cleartext', encryptionError: 'connection refused', requests: 1, fallbackRequests: 1 });
    // The server is fine: a fallback is not a failure.
    expect(p.health[0]!.state).toBe('operational');
    await p.resolve(upstreamQuestion('b.example.com', TYPE.A));
    expect(tls.seen).toHaveLength(1);
    expect(p.statsOf[0]).toMatchObject({ requests: 2, fallbackRequests: 2 });
    now += RETRY_ENCRYPTION_MS + 1;
    await p.resolve(upstreamQuestion('c.example.com', TYPE.A));
    expect(tls.seen).toHaveLength(2);
  });

  it('does not fall back when TLS merely answers slowly', async () => {
    const udp = new Scripted(answerTo);
    const tls = new Scripted(() => ({ ok: false, reason: 'timeout', detail: 'timeout' }));
    const p = pool(servers('opportunistic', '192.0.2.53'), { udp, tls });
    await p.resolve(upstreamQuestion('a.example.com', TYPE.A));
    expect(udp.seen).toHaveLength(0);
  });
});

describe('off', () => {
  it('asks a DoT-form server in the clear on port 53', async () => {
    const udp = new Scripted(answerTo);
    const tls = new Scripted(answerTo);
    const p = pool(servers('off', '192.0.2.53#dns.example.net'), { udp, tls });
    expect((await p.resolve(upstreamQuestion('a.example.com', TYPE.A))).rcode).toBe(RCODE.NOERROR);
    expect(tls.seen).toHaveLength(0);
    expect(udp.seen[0]!.server.label).toBe('192.0.2.53:53');
  });
});

describe('a DoH server named by a host name', () => {
  it('is resolved through the PvD\'s other servers only, with the answer\'s TTL', async () => {
    const tls = new Scripted((req) => answerTo(req, RCODE.NOERROR, [192, 0, 2, 99]));
    let found: unknown = null;
    const https = new Scripted((req) => {
      req.lookup!(req.server.hostName!, (r) => (found = r));
      return null;
    });
    const p = pool(servers('strict', 'https://dns.example.net/dns-query', 'tls://192.0.2.53#dns.example.net'), { tls, https });
    void p.resolve(upstreamQuestion('a.example.com', TYPE.A));
    await new Promise((r) => setTimeout(r, 20));
    expect(found).toEqual({ ok: true, addresses: [{ address: '192.0.2.99', family: 4 }], ttlS: 300 });
    expect(tls.seen[0]!.expect.qtype).toBe(TYPE.A);
    expect(https.seen).toHaveLength(1); // the lookup did not ask the DoH server itself
  });

  it('cannot be resolved when the PvD has no other server', async () => {
    let found: unknown = null;
    const https = new Scripted((req) => {
      req.lookup!(req.server.hostName!, (r) => (found = r));
      return { ok: false, reason: 'network', detail: 'x' };
    });
    const p = pool(servers('strict', 'https://dns.example.net/dns-query'), { https });
    await p.resolve(upstreamQuestion('a.example.com', TYPE.A));
    expect(found).toMatchObject({ ok: false, detail: expect.stringContaining('cannot be resolved') });
  });
});


describe('a loop to pvdns itself', () => {
  it('is seen where pvdns would send: the encrypted address, or an opportunistic server\'s cleartext one', async () => {
    const { serverLoops } = await import('../../src/config/own-listener.js');
    const own = [{ host: '127.0.0.1', port: 53, family: 4 as const, label: '127.0.0.1:53' }];
    expect(serverLoops(servers('opportunistic', '127.0.0.1')[0]!, own)).toBe(true);
    expect(serverLoops(servers('strict', '127.0.0.1')[0]!, own)).toBe(false); // TLS on 853: not pvdns
    expect(serverLoops(servers('off', '127.0.0.1#self.example')[0]!, own)).toBe(true);
    expect(serverLoops(servers('strict', 'https://localhost.example/dns-query')[0]!, own)).toBe(false);
  });
});

describe('a busy encrypted server (its carrier refuses more outstanding queries)', () => {
  it('is not a failure: no health change, no fallback to the clear', async () => {
    const udp = new Scripted(answerTo);
    const tls = new Scripted(() => ({ ok: false, reason: 'timeout', detail: 'too many queries outstanding' }));
    const p = pool(servers('opportunistic', '192.0.2.53'), { udp, tls });
    const a = await p.resolve(upstreamQuestion('a.example.com', TYPE.A));
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(udp.seen).toHaveLength(0);
    expect(p.health[0]!.state).not.toBe('down');
    // One query, one try on the stream: counted once however many RTOs it waited.
    expect(p.statsOf[0]!.errors.get('timeout')).toBe(1);
  });
});

describe('an opportunistic server in the clear', () => {
  it('has a lost datagram sent again, as any cleartext server', async () => {
    let n = 0;
    const udp = new Scripted((req) => (++n === 1 ? null : answerTo(req)));
    const tls = new Scripted(() => ({ ok: false, reason: 'unreachable', detail: 'connection refused' }));
    const p = pool(servers('opportunistic', '192.0.2.53'), { udp, tls });
    expect((await p.resolve(upstreamQuestion('a.example.com', TYPE.A))).rcode).toBe(RCODE.NOERROR);
    expect(udp.seen).toHaveLength(2);
    expect(p.statsOf[0]!.via).toBe('cleartext');
  });
});
