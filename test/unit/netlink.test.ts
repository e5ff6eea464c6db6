// The rtnetlink parser and the link monitor (src/pvd/sources/netlink.ts) on
// messages built by hand in the layouts of rtnetlink(7) and netlink(7): the
// monitor runs against a fake socket (the addon's is exercised in
// test/host/netlink.test.ts, inside a network namespace).

import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { NativeRawSocket, RawMeta } from '../../src/native/raw.js';

// A fake rtnetlink socket: records the requests, lets the test deliver datagrams.
const fake = vi.hoisted(() => ({
  sent: [] as Buffer[],
  deliver: null as ((buf: Buffer | null, meta: { last: boolean; overrun?: boolean; error?: number }) => void) | null,
  closed: 0,
  missing: null as string | null,
}));
vi.mock('../../src/native/raw.js', () => ({
  rawSocketsAvailable: true,
  rawSocketsMissing: () => fake.missing,
  openNetlinkSocket: (): NativeRawSocket => ({
    portId: () => 4242,
    send: (b: Buffer) => (fake.sent.push(Buffer.from(b)), b.length),
    start: (on: (buf: Buffer | null, meta: RawMeta) => void) => ((fake.deliver = on), 0),
    close: () => void fake.closed++,
  }),
}));

const {
  IF_OPER_DOWN,
  IF_OPER_LOWERLAYERDOWN,
  IF_OPER_UNKNOWN,
  IF_OPER_UP,
  IFF_LOWER_UP,
  IFF_RUNNING,
  IFF_UP,
  LinkMonitor,
  linkPrefixes,
  linkUp,
  parseNetlink,
  prefixOf,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_NEWADDR,
  RTM_NEWLINK,
} = await import('../../src/pvd/sources/netlink.js');

// Builders in the host's byte order (little-endian here, as netlink on x86 and arm64).
const align = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
function nlmsg(type: number, body: Buffer, opts: { flags?: number; seq?: number; pid?: number } = {}): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(opts.flags ?? 0, 6);
  h.writeUInt32LE(opts.seq ?? 0, 8);
  h.writeUInt32LE(opts.pid ?? 0, 12);
  return align(Buffer.concat([h, body]));
}
function rta(type: number, data: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + data.length, 0);
  h.writeUInt16LE(type, 2);
  return align(Buffer.concat([h, data]));
}
const IFLA_IFNAME = 3;
const IFLA_OPERSTATE = 16;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const UP_FLAGS = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;
function ifinfo(ifindex: number, flags: number, attrs: Buffer[], family = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeUInt16LE(1, 2); // ARPHRD_ETHER
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(flags, 8);
  return Buffer.concat([b, ...attrs]);
}
function link(ifindex: number, ifname: string, flags: number, oper: number, type = RTM_NEWLINK, opts = {}): Buffer {
  return nlmsg(type, ifinfo(ifindex, flags, [rta(IFLA_IFNAME, Buffer.from(`${ifname}\0`)), rta(IFLA_OPERSTATE, Buffer.from([oper]))]), opts);
}
function ifaddr(family: 4 | 6, prefixLength: number, scope: number, ifindex: number, attrs: Buffer[]): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family === 4 ? 2 : 10, 0);
  b.writeUInt8(prefixLength, 1);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(ifindex, 4);
  return Buffer.concat([b, ...attrs]);
}
const v4 = (text: string): Buffer => Buffer.from(text.split('.').map(Number));
const v6 = (text: string): Buffer => {
  const [head, tail = ''] = text.split('::');
  const words = (s: string): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head!);
  const t = words(tail);
  const all = [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  all.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return b;
};
function addr(ifindex: number, address: string, prefixLength: number, opts: { type?: number; scope?: number; seq?: number; pid?: number; peer?: string } = {}): Buffer {
  const family = address.includes(':') ? 6 : 4;
  const bytes = family === 4 ? v4 : v6;
  const attrs = family === 4 ? [rta(IFA_ADDRESS, bytes(opts.peer ?? address)), rta(IFA_LOCAL, bytes(address))] : [rta(IFA_ADDRESS, bytes(address))];
  return nlmsg(opts.type ?? RTM_NEWADDR, ifaddr(family, prefixLength, opts.scope ?? 0, ifindex, attrs), opts);
}
const done = (opts: { seq?: number; pid?: number }): Buffer => nlmsg(3, Buffer.alloc(4), { flags: 2, ...opts });
function error(errno: number, opts: { seq?: number; pid?: number }): Buffer {
  const b = Buffer.alloc(20);
  b.writeInt32LE(-errno, 0);
  return nlmsg(2, b, opts);
}

describe('parseNetlink', () => {
  it('reads a link with its name, flags and operstate, and an address message of each family', () => {
    const buf = Buffer.concat([
      link(7, 'wg0', UP_FLAGS, IF_OPER_UNKNOWN),
      addr(7, '10.8.0.5', 24, { peer: '10.8.0.1' }),
      addr(7, '2001:db8:1::5', 64),
      addr(7, 'fe80::1', 64, { scope: 253 }),
      link(8, 'veth1', IFF_UP, IF_OPER_LOWERLAYERDOWN, RTM_DELLINK),
      addr(7, '10.8.0.5', 24, { type: RTM_DELADDR }),
    ]);
    const msgs = parseNetlink(buf);
    expect(msgs).toHaveLength(6);
    expect(msgs[0]).toMatchObject({ kind: 'link', type: RTM_NEWLINK, deleted: false, ifindex: 7, ifname: 'wg0', ifflags: UP_FLAGS, operstate: IF_OPER_UNKNOWN });
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on a point-to-point link.
    expect(msgs[1]).toMatchObject({ kind: 'addr', family: 4, address: '10.8.0.5', prefixLength: 24, scope: 'global', ifindex: 7, deleted: false });
    expect(msgs[2]).toMatchObject({ kind: 'addr', family: 6, address: '2001:db8:1::5', prefixLength: 64, scope: 'global' });
    expect(msgs[3]).toMatchObject({ kind: 'addr', address: 'fe80::1', scope: 'link' });
    expect(msgs[4]).toMatchObject({ kind: 'link', deleted: true, ifindex: 8, ifname: 'veth1' });
    expect(msgs[5]).toMatchObject({ kind: 'addr', deleted: true, address: '10.8.0.5' });
  });

  it('reads the end of a dump and errors (0 is an acknowledgement)', () => {
    const msgs = parseNetlink(Buffer.concat([done({ seq: 9, pid: 1 }), error(16, { seq: 9 }), error(0, { seq: 10 })]));
    expect(msgs).toEqual([
      expect.objectContaining({ kind: 'done', seq: 9, pid: 1 }),
      expect.objectContaining({ kind: 'error', errno: 16, seq: 9 }),
      expect.objectContaining({ kind: 'error', errno: 0, seq: 10 }),
    ]);
  });

  it('never throws on a datagram cut anywhere, and returns only the messages that are whole', () => {
    const whole = Buffer.concat([link(1, 'eth0', UP_FLAGS, IF_OPER_UP), addr(1, '192.0.2.2', 24), addr(1, '2001:db8::2', 64), done({})]);
    const ends = [0];
    // Message boundaries of the whole datagram.
    let off = 0;
    while (off < whole.length) {
      off += (whole.readUInt32LE(off) + 3) & ~3;
      ends.push(off);
    }
    for (let cut = 0; cut <= whole.length; cut++) {
      const complete = ends.filter((e) => e > 0 && e <= cut).length;
      const msgs = parseNetlink(whole.subarray(0, cut));
      // The last message may lack only its alignment padding: it still counts as whole.
      expect(msgs.length).toBeGreaterThanOrEqual(complete);
      expect(msgs.length).toBeLessThanOrEqual(complete + 1);
    }
  });

  it('never throws on garbage, and bounds every length it reads', () => {
    let seed = 12345;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(Array.from({ length: rand() + (i % 64) }, rand));
      // Plausible headers half the time, so the walk goes past the first message.
      if (i % 2 === 0 && b.length >= 16) {
        b.writeUInt32LE(Math.min(b.length, 16 + (rand() % 64)), 0);
        b.writeUInt16LE([16, 17, 20, 21, 2, 3][rand() % 6]!, 4);
      }
      expect(() => parseNetlink(b)).not.toThrow();
    }
  });

  it('skips what is malformed: a short header length, a body too short, a bad attribute, a wrong address size, a prefix too long', () => {
    const shortLen = link(1, 'eth0', UP_FLAGS, IF_OPER_UP);
    shortLen.writeUInt32LE(8, 0);
    expect(parseNetlink(shortLen)).toEqual([]);

    const tooLong = link(1, 'eth0', UP_FLAGS, IF_OPER_UP);
    tooLong.writeUInt32LE(tooLong.length + 4, 0);
    expect(parseNetlink(tooLong)).toEqual([]);

    expect(parseNetlink(nlmsg(RTM_NEWLINK, Buffer.alloc(8)))[0]).toMatchObject({ kind: 'other' });
    expect(parseNetlink(nlmsg(RTM_NEWADDR, Buffer.alloc(4)))[0]).toMatchObject({ kind: 'other' });

    // An attribute whose length is under its own header ends the attributes; the message stays.
    const badAttr = Buffer.alloc(4);
    badAttr.writeUInt16LE(2, 0);
    const m = parseNetlink(nlmsg(RTM_NEWLINK, ifinfo(3, IFF_UP, [badAttr, rta(IFLA_IFNAME, Buffer.from('x\0'))])))[0];
    expect(m).toMatchObject({ kind: 'link', ifindex: 3 });
    expect(m).not.toHaveProperty('ifname');

    // An attribute running past the message.
    const overrun = rta(IFLA_IFNAME, Buffer.from('eth0\0'));
    overrun.writeUInt16LE(200, 0);
    expect(parseNetlink(nlmsg(RTM_NEWLINK, ifinfo(3, IFF_UP, [overrun])))[0]).not.toHaveProperty('ifname');

    const oddAddress = nlmsg(RTM_NEWADDR, ifaddr(4, 24, 0, 1, [rta(IFA_LOCAL, Buffer.from([10, 0, 0]))]));
    expect(parseNetlink(oddAddress)[0]).toMatchObject({ kind: 'addr' });
    expect(parseNetlink(oddAddress)[0]).not.toHaveProperty('address');

    expect(parseNetlink(nlmsg(RTM_NEWADDR, ifaddr(4, 33, 0, 1, [rta(IFA_LOCAL, v4('10.0.0.1'))])))[0]).toMatchObject({ kind: 'other' });
  });
});

describe('linkUp, prefixOf, linkPrefixes', () => {
  it('is up when administratively up and operationally UP or UNKNOWN', () => {
    expect(linkUp(UP_FLAGS, IF_OPER_UP)).toBe(true);
    expect(linkUp(IFF_UP | IFF_RUNNING, IF_OPER_UNKNOWN)).toBe(true); // tunnels, loopback
    expect(linkUp(IFF_UP, IF_OPER_LOWERLAYERDOWN)).toBe(false); // a veth whose peer is down
    expect(linkUp(IFF_UP, IF_OPER_DOWN)).toBe(false);
    expect(linkUp(IFF_RUNNING, IF_OPER_UP)).toBe(false); // set down by the administrator
    expect(linkUp(IFF_UP | IFF_RUNNING, undefined)).toBe(true);
    expect(linkUp(IFF_UP, undefined)).toBe(false);
  });

  it('gives the network prefix of an address', () => {
    expect(prefixOf('10.8.0.5', 24)).toBe('10.8.0.0/24');
    expect(prefixOf('192.0.2.77', 32)).toBe('192.0.2.77/32');
    expect(prefixOf('2001:db8:1::5', 64)).toBe('2001:db8:1::/64');
    expect(prefixOf('2001:db8:1:2:3:4:5:6', 48)).toBe('2001:db8:1::/48');
    expect(prefixOf('fd00::1', 128)).toBe('fd00::1/128');
  });

  it("lists each global prefix of a link once, leaving out link and host scopes", () => {
    const l = {
      ifindex: 3,
      ifname: 'wg0',
      up: true,
      addresses: [
        { address: '10.8.0.5', prefixLength: 24, family: 4 as const, scope: 'global' as const },
        { address: '10.8.0.6', prefixLength: 24, family: 4 as const, scope: 'global' as const },
        { address: 'fe80::1', prefixLength: 64, family: 6 as const, scope: 'link' as const },
        { address: '2001:db8:1::5', prefixLength: 64, family: 6 as const, scope: 'global' as const },
      ],
    };
    expect(linkPrefixes(l)).toEqual(['10.8.0.0/24', '2001:db8:1::/64']);
  });
});

describe('LinkMonitor', () => {
  const PORT = 4242;
  /** The seq of the i-th request the monitor sent, and its message type. */
  const request = (i: number): { seq: number; type: number } => ({ seq: fake.sent[i]!.readUInt32LE(8), type: fake.sent[i]!.readUInt16LE(4) });
  const deliver = (buf: Buffer | null, meta: { last: boolean; overrun?: boolean; error?: number } = { last: true }): void => fake.deliver!(buf, meta);

  beforeEach(() => {
    fake.sent.length = 0;
    fake.deliver = null;
  });

  /** Starts a monitor and answers its two dumps with eth0 (up, one address) and wg0 (down). */
  async function started(): Promise<{ mon: InstanceType<typeof LinkMonitor>; changes: Array<Set<string>> }> {
    const mon = new LinkMonitor();
    const changes: Array<Set<string>> = [];
    mon.on('changed', (s) => changes.push(new Set(s)));
    const ok = mon.start();
    expect(request(0).type).toBe(18); // RTM_GETLINK
    expect(fake.sent[0]!.readUInt16LE(6)).toBe(0x301); // NLM_F_REQUEST | NLM_F_DUMP
    const s0 = request(0).seq;
    // A dump may come in several datagrams; NLMSG_DONE ends it.
    deliver(link(1, 'eth0', UP_FLAGS, IF_OPER_UP, RTM_NEWLINK, { seq: s0, pid: PORT, flags: 2 }), { last: false });
    deliver(Buffer.concat([link(5, 'wg0', IFF_UP, IF_OPER_DOWN, RTM_NEWLINK, { seq: s0, pid: PORT, flags: 2 }), done({ seq: s0, pid: PORT })]));
    expect(request(1).type).toBe(22); // RTM_GETADDR after the links
    const s1 = request(1).seq;
    deliver(Buffer.concat([addr(1, '192.0.2.2', 24, { seq: s1, pid: PORT }), addr(1, 'fe80::2', 64, { seq: s1, pid: PORT, scope: 253 }), done({ seq: s1, pid: PORT })]));
    expect(await ok).toBe(true);
    return { mon, changes };
  }

  it('dumps links then addresses, and knows them by index and name', async () => {
    const { mon } = await started();
    expect(mon.byName('eth0')).toEqual({
      ifindex: 1,
      ifname: 'eth0',
      up: true,
      addresses: [
        { address: '192.0.2.2', prefixLength: 24, family: 4, scope: 'global' },
        { address: 'fe80::2', prefixLength: 64, family: 6, scope: 'link' },
      ],
    });
    expect(mon.links().get(5)).toMatchObject({ ifname: 'wg0', up: false, addresses: [] });
    mon.stop();
  });

  it('reports one change per batch, with every link that changed, and nothing for a repeat', async () => {
    const { mon, changes } = await started();
    changes.length = 0;
    // Two datagrams in one wake-up: one 'changed' at the last.
    deliver(link(5, 'wg0', UP_FLAGS, IF_OPER_UNKNOWN), { last: false });
    expect(changes).toEqual([]);
    deliver(Buffer.concat([addr(5, '10.8.0.5', 24), addr(5, '2001:db8:1::5', 64), addr(1, '192.0.2.2', 24, { type: RTM_DELADDR })]));
    expect(changes).toEqual([new Set(['wg0', 'eth0'])]);
    expect(mon.byName('wg0')).toMatchObject({ up: true });
    expect(linkPrefixes(mon.byName('wg0')!)).toEqual(['10.8.0.0/24', '2001:db8:1::/64']);
    expect(mon.byName('eth0')!.addresses.map((a) => a.address)).toEqual(['fe80::2']);

    // The kernel repeats RTM_NEWLINK for changes pvdns does not follow: no event.
    deliver(link(5, 'wg0', UP_FLAGS, IF_OPER_UNKNOWN));
    expect(changes).toHaveLength(1);

    // A rename is reported under both names; a deletion under the last one.
    deliver(link(5, 'corp0', UP_FLAGS, IF_OPER_UNKNOWN));
    expect(changes[1]).toEqual(new Set(['wg0', 'corp0']));
    expect(mon.byName('wg0')).toBeUndefined();
    expect(mon.byName('corp0')!.addresses).toHaveLength(2);
    deliver(link(5, 'corp0', 0, IF_OPER_DOWN, RTM_DELLINK));
    expect(changes[2]).toEqual(new Set(['corp0']));
    expect(mon.links().has(5)).toBe(false);

    // A bridge port's RTM_DELLINK (AF_BRIDGE) is not the link going away.
    deliver(nlmsg(RTM_DELLINK, ifinfo(1, UP_FLAGS, [rta(IFLA_IFNAME, Buffer.from('eth0\0'))], 7)));
    expect(mon.byName('eth0')).toBeDefined();
    expect(changes).toHaveLength(3);
    mon.stop();
  });

  it('dumps again after an overrun, and reports what the dump changed, events during the dump included', async () => {
    const { mon, changes } = await started();
    changes.length = 0;
    deliver(null, { last: true, overrun: true, error: -105 });
    expect(request(2).type).toBe(18);
    const s2 = request(2).seq;
    // wg0 went while events were lost; eth0 is still there. An event arrives mid-dump.
    deliver(link(1, 'eth0', UP_FLAGS, IF_OPER_UP, RTM_NEWLINK, { seq: s2, pid: PORT, flags: 2 }), { last: false });
    deliver(link(9, 'tun0', UP_FLAGS, IF_OPER_UNKNOWN), { last: false });
    deliver(done({ seq: s2, pid: PORT }));
    expect(changes).toEqual([new Set(['tun0', 'wg0'])]);
    expect(mon.links().has(5)).toBe(false);
    expect(mon.byName('tun0')).toMatchObject({ up: true });
    const s3 = request(3).seq;
    deliver(Buffer.concat([addr(1, '192.0.2.2', 24, { seq: s3, pid: PORT }), addr(1, '192.0.2.3', 24, { seq: s3, pid: PORT })]), { last: false });
    // An address added after the dump passed eth0 must not be lost when the dump is taken.
    deliver(addr(9, '10.9.0.1', 30), { last: false });
    deliver(done({ seq: s3, pid: PORT }));
    expect(changes[1]).toEqual(new Set(['eth0', 'tun0']));
    expect(mon.byName('eth0')!.addresses.map((a) => a.address)).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(mon.byName('tun0')!.addresses.map((a) => a.address)).toEqual(['10.9.0.1']);
    expect(fake.sent).toHaveLength(4);
    mon.stop();
  });

  it('resolves false, saying why, without the addon', async () => {
    fake.missing = 'the native addon did not load (no such file)';
    try {
      const mon = new LinkMonitor();
      expect(await mon.start()).toBe(false);
      expect(mon.unavailable).toBe('the native addon did not load (no such file)');
      expect(fake.sent).toEqual([]);
    } finally {
      fake.missing = null;
    }
  });

  it('resolves false when the kernel refuses the dump', async () => {
    const mon = new LinkMonitor();
    const ok = mon.start();
    deliver(error(1, { seq: request(0).seq, pid: PORT }));
    expect(await ok).toBe(false);
    expect(mon.unavailable).toMatch(/dump failed/);
  });
});
