// The host's links and their addresses as the kernel reports them, by
// rtnetlink (rtnetlink(7), netlink(7)) through the addon's raw socket: a dump
// at start, then every RTM_NEWLINK/DELLINK/NEWADDR/DELADDR as it happens. The
// host source uses it so a link going down withdraws its PvD at once and a
// PvD's prefixes (its reverse zones) follow the link's addresses. Changes are
// reported once per batch the socket delivers, synchronously: no timer adds
// latency between the kernel's message and the registry.

import { EventEmitter } from 'node:events';
import { endianness } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { openNetlinkSocket, rawSocketsMissing, type NativeRawSocket, type RawMeta } from '../../native/raw.js';

// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>, <linux/if.h>.
const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_DUMP = 0x300;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
export const RTMGRP_LINK = 0x1;
export const RTMGRP_IPV4_IFADDR = 0x10;
export const RTMGRP_IPV6_IFADDR = 0x100;
const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const IFLA_IFNAME = 3;
const IFLA_OPERSTATE = 16;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
export const IFF_UP = 0x1;
export const IFF_RUNNING = 0x40;
export const IFF_LOWER_UP = 0x10000;
/** RFC 2863 operational states as IFLA_OPERSTATE carries them. */
export const IF_OPER_UNKNOWN = 0;
export const IF_OPER_DOWN = 2;
export const IF_OPER_LOWERLAYERDOWN = 3;
export const IF_OPER_UP = 6;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_HOST = 254;
const RT_SCOPE_NOWHERE = 255;

/** Netlink speaks the host's byte order. */
const LE = endianness() === 'LE';
const u16 = (b: Buffer, o: number): number => (LE ? b.readUInt16LE(o) : b.readUInt16BE(o));
const u32 = (b: Buffer, o: number): number => (LE ? b.readUInt32LE(o) : b.readUInt32BE(o));
const i32 = (b: Buffer, o: number): number => (LE ? b.readInt32LE(o) : b.readInt32BE(o));

/** The fields every netlink message has (struct nlmsghdr). */
interface NlHeader {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** One parsed rtnetlink message. */
export type NlMessage =
  | (NlHeader & {
      kind: 'link';
      deleted: boolean;
      family: number;
      ifindex: number;
      /** IFF_* flags. */
      ifflags: number;
      ifname?: string;
      operstate?: number;
    })
  | (NlHeader & {
      kind: 'addr';
      deleted: boolean;
      family: 4 | 6;
      ifindex: number;
      prefixLength: number;
      scope: 'global' | 'link' | 'host';
      /** IFA_LOCAL when present (the interface's own address on a point-to-point link), else IFA_ADDRESS. */
      address?: string;
    })
  | (NlHeader & { kind: 'done' })
  /** NLMSG_ERROR: errno 0 is an acknowledgement, else the (positive) errno of the failed request. */
  | (NlHeader & { kind: 'error'; errno: number })
  | (NlHeader & { kind: 'other' });

const align4 = (n: number): number => (n + 3) & ~3;

/** Walks the rtattrs in buf[from, to): type → value; a malformed one ends the walk. */
function attributes(buf: Buffer, from: number, to: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = from;
  while (off + 4 <= to) {
    const len = u16(buf, off);
    const type = u16(buf, off + 2) & 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (len < 4 || off + len > to) break;
    if (!out.has(type)) out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

function addressText(family: 4 | 6, value: Buffer | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (family === 4 && value.length === 4) return `${value[0]}.${value[1]}.${value[2]}.${value[3]}`;
  if (family === 6 && value.length === 16) return ipaddr.fromByteArray([...value]).toString();
  return undefined;
}

function scopeName(scope: number): 'global' | 'link' | 'host' {
  if (scope === RT_SCOPE_LINK) return 'link';
  if (scope === RT_SCOPE_HOST || scope === RT_SCOPE_NOWHERE) return 'host';
  return 'global'; // universe, and the old site scope
}

/**
 * parseNetlink reads the rtnetlink messages in one datagram. It never
 * throws: a message whose length runs past the datagram ends the walk, a
 * body too short for its struct is reported as 'other', and a malformed
 * attribute ends that message's attributes.
 */
export function parseNetlink(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = u32(buf, off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    const h: NlHeader = { type: u16(buf, off + 4), flags: u16(buf, off + 6), seq: u32(buf, off + 8), pid: u32(buf, off + 12) };
    const body = off + NLMSG_HDRLEN;
    const end = off + len;
    out.push(parseOne(buf, h, body, end));
    off += align4(len);
  }
  return out;
}

function parseOne(buf: Buffer, h: NlHeader, body: number, end: number): NlMessage {
  switch (h.type) {
    case NLMSG_DONE:
      return { ...h, kind: 'done' };
    case NLMSG_ERROR:
      // struct nlmsgerr: int error (negative errno, 0 for an ACK), then the request's header.
      return body + 4 <= end ? { ...h, kind: 'error', errno: 0 - i32(buf, body) } : { ...h, kind: 'other' };
    case RTM_NEWLINK:
    case RTM_DELLINK: {
      if (body + IFINFOMSG_LEN > end) break;
      const attrs = attributes(buf, body + IFINFOMSG_LEN, end);
      const name = attrs.get(IFLA_IFNAME);
      const oper = attrs.get(IFLA_OPERSTATE);
      const msg: NlMessage = {
        ...h,
        kind: 'link',
        deleted: h.type === RTM_DELLINK,
        family: buf[body]!,
        ifindex: i32(buf, body + 4),
        ifflags: u32(buf, body + 8),
      };
      if (name !== undefined && name.length > 0) {
        const nul = name.indexOf(0);
        const text = name.subarray(0, nul < 0 ? name.length : nul).toString('utf8');
        if (text) msg.ifname = text;
      }
      if (oper !== undefined && oper.length >= 1) msg.operstate = oper[0]!;
      return msg;
    }
    case RTM_NEWADDR:
    case RTM_DELADDR: {
      if (body + IFADDRMSG_LEN > end) break;
      const af = buf[body]!;
      if (af !== AF_INET && af !== AF_INET6) break;
      const family = af === AF_INET ? 4 : 6;
      const prefixLength = buf[body + 1]!;
      if (prefixLength > (family === 4 ? 32 : 128)) break;
      const attrs = attributes(buf, body + IFADDRMSG_LEN, end);
      const msg: NlMessage = {
        ...h,
        kind: 'addr',
        deleted: h.type === RTM_DELADDR,
        family,
        prefixLength,
        scope: scopeName(buf[body + 3]!),
        ifindex: u32(buf, body + 4),
      };
      const address = addressText(family, attrs.get(IFA_LOCAL)) ?? addressText(family, attrs.get(IFA_ADDRESS));
      if (address !== undefined) msg.address = address;
      return msg;
    }
  }
  return { ...h, kind: 'other' };
}

/** One address on a link. */
export interface LinkAddress {
  address: string;
  prefixLength: number;
  family: 4 | 6;
  scope: 'global' | 'link' | 'host';
}

/** One link as the monitor knows it. */
export interface LinkInfo {
  ifindex: number;
  ifname: string;
  /** Administratively up (IFF_UP) and operationally UP or UNKNOWN (veths' peers and tunnels say UNKNOWN). */
  up: boolean;
  addresses: LinkAddress[];
}

/**
 * linkUp decides whether a link carries traffic: IFF_UP, and an operstate of
 * UP or UNKNOWN (RFC 2863 states; drivers without carrier reporting say
 * UNKNOWN). Without an operstate, IFF_RUNNING decides.
 */
export function linkUp(ifflags: number, operstate: number | undefined): boolean {
  if ((ifflags & IFF_UP) === 0) return false;
  if (operstate === undefined) return (ifflags & IFF_RUNNING) !== 0;
  return operstate === IF_OPER_UP || operstate === IF_OPER_UNKNOWN;
}

/** prefixOf gives the network prefix of an address: ("10.8.0.5", 24) → "10.8.0.0/24", ("2001:db8:1::5", 64) → "2001:db8:1::/64". */
export function prefixOf(address: string, prefixLength: number): string {
  const cidr = `${address}/${prefixLength}`;
  const net = address.includes(':') ? ipaddr.IPv6.networkAddressFromCIDR(cidr) : ipaddr.IPv4.networkAddressFromCIDR(cidr);
  return `${net.toString()}/${prefixLength}`;
}

/** linkPrefixes lists the prefixes of a link's global addresses, each once, in the order they came. */
export function linkPrefixes(link: { readonly addresses: readonly LinkAddress[] }): string[] {
  return [...new Set(link.addresses.filter((a) => a.scope === 'global').map((a) => prefixOf(a.address, a.prefixLength)))];
}

const addrKey = (a: LinkAddress): string => `${a.address}/${a.prefixLength}/${a.scope}`;

function sameAddresses(a: readonly LinkAddress[], b: readonly LinkAddress[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set(a.map(addrKey));
  return b.every((x) => keys.has(addrKey(x)));
}

/** Adds or replaces (by address) one address in a list, or removes it; returns the new list. */
function editAddresses(list: readonly LinkAddress[], m: Extract<NlMessage, { kind: 'addr' }>): LinkAddress[] {
  const rest = list.filter((a) => a.address !== m.address);
  if (m.deleted || m.address === undefined) return rest;
  return [...rest, { address: m.address, prefixLength: m.prefixLength, family: m.family, scope: m.scope }];
}

type Dump =
  | { what: 'link'; seq: number; links: Map<number, { ifname: string; up: boolean }>; interrupted: boolean }
  | { what: 'addr'; seq: number; addrs: Map<number, LinkAddress[]>; interrupted: boolean };

/** How long start waits for the first dumps before it gives up (the kernel answers in microseconds). */
const START_TIMEOUT_MS = 5000;

/**
 * LinkMonitor follows the host's links and addresses. After `start`, read
 * `links()` / `byName()`; it emits `'changed'` with a ReadonlySet of the
 * ifnames whose state (up, name, addresses) changed, once per batch of
 * kernel messages (a renamed link is in it under both names, a deleted one
 * under its last name). On an overrun of the socket's queue it dumps again
 * and reports what the dump changed.
 */
export class LinkMonitor extends EventEmitter<{ changed: [ReadonlySet<string>] }> {
  private sock: NativeRawSocket | null = null;
  private portId = 0;
  private seq = Math.floor(Date.now() / 1000) & 0xffffff;
  private readonly state = new Map<number, LinkInfo>();
  private readonly names = new Map<string, number>();
  private dump: Dump | null = null;
  private readonly queue: Array<'link' | 'addr'> = [];
  private readonly pending = new Set<string>();
  private started: ((ok: boolean) => void) | null = null;
  /** Why start returned false, for the log; null otherwise. */
  unavailable: string | null = null;
  /** How many times the socket's queue overran (each answered by a new dump). */
  overruns = 0;

  private readonly log: Logger | undefined;
  private readonly receiveBuffer: number | undefined;

  /** `receiveBuffer` sizes the socket's queue in bytes (8 MiB by default; tests shrink it to force overruns). */
  constructor(opts: { log?: Logger; receiveBuffer?: number } = {}) {
    super();
    this.log = opts.log;
    this.receiveBuffer = opts.receiveBuffer;
  }

  /**
   * start opens the rtnetlink socket and dumps the links and addresses. It
   * resolves true once both dumps are in, false when the addon is missing or
   * netlink is not available (the reason is in `unavailable`).
   */
  start(): Promise<boolean> {
    if (this.sock) return Promise.resolve(true);
    const missing = rawSocketsMissing();
    if (missing) return Promise.resolve(this.fail(missing));
    try {
      this.sock = openNetlinkSocket(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, this.receiveBuffer);
    } catch (err) {
      return Promise.resolve(this.fail((err as Error).message));
    }
    this.portId = this.sock.portId();
    const r = this.sock.start((buf, meta) => this.receive(buf, meta));
    if (r !== 0) return Promise.resolve(this.fail(`rtnetlink socket: could not poll it (${r})`));
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false, 'rtnetlink: the kernel did not answer the first dump'), START_TIMEOUT_MS);
      const finish = (ok: boolean, why?: string): void => {
        clearTimeout(timer);
        this.started = null;
        resolve(ok ? true : this.fail(why ?? 'rtnetlink: the first dump failed'));
      };
      this.started = (ok) => finish(ok);
      this.requestDumps();
    });
  }

  stop(): void {
    this.sock?.close();
    this.sock = null;
    this.dump = null;
    this.queue.length = 0;
  }

  /** The links by ifindex. */
  links(): ReadonlyMap<number, LinkInfo> {
    return this.state;
  }

  /** The link with that name, if there is one. */
  byName(ifname: string): LinkInfo | undefined {
    const i = this.names.get(ifname);
    return i === undefined ? undefined : this.state.get(i);
  }

  private fail(why: string): false {
    this.stop();
    this.unavailable = why;
    return false;
  }

  /** Queues a link dump then an address dump (links first: addresses attach to known links). */
  private requestDumps(): void {
    for (const what of ['link', 'addr'] as const) if (!this.queue.includes(what)) this.queue.push(what);
    if (!this.dump) this.nextDump();
  }

  private nextDump(): void {
    const what = this.queue.shift();
    if (!what || !this.sock) {
      this.dump = null;
      if (!what) this.started?.(true);
      return;
    }
    this.seq = (this.seq + 1) >>> 0;
    this.dump = what === 'link' ? { what, seq: this.seq, links: new Map(), interrupted: false } : { what, seq: this.seq, addrs: new Map(), interrupted: false };
    // struct nlmsghdr, then an all-zero ifinfomsg or ifaddrmsg (every family, every link).
    const bodyLen = what === 'link' ? IFINFOMSG_LEN : IFADDRMSG_LEN;
    const req = Buffer.alloc(NLMSG_HDRLEN + bodyLen);
    const w32 = (v: number, o: number): number => (LE ? req.writeUInt32LE(v, o) : req.writeUInt32BE(v, o));
    const w16 = (v: number, o: number): number => (LE ? req.writeUInt16LE(v, o) : req.writeUInt16BE(v, o));
    w32(req.length, 0);
    w16(what === 'link' ? RTM_GETLINK : RTM_GETADDR, 4);
    w16(NLM_F_REQUEST | NLM_F_DUMP, 6);
    w32(this.seq, 8);
    w32(0, 12);
    const r = this.sock.send(req);
    if (r < 0) {
      this.log?.warn({ errno: r }, 'rtnetlink: cannot request a dump');
      this.dump = null;
      this.queue.length = 0;
      this.started?.(false);
    }
  }

  private receive(buf: Buffer | null, meta: RawMeta): void {
    if (buf === null) {
      if (meta.overrun) {
        // The kernel dropped events: only a new dump knows the state now.
        this.overruns++;
        this.log?.warn('rtnetlink: the socket overran; dumping links and addresses again');
        this.requestDumps();
      } else {
        this.log?.warn({ errno: meta.error }, 'rtnetlink: receive failed');
      }
    } else {
      for (const m of parseNetlink(buf)) this.handle(m);
      // Cut messages are lost messages (the 64 KiB area exceeds any the kernel sends, but still).
      if (meta.truncated) this.requestDumps();
    }
    if (meta.last && this.pending.size > 0) {
      const changed = new Set(this.pending);
      this.pending.clear();
      this.emit('changed', changed);
    }
  }

  private handle(m: NlMessage): void {
    const d = this.dump;
    const ofDump = d !== null && m.seq === d.seq && m.pid === this.portId && m.pid !== 0;
    if (ofDump) {
      if ((m.flags & NLM_F_DUMP_INTR) !== 0) d.interrupted = true;
      if (m.kind === 'done') return this.endDump(d);
      if (m.kind === 'error') {
        if (m.errno === 0) return;
        this.log?.warn({ errno: m.errno, dump: d.what }, 'rtnetlink: a dump failed');
        this.dump = null;
        this.queue.length = 0;
        this.started?.(false);
        return;
      }
    }
    if (m.kind === 'link') {
      // Bridge port messages (AF_BRIDGE) speak of a port, not of the link's life.
      if (m.family === AF_BRIDGE) return;
      if (d?.what === 'link') {
        if (m.deleted) d.links.delete(m.ifindex);
        else if (m.ifname !== undefined) d.links.set(m.ifindex, { ifname: m.ifname, up: linkUp(m.ifflags, m.operstate) });
      }
      if (!ofDump) this.applyLink(m);
    } else if (m.kind === 'addr') {
      if (d?.what === 'addr') d.addrs.set(m.ifindex, editAddresses(d.addrs.get(m.ifindex) ?? [], m));
      if (!ofDump) this.applyAddr(m);
    }
  }

  private applyLink(m: Extract<NlMessage, { kind: 'link' }>): void {
    const old = this.state.get(m.ifindex);
    if (m.deleted) {
      if (old) this.removeLink(old);
      return;
    }
    if (m.ifname === undefined && !old) return;
    this.setLink(m.ifindex, m.ifname ?? old!.ifname, linkUp(m.ifflags, m.operstate), old?.addresses ?? []);
  }

  private applyAddr(m: Extract<NlMessage, { kind: 'addr' }>): void {
    const link = this.state.get(m.ifindex);
    if (!link || m.address === undefined) return;
    const next = editAddresses(link.addresses, m);
    if (sameAddresses(next, link.addresses)) return;
    link.addresses = next;
    this.pending.add(link.ifname);
  }

  private setLink(ifindex: number, ifname: string, up: boolean, addresses: LinkAddress[]): void {
    const old = this.state.get(ifindex);
    if (old && old.ifname === ifname && old.up === up && sameAddresses(old.addresses, addresses)) return;
    if (old && old.ifname !== ifname) {
      this.pending.add(old.ifname);
      if (this.names.get(old.ifname) === ifindex) this.names.delete(old.ifname);
    }
    this.state.set(ifindex, { ifindex, ifname, up, addresses });
    this.names.set(ifname, ifindex);
    this.pending.add(ifname);
  }

  private removeLink(link: LinkInfo): void {
    this.state.delete(link.ifindex);
    if (this.names.get(link.ifname) === link.ifindex) this.names.delete(link.ifname);
    this.pending.add(link.ifname);
  }

  /** A complete dump replaces what the monitor knew of its kind; an interrupted one is taken and asked again. */
  private endDump(d: Dump): void {
    if (d.what === 'link') {
      for (const link of [...this.state.values()]) if (!d.links.has(link.ifindex)) this.removeLink(link);
      for (const [ifindex, l] of d.links) this.setLink(ifindex, l.ifname, l.up, this.state.get(ifindex)?.addresses ?? []);
    } else {
      for (const link of this.state.values()) {
        const next = d.addrs.get(link.ifindex) ?? [];
        if (!sameAddresses(next, link.addresses)) {
          link.addresses = next;
          this.pending.add(link.ifname);
        }
      }
    }
    // NLM_F_DUMP_INTR: the kernel's tables changed while it dumped (netlink(7)); ask again.
    if (d.interrupted && !this.queue.includes(d.what)) this.queue.push(d.what);
    this.dump = null;
    this.nextDump();
  }
}
