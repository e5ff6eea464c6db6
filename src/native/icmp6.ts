// Router Advertisements as they arrive, for the RFC 8801 source: a raw
// ICMPv6 socket (native/raw.c) that the kernel lets only type 134 through.
// Parsing and validation (RFC 4861 §6.1.2: hop limit 255, link-local source)
// belong to the caller; this only delivers what came, with where from.

import { openIcmp6Socket } from './raw.js';

/** ND_ROUTER_ADVERT (RFC 4861 §4.2). */
export const ICMP6_ROUTER_ADVERT = 134;

/** One Router Advertisement as received. */
export interface ReceivedRa {
  /** The ICMPv6 message from its type octet on (type, code, checksum, then the RA body and options). */
  payload: Buffer;
  /** The sender's address without a zone ("fe80::1"); the zone is `ifindex`. */
  source: string;
  /** The interface it arrived on. */
  ifindex: number;
  /** The IPv6 hop limit it arrived with; RFC 4861 §6.1.2 wants 255. */
  hopLimit: number;
}

/**
 * openRaReceiver starts receiving Router Advertisements on every interface.
 * Throws when raw sockets are unavailable or the process lacks CAP_NET_RAW
 * (the message says "needs CAP_NET_RAW"). Receive errors other than these
 * are not fatal: the socket keeps listening.
 */
export function openRaReceiver(onRa: (ra: ReceivedRa) => void): { close(): void } {
  const sock = openIcmp6Socket(ICMP6_ROUTER_ADVERT);
  const r = sock.start((buf, meta) => {
    if (buf === null || meta.truncated) return;
    onRa({ payload: buf, source: meta.source ?? '', ifindex: meta.ifindex ?? 0, hopLimit: meta.hopLimit ?? -1 });
  });
  if (r !== 0) {
    sock.close();
    throw new Error(`raw ICMPv6 socket: could not start polling (${r})`);
  }
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      sock.close();
    },
  };
}

/**
 * raReceiverProblem says why openRaReceiver would fail here (no addon, no
 * CAP_NET_RAW), or null: a socket is opened and closed at once to find out.
 */
export function raReceiverProblem(): string | null {
  try {
    openIcmp6Socket(ICMP6_ROUTER_ADVERT).close();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
