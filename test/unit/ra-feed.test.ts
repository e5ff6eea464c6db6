// RaFeed (src/pvd/sources/ra.ts) with a fake receiver, fake timers and a
// sink that records: what a PvD option announces, what a new sequence
// number, lifetimes and a router lifetime of 0 do, the designated resolvers
// Encrypted DNS options give (RFC 9463 DNR), and how PvD Additional
// Information is fetched and used (RFC 8801 §4.1).

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { PvdSpec } from '../../src/pvd/schema.js';
import type { PvdInfo } from '../../src/pvd/sources/pvd-info.js';
import { RaFeed, type FetchInfo, type InfoRequest, type ReceivedRa } from '../../src/pvd/sources/ra.js';
import type { SourceSink } from '../../src/pvd/sources/source.js';
import { alpn, dnr, dnssl, dohpath, pio, port, pref64, pvd, ra, rdnss, type HeaderFields, type PvdFields } from '../helpers/ra-packets.js';

type Event = ['announce', PvdSpec] | ['withdraw', string];

class Harness {
  events: Event[] = [];
  onRa: ((ra: ReceivedRa) => void) | null = null;
  closed = 0;
  fetches: Array<{ id: string; via: InfoRequest; resolve: (r: PvdInfo | string) => void }> = [];
  /** The sink's calls and the fetches in the order they happened: "hold", "release", "fetch ID", "announce ID [zones]", "withdraw ID". */
  order: string[] = [];
  feed: RaFeed;

  constructor(o: { fetch?: boolean; random?: () => number; addresses?: string[] } = {}) {
    const fetchInfo: FetchInfo = (id, via) => {
      this.order.push(`fetch ${id}`);
      return new Promise((resolve) => this.fetches.push({ id, via, resolve }));
    };
    this.feed = new RaFeed({
      receiver: (onRa) => {
        this.onRa = onRa;
        return { close: () => this.closed++ };
      },
      fetchInfo: o.fetch === false ? undefined : fetchInfo,
      ifname: (i) => (i === 2 ? 'eth0' : i === 3 ? 'wlan0' : null),
      addresses: () => o.addresses ?? [],
      random: o.random ?? (() => 0.5),
    });
  }

  async start(): Promise<void> {
    const sink: SourceSink = {
      sync: () => {
        throw new Error('RaFeed never syncs');
      },
      announce: (spec) => {
        this.order.push(`announce ${spec.identifier} [${spec.dnsZones.join(' ')}]`);
        this.events.push(['announce', spec]);
      },
      withdraw: (id) => {
        this.order.push(`withdraw ${id}`);
        this.events.push(['withdraw', id]);
      },
      hold: () => {
        this.order.push('hold');
        return () => this.order.push('release');
      },
    };
    await this.feed.start(sink);
  }

  send(h: HeaderFields, ...options: number[][]): void {
    this.sendFrom('fe80::1', 2, h, ...options);
  }

  sendFrom(source: string, ifindex: number, h: HeaderFields, ...options: number[][]): void {
    this.onRa!({ payload: ra(h, ...options), source, ifindex, hopLimit: 255 });
  }

  take(): Event[] {
    const e = this.events;
    this.events = [];
    return e;
  }

  last(): PvdSpec {
    const e = this.events.at(-1);
    if (!e || e[0] !== 'announce') throw new Error(`last event is ${JSON.stringify(e)}`);
    return e[1];
  }
}

function pvdOpt(f: PvdFields = {}, ...options: number[][]): number[] {
  return pvd('Cafe.Example.COM.', f, ...options);
}

function info(o: Partial<PvdInfo> = {}): PvdInfo {
  const expires = o.expires ?? new Date(Date.now() + 3600_000).toISOString();
  return { identifier: 'cafe.example.com', expires, expiresAt: Date.parse(expires), prefixes: ['2001:db8:cafe::/48'], dnsZones: ['cafe.example.com'], noInternet: false, ...o };
}

/** Lets promise callbacks (a fetch's result) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('RaFeed', () => {
  let h: Harness;
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.parse('2030-01-01T00:00:00Z') });
  });
  afterEach(() => {
    h?.feed.stop();
    vi.useRealTimers();
  });

  it('announces a PvD from an RA: RDNSS (link-local scoped), PIOs in and outside the option, PREF64, the interface and expiry', async () => {
    h = new Harness();
    await h.start();
    h.send({ routerLifetime: 1800 }, pio('2001:db8:cafe::/64'), rdnss(600, 'fe80::53'), pvdOpt({}, rdnss(600, '2001:db8:cafe::53'), pio('2001:db8:f00d::/64'), pref64('2001:db8:64::/96', 600), dnssl(600, 'corp.example')));
    expect(h.take()).toEqual([
      [
        'announce',
        expect.objectContaining({
          identifier: 'cafe.example.com',
          dnsServers: ['[fe80::53%eth0]', '2001:db8:cafe::53'],
          prefixes: ['2001:db8:cafe::/64', '2001:db8:f00d::/64'],
          dns64: '2001:db8:64::/96',
          interface: 'eth0',
          expires: '2030-01-01T00:30:00Z',
          // DNSSL is a search list: no zone is claimed from it
          dnsZones: [],
          noInternet: false,
        }),
      ],
    ]);
  });

  it('ignores RAs without a PvD option, malformed ones and ones from unnamed interfaces', async () => {
    h = new Harness();
    await h.start();
    h.send({}, rdnss(600, '2001:db8::53'));
    h.onRa!({ payload: ra({}, pvdOpt({}, rdnss(600, '2001:db8::53'))), source: 'fe80::1', ifindex: 2, hopLimit: 64 });
    h.onRa!({ payload: ra({}, pvdOpt({}, rdnss(600, '2001:db8::53'))), source: 'fe80::1', ifindex: 9, hopLimit: 255 });
    expect(h.take()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leaves a repeated RA unannounced, and moves expires with a renewing one', async () => {
    h = new Harness();
    await h.start();
    const opt = pvdOpt({}, rdnss(600, '2001:db8::53'));
    h.send({ routerLifetime: 1800 }, opt);
    h.send({ routerLifetime: 1800 }, opt);
    expect(h.take()).toHaveLength(1);
    vi.advanceTimersByTime(200_000);
    h.send({ routerLifetime: 1800 }, opt);
    expect(h.last().expires).toBe('2030-01-01T00:33:20Z');
  });

  it('withdraws at once on a router lifetime of 0, and when the router lifetime runs out', async () => {
    h = new Harness();
    await h.start();
    h.send({ routerLifetime: 1800 }, pvdOpt({}, rdnss(600, '2001:db8::53')));
    h.send({ routerLifetime: 0 }, pvdOpt({}, rdnss(600, '2001:db8::53')));
    expect(h.take().map((e) => e[0])).toEqual(['announce', 'withdraw']);
    expect(vi.getTimerCount()).toBe(0);

    h.send({ routerLifetime: 30 }, pvdOpt({}, rdnss(0xffffffff, '2001:db8::53')));
    h.take();
    vi.advanceTimersByTime(29_999);
    expect(h.take()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.take()).toEqual([['withdraw', 'cafe.example.com']]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('the inner RA header decides: outer lifetime 0 with inner 1600 announces (RFC 8801 §5.2)', async () => {
    h = new Harness();
    await h.start();
    h.send({ routerLifetime: 0 }, pvdOpt({ header: { routerLifetime: 1600 } }, rdnss(600, '2001:db8::53')));
    expect(h.last().expires).toBe('2030-01-01T00:26:40Z');
    h.send({ routerLifetime: 6000 }, pvdOpt({ header: { routerLifetime: 0 } }));
    expect(h.take().at(-1)).toEqual(['withdraw', 'cafe.example.com']);
  });

  it('drops a server, prefix or PREF64 when its own lifetime ends or an RA gives it 0, and keeps what a later RA leaves out', async () => {
    h = new Harness();
    await h.start();
    h.send({ routerLifetime: 1800 }, pvdOpt({}, rdnss(60, '2001:db8::1'), rdnss(600, '2001:db8::2'), pio('2001:db8:1::/64', { valid: 120 }), pref64('64:ff9b::/96', 88)));
    expect(h.last()).toMatchObject({ dnsServers: ['2001:db8::1', '2001:db8::2'], prefixes: ['2001:db8:1::/64'], dns64: '64:ff9b::/96' });
    h.send({ routerLifetime: 1800 }, pvdOpt({}, pio('2001:db8:2::/64')));
    expect(h.last()).toMatchObject({ dnsServers: ['2001:db8::1', '2001:db8::2'], prefixes: ['2001:db8:1::/64', '2001:db8:2::/64'] });
    vi.advanceTimersByTime(60_000);
    expect(h.last().dnsServers).toEqual(['2001:db8::2']);
    vi.advanceTimersByTime(30_000);
    expect(h.last().dns64).toBe('auto');
    vi.advanceTimersByTime(30_000);
    expect(h.last().prefixes).toEqual(['2001:db8:2::/64']);
    h.send({ routerLifetime: 1800 }, pvdOpt({}, rdnss(0, '2001:db8::2')));
    expect(h.last().dnsServers).toEqual([]);
  });

  it('keeps a PvD two routers advertise until the last one leaves, with the servers of both', async () => {
    h = new Harness();
    await h.start();
    h.sendFrom('fe80::1', 2, {}, pvdOpt({}, rdnss(600, '2001:db8::1')));
    h.sendFrom('fe80::2', 3, {}, pvdOpt({}, rdnss(600, 'fe80::53')));
    expect(h.last()).toMatchObject({ dnsServers: ['2001:db8::1', '[fe80::53%wlan0]'], interface: 'wlan0' });
    h.sendFrom('fe80::2', 3, { routerLifetime: 0 }, pvdOpt());
    expect(h.last()).toMatchObject({ dnsServers: ['2001:db8::1'], interface: 'eth0' });
    h.sendFrom('fe80::1', 2, { routerLifetime: 0 }, pvdOpt());
    expect(h.take().at(-1)).toEqual(['withdraw', 'cafe.example.com']);
  });

  it('keeps what routers can make it hold bounded: 64 PvDs, 16 routers a PvD, 32 servers a router', async () => {
    h = new Harness();
    await h.start();
    for (let i = 0; i < 80; i++) h.send({ routerLifetime: 1800 }, pvd(`flood${i}.example`, {}, rdnss(600, '2001:db8::53')));
    expect(new Set(h.take().filter((e) => e[0] === 'announce').map((e) => (e[1] as PvdSpec).identifier)).size).toBe(64);
    for (let i = 0; i < 20; i++) h.sendFrom(`fe80::${i + 2}`, 2, { routerLifetime: 1800 }, pvd('flood0.example', {}, rdnss(600, `2001:db8::${i + 100}`)));
    // The first router's server and those of 15 more: 16 routers.
    expect(h.last().dnsServers).toHaveLength(16);
    h.take();
    const many = Array.from({ length: 40 }, (_, i) => `2001:db8:1::${i + 1}`);
    h.send({ routerLifetime: 1800 }, pvd('flood1.example', {}, rdnss(600, ...many)));
    expect(h.last().dnsServers).toHaveLength(32);
  });

  it('withdraws everything on stop and closes the receiver', async () => {
    h = new Harness();
    await h.start();
    h.send({}, pvd('a.example', {}, rdnss(600, '2001:db8::1')));
    h.send({}, pvd('b.example', {}, rdnss(600, '2001:db8::2')));
    h.take();
    h.feed.stop();
    expect(h.take()).toEqual([
      ['withdraw', 'a.example'],
      ['withdraw', 'b.example'],
    ]);
    expect(h.closed).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  describe('PvD Additional Information (H flag)', () => {
    it('announces from the RA at once, then adds the fetched dnsZones and noInternet', async () => {
      h = new Harness({ addresses: ['2001:db8:dead::5', '2001:db8:cafe::5'] });
      await h.start();
      h.send({}, pvdOpt({ http: true, sequence: 7 }, rdnss(600, '2001:db8:cafe::53'), pio('2001:db8:cafe::/64')));
      expect(h.take()).toEqual([['announce', expect.objectContaining({ dnsZones: [], noInternet: false })]]);
      expect(h.fetches).toHaveLength(1);
      expect(h.fetches[0]!.id).toBe('cafe.example.com');
      expect(h.fetches[0]!.via).toEqual({ servers: ['2001:db8:cafe::53'], ifname: 'eth0', localAddress: '2001:db8:cafe::5', prefixes: ['2001:db8:cafe::/64'] });
      h.fetches[0]!.resolve(info({ noInternet: true }));
      await settle();
      expect(h.take()).toEqual([['announce', expect.objectContaining({ dnsZones: ['cafe.example.com'], noInternet: true })]]);
    });

    it('never fetches without the H flag', async () => {
      h = new Harness();
      await h.start();
      h.send({}, pvdOpt({ sequence: 7 }, rdnss(600, '2001:db8:cafe::53')));
      vi.advanceTimersByTime(60_000);
      expect(h.fetches).toEqual([]);
    });

    it('on a new sequence number drops the information at once and refetches after the random delay', async () => {
      h = new Harness({ random: () => 0.5 });
      await h.start();
      const opt = (sequence: number): number[] => pvdOpt({ http: true, sequence, delay: 2 }, rdnss(600, '2001:db8:cafe::53'));
      h.send({}, opt(1));
      h.fetches[0]!.resolve(info());
      await settle();
      expect(h.last().dnsZones).toEqual(['cafe.example.com']);
      vi.advanceTimersByTime(20_000);
      h.send({}, opt(1));
      expect(h.fetches).toHaveLength(1);
      h.send({}, opt(2));
      expect(h.last().dnsZones).toEqual([]);
      // 0.5 × 2^(10+2) ms = 2048 ms
      vi.advanceTimersByTime(2047);
      expect(h.fetches).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(h.fetches).toHaveLength(2);
      h.fetches[1]!.resolve(info({ dnsZones: ['new.example.com'] }));
      await settle();
      expect(h.last().dnsZones).toEqual(['new.example.com']);
    });

    it('discards a fetch that answers after the sequence number changed', async () => {
      h = new Harness({ random: () => 0 });
      await h.start();
      h.send({}, pvdOpt({ http: true, sequence: 1 }, rdnss(600, '2001:db8:cafe::53')));
      h.send({}, pvdOpt({ http: true, sequence: 2 }, rdnss(600, '2001:db8:cafe::53')));
      h.fetches[0]!.resolve(info({ dnsZones: ['stale.example'] }));
      await settle();
      expect(h.feed.specs()[0]!.dnsZones).toEqual([]);
    });

    it('keeps 10 s between two requests for one PvD', async () => {
      h = new Harness({ random: () => 0 });
      await h.start();
      const opt = (sequence: number): number[] => pvdOpt({ http: true, sequence }, rdnss(600, '2001:db8:cafe::53'));
      h.send({}, opt(1));
      h.fetches[0]!.resolve(info());
      await settle();
      h.send({}, opt(2));
      vi.advanceTimersByTime(9_999);
      expect(h.fetches).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(h.fetches).toHaveLength(2);
    });

    it('refetches in the second half of the information’s life and deprecates it when it expires', async () => {
      h = new Harness({ random: () => 0.5 });
      await h.start();
      h.send({ routerLifetime: 9000 }, pvdOpt({ http: true }, rdnss(0xffffffff, '2001:db8:cafe::53')));
      h.fetches[0]!.resolve(info({ expires: new Date(Date.now() + 4000_000).toISOString() }));
      await settle();
      // A = now, B = A + 4000 s: the refetch is at A + 2000 s + 0.5 × 2000 s = A + 3000 s.
      vi.advanceTimersByTime(2_999_999);
      expect(h.fetches).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(h.fetches).toHaveLength(2);
      expect(h.last().dnsZones).toEqual(['cafe.example.com']);
      vi.advanceTimersByTime(1000_000); // no answer: at B the information is deprecated
      expect(h.last().dnsZones).toEqual([]);
    });

    it('does not use information whose prefixes do not cover a PIO, even one advertised later (§4.1, §4.4)', async () => {
      h = new Harness();
      await h.start();
      h.send({}, pvdOpt({ http: true }, rdnss(600, '2001:db8:cafe::53'), pio('2001:db8:cafe::/64')));
      h.fetches[0]!.resolve(info());
      await settle();
      expect(h.last().dnsZones).toEqual(['cafe.example.com']);
      h.send({}, pvdOpt({ http: true }, pio('2001:db8:beef::/64')));
      expect(h.last()).toMatchObject({ dnsZones: [], noInternet: false, prefixes: ['2001:db8:cafe::/64', '2001:db8:beef::/64'] });
    });

    it('after a failure, announces from the RA alone and asks for that PvD no more, even on a new sequence number', async () => {
      h = new Harness({ random: () => 0 });
      await h.start();
      h.send({}, pvdOpt({ http: true, sequence: 1 }, rdnss(600, '2001:db8:cafe::53')));
      h.fetches[0]!.resolve('https://cafe.example.com/.well-known/pvd: HTTP 404');
      await settle();
      expect(h.take()).toEqual([['announce', expect.objectContaining({ dnsZones: [], noInternet: false })]]);
      h.send({}, pvdOpt({ http: true, sequence: 2 }, rdnss(600, '2001:db8:cafe::53')));
      vi.advanceTimersByTime(600_000);
      expect(h.fetches).toHaveLength(1);
    });

    it('remembers a PvD withdrawn and advertised again: 10 s since its last request, none after a failure (§4.1)', async () => {
      h = new Harness();
      await h.start();
      const opt = (id: string): number[] => pvd(id, { http: true }, rdnss(600, '2001:db8:cafe::53'));
      h.send({}, opt('back.example'));
      h.send({}, opt('failed.example'));
      h.fetches[1]!.resolve('HTTP 500');
      await settle();
      h.send({ routerLifetime: 0 }, opt('back.example'));
      h.send({ routerLifetime: 0 }, opt('failed.example'));
      vi.advanceTimersByTime(3000);
      h.order = [];
      h.send({}, opt('back.example'));
      h.send({}, opt('failed.example'));
      expect(h.order).toEqual(['announce back.example []', 'announce failed.example []']); // no fetch, so no hold
      vi.advanceTimersByTime(6999);
      expect(h.fetches).toHaveLength(2);
      vi.advanceTimersByTime(1);
      expect(h.fetches.map((f) => f.id)).toEqual(['back.example', 'failed.example', 'back.example']);
      vi.advanceTimersByTime(60_000);
      expect(h.fetches).toHaveLength(3);
    });

    it('waits for a DNS server to resolve the PvD ID through', async () => {
      h = new Harness();
      await h.start();
      h.send({}, pvdOpt({ http: true }, pio('2001:db8:cafe::/64')));
      expect(h.fetches).toHaveLength(0);
      h.send({}, pvdOpt({ http: true }, rdnss(600, '2001:db8:cafe::53')));
      vi.advanceTimersByTime(10_000);
      expect(h.fetches).toHaveLength(1);
    });

    it('asks at most 5 times in 10 s on one link, and nothing after 10 failures on it', async () => {
      h = new Harness();
      await h.start();
      for (let i = 0; i < 7; i++) h.send({}, pvd(`p${i}.example`, { http: true }, rdnss(600, '2001:db8::53')));
      expect(h.fetches).toHaveLength(5);
      vi.advanceTimersByTime(10_000);
      expect(h.fetches).toHaveLength(7);
      for (const f of h.fetches) f.resolve('HTTP 500');
      await settle();
      for (let i = 7; i < 12; i++) h.send({}, pvd(`p${i}.example`, { http: true }, rdnss(600, '2001:db8::53')));
      vi.advanceTimersByTime(10_000);
      // 7 failures so far: these 5 may still ask
      expect(h.fetches).toHaveLength(12);
      for (const f of h.fetches.slice(7)) f.resolve('HTTP 500');
      await settle();
      h.send({}, pvd('p12.example', { http: true }, rdnss(600, '2001:db8::53')));
      h.sendFrom('fe80::1', 3, {}, pvd('p13.example', { http: true }, rdnss(600, '2001:db8::53')));
      vi.advanceTimersByTime(60_000);
      // the other link is another network: it may still ask
      expect(h.fetches.map((f) => f.id).slice(12)).toEqual(['p13.example']);
    });

    describe('the routing gate while an RA’s fetch runs', () => {
      const opt = (sequence = 1, ...options: number[][]): number[] => pvdOpt({ http: true, sequence }, rdnss(600, '2001:db8:cafe::53'), ...options);

      it('holds it from the first RA until the PvD is updated with the fetched zones', async () => {
        h = new Harness();
        await h.start();
        h.send({}, opt());
        expect(h.order).toEqual(['announce cafe.example.com []', 'hold', 'fetch cafe.example.com']);
        h.fetches[0]!.resolve(info());
        await settle();
        expect(h.order.slice(3)).toEqual(['announce cafe.example.com [cafe.example.com]', 'release']);
      });

      it('releases it when the fetch fails, the PvD as the RA alone made it', async () => {
        h = new Harness();
        await h.start();
        h.send({}, opt());
        h.fetches[0]!.resolve('https://cafe.example.com/.well-known/pvd: HTTP 404');
        await settle();
        expect(h.order).toEqual(['announce cafe.example.com []', 'hold', 'fetch cafe.example.com', 'release']);
      });

      it('releases it when the PvD is withdrawn, gets a new sequence number, or the feed stops before the fetch answers', async () => {
        h = new Harness({ random: () => 0.5 });
        await h.start();
        h.send({}, opt());
        h.send({ routerLifetime: 0 }, opt());
        expect(h.order.slice(3)).toEqual(['withdraw cafe.example.com', 'release']);
        h.fetches[0]!.resolve(info()); // late: changes nothing, releases nothing more
        await settle();
        expect(h.order).toHaveLength(5);

        h.order = [];
        h.send({}, pvd('other.example', { http: true, sequence: 1 }, rdnss(600, '2001:db8:cafe::53')));
        h.send({}, pvd('other.example', { http: true, sequence: 2 }, rdnss(600, '2001:db8:cafe::53')));
        expect(h.order).toEqual(['announce other.example []', 'hold', 'fetch other.example', 'release']);

        h.order = [];
        h.send({}, pvd('third.example', { http: true }, rdnss(600, '2001:db8:cafe::53')));
        h.feed.stop();
        expect(h.order.filter((o) => o === 'hold' || o === 'release')).toEqual(['hold', 'release']);
      });

      it('holds nothing for a delayed fetch: a new sequence number, a refresh, one waiting for a server or the link’s limit', async () => {
        h = new Harness({ random: () => 0 });
        await h.start();
        const lasting = (sequence: number): number[] => pvdOpt({ http: true, sequence }, rdnss(0xffffffff, '2001:db8:cafe::53'));
        h.send({ routerLifetime: 9000 }, lasting(1));
        h.fetches[0]!.resolve(info({ expires: new Date(Date.now() + 4000_000).toISOString() }));
        await settle();
        h.order = [];
        h.send({ routerLifetime: 9000 }, lasting(2)); // refetched 10 s after the last request (random 0)
        vi.advanceTimersByTime(10_000);
        expect(h.order).toEqual(['announce cafe.example.com []', 'fetch cafe.example.com']);
        h.fetches[1]!.resolve(info({ expires: new Date(Date.now() + 4000_000).toISOString() }));
        await settle();
        vi.advanceTimersByTime(2000_000); // the refresh in the second half of its life
        expect(h.fetches).toHaveLength(3);
        expect(h.order).not.toContain('hold');

        h.order = [];
        h.send({}, pvd('noserver.example', { http: true }, pio('2001:db8:cafe::/64')));
        h.send({}, pvd('noserver.example', { http: true }, rdnss(600, '2001:db8:cafe::53')));
        vi.advanceTimersByTime(10_000);
        expect(h.order.filter((o) => o.startsWith('fetch') || o === 'hold')).toEqual(['fetch noserver.example']);

        h.order = [];
        for (let i = 0; i < 6; i++) h.send({}, pvd(`p${i}.example`, { http: true }, rdnss(600, '2001:db8::53')));
        // the link asked once in these 10 s (noserver.example): four more may start now, each holding; two wait, holding nothing
        expect(h.order.filter((o) => o === 'hold')).toHaveLength(4);
        vi.advanceTimersByTime(10_000);
        expect(h.order.filter((o) => o.startsWith('fetch'))).toHaveLength(6);
        expect(h.order.filter((o) => o === 'hold')).toHaveLength(4);
      });
    });

    it('without a fetchInfo, the H flag fetches nothing and the PvD is still announced', async () => {
      h = new Harness({ fetch: false });
      await h.start();
      h.send({}, pvdOpt({ http: true }, rdnss(600, '2001:db8:cafe::53')));
      expect(h.take()).toHaveLength(1);
      expect(h.fetches).toEqual([]);
    });
  });
});

describe('RaFeed: designated resolvers from Encrypted DNS options (RFC 9463)', () => {
  let h: Harness;
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.parse('2030-01-01T00:00:00Z') });
  });
  afterEach(() => {
    h?.feed.stop();
    vi.useRealTimers();
  });

  it('puts DoT and DoH resolvers in designatedResolvers by Service Priority, the RDNSS servers staying the cleartext dnsServers', async () => {
    h = new Harness({ fetch: false });
    await h.start();
    h.send(
      { routerLifetime: 1800 },
      dnr('doh.example', { priority: 20, lifetime: 600, addresses: ['2001:db8::443'], params: [alpn('h2', 'h3'), port(8443), dohpath('/dns-query{?dns}')] }),
      pvdOpt({}, rdnss(600, '2001:db8::53'), dnr('Dot.Example', { priority: 10, lifetime: 600, addresses: ['2001:db8::853', 'fe80::853'], params: [alpn('dot')] })),
    );
    const spec = h.last();
    expect(spec.dnsServers).toEqual(['2001:db8::53']);
    expect(spec.designatedResolvers).toEqual(['tls://[2001:db8::853]:853#dot.example', 'tls://[fe80::853%eth0]:853#dot.example', 'https://[2001:db8::443]:8443/dns-query#doh.example']);
    expect(spec.encryption).toBeNull(); // opportunistic by effectiveEncryption: the RDNSS servers are the fallback
  });

  it('skips what it cannot speak: DoQ, HTTP/3 alone, h2 without a dohpath, DoH at a link-local address, ADN-only mode', async () => {
    const lines: string[] = [];
    const log = { debug: (o: { skipped?: string }) => o.skipped && lines.push(o.skipped), info() {}, warn() {} };
    let onRa: ((r: ReceivedRa) => void) | null = null;
    const feed = new RaFeed({ receiver: (cb) => ((onRa = cb), { close() {} }), ifname: () => 'eth0', log: log as never });
    const announced: PvdSpec[] = [];
    await feed.start({ sync() {}, announce: (s) => announced.push(s), withdraw() {}, hold: () => () => {} });
    const payload = ra(
      {},
      pvdOpt(
        {},
        rdnss(600, '2001:db8::53'),
        dnr('doq.example', { priority: 1, addresses: ['2001:db8::1'], params: [alpn('doq', 'h3'), dohpath('/q{?dns}')] }),
        dnr('h2.example', { priority: 2, addresses: ['2001:db8::2'], params: [alpn('h2')] }),
        dnr('ll.example', { priority: 3, addresses: ['fe80::2'], params: [alpn('h2', 'dot'), dohpath('/q{?dns}')] }),
        dnr('adn-only.example', { priority: 4 }),
      ),
    );
    onRa!({ payload, source: 'fe80::1', ifindex: 2, hopLimit: 255 });
    feed.stop();
    expect(announced.at(-1)!.designatedResolvers).toEqual(['tls://[fe80::2%eth0]:853#ll.example']);
    expect(announced.at(-1)!.dnsServers).toEqual(['2001:db8::53']);
    expect(lines).toEqual([
      expect.stringMatching(/^doq\.example: alpn doq, h3: pvdns speaks DoT/),
      expect.stringMatching(/^h2\.example: alpn h2 without a dohpath \(RFC 9461 §5\.1\)/),
      expect.stringMatching(/^ll\.example: DoH at the link-local address fe80::2, which a URL cannot scope/),
      expect.stringMatching(/^adn-only\.example: ADN-only mode.*RFC 9463 §3\.1\.6/),
    ]);
  });

  it('a designated resolver expires with its lifetime, an RA with lifetime 0 withdraws it at once, and the RDNSS servers stay', async () => {
    h = new Harness({ fetch: false });
    await h.start();
    const dot = (lifetime: number, a: string, priority = 1): number[] => dnr('dot.example', { priority, lifetime, addresses: [a], params: [alpn('dot')] });
    h.send({ routerLifetime: 1800 }, pvdOpt({}, rdnss(1200, '2001:db8::53'), dot(60, '2001:db8::1'), dot(600, '2001:db8::2', 2)));
    expect(h.last().designatedResolvers).toEqual(['tls://[2001:db8::1]:853#dot.example', 'tls://[2001:db8::2]:853#dot.example']);
    h.take();
    vi.advanceTimersByTime(59_999);
    expect(h.take()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.last().designatedResolvers).toEqual(['tls://[2001:db8::2]:853#dot.example']);
    // §6.1: lifetime 0 — the resolver MUST no longer be used
    h.send({ routerLifetime: 1800 }, pvdOpt({}, dot(0, '2001:db8::2')));
    expect(h.last().designatedResolvers).toEqual([]);
    expect(h.last().dnsServers).toEqual(['2001:db8::53']);
  });

  it('a new Service Priority for a resolver reorders it; two routers\' resolvers merge, the better priority counting', async () => {
    h = new Harness({ fetch: false });
    await h.start();
    const dot = (adn: string, priority: number): number[] => dnr(adn, { priority, addresses: ['2001:db8::1'], params: [alpn('dot')] });
    h.sendFrom('fe80::1', 2, {}, pvdOpt({}, dot('a.example', 5), dot('b.example', 7)));
    expect(h.last().designatedResolvers).toEqual(['tls://[2001:db8::1]:853#a.example', 'tls://[2001:db8::1]:853#b.example']);
    h.sendFrom('fe80::1', 2, {}, pvdOpt({}, dot('a.example', 9), dot('b.example', 7)));
    expect(h.last().designatedResolvers).toEqual(['tls://[2001:db8::1]:853#b.example', 'tls://[2001:db8::1]:853#a.example']);
    h.sendFrom('fe80::2', 2, {}, pvdOpt({}, dot('a.example', 1)));
    expect(h.last().designatedResolvers).toEqual(['tls://[2001:db8::1]:853#a.example', 'tls://[2001:db8::1]:853#b.example']);
  });

  it('keeps at most 32 designated resolvers per router, as it does servers, and a malformed option changes nothing', async () => {
    h = new Harness({ fetch: false });
    await h.start();
    const many = Array.from({ length: 36 }, (_, i) => dnr(`r${i}.example`, { priority: 100 - i, addresses: ['2001:db8::1'], params: [alpn('dot')] }));
    h.send({}, pvdOpt({}, ...many));
    const list = h.last().designatedResolvers;
    expect(list).toHaveLength(32); // the first 32 heard (MAX_ITEMS_PER_ROUTER), in Service Priority order
    expect(list[0]).toBe('tls://[2001:db8::1]:853#r31.example');
    expect(list.at(-1)).toBe('tls://[2001:db8::1]:853#r0.example');
    h.take();
    h.send({}, pvdOpt({}, ...many, dnr('x.example', { addresses: ['2001:db8::1'], params: [port(853), alpn('dot')] })));
    expect(h.take()).toEqual([]);
  });
});
