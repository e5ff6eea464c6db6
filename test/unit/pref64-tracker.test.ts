// Pref64Tracker (src/dns64/tracker.ts) with a scripted "PvD's servers" and
// fake timers: when RFC 7050 discovery runs, what it learns, and what it
// reports.

import type DNS from 'dns2';
import { Packet } from 'dns2';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { errorAnswer, parseResponse, type Answer } from '../../src/dns/answer.js';
import { RCODE } from '../../src/dns/constants.js';
import { wireKey } from '../../src/dns/name.js';
import { Pref64Tracker } from '../../src/dns64/tracker.js';
import { createLogger } from '../../src/log.js';
import { pvdFromSpec, type Pvd } from '../../src/pvd/model.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';
import { soa } from '../helpers/fake-upstream.js';

const T = Packet.TYPE;

function aaaaAnswer(addresses: string[], ttl: number, o: { rcode?: number; soaTtl?: number } = {}): Answer {
  const p = new Packet();
  Object.assign(p.header, { id: 1, qr: 1, rd: 1, ra: 1, rcode: o.rcode ?? 0 });
  p.questions.push({ name: 'ipv4only.arpa', type: T.AAAA, class: 1 } as DNS.Packet.Question);
  for (const address of addresses) p.answers.push({ name: 'ipv4only.arpa', type: T.AAAA, class: 1, ttl, address } as DNS.Packet.Resource);
  if (o.soaTtl !== undefined) p.authorities.push(soa('arpa', o.soaTtl, o.soaTtl));
  const r = parseResponse(p.toBuffer(), { id: 1, nameKey: wireKey('ipv4only.arpa'), qtype: T.AAAA, qclass: 1 });
  if (!r.ok) throw new Error(r.reason);
  return r.answer;
}

const WKP_ANSWER = (ttl = 300): Answer => aaaaAnswer(['64:ff9b::c000:aa', '64:ff9b::c000:ab'], ttl);

function pvd(spec: Record<string, unknown>, tag?: number): Pvd {
  return pvdFromSpec(pvdSpecSchema.parse({ identifier: 'cell', dnsServers: ['127.0.0.1'], ...spec }), 'api', 0, tag);
}

describe('Pref64Tracker', () => {
  let reply: () => Answer;
  let asked: string[];
  let changes: Array<{ before: string[]; after: string[] }>;
  let tracker: Pref64Tracker;

  beforeEach(() => {
    vi.useFakeTimers();
    reply = () => WKP_ANSWER();
    asked = [];
    changes = [];
    tracker = new Pref64Tracker(
      (p) => {
        asked.push(p.id);
        return Promise.resolve(reply());
      },
      (_, before, after) => changes.push({ before: before.prefixes.map((p) => p.text), after: after.prefixes.map((p) => p.text) }),
      createLogger('silent'),
    );
  });
  afterEach(() => {
    tracker.close();
    vi.useRealTimers();
  });

  /** settle lets the discovery timer fire and its answer be applied. */
  const settle = async (ms = 0): Promise<void> => {
    await vi.advanceTimersByTimeAsync(ms);
  };

  it('asks nothing before start (check-config), then discovers the prefix of a PvD with dns64 auto', async () => {
    const cell = pvd({});
    tracker.track(cell);
    await settle(10_000);
    expect(asked).toEqual([]);
    expect(tracker.view(cell)).toMatchObject({ pref64: null, dns64: 'discovering' });
    tracker.start();
    await settle();
    expect(asked).toEqual(['cell']);
    expect(tracker.view(cell)).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'network', pref64Source: 'discovery', pref64Error: null });
    expect(tracker.info(cell).prefixes.map((p) => p.text)).toEqual(['64:ff9b::/96']);
    expect(tracker.info(cell).reverseZones).toEqual(['0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa']);
    expect(changes).toEqual([{ before: [], after: ['64:ff9b::/96'] }]);
  });

  it('rediscovers 10 s before the answer TTL runs out (RFC 7050 §3), and only then', async () => {
    reply = () => WKP_ANSWER(300);
    tracker.start();
    tracker.track(pvd({}));
    await settle();
    expect(asked).toHaveLength(1);
    await settle(289_000);
    expect(asked).toHaveLength(1);
    await settle(1_000);
    expect(asked).toHaveLength(2);
    expect(changes).toHaveLength(1); // the same prefix again is no change
  });

  it('reports a changed prefix with the old and the new one', async () => {
    tracker.start();
    tracker.track(pvd({}));
    await settle();
    reply = () => aaaaAnswer(['2001:db8:46::c000:aa'], 300);
    await settle(290_000);
    expect(changes.at(-1)).toEqual({ before: ['64:ff9b::/96'], after: ['2001:db8:46::/96'] });
  });

  it('rediscovers at once when the PvD is updated, keeping the prefix meanwhile', async () => {
    tracker.start();
    const cell = pvd({});
    tracker.track(cell);
    await settle();
    const moved = pvd({ dnsServers: ['127.0.0.2'] }, cell.tag);
    reply = () => aaaaAnswer(['2001:db8:46::c000:aa'], 300);
    tracker.track(moved);
    expect(tracker.info(moved).prefixes.map((p) => p.text)).toEqual(['64:ff9b::/96']);
    await settle();
    expect(asked).toHaveLength(2);
    expect(tracker.view(moved).pref64).toEqual(['2001:db8:46::/96']);
  });

  it('finds no NAT64 in NODATA and waits the negative TTL before asking again (RFC 7050 §3 N5)', async () => {
    reply = () => aaaaAnswer([], 0, { soaTtl: 900 });
    tracker.start();
    const wifi = pvd({ identifier: 'wifi' });
    tracker.track(wifi);
    await settle();
    expect(tracker.view(wifi)).toMatchObject({ pref64: [], dns64: 'none' });
    expect(tracker.info(wifi).prefixes).toEqual([]);
    await settle(899_000);
    expect(asked).toHaveLength(1);
    await settle(1_000);
    expect(asked).toHaveLength(2);
  });

  it('takes REFUSED (an authoritative-only server) as no DNS64, not as a failure to retry', async () => {
    reply = () => errorAnswer(RCODE.REFUSED);
    tracker.start();
    const lab = pvd({ identifier: 'lab' });
    tracker.track(lab);
    await settle(59_000);
    expect(asked).toHaveLength(1);
    expect(tracker.view(lab)).toMatchObject({ pref64: [], dns64: 'none', pref64Error: null });
    await settle(1_000);
    expect(asked).toHaveLength(2); // again after a minute
  });

  it('ignores AAAA records without a well-known address at an RFC 6052 place (a hijacking resolver)', async () => {
    reply = () => aaaaAnswer(['2001:db8::1'], 300);
    tracker.start();
    const hotel = pvd({ identifier: 'hotel' });
    tracker.track(hotel);
    await settle();
    expect(tracker.view(hotel)).toMatchObject({ pref64: [], dns64: 'none' });
  });

  it('retries a failed discovery after 1 s, 2 s, 4 s, keeping what it knew, and says why', async () => {
    tracker.start();
    const cell = pvd({});
    tracker.track(cell);
    await settle();
    reply = () => errorAnswer(RCODE.SERVFAIL, { code: 22, text: 'pvd cell: all servers unreachable' });
    await settle(290_000);
    expect(asked).toHaveLength(2);
    expect(tracker.view(cell)).toMatchObject({ pref64: ['64:ff9b::/96'], pref64Error: 'SERVFAIL: pvd cell: all servers unreachable' });
    await settle(1_000);
    expect(asked).toHaveLength(3);
    await settle(2_000);
    expect(asked).toHaveLength(4);
    await settle(3_999);
    expect(asked).toHaveLength(4);
    await settle(1);
    expect(asked).toHaveLength(5);
  });

  it('uses a configured prefix without asking, and asks nothing with dns64 off', async () => {
    tracker.start();
    const cfg = pvd({ dns64: '2001:db8:64::/96', dns64Synthesize: true });
    const off = pvd({ identifier: 'off', dns64: 'off' });
    tracker.track(cfg);
    tracker.track(off);
    await settle(60_000);
    expect(asked).toEqual([]);
    expect(tracker.view(cfg)).toMatchObject({ pref64: ['2001:db8:64::/96'], dns64: 'pvdns', pref64Source: 'config' });
    expect(tracker.info(cfg).synthesize).toBe(true);
    expect(tracker.view(off)).toMatchObject({ pref64: null, dns64: 'off' });
    expect(changes).toEqual([]); // a new PvD's first state is part of its announcement
  });

  it('asks nothing of a noInternet PvD (a split-DNS VPN): no DNS64, or the Well-Known Prefix for pvdns synthesis; it asks once it offers the Internet', async () => {
    tracker.start();
    const vpn = pvd({ identifier: 'vpn', dnsZones: ['corp.example'], noInternet: true });
    const synth = pvd({ identifier: 'lab', dnsZones: ['lab.example'], noInternet: true, dns64Synthesize: true });
    tracker.track(vpn);
    tracker.track(synth);
    await settle(600_000);
    expect(asked).toEqual([]);
    expect(tracker.view(vpn)).toMatchObject({ pref64: [], dns64: 'none', pref64Source: null, pref64Error: null });
    expect(tracker.view(synth)).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'pvdns', pref64Source: 'default' });
    // A configured prefix still applies.
    const nat = pvd({ identifier: 'nat', noInternet: true, dns64: '2001:db8:64::/96' });
    tracker.track(nat);
    expect(tracker.view(nat)).toMatchObject({ pref64: ['2001:db8:64::/96'], dns64: 'network', pref64Source: 'config' });
    tracker.track(pvdFromSpec(pvdSpecSchema.parse({ identifier: 'vpn', dnsServers: ['127.0.0.1'], dnsZones: ['corp.example'] }), 'api', 0, vpn.tag));
    await settle();
    expect(asked).toEqual(['vpn']);
    expect(tracker.view(vpn)).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'network', pref64Source: 'discovery' });
  });

  it('falls back to the Well-Known Prefix for pvdns synthesis when discovery finds none (RFC 6147 §5.2)', async () => {
    reply = () => aaaaAnswer([], 0, { soaTtl: 300 });
    tracker.start();
    const cell = pvd({ dns64Synthesize: true });
    tracker.track(cell);
    await settle();
    expect(tracker.view(cell)).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'pvdns', pref64Source: 'default' });
  });

  it('reports nothing when an update leaves a PvD without NAT64 as it was', async () => {
    reply = () => aaaaAnswer([], 0, { soaTtl: 300 });
    tracker.start();
    const wifi = pvd({ identifier: 'wifi' });
    tracker.track(wifi);
    await settle();
    expect(changes).toHaveLength(1); // discovering → none
    tracker.track(pvd({ identifier: 'wifi', priority: 5 }, wifi.tag));
    await settle();
    expect(asked).toHaveLength(2); // asked again at once
    expect(changes).toHaveLength(1);
  });

  it('stops for good on close, even with a discovery in flight', async () => {
    let answer: (a: Answer) => void = () => undefined;
    const slow = new Pref64Tracker(
      () => {
        asked.push('slow');
        return new Promise((r) => (answer = r));
      },
      () => undefined,
      createLogger('silent'),
    );
    slow.start();
    slow.track(pvd({}));
    await settle();
    slow.close();
    answer(WKP_ANSWER(30));
    await settle(600_000);
    expect(asked).toEqual(['slow']);
  });

  it('synthesizes with the Well-Known Prefix while discovery fails, for a PvD that asks pvdns to (RFC 6147 §5.2)', async () => {
    reply = () => errorAnswer(RCODE.SERVFAIL);
    tracker.start();
    const cell = pvd({ dns64Synthesize: true });
    tracker.track(cell);
    await settle();
    expect(tracker.view(cell)).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'pvdns', pref64Source: 'default' });
    expect(tracker.info(cell).synthesize).toBe(true);
  });

  it('routes the reverse zone of a discovered network-specific prefix nowhere: only configured, synthesized or well-known ones', async () => {
    reply = () => aaaaAnswer(['2001:db8:46::c000:aa'], 300);
    tracker.start();
    const cell = pvd({});
    tracker.track(cell);
    await settle();
    expect(tracker.info(cell).prefixes.map((p) => p.text)).toEqual(['2001:db8:46::/96']);
    expect(tracker.info(cell).reverseZones).toEqual([]);
    const cfg = pvd({ identifier: 'cfg', dns64: '2001:db8:64::/96' });
    tracker.track(cfg);
    expect(tracker.info(cfg).reverseZones).toEqual(['0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa']);
  });

  it('drops a withdrawn PvD: no more discovery, and a late answer is ignored', async () => {
    tracker.start();
    const cell = pvd({});
    tracker.track(cell);
    tracker.untrack(cell);
    await settle(600_000);
    expect(asked).toEqual([]);
    expect(tracker.info(cell).prefixes).toEqual([]);
  });
});
