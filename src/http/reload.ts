// POST /v1/reload: the reload SIGHUP does (the configuration file read again
// and applied by App.reload), asked over the API, with the answer SIGHUP
// cannot give: what changed, or why nothing did.

import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Pvd } from '../pvd/model.js';

/** What a reload changed: top-level settings, and PvDs by identifier. */
export interface ReloadChanges {
  /** The file read. */
  config: string;
  /** Top-level configuration keys whose value changed (pvds aside: see `pvds`). */
  settings: string[];
  /** PvDs (of every source: a reload also re-reads pvdSources) that came, went, or changed. */
  pvds: { added: string[]; removed: string[]; changed: string[] };
}

/** What POST /v1/reload did, or why it could not (status and one line; `errors`: every problem). */
export type ReloadOutcome = { ok: true; changes: ReloadChanges } | { ok: false; status: number; error: string; errors?: string[] };

/** The state a reload is measured against: the running configuration and PvDs. */
export interface ReloadState {
  config: Config;
  pvds: readonly Pvd[];
}

/**
 * reloadFile reads `file` and applies it with `apply` (App.reload, the same
 * steps as SIGHUP), comparing `state()` before and after. A configuration
 * problem is 422 with its one-line text (the first; `errors` has each, as
 * the log's `errors` does), the running configuration kept; a pvdns started
 * without a file (an in-memory configuration) has nothing to reload: 409.
 */
export async function reloadFile(file: string | null, state: () => ReloadState, apply: (next: Config) => Promise<void>): Promise<ReloadOutcome> {
  if (file === null) return { ok: false, status: 409, error: 'this pvdns was started without a configuration file: there is nothing to reload' };
  const before = state();
  try {
    await apply(await loadConfig(file));
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, status: 422, error: oneLine(err.message), ...(err.more.length > 0 ? { errors: err.lines.map(oneLine) } : {}) };
    return { ok: false, status: 500, error: `reload failed: ${oneLine(err instanceof Error ? err.message : String(err))}` };
  }
  return { ok: true, changes: { config: file, ...reloadChanges(before, state()) } };
}

/**
 * reloadChanges compares two states. A PvD is changed when the registry
 * holds another object for it: an unchanged one is left as it was, cache
 * and all (src/pvd/sources/sync.ts; an updated one keeps its tag, so the
 * tag cannot tell).
 */
export function reloadChanges(before: ReloadState, after: ReloadState): Omit<ReloadChanges, 'config'> {
  const was = new Map(before.pvds.map((p) => [p.id, p]));
  const now = new Map(after.pvds.map((p) => [p.id, p]));
  const keys = [...new Set([...Object.keys(before.config), ...Object.keys(after.config)])] as Array<keyof Config>;
  return {
    settings: keys.filter((k) => k !== 'pvds' && JSON.stringify(before.config[k]) !== JSON.stringify(after.config[k])),
    pvds: {
      added: after.pvds.filter((p) => !was.has(p.id)).map((p) => p.identifier),
      removed: before.pvds.filter((p) => !now.has(p.id)).map((p) => p.identifier),
      changed: after.pvds.filter((p) => was.has(p.id) && was.get(p.id) !== p).map((p) => p.identifier),
    },
  };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
