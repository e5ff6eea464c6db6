// A PvD server that is pvdns itself would send every query in a circle.
// Checked wherever a server comes in: the configuration (check.ts), PvD
// files and the API, and the host's links.

import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { UpstreamServer } from '../upstream/server.js';
import type { SocketAddress } from './address.js';

/** How long one reading of the host's addresses serves (a check of 16,000 PvDs is one reading, not 16,000). */
const LOCAL_ADDRESSES_MS = 1000;
let local: { at: number; addresses: Set<string> } | null = null;

/**
 * isOwnListener says whether `server` is one of pvdns's listeners: the same
 * address and port, or the port of a wildcard listener on any address of
 * this host.
 */
export function isOwnListener(server: SocketAddress, listeners: readonly SocketAddress[]): boolean {
  for (const l of listeners) {
    if (l.port !== server.port) continue;
    if (sameHost(l.host, server.host)) return true;
    // IPv6 listeners are bound IPv6-only, so a wildcard covers its own family only.
    if (isUnspecified(l.host) && l.family === server.family && isLocalAddress(server.host) && server.host !== DOCKER_DNS) return true;
  }
  return false;
}

/**
 * serverLoops says whether pvdns would send a PvD's server's queries to
 * itself: at the server's own address (a DoH server named by a host name is
 * not known yet) or, opportunistic, at its cleartext fallback.
 */
export function serverLoops(server: UpstreamServer, listeners: readonly SocketAddress[]): boolean {
  return (server.hostName === null && isOwnListener(server, listeners)) || (server.fallback !== null && isOwnListener(server.fallback, listeners));
}

/**
 * Docker's embedded DNS server in a container on a user-defined network
 * (compose's default): an iptables redirect on 127.0.0.11:53 catches its
 * traffic before any socket, so a wildcard listener on port 53 is not it.
 */
const DOCKER_DNS = '127.0.0.11';

function sameHost(a: string, b: string): boolean {
  try {
    return ipaddr.process(a.split('%')[0]!).toString() === ipaddr.process(b.split('%')[0]!).toString();
  } catch {
    return a === b;
  }
}

function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

function isLocalAddress(host: string): boolean {
  const plain = host.split('%')[0]!;
  const addr = ipaddr.process(plain);
  if (addr.range() === 'loopback') return true;
  return localAddresses().has(addr.toString());
}

/** localAddresses is the host's interface addresses in ipaddr.js's normal form, read at most once a second. */
function localAddresses(): Set<string> {
  const now = Date.now();
  if (local === null || now - local.at > LOCAL_ADDRESSES_MS) {
    const addresses = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      for (const i of list ?? []) {
        try {
          addresses.add(ipaddr.process(i.address.split('%')[0]!).toString());
        } catch {
          // not an address ipaddr.js reads: no server can name it either
        }
      }
    }
    local = { at: now, addresses };
  }
  return local.addresses;
}
