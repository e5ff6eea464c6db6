// Designated resolvers and captive portals with encrypted DNS, without a
// network: what a PvD's servers become (designated first, its cleartext
// ones), that the pool goes back to a designated resolver when it recovers,
// which pool a query marked `clear` goes to, and what the captive stage
// does with a captive encrypted PvD's queries under strict and opportunistic.

import { describe, expect, it } from 'vitest';
import { errorAnswer, type Answer } from '../../src/dns/answer.js';
import { EDE, RCODE } from '../../src/dns/constants.js';
import { wireKey } from '../../src/dns/name.js';
import type { CaptiveTracker } from '../../src/captive/tracker.js';
import { effectiveEncryption, pvdFromSpec, type Pvd, type PvdSource } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { CaptiveStage } from '../../src/resolve/captive-stage.js';
import { Forwarder } from '../../src/resolve/forward.js';
import type { Query } from '../../src/resolve/query.js';
import type { Exchange, ExchangeDone, ExchangeRequest } from '../../src/upstream/exchange.js';
import { UpstreamPool } from '../../src/upstream/pool.js';
import { parseServer, type UpstreamServer } from '../../src/upstream/server.js';
import { ServerTransports, type Carrier } from '../../src/upstream/transports.js';
import { answerAsServer, queryIn } from '../helpers/scripted-upstream.js';

/** A carrier that records the servers it was asked and answers as `script` says (null: never). */
class Scripted implements Carrier {
  readonly seen: string[] = [];
  constructor(private readonly script: (req: ExchangeRequest) => Exchange | null) {}
  exchange(req: ExchangeRequest, done: ExchangeDone): void {
    this.seen.push(req.server.label);
    const r = this.script(req);
    if (r !== null) queueMicrotask(() => done(r));
  }
  close(): void {}
}

const refused: Exchange = { ok: false, reason: 'unreachable', detail: 'connection refused' };

function pvd(spec: Record<string, unknown>, source: PvdSource = 'config'): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ identifier: 'hotel', ...spec }), source, 0);
}

const OPTS = { timeoutMs: 100, attempts: 3, queryTimeoutMs: 400, maxInflight: 100, probeIntervalMs: 10_000, probeMaxIntervalMs: 10_000 };

describe('a PvD with designated resolvers', () => {
  it('lists them apart from its own servers, which stay its cleartext ones; its mode is opportunistic unless it names one', () => {
    const p = pvd({ dnsServers: ['192.0.2.1'], designatedResolvers: ['tls://192.0.2.53#dns.hotel.example'] }, 'ra');
    expect(p.designated.map((s) => s.label)).toEqual(['tls://192.0.2.53:853#dns.hotel.example']);
    expect(p.designated[0]).toMatchObject({ authName: 'dns.hotel.example', authenticate: true, fallback: null });
    expect(p.servers.map((s) => [s.label, s.transport])).toEqual([['192.0.2.1:53', 'udp']]);
    expect(p.clearServers.map((s) => s.label)).toEqual(['192.0.2.1:53']);
    expect(p.learned).toEqual(['ra']);
    expect(effectiveEncryption(p, false)).toBe('opportunistic');
    expect(effectiveEncryption(pvd({ dnsServers: ['192.0.2.1'], designatedResolvers: ['tls://192.0.2.53#d.example'], encryption: 'strict' }), false)).toBe('strict');
    expect(p.ddr).toBe(false); // the network designated its resolver: no DDR on top
  });

  it('refuses a designated resolver that is not encrypted, and designated resolvers with encryption off', () => {
    expect(pvdSpecSchema.safeParse({ identifier: 'x', designatedResolvers: ['192.0.2.53'] }).error?.issues[0]?.message).toMatch(/is not an encrypted server/);
    expect(pvdSpecSchema.safeParse({ identifier: 'x', designatedResolvers: ['tls://192.0.2.53#d.example'], encryption: 'off' }).error?.issues[0]?.message).toMatch(/cannot be used with encryption: off/);
  });

  it('runs DDR for a network PvD with plain servers, not for one written by hand unless it says so, never with encryption off', () => {
    expect(pvd({ dnsServers: ['192.0.2.1'] }, 'host').ddr).toBe(true);
    expect(pvd({ dnsServers: ['192.0.2.1'] }, 'ra').ddr).toBe(true);
    expect(pvd({ dnsServers: ['192.0.2.1'] }, 'config').ddr).toBe(false);
    expect(pvd({ dnsServers: ['192.0.2.1'], ddr: true }, 'config').ddrServers.map((s) => s.label)).toEqual(['192.0.2.1:53']);
    expect(pvd({ dnsServers: ['192.0.2.1'], encryption: 'off' }, 'host').ddr).toBe(false);
    expect(pvd({ dnsServers: ['tls://192.0.2.53#d.example'] }, 'host').ddr).toBe(false); // nothing written in the clear to ask
  });

  it('has cleartext servers for its portal: an encrypted server\'s address on port 53, not a DoH host name', () => {
    const p = pvd({ dnsServers: ['tls://192.0.2.53#d.example', '192.0.2.54#d.example', 'https://doh.example/dns-query', 'https://192.0.2.55/q#d.example'] });
    expect(p.clearServers.map((s) => s.label)).toEqual(['192.0.2.53:53', '192.0.2.54:53', '192.0.2.55:53']);
  });
});

/** A pool of a designated resolver (DoT, answering as `tls` says) before a cleartext server that always answers. */
function preferredPool(tls: Carrier, timeoutMs: number, probeMs: number): UpstreamPool {
  const none = new Scripted(() => null);
  const list = [parseServer('tls://192.0.2.53#d.example', 'strict'), parseServer('192.0.2.1', 'off')] as UpstreamServer[];
  return new UpstreamPool(
    'hotel',
    'hotel',
    list,
    { timeoutMs, attempts: 3, queryTimeoutMs: 400, sourceAddress: null, probe: { initialMs: probeMs, maxMs: probeMs }, preferred: 1 },
    new ServerTransports({ udp: new Scripted(answerAsServer), tcp: none, tls, https: none }),
  );
}

describe('the pool with preferred servers', () => {
  it('goes back to a designated resolver as soon as it answers again', async () => {
    let up = false;
    const pool = preferredPool(new Scripted((req) => (up ? answerAsServer(req) : refused)), 100, 20);
    const p = pvd({ dnsServers: ['192.0.2.1'] });
    let q = queryIn(p, 'www.example.com');
    await pool.resolve(q);
    expect(q.server).toBe('192.0.2.1:53');
    expect(pool.preferredDown).toBe(true);
    up = true;
    // The down designated resolver is probed in the background; its first answer takes the primary back.
    for (let i = 0; i < 50 && pool.preferredDown; i++) await new Promise((r) => setTimeout(r, 10));
    expect(pool.preferredDown).toBe(false);
    q = queryIn(p, 'www.example.com');
    await pool.resolve(q);
    expect(q.server).toBe('tls://192.0.2.53:853#d.example');
    pool.close();
  });
});

describe('the pool with preferred servers, when one times out once', () => {
  it('asks the suspect designated resolver again before the fallback, and takes the primary back when it answers', async () => {
    let silent = true;
    const pool = preferredPool(new Scripted((req) => (silent ? null : answerAsServer(req))), 50, 10_000);
    const p = pvd({ dnsServers: ['192.0.2.1'] });
    let q = queryIn(p, 'a.example');
    await pool.resolve(q);
    expect(q.server).toBe('192.0.2.1:53'); // the designated resolver was silent: the fallback answered
    expect(pool.health[0]!.state).toBe('suspect');
    silent = false;
    q = queryIn(p, 'b.example');
    await pool.resolve(q);
    expect(q.server).toBe('tls://192.0.2.53:853#d.example'); // asked first again, not left behind
    q = queryIn(p, 'c.example');
    await pool.resolve(q);
    expect(q.server).toBe('tls://192.0.2.53:853#d.example');
    pool.close();
  });
});

describe('the forwarder', () => {
  function forwarder(tls: Carrier, udp: Carrier): Forwarder {
    const none = new Scripted(() => null);
    return new Forwarder({ ...OPTS }, new ServerTransports({ udp, tcp: none, tls, https: none }));
  }

  it('sends a query marked clear to an encrypted PvD\'s cleartext servers, others to its encrypted ones', async () => {
    const tls = new Scripted(answerAsServer);
    const udp = new Scripted(answerAsServer);
    const f = forwarder(tls, udp);
    const p = pvd({ dnsServers: ['tls://192.0.2.53#d.example'] });
    await f.resolve(queryIn(p, 'www.example.com'));
    await f.resolve(queryIn(p, 'portal.hotel.example', true));
    expect(tls.seen).toEqual(['tls://192.0.2.53:853#d.example']);
    expect(udp.seen).toEqual(['192.0.2.53:53']);
    expect(f.clearPoolIfAny(p)?.servers.map((s) => s.label)).toEqual(['192.0.2.53:53']);
  });

  it('answers SERVFAIL for a query marked clear when the PvD has no cleartext address (DoH by host name only)', async () => {
    const f = forwarder(new Scripted(answerAsServer), new Scripted(answerAsServer));
    const p = pvd({ dnsServers: ['https://doh.example/dns-query'] });
    const a = (await f.resolve(queryIn(p, 'portal.example', true))) as Answer;
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(a.ede?.text).toBe('pvd hotel: no cleartext DNS servers');
    expect(f.clearPoolIfAny(p)).toBeUndefined();
  });

  it('has no second pool for a PvD in the clear anyway', async () => {
    const udp = new Scripted(answerAsServer);
    const f = forwarder(new Scripted(answerAsServer), udp);
    const p = pvd({ dnsServers: ['192.0.2.1'] });
    await f.resolve(queryIn(p, 'a.example', true));
    expect(f.encrypted(p)).toBe(false);
    expect(f.clearPoolIfAny(p)).toBeUndefined();
    expect(udp.seen).toEqual(['192.0.2.1:53']);
  });

  it('puts DDR\'s designated resolvers before the PvD\'s own servers, and takes them away again', async () => {
    const tls = new Scripted(answerAsServer);
    const udp = new Scripted(answerAsServer);
    const f = forwarder(tls, udp);
    const p = pvd({ dnsServers: ['192.0.2.1'], ddr: true });
    f.setDiscovered(p, [parseServer('tls://192.0.2.1#dns.hotel.example', 'strict') as UpstreamServer]);
    expect(f.encrypted(p)).toBe(true);
    const q = queryIn(p, 'www.example.com');
    await f.resolve(q);
    expect(q.server).toBe('tls://192.0.2.1:853#dns.hotel.example');
    f.setDiscovered(p, []);
    const q2 = queryIn(p, 'www.example.com');
    await f.resolve(q2);
    expect(q2.server).toBe('192.0.2.1:53');
  });

  it('revalidate makes an opportunistic server try TLS again at once instead of after its minute in the clear', async () => {
    let tlsWorks = false;
    const tls = new Scripted((req) => (tlsWorks ? answerAsServer(req) : refused));
    const udp = new Scripted(answerAsServer);
    const f = forwarder(tls, udp);
    const p = pvd({ dnsServers: ['192.0.2.53#d.example'], encryption: 'opportunistic' });
    await f.resolve(queryIn(p, 'a.example'));
    expect(udp.seen).toEqual(['192.0.2.53:53']); // fell back to the clear
    tlsWorks = true;
    await f.resolve(queryIn(p, 'b.example'));
    expect(tls.seen).toHaveLength(1); // still in the clear: RETRY_ENCRYPTION_MS
    f.revalidate(p);
    const q = queryIn(p, 'c.example');
    await f.resolve(q);
    expect(tls.seen).toHaveLength(2);
    expect(q.server).toBe('tls://192.0.2.53:853#d.example');
  });
});

describe('the captive stage with a captive encrypted PvD', () => {
  /** A tracker that says the PvD is captive, with its portal at portal.hotel.example. */
  function tracker(captive: boolean, loginAt: string | null): CaptiveTracker {
    const portal = wireKey('portal.hotel.example');
    return {
      isCaptive: () => captive,
      epoch: () => 0,
      watching: () => false,
      portalName: (_: Pvd, k: string) => captive && (k === portal || k.endsWith(portal)),
      loginAt: () => loginAt,
    } as unknown as CaptiveTracker;
  }
  const ok = (q: Query): Answer => {
    const a = errorAnswer(RCODE.NOERROR);
    (q as Query & { sentClear?: boolean }).sentClear = q.clear;
    return a;
  };
  const p = pvd({ dnsServers: ['tls://192.0.2.53#d.example'] });

  it('strict: the portal\'s names go in the clear, every other name is SERVFAIL with an EDE saying where to log in', () => {
    const stage = new CaptiveStage(tracker(true, 'https://portal.hotel.example/login'), () => false, () => 'strict');
    const portal = queryIn(p, 'www.portal.hotel.example');
    stage.handle(portal, ok);
    expect(portal.clear).toBe(true);
    const other = queryIn(p, 'www.example.com');
    let sent = false;
    const a = stage.handle(other, () => ((sent = true), errorAnswer(RCODE.NOERROR))) as Answer;
    expect(sent).toBe(false);
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(a.ede).toEqual({ code: EDE.NETWORK_ERROR, text: 'pvd hotel: captive portal, log in at https://portal.hotel.example/login (encryption: strict sends nothing else in the clear)' });
    expect(stage.actions.get('hotel')).toEqual(new Map([['portal', 1], ['refused', 1]]));
  });

  it('strict without a login address still says it is a portal', () => {
    const stage = new CaptiveStage(tracker(true, null), () => false, () => 'strict');
    const a = stage.handle(queryIn(p, 'www.example.com'), () => errorAnswer(RCODE.NOERROR)) as Answer;
    expect(a.ede?.text).toBe("pvd hotel: captive portal, log in through the network's portal (encryption: strict sends nothing else in the clear)");
  });

  it('opportunistic: other names go in the clear too, and are counted', () => {
    const stage = new CaptiveStage(tracker(true, null), () => false, () => 'opportunistic');
    const q = queryIn(p, 'www.example.com');
    stage.handle(q, ok);
    expect(q.clear).toBe(true);
    expect(stage.actions.get('hotel')?.get('cleartext')).toBe(1);
  });

  it('leaves a PvD alone that is not captive, or whose queries are in the clear anyway', () => {
    for (const [captive, mode] of [
      [false, 'strict'],
      [true, null],
    ] as const) {
      const stage = new CaptiveStage(tracker(captive, null), () => false, () => mode);
      const q = queryIn(p, 'www.example.com');
      const a = stage.handle(q, ok) as Answer;
      expect(a.rcode).toBe(RCODE.NOERROR);
      expect(q.clear).toBe(false);
    }
  });
});
