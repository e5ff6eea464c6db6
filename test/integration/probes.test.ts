// Background probes against split-DNS servers that refuse every name but
// their own (issue 18: against such a VPN server,
// pvdns_upstream_errors_total{reason="refused"} reached 44 for 6 client
// queries). Fake upstreams on 127.0.42.40–42:
//
//   wifi (default)                          ─▶ a normal resolver
//   vpn  (zone corp.example, noInternet)    ─▶ refuses every name outside corp.example
//   lab  (zone lab.example, not a default)  ─▶ the same, but not noInternet (a host's VPN link)
//
// A noInternet PvD is asked nothing for itself: no captive probe, no
// ipv4only.arpa. The others are probed, and what their servers refuse is
// counted in pvdns_probes_total, never as a client's upstream error.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { answer, FakeUpstream, soa } from '../helpers/fake-upstream.js';
import { eventually, getPvd, resolve } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const T = Packet.TYPE;
const REAL: Record<string, string> = { 'canary.test': '192.0.2.53', 'www.example.com': '192.0.2.80', 'git.corp.example': '10.8.0.5', 'db.lab.example': '10.9.0.5' };

/** Real data: a few names with addresses, NXDOMAIN for the rest (the fake upstreams' `owns` refuses first). */
function normal(q: Packet): Packet {
  const { name, type } = q.questions[0]!;
  const address = REAL[name.toLowerCase()];
  if (address === undefined) return answer(q, [], { rcode: 3, authorities: [soa('.', 300, 300)] });
  if (type !== T.A) return answer(q, [], { authorities: [soa('.', 300, 300)] });
  return answer(q, [{ name, type: T.A, class: 1, ttl: 300, address } as Resource]);
}

/** series reads every sample of a metric whose labels include `labels`, summed; 0 with none. */
async function series(base: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

describe('background probes of split-DNS servers', () => {
  const wifi = new FakeUpstream(normal);
  const vpn = new FakeUpstream(normal);
  const lab = new FakeUpstream(normal);
  let pvdns: Running;

  beforeAll(async () => {
    await wifi.start('127.0.42.40');
    await vpn.start('127.0.42.41');
    await lab.start('127.0.42.42');
    vpn.owns = ['corp.example'];
    lab.owns = ['lab.example'];
    pvdns = await startPvdns({
      upstream: { timeoutMs: 300, attempts: 1 },
      captive: { probeIntervalS: 1, canary: { name: 'canary.test', addresses: ['192.0.2.53'] } },
      pvds: [
        { identifier: 'wifi', dnsServers: [wifi.address], priority: 10, dns64: 'auto' },
        { identifier: 'vpn', dnsServers: [vpn.address], dnsZones: ['corp.example'], noInternet: true, dns64: 'auto' },
        { identifier: 'lab', dnsServers: [lab.address], dnsZones: ['lab.example'], default: false, dns64: 'auto' },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([wifi.stop(), vpn.stop(), lab.stop()]);
  });

  it('after N client queries the refused count is the clients\' own (≤ N), and the probes show in pvdns_probes_total', async () => {
    // lab's first probe round (three names) and its Pref64 discovery, all refused. (Later rounds
    // on the clock wait for lab to be used: an unused PvD is not probed every probeIntervalS.)
    await eventually('lab to be probed', async () => (await series(pvdns.http, 'pvdns_probes_total', { pvd: 'lab', kind: 'captive', result: 'refused' })) >= 3, 8000);
    await eventually('lab to be asked ipv4only.arpa', async () => (await series(pvdns.http, 'pvdns_probes_total', { pvd: 'lab', kind: 'dns64', result: 'refused' })) >= 1);

    // N = 6 client queries: four each PvD answers, two asked of lab that it refuses.
    const queries = [
      async () => expect((await ask(pvdns.dns, 'git.corp.example', 'A')).packet.answers.map((x) => x.address)).toEqual(['10.8.0.5']),
      async () => expect((await ask(pvdns.dns, 'db.lab.example', 'A')).packet.answers.map((x) => x.address)).toEqual(['10.9.0.5']),
      async () => expect((await ask(pvdns.dns, 'www.example.com', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.80']),
      async () => expect((await ask(pvdns.dns, 'nope.corp.example', 'A')).packet.header.rcode).toBe(3),
      async () => expect((await resolve(pvdns.http, 'name=www.example.com&type=A&pvd=lab')).body).toMatchObject({ pvd: 'lab', rcode: 'SERVFAIL' }),
      async () => expect((await resolve(pvdns.http, 'name=www.example.org&type=A&pvd=lab')).body).toMatchObject({ pvd: 'lab', rcode: 'SERVFAIL' }),
    ];
    for (const q of queries) await q();
    const N = queries.length;

    const refused = await series(pvdns.http, 'pvdns_upstream_errors_total', { reason: 'refused' });
    expect(refused).toBeLessThanOrEqual(N);
    // Exactly the two client queries lab refused: none of its many refused probes.
    expect(refused).toBe(2);
    expect(await series(pvdns.http, 'pvdns_upstream_errors_total', { pvd: 'lab', reason: 'refused' })).toBe(2);
    expect(await series(pvdns.http, 'pvdns_upstream_errors_total', { pvd: 'vpn' })).toBe(0);
    // The normal resolver's probes were answered.
    expect(await series(pvdns.http, 'pvdns_probes_total', { pvd: 'wifi', kind: 'captive', result: 'ok' })).toBeGreaterThanOrEqual(3);
    expect(await series(pvdns.http, 'pvdns_probes_total', { pvd: 'wifi', kind: 'dns64', result: 'ok' })).toBe(1);
  });

  it('asks a noInternet PvD nothing for itself: its server saw only the clients\' names, and its view says why', async () => {
    expect(vpn.discoveries).toEqual([]);
    expect(vpn.names()).toEqual(['git.corp.example', 'nope.corp.example']);
    expect(await series(pvdns.http, 'pvdns_probes_total', { pvd: 'vpn' })).toBe(0);
    const v = (await getPvd(pvdns.http, 'vpn')).body;
    expect(v).toMatchObject({ captive: null, captiveState: 'unknown', dns64: 'none', pref64: [], pref64Error: null });
    expect(v.captiveReason).toMatch(/^not probed: the PvD has noInternet/);
    // lab, probed, is open (a refusal rewrites nothing) and has no DNS64 (REFUSED: not here).
    expect((await getPvd(pvdns.http, 'lab')).body).toMatchObject({ captiveState: 'open', dns64: 'none' });
    expect(lab.discoveries.length).toBeGreaterThanOrEqual(1);
  });
});
