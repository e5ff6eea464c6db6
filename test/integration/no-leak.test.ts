// No leaks under load: 10,000 random names over PvDs with overlapping zones
// (a zone inside another PvD's zone, a zone two PvDs share, reverse zones of
// prefixes) and a default PvD. Every fake upstream's log is checked against
// an owner worked out here independently: no name is sent to a PvD that does
// not own it. Fake upstreams on 127.0.0.150–154.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const PVDS = [
  { identifier: 'corp', zones: ['corp.example', '10.in-addr.arpa'] },
  { identifier: 'lab', zones: ['lab.corp.example'] }, // inside corp's zone: the longer claim wins
  { identifier: 'vpn1', zones: ['shared.example'] },
  { identifier: 'vpn2', zones: ['shared.example', 'only2.example'] }, // shares a zone with vpn1
  { identifier: 'wifi', zones: [] as string[] }, // default: names nobody claims
];

/** owners is who may see a name: the PvDs of the longest zone that is a suffix of it, else the default. */
function owners(name: string): string[] {
  let best = -1;
  let who: string[] = ['wifi'];
  for (const p of PVDS) {
    for (const z of p.zones) {
      if ((name === z || name.endsWith(`.${z}`)) && z.length >= best) {
        who = z.length > best ? [p.identifier] : [...who, p.identifier];
        best = z.length;
      }
    }
  }
  return who;
}

describe('no name reaches a PvD that does not own it, under load', () => {
  const ups = PVDS.map((_, i) => new FakeUpstream((q) => answer(q, [a(q, `192.0.2.${10 + i}`)])));
  let pvdns: Running;

  beforeAll(async () => {
    await Promise.all(ups.map((u, i) => u.start(`127.0.0.${150 + i}`)));
    pvdns = await startPvdns({
      upstream: { timeoutMs: 2000, attempts: 1 },
      pvds: PVDS.map((p, i) => ({
        identifier: p.identifier,
        dnsServers: [ups[i]!.address],
        dnsZones: p.zones.filter((z) => !z.endsWith('.arpa')),
        prefixes: p.zones.includes('10.in-addr.arpa') ? ['10.0.0.0/8'] : [],
        ...(p.identifier === 'wifi' ? { default: true } : { noInternet: true }),
      })),
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all(ups.map((u) => u.stop()));
  });

  it('sends each of 10,000 random names only to the PvDs of its zone', async () => {
    const suffixes = ['corp.example', 'lab.corp.example', 'x.lab.corp.example', 'shared.example', 'only2.example', 'example.org', 'corp.example.org', 'lab.example', '10.in-addr.arpa', '11.in-addr.arpa'];
    const names: string[] = [];
    for (let i = 0; i < 10_000; i++) names.push(`n${i}-${Math.random().toString(36).slice(2, 8)}.${suffixes[i % suffixes.length]}`);
    for (let i = 0; i < names.length; i += 200) {
      await Promise.all(names.slice(i, i + 200).map((n) => ask(pvdns.dns, n, n.endsWith('.arpa') ? 'PTR' : 'A', { timeoutMs: 5000 })));
    }
    const leaks: string[] = [];
    const reached = new Map<string, Set<string>>();
    ups.forEach((u, i) => {
      for (const n of u.names()) {
        if (!reached.has(n)) reached.set(n, new Set());
        reached.get(n)!.add(PVDS[i]!.identifier);
        if (!owners(n).includes(PVDS[i]!.identifier)) leaks.push(`${n} → ${PVDS[i]!.identifier}`);
      }
    });
    expect(leaks).toEqual([]);
    // Every name went somewhere, and to one PvD only (a name in a shared zone: to one of its PvDs;
    // a retransmission under load goes to the same one).
    expect(reached.size).toBe(names.length);
    expect([...reached].filter(([, pvds]) => pvds.size > 1)).toEqual([]);
  }, 120_000);
});
