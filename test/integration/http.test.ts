// The HTTP side: liveness, readiness, and the Prometheus metrics DESIGN
// names, counted from real queries.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from '../helpers/client.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { eventually } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

describe('http', () => {
  const up = new FakeUpstream();
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.27');
    pvdns = await startPvdns({ pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('reports liveness and readiness', async () => {
    const h = await fetch(`${pvdns.http}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok' });
    const r = await fetch(`${pvdns.http}/readyz`);
    expect(r.status).toBe(200);
  });

  it('is not ready while no PvD has a server', async () => {
    const empty = await startPvdns({ pvds: [{ identifier: 'bare', dnsServers: [] }] });
    try {
      const r = await fetch(`${empty.http}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ status: 'not ready', reason: 'no PvD has a DNS server' });
    } finally {
      await empty.stop();
    }
  });

  it('is not ready while every server is down, saying which and why, and ready again once one answers', async () => {
    // A port nobody listens on: the first query gets ICMP port unreachable, which makes the server down at once.
    const gone = await new FakeUpstream().start('127.0.42.30');
    const { host, port } = gone;
    await gone.stop();
    const lone = await startPvdns({ upstream: { timeoutMs: 200, attempts: 1, probeIntervalMs: 50, probeMaxIntervalMs: 100 }, pvds: [{ identifier: 'wifi', dnsServers: [`${host}:${port}`] }] });
    const back = new FakeUpstream();
    try {
      // Fresh, its server untested: ready (nothing says it cannot be asked).
      expect((await fetch(`${lone.http}/readyz`)).status).toBe(200);
      expect((await ask(lone.dns, 'down.example', 'A')).packet.header.rcode).toBe(2);
      const r = await fetch(`${lone.http}/readyz`);
      expect(r.status).toBe(503);
      const body = (await r.json()) as { status: string; reason: string };
      expect(body.status).toBe('not ready');
      expect(body.reason).toMatch(new RegExp(`^every DNS server is down: wifi: ${host.replaceAll('.', '\\.')}:${port} \\(.+\\)$`));
      // Liveness is another matter: the process is alive.
      expect((await fetch(`${lone.http}/healthz`)).status).toBe(200);
      await back.start(host, port);
      await eventually('readyz to say ready again', async () => (await fetch(`${lone.http}/readyz`)).status === 200);
    } finally {
      await lone.stop();
      await back.stop();
    }
  });

  it('answers unknown paths and methods with JSON errors', async () => {
    const nf = await fetch(`${pvdns.http}/nope`);
    expect(nf.status).toBe(404);
    expect(await nf.json()).toEqual({ error: 'no such endpoint: /nope' });
    const m = await fetch(`${pvdns.http}/metrics`, { method: 'POST' });
    expect(m.status).toBe(405);
    expect(((await m.json()) as { error: string }).error).toMatch(/method not allowed/);
  });

  it('exports the query, cache and upstream metrics with their labels', async () => {
    await ask(pvdns.dns, 'm.example', 'A');
    await ask(pvdns.dns, 'm.example', 'A');
    await ask(pvdns.dns, 'localhost', 'AAAA', { tcp: true });
    const text = await (await fetch(`${pvdns.http}/metrics`)).text();
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      return line === undefined ? NaN : Number(line.slice(series.length + 1));
    };
    expect(value('pvdns_queries_total{pvd="wifi",qtype="A",transport="udp"}')).toBe(2);
    expect(value('pvdns_queries_total{pvd="(local)",qtype="AAAA",transport="tcp"}')).toBe(1);
    expect(value('pvdns_responses_total{pvd="wifi",rcode="NOERROR"}')).toBe(2);
    expect(value('pvdns_cache_hits_total{pvd="wifi"}')).toBe(1);
    expect(value('pvdns_cache_misses_total{pvd="wifi"}')).toBe(1);
    expect(value('pvdns_cache_entries{pvd="wifi"}')).toBe(1);
    expect(value(`pvdns_upstream_requests_total{pvd="wifi",server="${up.address}",transport="udp"}`)).toBe(1);
    expect(value(`pvdns_upstream_rtt_seconds_count{pvd="wifi",server="${up.address}"}`)).toBe(1);
    expect(value('pvdns_request_duration_seconds_count{transport="udp",cache="hit"}')).toBe(1);
    expect(value('pvdns_pvds')).toBe(1);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE pvdns_'))) {
      const [, , name, type] = line.split(' ');
      // Prometheus naming: counters end in _total, durations are in seconds.
      if (type === 'counter') expect(name).toMatch(/_total$/);
      if (type === 'histogram') expect(name).toMatch(/_seconds$/);
    }
  });
});
