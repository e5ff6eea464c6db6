// reclaim() of the addon (native/memory.cc): V8's low-memory collection and
// glibc's malloc_trim, to hand memory back after a burst of work. Without
// the addon (not Linux, a failed build) there is nothing to call, and
// pvdns's memory after a flood comes back only as V8 and glibc see fit.

import { requireAddon } from './udp.js';

let reclaimFn: (() => void) | null | undefined;

/** reclaimMemory runs a full compacting GC and trims malloc's arenas; false when this process cannot (no addon). */
export function reclaimMemory(): boolean {
  if (reclaimFn === undefined) {
    const addon = requireAddon();
    reclaimFn = addon instanceof Error || typeof addon.reclaim !== 'function' ? null : (addon.reclaim as () => void);
  }
  if (reclaimFn === null) return false;
  reclaimFn();
  return true;
}
