// PvdView: a PvD with its live state, as GET /v1/pvds and the events show it
// (DESIGN's PvD object). Fields of features still to come are null.

import type { Pvd } from './model.js';

export interface ServerView {
  address: string;
  /** untested, operational or suspect (issue 5 adds down and the back-off). */
  state: string;
  rttMs: number | null;
  /** When the state last changed (RFC 3339). */
  since: string | null;
  lastError: string | null;
}

export interface PvdView {
  identifier: string;
  source: string;
  default: boolean;
  priority: number;
  noInternet: boolean;
  dnsZones: readonly string[];
  prefixes: readonly string[];
  expires: string | null;
  sourceAddress: string | null;
  interface: string | null;
  servers: ServerView[];
  captive: boolean | null;
  captiveState: string | null;
  userPortalUrl: string | null;
  pref64: string[] | null;
  dns64: string | null;
  cacheEntries: number;
}

/** pvdView combines a PvD with its servers' state and its cache size. */
export function pvdView(p: Pvd, servers: ServerView[], cacheEntries: number): PvdView {
  return {
    identifier: p.identifier,
    source: p.source,
    default: p.isDefault,
    priority: p.priority,
    noInternet: p.noInternet,
    dnsZones: p.dnsZones,
    prefixes: p.prefixes,
    expires: p.expiresAt === null ? null : new Date(p.expiresAt).toISOString(),
    sourceAddress: p.sourceAddress,
    interface: p.interface,
    servers,
    captive: null,
    captiveState: null,
    userPortalUrl: null,
    pref64: null,
    dns64: null,
    cacheEntries,
  };
}
