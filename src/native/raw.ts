// The addon's raw sockets (native/raw.c), typed: an rtnetlink socket for the
// host's links and addresses (src/pvd/sources/netlink.ts) and a raw ICMPv6
// socket for Router Advertisements (icmp6.ts). They come from the same .node
// file as the batched UDP sockets (udp.ts loads it); without it there is no
// fallback here: the callers say so and live without.

import { requireAddon } from './udp.js';

/** What comes with each datagram. */
export interface RawMeta {
  /** The last datagram of one wake-up of the socket: a batch ends here. */
  last: boolean;
  /** The datagram was longer than the receive area (64 KiB) and was cut. */
  truncated?: boolean;
  /** A receive error as -errno; the datagram is null then. */
  error?: number;
  /** Netlink only: the kernel dropped messages (ENOBUFS); state must be dumped again. */
  overrun?: boolean;
  /** ICMPv6 only: the sender's address, without a zone ("fe80::1"). */
  source?: string;
  /** ICMPv6 only: the interface the datagram arrived on (IPV6_PKTINFO). */
  ifindex?: number;
  /** ICMPv6 only: the IPv6 hop limit it arrived with (IPV6_HOPLIMIT), -1 when unknown. */
  hopLimit?: number;
}

/** A raw socket of the addon; send errors come back as negative errno values. */
export interface NativeRawSocket {
  /** The netlink port id the kernel bound this socket to (the nlmsg_pid of replies to it); 0 for ICMPv6. */
  portId(): number;
  /** Sends a request to the kernel (netlink only): bytes sent or -errno. */
  send(msg: Buffer): number;
  /** Starts delivering datagrams: 0 or -errno. */
  start(onMessage: (buf: Buffer | null, meta: RawMeta) => void): number;
  close(): void;
}

interface RawAddon {
  RawSocket: {
    new (kind: 'netlink', groups: number, receiveBuffer?: number): NativeRawSocket;
    new (kind: 'icmp6', icmpType: number): NativeRawSocket;
  };
}

function load(): RawAddon | null {
  if (process.platform !== 'linux') return null;
  const loaded = requireAddon();
  // An addon built before raw.c existed has only UdpSocket.
  return loaded instanceof Error || typeof loaded.RawSocket !== 'function' ? null : (loaded as unknown as RawAddon);
}

const addon = load();

/** rawSocketsAvailable says whether the addon with raw sockets is loaded (Linux, built). */
export const rawSocketsAvailable: boolean = addon !== null;

/** Why raw sockets are unavailable, in one line for the log; null when they are available. */
export function rawSocketsMissing(): string | null {
  if (addon) return null;
  if (process.platform !== 'linux') return 'raw sockets need Linux';
  const loaded = requireAddon();
  return loaded instanceof Error
    ? `the native addon did not load (${loaded.message.split('\n')[0]})`
    : 'the native addon predates raw sockets (rebuild it: node native/build.mjs)';
}

function need(): RawAddon {
  if (!addon) throw new Error(rawSocketsMissing() ?? 'raw sockets unavailable');
  return addon;
}

/**
 * openNetlinkSocket opens an rtnetlink (NETLINK_ROUTE) socket bound to the
 * multicast `groups` (RTMGRP_* bits), with a receive queue of
 * `receiveBuffer` bytes (8 MiB unless said). Throws when raw sockets are
 * unavailable or the kernel refuses.
 */
export function openNetlinkSocket(groups: number, receiveBuffer?: number): NativeRawSocket {
  return receiveBuffer === undefined ? new (need().RawSocket)('netlink', groups) : new (need().RawSocket)('netlink', groups, receiveBuffer);
}

/**
 * openIcmp6Socket opens a raw ICMPv6 socket that receives only `icmpType`
 * (with the sender, interface and hop limit). Throws "… needs CAP_NET_RAW"
 * (code EPERM or EACCES) without the capability.
 */
export function openIcmp6Socket(icmpType: number): NativeRawSocket {
  return new (need().RawSocket)('icmp6', icmpType);
}
