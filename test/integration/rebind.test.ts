// DNS rebinding protection per PvD (rebindProtection): a private, loopback or
// link-local address for a name the PvD does not own, outside its prefixes,
// is refused with EDE 15 (Blocked); its own names and prefixes are not.
// Fake upstreams on 127.0.0.56–57.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, ede, Packet } from '../helpers/client.js';
import type { Resource } from '../helpers/client.js';
import { answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { resolve } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const DATA: Record<string, [number, string]> = {
  'evil.example': [Packet.TYPE.A, '10.0.0.5'],
  'evil6.example': [Packet.TYPE.AAAA, 'fd00::5'],
  'loop.example': [Packet.TYPE.A, '127.0.0.1'],
  'printer.example': [Packet.TYPE.A, '192.168.1.20'],
  'router.lan.example': [Packet.TYPE.A, '10.0.0.1'],
  'public.example': [Packet.TYPE.A, '192.0.2.1'],
};

function responder(q: Packet): Packet {
  const { name, type } = q.questions[0]!;
  const d = DATA[name.toLowerCase()];
  if (!d || d[0] !== type) return answer(q, []);
  return answer(q, [{ name, type, class: 1, ttl: 300, address: d[1] } as Resource]);
}

describe('DNS rebinding protection', () => {
  const guarded = new FakeUpstream(responder);
  const open = new FakeUpstream(responder);
  let pvdns: Running;

  beforeAll(async () => {
    await guarded.start('127.0.0.56');
    await open.start('127.0.0.57');
    pvdns = await startPvdns({
      pvds: [
        { identifier: 'home', dnsServers: [guarded.address], default: true, rebindProtection: true, dnsZones: ['lan.example'], prefixes: ['192.168.1.0/24'] },
        { identifier: 'lab', dnsServers: [open.address], dnsZones: ['lab.example'], noInternet: true },
      ],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await Promise.all([guarded.stop(), open.stop()]);
  });

  it.each([
    ['evil.example', 'A', '10.0.0.5'],
    ['evil6.example', 'AAAA', 'fd00::5'],
    ['loop.example', 'A', '127.0.0.1'],
  ])('refuses %s %s → %s, a private address for a name the PvD does not own, with EDE 15', async (name, type, address) => {
    const r = await ask(pvdns.dns, name, type);
    expect(r.packet.header.rcode).toBe(5);
    expect(r.packet.answers).toEqual([]);
    expect(ede(r.packet)).toMatchObject({ infoCode: 15, extraText: `pvd home: ${address} for a name it does not own (DNS rebinding protection)` });
  });

  it("passes private addresses inside the PvD's prefixes, and for names in its zones", async () => {
    expect((await ask(pvdns.dns, 'printer.example', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.168.1.20']);
    expect((await ask(pvdns.dns, 'router.lan.example', 'A')).packet.answers.map((x) => x.address)).toEqual(['10.0.0.1']);
    expect((await ask(pvdns.dns, 'public.example', 'A')).packet.answers.map((x) => x.address)).toEqual(['192.0.2.1']);
  });

  it('leaves a PvD without rebindProtection alone, and counts what it refused', async () => {
    expect((await resolve(pvdns.http, 'name=evil.example&type=A&pvd=lab')).body.answers.map((x) => x.data)).toEqual(['10.0.0.5']);
    const metrics = await (await fetch(`${pvdns.http}/metrics`)).text();
    expect(metrics).toMatch(/^pvdns_rebind_blocked_total\{pvd="home"\} 3$/m);
    expect(metrics).not.toMatch(/pvdns_rebind_blocked_total\{pvd="lab"\}/);
  });
});
