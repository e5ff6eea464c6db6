// Bringing the registry in line with what one source says now: announce new
// PvDs, update changed ones (keeping their tag, and with it their cache),
// withdraw the ones the source no longer lists. Start-up and reload both
// go through here.

import { isDeepStrictEqual } from 'node:util';
import { pvdFromSpec, type Pvd, type PvdSource } from '../model.js';
import type { PvdRegistry } from '../registry.js';
import { normalizeDomain, type PvdSpec } from '../schema.js';

/** Declaration order of each source's PvDs, so config PvDs sort before host ones on ties. */
const ORDER_BASE: Record<PvdSource, number> = { config: 0, host: 100_000, file: 200_000, ra: 250_000, api: 300_000 };

export interface SyncResult {
  announced: string[];
  updated: string[];
  withdrawn: string[];
  /** PvDs another source already holds under the same id. */
  conflicts: string[];
  /** PvDs whose `expires` has passed: not announced (RFC 8801 §4.3). */
  expired: string[];
}

let nextIndex = 0;

/** What announcing one PvD from a source did. */
export type AnnounceResult = 'announced' | 'updated' | 'unchanged' | 'expired' | 'conflict';

/**
 * announceFrom announces or updates one PvD on behalf of a source: an
 * unchanged PvD is left as it is (its cache and server state with it), an
 * updated one keeps its tag, and a PvD another source holds is not touched.
 */
export function announceFrom(registry: PvdRegistry, source: PvdSource, spec: PvdSpec, index: number | null, origin: string | null = null): AnnounceResult {
  const existing = registry.get(normalizeDomain(spec.identifier));
  if (existing && existing.source !== source) return 'conflict';
  // index null (the API): an update keeps its place, a new PvD goes after the source's others.
  const order = index !== null ? ORDER_BASE[source] + index : (existing?.order ?? ORDER_BASE[source] + nextIndex++);
  const pvd = pvdFromSpec(spec, source, order, existing?.tag, origin);
  if (existing && sameExceptTag(existing, pvd)) return 'unchanged';
  return registry.announce(pvd);
}

/**
 * syncSource makes the registry hold exactly `specs` for `source`, in one
 * registry batch: listeners hear of the whole change once.
 */
export function syncSource(registry: PvdRegistry, source: PvdSource, specs: readonly PvdSpec[], origin: string | null = null): SyncResult {
  return registry.batch(() => syncAll(registry, source, specs, origin));
}

function syncAll(registry: PvdRegistry, source: PvdSource, specs: readonly PvdSpec[], origin: string | null): SyncResult {
  const result: SyncResult = { announced: [], updated: [], withdrawn: [], conflicts: [], expired: [] };
  const wanted = new Set<string>();
  specs.forEach((spec, i) => {
    const id = normalizeDomain(spec.identifier);
    wanted.add(id);
    const r = announceFrom(registry, source, spec, i, origin);
    if (r === 'announced') result.announced.push(id);
    else if (r === 'updated') result.updated.push(id);
    else if (r === 'expired') result.expired.push(id);
    else if (r === 'conflict') result.conflicts.push(id);
  });
  for (const p of registry.list()) {
    if (p.source === source && !wanted.has(p.id)) {
      registry.withdraw(p.id);
      result.withdrawn.push(p.id);
    }
  }
  return result;
}

/**
 * sourceLabel names where a PvD in the registry came from, for messages that
 * name both sides of a conflict: "config pvds[2]", "the host's link wg0".
 */
export function sourceLabel(p: Pvd): string {
  switch (p.source) {
    case 'config':
      return `config pvds[${p.order - ORDER_BASE.config}]`;
    case 'host':
      return p.interface ? `the host's link ${p.interface}` : "the host's resolv.conf PvD";
    case 'api':
      return 'a PvD made through the API';
    case 'file':
      return 'a PvD file';
    case 'ra':
      return p.interface ? `a Router Advertisement on ${p.interface}` : 'a Router Advertisement';
  }
}

function sameExceptTag(a: Pvd, b: Pvd): boolean {
  return isDeepStrictEqual({ ...a, tag: 0 }, { ...b, tag: 0 });
}
