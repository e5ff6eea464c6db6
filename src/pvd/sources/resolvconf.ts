// The implicit `system` PvD (RFC 7556 §2.2): the host's node-wide DNS
// servers from resolv.conf, for hosts that tell pvdns nothing more.

import { readFile } from 'node:fs/promises';
import { parseSocketAddress, type SocketAddress } from '../../config/address.js';

/** SYSTEM_PVD is the identifier of the PvD built from resolv.conf. */
export const SYSTEM_PVD = 'system';

/** parseResolvConf returns the nameserver addresses of a resolv.conf text, in order. */
export function parseResolvConf(text: string): SocketAddress[] {
  const servers: SocketAddress[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = parseSocketAddress(m[1]!.includes(':') && !m[1]!.startsWith('[') ? `[${m[1]}]` : m[1]!, 53);
    if (typeof addr !== 'string') servers.push(addr);
  }
  return servers;
}

/** readResolvConf reads and parses a resolv.conf file; a missing file has no servers. */
export async function readResolvConf(path: string): Promise<SocketAddress[]> {
  try {
    return parseResolvConf(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
