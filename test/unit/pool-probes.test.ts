// A down server's probes (src/upstream/pool.ts) follow demand: while the
// pool gets client queries they test the server every gap, so its return is
// seen at once; a minute after the last one they pause, leaving no timer and
// sending nothing (an idle host must not wake every two seconds for a network
// nobody uses); the next client query resumes them. Background questions
// (captive probes, Pref64 discovery) are pvdns's own and do not count; a
// query that default routing sends elsewhere because every server of the PvD
// is down does (Forwarder.routable): the PvD is still wanted; so does a
// readiness check that finds every server down (Forwarder.noneUsable).

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RCODE, TYPE } from '../../src/dns/constants.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { Forwarder } from '../../src/resolve/forward.js';
import type { ExchangeDone, ExchangeRequest, Transport } from '../../src/upstream/exchange.js';
import { PROBE_WITHOUT_QUERIES_MS, UpstreamPool } from '../../src/upstream/pool.js';
import { parseServer } from '../../src/upstream/server.js';
import { answerTo, queryIn, upstreamQuestion } from '../helpers/scripted-upstream.js';

/** A server that is unreachable (ICMP port unreachable) until `up`, then answers. */
class Switchable implements Transport {
  up = false;
  readonly probes: number[] = [];
  readonly queries: number[] = [];
  query(req: ExchangeRequest, done: ExchangeDone): void {
    (req.expect.qtype === TYPE.NS && req.expect.nameKey === '\0' ? this.probes : this.queries).push(Date.now());
    if (!this.up) {
      queueMicrotask(() => done({ ok: false, reason: 'unreachable', detail: 'port unreachable' }));
      return;
    }
    const ex = answerTo(req, RCODE.NOERROR, null);
    queueMicrotask(() => done(ex));
  }
  tcp(req: ExchangeRequest, done: ExchangeDone): void {
    this.query(req, done);
  }
}

function setup(): { pool: UpstreamPool; server: Switchable } {
  const s = parseServer('127.0.42.9:53', 'off');
  if (typeof s === 'string') throw new Error(s);
  const server = new Switchable();
  const pool = new UpstreamPool('lab', 'lab', [s], { timeoutMs: 200, attempts: 2, queryTimeoutMs: 500, sourceAddress: null, probe: { initialMs: 1000, maxMs: 2000 } }, server, () => Date.now());
  return { pool, server };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("a down server's probes follow the pool's queries", () => {
  it('probes every gap while queries came within the last minute, then pauses with no timer left', async () => {
    const { pool, server } = setup();
    const a = await pool.resolve(upstreamQuestion('x.example', TYPE.A));
    expect(a.rcode).toBe(RCODE.SERVFAIL);
    expect(pool.health[0]!.state).toBe('down');
    const downAt = Date.now();

    await vi.advanceTimersByTimeAsync(30_000);
    // Gaps of 1 s, then 2 s: about fifteen probes in the first half minute.
    expect(server.probes.length).toBeGreaterThanOrEqual(13);
    expect(server.probes.length).toBeLessThanOrEqual(17);

    await vi.advanceTimersByTimeAsync(PROBE_WITHOUT_QUERIES_MS);
    const sent = server.probes.length;
    expect(server.probes.at(-1)! - downAt).toBeLessThanOrEqual(PROBE_WITHOUT_QUERIES_MS + 2000);
    expect(pool.probesPaused(0)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);

    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(server.probes.length).toBe(sent);
    expect(pool.health[0]!.state).toBe('down'); // what was last seen; nobody asked since
    pool.close();
  });

  it('the next client query resumes them at once, and a probe answered brings the server back', async () => {
    const { pool, server } = setup();
    await pool.resolve(upstreamQuestion('x.example', TYPE.A));
    await vi.advanceTimersByTimeAsync(PROBE_WITHOUT_QUERIES_MS + 5000);
    expect(pool.probesPaused(0)).toBe(true);
    const sent = server.probes.length;

    const asked = Date.now();
    expect((await pool.resolve(upstreamQuestion('y.example', TYPE.A))).rcode).toBe(RCODE.SERVFAIL);
    expect(server.queries.at(-1)).toBe(asked); // the query tries the down server itself
    expect(pool.probesPaused(0)).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    expect(server.probes.length).toBe(sent + 1); // the overdue probe, straight away

    server.up = true;
    await vi.advanceTimersByTimeAsync(2500);
    expect(pool.health[0]!.state).toBe('operational');
    const after = server.probes.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(server.probes.length).toBe(after);
    expect(vi.getTimerCount()).toBe(0);
    pool.close();
  });

  it("pvdns's own background questions do not keep the probes going", async () => {
    const { pool, server } = setup();
    await pool.resolve(upstreamQuestion('x.example', TYPE.A));
    for (let t = 0; t < 4; t++) {
      await vi.advanceTimersByTimeAsync(30_000);
      await pool.resolve(upstreamQuestion('captive.example', TYPE.A, true));
    }
    expect(pool.probesPaused(0)).toBe(true);
    const sent = server.probes.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.probes.length).toBe(sent);
    pool.close();
  });
});

/** A Forwarder with one default PvD, wifi, whose only server went down and was then left alone until its probes paused. */
async function quietDownWifi(): Promise<{ fwd: Forwarder; wifi: Pvd; pool: UpstreamPool; server: Switchable }> {
  const server = new Switchable();
  const fwd = new Forwarder({ timeoutMs: 200, attempts: 2, queryTimeoutMs: 500, maxInflight: 100, probeIntervalMs: 1000, probeMaxIntervalMs: 2000 }, server);
  const wifi = pvdFromSpec(pvdSpecSchema.parse({ identifier: 'wifi', dnsServers: ['127.0.42.9:53'], default: true }), 'api', 0);
  expect((await fwd.resolve(queryIn(wifi, 'www.example'))).rcode).toBe(RCODE.SERVFAIL);
  const pool = fwd.poolIfAny(wifi)!;
  expect(pool.allDown).toBe(true);
  expect(fwd.routable(wifi)).toBe(false);
  // The host goes quiet: the probes pause.
  await vi.advanceTimersByTimeAsync(PROBE_WITHOUT_QUERIES_MS + 5000);
  expect(pool.probesPaused(0)).toBe(true);
  return { fwd, wifi, pool, server };
}

describe('default routing passing over a PvD whose servers are all down', () => {
  it('counts as demand: its probes resume, so the PvD is taken back once its server answers', async () => {
    const { fwd, wifi, pool, server } = await quietDownWifi();
    const sent = server.probes.length;
    // A query routed elsewhere because wifi is down is demand for wifi.
    expect(fwd.routable(wifi)).toBe(false);
    expect(pool.probesPaused(0)).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    expect(server.probes.length).toBe(sent + 1);
    server.up = true;
    await vi.advanceTimersByTimeAsync(2500);
    expect(fwd.routable(wifi)).toBe(true);
    expect(fwd.usable(wifi)).toBe(true);
    fwd.drop(wifi);
  });

  it('and so does a readiness check that finds every server down (/readyz): an unready pvdns gets no queries', async () => {
    const { fwd, wifi, server } = await quietDownWifi();
    server.up = true;
    expect(fwd.noneUsable([wifi])).toMatch(/^every DNS server is down: wifi: 127\.0\.42\.9:53/);
    await vi.advanceTimersByTimeAsync(100);
    expect(fwd.noneUsable([wifi])).toBeNull();
    fwd.drop(wifi);
  });
});
