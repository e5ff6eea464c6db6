// The batched-UDP addon (native/udp.c), when it was built and is wanted.
// pvdns uses it for its listeners and upstream sockets: one call into
// JavaScript per batch of datagrams, sendmmsg for the replies a batch
// produces. Without it (not Linux, a failed build, PVDNS_UDP_BACKEND=dgram)
// pvdns uses node:dgram with the same behaviour; both are tested.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import ipaddr from 'ipaddr.js';

/** A socket of the addon; errors come back as negative errno values. */
export interface NativeUdpSocket {
  bind(address: string, port: number, ipv6Only: boolean): number;
  connect(address: string, port: number): number;
  localPort(): number;
  start(rx: Buffer, meta: Int32Array, slotSize: number, onBatch: (n: number) => void): number;
  send(msg: Buffer, port?: number, address?: string | null): number;
  sendBatch(msgs: Buffer[], meta: Int32Array, count: number): number;
  close(): void;
}

interface Addon {
  UdpSocket: new (family: 4 | 6) => NativeUdpSocket;
  BATCH: number;
}

/** Int32 words of metadata per datagram: [length, port, family, truncated, address words ×4]. */
export const META = 8;
/** Receive slot size: larger datagrams arrive marked truncated. */
export const SLOT = 4096;

/** Where node-gyp puts the addon: seen from dist/native/, or from dist/ when pvdns runs bundled. */
const ADDON = ['../../build/Release/pvdns_udp.node', '../build/Release/pvdns_udp.node'];

let addonModule: Record<string, unknown> | Error | undefined;

/**
 * requireAddon loads the addon's .node file (once), whatever
 * PVDNS_UDP_BACKEND says: the raw sockets (src/native/raw.ts) live in the
 * same file and have no fallback to choose. An Error when it did not load.
 */
export function requireAddon(): Record<string, unknown> | Error {
  if (addonModule === undefined) {
    const require = createRequire(import.meta.url);
    try {
      const path = ADDON.find((p) => existsSync(fileURLToPath(new URL(p, import.meta.url)))) ?? ADDON[0]!;
      addonModule = require(path) as Record<string, unknown>;
    } catch (err) {
      addonModule = err as Error;
    }
  }
  return addonModule;
}

function load(): Addon | null {
  const choice = process.env.PVDNS_UDP_BACKEND ?? 'auto';
  if (choice === 'dgram') return null;
  const loaded = requireAddon();
  if (loaded instanceof Error) {
    if (choice === 'native') throw new Error(`PVDNS_UDP_BACKEND=native, but the addon did not load: ${loaded.message}`);
    return null;
  }
  return loaded as unknown as Addon;
}

const addon = load();

/** udpBackend says which UDP implementation this process uses. */
export const udpBackend: 'native' | 'dgram' = addon ? 'native' : 'dgram';
export const BATCH = addon?.BATCH ?? 0;

/** newNativeSocket opens an addon socket (only call when udpBackend is 'native'). */
export function newNativeSocket(family: 4 | 6): NativeUdpSocket {
  return new addon!.UdpSocket(family);
}

/**
 * The receive area every addon socket shares: callbacks run one at a time
 * and each consumes its datagrams before returning, so one area serves all.
 */
export const rxArea = addon ? Buffer.alloc(BATCH * SLOT) : Buffer.alloc(0);
export const rxMeta = new Int32Array(addon ? BATCH * META : 0);
const rxBytes = new Uint8Array(rxMeta.buffer);

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** errnoError turns the addon's -errno into an Error with the usual code. */
export function errnoError(result: number, syscall: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(-result) ?? `E${-result}`;
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}`);
  err.code = code;
  err.errno = result;
  err.syscall = syscall;
  return err;
}

const v4Names = new Map<number, string>();
const NAME_CACHE_LIMIT = 4096;

/** peerAddress renders datagram i's sender address, cached for IPv4 (clients repeat). */
export function peerAddress(i: number): string {
  const m = i * META;
  const at = (m + 4) * 4;
  if (rxMeta[m + 2] === 4) {
    const key = rxMeta[m + 4]!;
    let name = v4Names.get(key);
    if (name === undefined) {
      name = `${rxBytes[at]}.${rxBytes[at + 1]}.${rxBytes[at + 2]}.${rxBytes[at + 3]}`;
      if (v4Names.size >= NAME_CACHE_LIMIT) v4Names.clear();
      v4Names.set(key, name);
    }
    return name;
  }
  return ipaddr.fromByteArray([...rxBytes.subarray(at, at + 16)]).toString();
}
