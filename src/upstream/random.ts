// Unpredictable query IDs and source ports from the CSPRNG (RFC 5452 §9.2,
// RFC 4086), drawn from a refilled pool so a query costs no system call.

import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

const pool = Buffer.allocUnsafe(4096);
let at = pool.length;

/** randomU16 returns a uniformly random integer in [0, 65535]. */
export function randomU16(): number {
  if (at + 2 > pool.length) {
    randomFillSync(pool);
    at = 0;
  }
  const v = pool.readUInt16BE(at);
  at += 2;
  return v;
}

/**
 * The kernel's ephemeral port range: ports no service expects to own, so a
 * random pick rarely collides (RFC 6056 §2.1).
 */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo! >= 1024 && hi! <= 65535 && lo! < hi!) return [lo!, hi!];
  } catch {
    // not Linux: use the IANA dynamic range
  }
  return [49152, 65535];
}

const [PORT_LO, PORT_HI] = ephemeralRange();
/** How many ports randomPort draws from. */
export const PORT_SPAN = PORT_HI - PORT_LO + 1;
// Largest multiple of the span below 65536: rejecting draws above it keeps ports uniform.
const PORT_LIMIT = 65536 - (65536 % PORT_SPAN);

/** randomPort returns a uniformly random port of the ephemeral range. */
export function randomPort(): number {
  for (;;) {
    const v = randomU16();
    if (v < PORT_LIMIT) return PORT_LO + (v % PORT_SPAN);
  }
}
