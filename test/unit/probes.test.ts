// Background probes (src/resolve/probes.ts) through the Forwarder and a real
// pool over a scripted transport: a probe's refusals, timeouts and
// unreachable servers move the servers' health but never their error
// counters (pvdns_upstream_errors_total), and are counted by kind and result
// instead (pvdns_probes_total); a client's query is counted as before.

import { describe, expect, it } from 'vitest';
import type { Answer } from '../../src/dns/answer.js';
import { EDE, RCODE } from '../../src/dns/constants.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { Forwarder } from '../../src/resolve/forward.js';
import { probeResult, type ProbeKind } from '../../src/resolve/probes.js';
import type { ExchangeDone, ExchangeRequest, Transport } from '../../src/upstream/exchange.js';
import { answerAsServer, queryIn } from '../helpers/scripted-upstream.js';

/** How a scripted server answers: with an RCODE, never, or by being unreachable. */
type Behaviour = number | 'silent' | 'unreachable';

/** A transport whose servers (by label) behave as `script` says; an A answer carries 192.0.2.7. */
class Scripted implements Transport {
  readonly sent: string[] = [];
  constructor(readonly script: Record<string, Behaviour>) {}
  query(req: ExchangeRequest, done: ExchangeDone): void {
    this.sent.push(req.server.label);
    const b = this.script[req.server.label] ?? RCODE.NOERROR;
    if (b === 'silent') return;
    if (b === 'unreachable') return queueMicrotask(() => done({ ok: false, reason: 'unreachable', detail: 'connection refused' }));
    queueMicrotask(() => done(answerAsServer(req, b)));
  }
  tcp(req: ExchangeRequest, done: ExchangeDone): void {
    this.query(req, done);
  }
}

const A = '127.0.42.1:53';
const B = '127.0.42.2:53';

function setup(script: Record<string, Behaviour>, dnsServers = [A, B]): { fwd: Forwarder; vpn: Pvd; transport: Scripted } {
  const transport = new Scripted(script);
  const fwd = new Forwarder({ timeoutMs: 30, attempts: 2, queryTimeoutMs: 120, maxInflight: 100, probeIntervalMs: 60_000, probeMaxIntervalMs: 60_000 }, transport);
  const vpn = pvdFromSpec(pvdSpecSchema.parse({ identifier: 'vpn', dnsServers, dnsZones: ['corp.example'] }), 'api', 0);
  return { fwd, vpn, transport };
}

/** errors is every server's error counters of the PvD's pool, "server reason" → count. */
function errors(fwd: Forwarder, p: Pvd): Record<string, number> {
  const out: Record<string, number> = {};
  const pool = fwd.poolIfAny(p)!;
  pool.servers.forEach((s, i) => {
    for (const [reason, n] of pool.statsOf[i]!.errors) out[`${s.label} ${reason}`] = n;
  });
  return out;
}

function probes(fwd: Forwarder): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of fwd.probes.samples()) out[`${s.labels.pvd} ${s.labels.kind} ${s.labels.result}`] = s.value;
  return out;
}

const probe = (fwd: Forwarder, p: Pvd, name: string, kind: ProbeKind = 'captive'): Promise<Answer> => fwd.probe(queryIn(p, name), kind);

describe('background probes are counted apart from client errors', () => {
  it('a server that refuses the probes: their REFUSED is no server error, a client query refused still is', async () => {
    const { fwd, vpn, transport } = setup({ [A]: RCODE.REFUSED, [B]: RCODE.REFUSED });
    for (const name of ['pabcdefghijk', 'canary.test', 'pmnopqrstuvw']) expect((await probe(fwd, vpn, name)).rcode).toBe(RCODE.SERVFAIL);
    expect((await probe(fwd, vpn, 'ipv4only.arpa', 'dns64')).rcode).toBe(RCODE.SERVFAIL);
    expect(transport.sent).toHaveLength(8); // both servers were asked each time
    expect(errors(fwd, vpn)).toEqual({});
    expect(probes(fwd)).toEqual({ 'vpn captive refused': 3, 'vpn dns64 refused': 1 });
    // The servers answered: they are there.
    expect(fwd.poolIfAny(vpn)!.health.map((h) => h.state)).toEqual(['operational', 'operational']);
    // Their requests are counted: traffic is traffic.
    expect(fwd.poolIfAny(vpn)!.statsOf.map((s) => s.requests)).toEqual([4, 4]);

    // A client's query refused is the client's error, as before.
    expect((await fwd.resolve(queryIn(vpn, 'www.example.com'))).rcode).toBe(RCODE.SERVFAIL);
    expect(errors(fwd, vpn)).toEqual({ [`${A} refused`]: 1, [`${B} refused`]: 1 });
    expect(probes(fwd)).toEqual({ 'vpn captive refused': 3, 'vpn dns64 refused': 1 });
  });

  it('counts answers as ok, SERVFAIL as servfail, silence as timeout and unreachable servers apart, none as errors', async () => {
    const ok = setup({}, [A]);
    expect((await probe(ok.fwd, ok.vpn, 'canary.test')).rcode).toBe(RCODE.NOERROR);
    expect(probes(ok.fwd)).toEqual({ 'vpn captive ok': 1 });

    const sf = setup({ [A]: RCODE.SERVFAIL }, [A]);
    await probe(sf.fwd, sf.vpn, 'canary.test', 'dns64');
    expect(probes(sf.fwd)).toEqual({ 'vpn dns64 servfail': 1 });
    expect(errors(sf.fwd, sf.vpn)).toEqual({});

    const silent = setup({ [A]: 'silent' }, [A]);
    const a = await probe(silent.fwd, silent.vpn, 'canary.test');
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(probes(silent.fwd)).toEqual({ 'vpn captive timeout': 1 });
    expect(errors(silent.fwd, silent.vpn)).toEqual({});
    // Silence is still a hint about the server.
    expect(silent.fwd.poolIfAny(silent.vpn)!.health[0]!.state).toBe('suspect');

    const gone = setup({ [A]: 'unreachable' }, [A]);
    expect((await probe(gone.fwd, gone.vpn, 'canary.test')).ede?.code).toBe(EDE.NETWORK_ERROR);
    expect(probes(gone.fwd)).toEqual({ 'vpn captive unreachable': 1 });
    expect(errors(gone.fwd, gone.vpn)).toEqual({});
    expect(gone.fwd.poolIfAny(gone.vpn)!.health[0]!.state).toBe('down');

    // A client's query to the same silent server counts its timeout.
    await silent.fwd.resolve(queryIn(silent.vpn, 'www.example.com'));
    expect(errors(silent.fwd, silent.vpn)[`${A} timeout`]).toBeGreaterThanOrEqual(1);
  });

  it('counts a probe of a PvD with no server as error, and forgets a withdrawn PvD', async () => {
    const { fwd } = setup({});
    const bare = pvdFromSpec(pvdSpecSchema.parse({ identifier: 'bare', dnsZones: ['bare.example'] }), 'api', 0);
    const q = queryIn(bare, 'canary.test');
    const a = await fwd.probe(q, 'captive');
    expect(probeResult(q, a, true)).toBe('error');
    expect(probes(fwd)).toEqual({ 'bare captive error': 1 });
    fwd.drop(bare);
    expect(probes(fwd)).toEqual({});
  });
});
