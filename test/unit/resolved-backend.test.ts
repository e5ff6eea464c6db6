// The resolved backend's reading of systemd-resolved's D-Bus values
// (src/pvd/sources/resolved.ts): servers in resolvectl's forms, domains,
// the default route, interface names from sysfs. The backend against a real
// resolved is test/host/resolved.test.ts.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DBusMessage } from '../../src/dbus/connection.js';
import { interfaceNames } from '../../src/pvd/sources/ifnames.js';
import { linkPvd } from '../../src/pvd/sources/host.js';
import { formatServer, globalHostLink, hostLink, ResolvedBackend } from '../../src/pvd/sources/resolved.js';
import { pvdSpecSchema } from '../../src/pvd/schema.js';

const v4 = (...b: number[]): Buffer => Buffer.from(b);
const v6 = (text: string): Buffer => {
  // enough for the test's addresses: "fd00::1", "fe80::1", "2001:db8::53"
  const [head, tail] = text.split('::') as [string, string];
  const words = (s: string): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  return Buffer.from(all.flatMap((w) => [w >> 8, w & 0xff]));
};

describe('formatServer writes what resolvectl prints', () => {
  it.each([
    [2, v4(192, 0, 2, 1), 0, 3, '', '192.0.2.1'],
    [2, v4(10, 8, 0, 54), 5353, 3, 'dns.corp', '10.8.0.54:5353#dns.corp'],
    [2, v4(10, 8, 0, 53), 0, 3, 'tls.corp', '10.8.0.53#tls.corp'],
    [10, v6('fd00::1'), 0, 3, '', 'fd00::1'],
    [10, v6('fd00::1'), 5353, 3, '', '[fd00::1]:5353'],
    [10, v6('fe80::1'), 0, 3, '', 'fe80::1%3'],
    [10, v6('fe80::1'), 5353, 3, 'x.example', '[fe80::1]:5353%3#x.example'],
    [10, v6('fe80::1'), 0, 0, '', 'fe80::1'],
    [10, v6('2001:db8::53'), 0, 7, '', '2001:db8::53'],
  ])('family %i %o port %i ifindex %i name %s → %s', (family, addr, port, ifindex, name, want) => {
    expect(formatServer(family, addr, port, ifindex, name)).toBe(want);
  });

  it('gives null for what is not an address of its family', () => {
    expect(formatServer(2, v4(1, 2, 3), 0, 0, '')).toBeNull();
    expect(formatServer(10, v4(1, 2, 3, 4), 0, 0, '')).toBeNull();
    expect(formatServer(7, v4(1, 2, 3, 4), 0, 0, '')).toBeNull();
  });
});

describe('hostLink', () => {
  it('lowers and strips domains, "~." is "." and a default route', () => {
    const l = hostLink(3, 'vpn0', {
      DNSEx: [[2, v4(10, 8, 0, 54), 0, '']],
      Domains: [['Corp.Example.COM', true], ['search.example', false], ['.', true]],
      DefaultRoute: false,
      DNSOverTLS: 'opportunistic',
      DNSSEC: 'allow-downgrade',
    });
    expect(l).toEqual({ ifname: 'vpn0', ifindex: 3, servers: ['10.8.0.54'], domains: ['corp.example.com', 'search.example', '.'], defaultRoute: true, dnsOverTls: 'opportunistic', dnssec: 'allow-downgrade' });
  });

  it('takes the default route from resolved when no "~." says otherwise, and leaves out empty modes', () => {
    expect(hostLink(2, 'wlan0', { DNSEx: [], Domains: [['home.example', false]], DefaultRoute: true, DNSOverTLS: '' })).toEqual({ ifname: 'wlan0', ifindex: 2, servers: [], domains: ['home.example'], defaultRoute: true });
    expect(hostLink(2, 'wg0', { Domains: [['corp.example', true]], DefaultRoute: false }).defaultRoute).toBe(false);
  });

  it("keeps a server's TLS name and port, and makes the link's DNSOverTLS (else the Manager's) the PvD's encryption", () => {
    // resolved 252's values after `resolvectl dns vpn0 10.1.2.3#dns.test 10.1.2.4:5353#x.test 10.1.2.5 fe80::1%vpn0#ll.test`
    // and `resolvectl dnsovertls vpn0 yes` (test/host/resolved.test.ts reads them from a real one).
    const DNSEx = [
      [2, v4(10, 1, 2, 3), 0, 'dns.test'],
      [2, v4(10, 1, 2, 4), 5353, 'x.test'],
      [2, v4(10, 1, 2, 5), 0, ''],
      [10, v6('fe80::1'), 0, 'll.test'],
    ];
    const pvd = (props: Parameters<typeof hostLink>[2], global?: string): unknown => {
      const spec = pvdSpecSchema.parse(linkPvd(hostLink(3, 'vpn0', { DNSEx, Domains: [], DefaultRoute: true, ...props }, global)));
      return [spec.encryption, spec.dnsServers];
    };
    const servers = ['10.1.2.3#dns.test', '10.1.2.4:5353#x.test', '10.1.2.5', '[fe80::1%vpn0]#ll.test'];
    expect(pvd({ DNSOverTLS: 'yes' }, 'no')).toEqual(['strict', servers]);
    expect(pvd({ DNSOverTLS: 'opportunistic' }, 'yes')).toEqual(['opportunistic', servers]);
    // "no" with named servers: TLS is tried by name, falling back to what resolved would ask in the clear.
    expect(pvd({ DNSOverTLS: 'no' }, 'yes')).toEqual(['opportunistic', servers]);
    // A link without a mode of its own (a resolved that gives "" for it): the global one.
    expect(pvd({ DNSOverTLS: '' }, 'yes')).toEqual(['strict', servers]);
    expect(pvd({}, 'opportunistic')).toEqual(['opportunistic', servers]);
    // Unset everywhere: resolved's default, no — the same.
    expect(pvd({ DNSOverTLS: '' }, '')).toEqual(['opportunistic', servers]);
    expect(pvd({})).toEqual(['opportunistic', servers]);
    // With no name anywhere, off is off.
    const plain = pvdSpecSchema.parse(linkPvd(hostLink(3, 'vpn0', { DNSEx: [DNSEx[2]!], Domains: [], DefaultRoute: true, DNSOverTLS: 'no' })));
    expect([plain.encryption, plain.dnsServers]).toEqual(['off', ['10.1.2.5']]);
  });
});

describe("globalHostLink: resolved's global settings as the `system` link", () => {
  const names = new Map([[1, 'lo'], [2, 'wifi0p'], [3, 'wifi0']]);
  // Recorded from resolved 252 (resolved-harness) with resolved.conf's DNS=10.77.9.9#dns.test 10.77.9.8,
  // Domains=~glob.test search.test, DNSOverTLS=yes, and `resolvectl dns wifi0 127.0.0.10 10.1.1.1`:
  // the Manager lists wifi0's loopback server under lo's index (1), its other one under its own (3).
  const dnsEx = [
    [0, 2, v4(10, 77, 9, 9), 0, 'dns.test'],
    [0, 2, v4(10, 77, 9, 8), 0, ''],
    [1, 2, v4(127, 0, 0, 10), 0, ''],
    [3, 2, v4(10, 1, 1, 1), 0, ''],
  ];
  const domains = [
    [0, 'glob.test', true],
    [0, 'search.test', false],
  ];
  // wifi0's own Link.DNSEx a(iayqs).
  const wifi0 = [
    [2, v4(127, 0, 0, 10), 0, ''],
    [2, v4(10, 1, 1, 1), 0, ''],
  ];

  it('takes the index-0 servers and domains, the global mode, a default; a link\'s server listed under lo is no global one', () => {
    const g = globalHostLink(dnsEx, domains, wifi0, 'yes', names);
    expect(g).toEqual({ ifname: 'system', servers: ['10.77.9.9#dns.test', '10.77.9.8'], domains: ['glob.test', 'search.test'], defaultRoute: true, global: true, dnsOverTls: 'yes' });
    // DNSOverTLS=yes: a strict `system` PvD on no interface, every server over TLS, nothing in the clear.
    const spec = pvdSpecSchema.parse(linkPvd(g!));
    expect([spec.identifier, spec.interface, spec.default, spec.encryption, spec.dnsServers, spec.dnsZones]).toEqual(['system', null, true, 'strict', ['10.77.9.9#dns.test', '10.77.9.8'], ['glob.test', 'search.test']]);
  });

  it('global only: a foreign resolv.conf\'s 127.0.0.1 (under lo\'s index, recorded) is global; listed twice with a link\'s 127.0.0.1, it is taken once', () => {
    // resolved 252, no DNS= and the namespace's resolv.conf `nameserver 127.0.0.1`, then
    // `resolvectl dns wifi0 127.0.0.1 127.0.0.10 10.1.1.1`.
    const foreign = [[1, 2, v4(127, 0, 0, 1), 0, '']];
    expect(globalHostLink(foreign, [], [], 'no', names)?.servers).toEqual(['127.0.0.1']);
    const withLink = [...foreign, [1, 2, v4(127, 0, 0, 1), 0, ''], [1, 2, v4(127, 0, 0, 10), 0, ''], [3, 2, v4(10, 1, 1, 1), 0, '']];
    const own = [[2, v4(127, 0, 0, 1), 0, ''], [2, v4(127, 0, 0, 10), 0, ''], [2, v4(10, 1, 1, 1), 0, '']];
    expect(globalHostLink(withLink, [], own, 'no', names)?.servers).toEqual(['127.0.0.1']);
  });

  it('is null without a global server (the resolv.conf fallback, as before), and never takes a link\'s or a gone link\'s server', () => {
    expect(globalHostLink([[3, 2, v4(10, 1, 1, 1), 0, '']], [[0, 'glob.test', true]], [[2, v4(10, 1, 1, 1), 0, '']], 'yes', names)).toBeNull();
    // Index 7 is gone from the kernel (resolved has yet to notice): its loopback server is its own.
    expect(globalHostLink([[7, 2, v4(127, 0, 0, 20), 0, ''], [7, 2, v4(10, 8, 0, 1), 0, '']], [], [], 'no', names)).toBeNull();
    // A server under a link's index that is neither loopback nor link-local is that link's, read or not.
    expect(globalHostLink([[3, 2, v4(10, 1, 1, 1), 0, '']], [], [], 'no', names)).toBeNull();
    expect(globalHostLink([], [], [], 'yes', names)).toBeNull();
  });

  it("names a global link-local server's zone by its link (DNS=fe80::1%wifi0#x.test)", () => {
    const g = globalHostLink([[3, 10, v6('fe80::1'), 0, 'x.test']], [], [], 'opportunistic', names);
    expect(g?.servers).toEqual(['fe80::1%wifi0#x.test']);
    expect(pvdSpecSchema.parse(linkPvd(g!)).dnsServers).toEqual(['[fe80::1%wifi0]#x.test']);
  });
});

describe('interfaceNames', () => {
  it('maps each interface index in a sysfs-like folder to its name, skipping what is not one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvdns-sysnet-'));
    try {
      for (const [name, index] of [['lo', 1], ['vpn0', 7]] as const) {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'ifindex'), `${index}\n`);
      }
      mkdirSync(join(dir, 'bonding_masters-like'));
      expect(interfaceNames(dir)).toEqual(new Map([[1, 'lo'], [7, 'vpn0']]));
      expect(interfaceNames(join(dir, 'missing'))).toEqual(new Map());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('changing calls the bus monitor sees', () => {
  const call = (serial: number): DBusMessage => ({ type: 'method_call', serial, sender: ':1.9', destination: 'org.freedesktop.resolve1', path: '/org/freedesktop/resolve1', interface: 'org.freedesktop.resolve1.Manager', member: 'SetLinkDomains', signature: 'ia(sb)', body: [3, []] });
  /** A backend with no bus, its monitor's messages handed over by hand, and a hold that records. */
  const backend = (): { b: ResolvedBackend; events: string[]; open: () => number } => {
    const b = new ResolvedBackend({ address: 'unix:path=/nonexistent/pvdns-dbusfix' });
    const events: string[] = [];
    let n = 0;
    let held = 0;
    (b as unknown as { hold: () => () => void }).hold = () => {
      const i = n++;
      held++;
      events.push(`hold ${i}`);
      return () => {
        held--;
        events.push(`release ${i}`);
      };
    };
    return { b, events, open: () => held };
  };
  const monitorMessage = (b: ResolvedBackend, m: DBusMessage): void => (b as unknown as { onMonitorMessage(m: DBusMessage): void }).onMonitorMessage(m);
  const changing = (b: ResolvedBackend): Map<string, unknown> => (b as unknown as { changing: Map<string, unknown> }).changing;

  it('forgets a call whose reply never comes once the gate bound (100 ms) has passed, releasing it, so the monitor keeps holding', async () => {
    const { b, events, open } = backend();
    try {
      for (let i = 1; i <= 70; i++) monitorMessage(b, call(i));
      expect(open()).toBe(64); // MAX_CHANGING: more at once is a flood
      await new Promise((x) => setTimeout(x, 150));
      expect(changing(b).size).toBe(0);
      expect(open()).toBe(0);
      // Not full of leaked calls: the next one holds again.
      monitorMessage(b, call(71));
      expect(open()).toBe(1);
      expect(events.at(-1)).toBe('hold 64');
    } finally {
      b.stop();
    }
  });

  it('releases the calls awaiting a reply when resolved changes hands and when the bus is lost', () => {
    const { b, open } = backend();
    try {
      monitorMessage(b, call(1));
      monitorMessage(b, call(2));
      expect(open()).toBe(2);
      (b as unknown as { onMessage(m: DBusMessage): void }).onMessage({ type: 'signal', serial: 5, sender: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged', signature: 'sss', body: ['org.freedesktop.resolve1', ':1.4', ''] });
      expect(open()).toBe(0);
      monitorMessage(b, call(3));
      expect(open()).toBe(1);
      (b as unknown as { lost(err: Error | null): void }).lost(new Error('the bus closed the connection'));
      expect(open()).toBe(0);
      expect(changing(b).size).toBe(0);
    } finally {
      b.stop();
    }
  });
});
