// The interface names of this network namespace by index, from sysfs: what
// resolved's link objects and a Router Advertisement's ifindex name.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** interfaceNames maps this network namespace's interface indexes to names, from sysfs. */
export function interfaceNames(sysClassNet = '/sys/class/net'): Map<number, string> {
  const out = new Map<number, string>();
  let names: string[];
  try {
    names = readdirSync(sysClassNet);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      out.set(Number(readFileSync(join(sysClassNet, name, 'ifindex'), 'utf8').trim()), name);
    } catch {
      // gone while we looked, or not an interface
    }
  }
  return out;
}
