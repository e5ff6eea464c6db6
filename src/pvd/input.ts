// PvD objects as the API and PvD files receive them. One reading for every
// form, documented in the README ("The PvD object"):
//
// - Every key pvdns knows — RFC 8801's (identifier, expires, prefixes,
//   dnsZones, noInternet) and pvdns's own (dnsServers, priority, default,
//   interface, dns64, ...) — is always honoured, whatever else the object has.
// - Keys pvdns does not know are allowed only in an RFC 8801 PvD Additional
//   Information object, one with all three mandatory keys (identifier,
//   expires, prefixes; RFC 8801 §4.3): they are ignored, as §4.3 says of
//   unknown keys and `vendor-*` or URN-named sub-dictionaries, and returned as
//   `ignoredKeys` so no caller drops them in silence. An unknown key that
//   looks like a misspelling of a known one (dnsZone, DNSServers, expire) is
//   refused even there: read as "unknown, ignored" it would change what the
//   PvD does without a word.
// - Any other object is pvdns's PvD object: unknown keys are refused, every
//   one named.
// - An RFC 8801 object must carry the dnsServers its link gave: the RFC's
//   object has no servers, and a PvD without them answers nothing.

import type { z } from 'zod';
import { describeIssue } from '../config/issue.js';
import { pvdSpecSchema, type PvdSpec } from './schema.js';

/** The most a PvD file may hold (the same as a configuration file): a larger one is refused unread. */
export const MAX_PVD_FILE_BYTES = 4 * 1024 * 1024;

/** One thing wrong with a PvD object: the field (dnsServers[1]; '' for the whole) and what is wrong. */
export interface PvdIssue {
  field: string;
  problem: string;
}

/** PvdInputError names the fields that are wrong and what is wrong with each. */
export class PvdInputError extends Error {
  /** Every problem found, the first being `field` and `problem`. */
  readonly issues: readonly PvdIssue[];

  constructor(
    readonly field: string,
    readonly problem: string,
    issues?: readonly PvdIssue[],
  ) {
    const all = issues && issues.length > 0 ? issues : [{ field, problem }];
    super(all.map((i) => (i.field ? `${i.field}: ${i.problem}` : i.problem)).join('; '));
    this.name = 'PvdInputError';
    this.issues = all;
  }
}

/** A PvD read from input, with the keys that were ignored (RFC 8801 §4.3). */
export interface PvdInput {
  spec: PvdSpec;
  /** Unknown keys of an RFC 8801 object, in the object's order; empty otherwise. */
  ignoredKeys: string[];
}

/** Every key pvdns knows: RFC 8801's and its own. */
export const PVD_KEYS: readonly string[] = Object.keys(pvdSpecSchema.shape);
const KNOWN = new Set(PVD_KEYS);

/** RFC 8801 §4.3: an object is PvD Additional Information only with all three. */
const MANDATORY = ['identifier', 'expires', 'prefixes'] as const;

/**
 * readPvdInput validates a parsed JSON value as a PvD (see the file header
 * for the rules), or throws a PvdInputError listing every problem.
 */
export function readPvdInput(value: unknown): PvdInput {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PvdInputError('', 'a PvD must be a JSON object');
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  const unknown = keys.filter((k) => !KNOWN.has(k));
  const rfc8801 = MANDATORY.every((k) => obj[k] !== undefined && obj[k] !== null);
  const issues: PvdIssue[] = [];
  for (const k of unknown) {
    const near = isPrivateKey(k) ? null : suggestKey(k, PVD_KEYS);
    if (near !== null) issues.push({ field: k, problem: `unknown key (did you mean "${near}"?)` });
    else if (!rfc8801) {
      issues.push({ field: k, problem: 'unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)' });
    }
  }
  const servers = obj.dnsServers;
  if (rfc8801 && (servers === undefined || servers === null || (Array.isArray(servers) && servers.length === 0))) {
    issues.push({ field: 'dnsServers', problem: 'an RFC 8801 PvD needs the DNS servers its link gave' });
  }
  const input = unknown.length === 0 ? obj : Object.fromEntries(keys.filter((k) => KNOWN.has(k)).map((k) => [k, obj[k]]));
  const r = pvdSpecSchema.safeParse(input, { reportInput: true });
  if (!r.success) issues.push(...r.error.issues.map(toIssue));
  if (issues.length > 0) throw new PvdInputError(issues[0]!.field, issues[0]!.problem, issues);
  return { spec: r.data!, ignoredKeys: unknown };
}

/** parsePvdInput is readPvdInput without the ignored keys. */
export function parsePvdInput(value: unknown): PvdSpec {
  return readPvdInput(value).spec;
}

/** RFC 8801 §4.3: private keys live in `vendor-*` or URN-named sub-dictionaries; never a misspelling. */
function isPrivateKey(key: string): boolean {
  return /^(vendor-|urn:)/i.test(key);
}

/**
 * suggestKey names the known key `key` is most likely a misspelling of, or
 * null: the same key in another case or with "-"/"_" (DNSServers,
 * dns_zones), its singular or plural (prefix, priorities), or within two
 * edits (dnsZone, expire, dnsSever).
 */
export function suggestKey(key: string, known: readonly string[]): string | null {
  const fold = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '');
  const singular = (s: string): string => s.replace(/ies$/, 'y').replace(/(x|s|z|ch|sh)es$/, '$1').replace(/s$/, '');
  const k = fold(key);
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const c = fold(candidate);
    const d = singular(k) === singular(c) ? Math.min(1, editDistance(k, c, 1)) : editDistance(k, c, bestDistance);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** editDistance is the optimal-string-alignment distance (a swap of neighbours is one edit), or `limit` once it is that far. */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let low = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      row.push(v);
      low = Math.min(low, v);
    }
    if (low >= limit) return limit;
    prev2 = prev;
    prev = row;
  }
  return Math.min(prev[b.length]!, limit);
}

function toIssue(issue: z.core.$ZodIssue): PvdIssue {
  const { field, problem } = describeIssue(issue);
  return { field, problem };
}
