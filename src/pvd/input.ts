// PvD objects as the API and PvD files receive them. One reading for every
// form, documented in the README ("How a PvD object is read"):
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
//   PvD does without a word. Short keys are held to fewer edits (suggestKey),
//   so dns4 or internet is ignored, not taken for dns64 or noInternet.
// - Any other object is pvdns's PvD object: unknown keys are refused, every
//   one named.
// - An RFC 8801 object must carry the dnsServers its link gave: the RFC's
//   object has no servers, and a PvD without them answers nothing.
// - At most MAX_PVD_PROBLEMS problems are listed, the last saying how many
//   more there were: an object of 130,000 unknown keys is refused in a few
//   lines, not in a message of megabytes.

import type { z } from 'zod';
import { describeIssue } from '../config/issue.js';
import { pvdSpecSchema, type PvdSpec } from './schema.js';

/** The most a PvD file may hold (the same as a configuration file): a larger one is refused unread. */
export const MAX_PVD_FILE_BYTES = 4 * 1024 * 1024;

/** The most problems listed for one PvD, the last saying how many more (the configuration's MAX_PROBLEMS too). */
export const MAX_PVD_PROBLEMS = 20;

/** One thing wrong with a PvD object: the field (dnsServers[1]; '' for the whole) and what is wrong. */
export interface PvdIssue {
  field: string;
  problem: string;
}

/** PvdInputError names the fields that are wrong and what is wrong with each. */
export class PvdInputError extends Error {
  /** The problems found (at most MAX_PVD_PROBLEMS of them), the first being `field` and `problem`. */
  readonly issues: readonly PvdIssue[];
  /** How many problems were found, `issues` being the first few. */
  readonly total: number;

  constructor(
    readonly field: string,
    readonly problem: string,
    issues?: readonly PvdIssue[],
    total?: number,
  ) {
    const all = issues && issues.length > 0 ? issues : [{ field, problem }];
    const more = Math.max(0, (total ?? all.length) - all.length);
    super(all.map((i) => (i.field ? `${i.field}: ${i.problem}` : i.problem)).join('; ') + (more > 0 ? `; ${more} more problems not shown` : ''));
    this.name = 'PvdInputError';
    this.issues = all;
    this.total = all.length + more;
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
  // Loops, not push(...many): a spread of 130,000 issues overflows the call stack.
  const issues: PvdIssue[] = [];
  let total = 0;
  const add = (issue: PvdIssue): void => {
    if (++total <= MAX_PVD_PROBLEMS) issues.push(issue);
  };
  for (const k of unknown) {
    const near = isPrivateKey(k) ? null : suggestKey(k, PVD_KEYS);
    if (near !== null) add({ field: k, problem: `unknown key (did you mean "${near}"?)` });
    else if (!rfc8801) {
      add({ field: k, problem: 'unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)' });
    }
  }
  const servers = obj.dnsServers;
  if (rfc8801 && (servers === undefined || servers === null || (Array.isArray(servers) && servers.length === 0))) {
    add({ field: 'dnsServers', problem: 'an RFC 8801 PvD needs the DNS servers its link gave' });
  }
  let input = obj;
  if (unknown.length > 0) {
    input = {};
    for (const k of keys) if (KNOWN.has(k)) input[k] = obj[k];
  }
  const r = pvdSpecSchema.safeParse(input, { reportInput: true });
  if (!r.success) for (const issue of r.error.issues) add(toIssue(issue));
  if (issues.length > 0) throw new PvdInputError(issues[0]!.field, issues[0]!.problem, issues, total);
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
 * null: the same key in another case, with "-"/"_", or singular or plural
 * (DNSServers, dns_zones, prefix, priorities), or a few edits away
 * (dnsZone, expire, dnsSever). How many edits depends on the key's length:
 * none up to 4 characters, one up to 8, two beyond, so short words that are
 * keys of their own (dns, dns4, dns6, internet) are not taken for dns64 or
 * noInternet, while identifer or sourceAdress still are.
 */
export function suggestKey(key: string, known: readonly string[]): string | null {
  const k = singular(fold(key));
  const allowed = k.length <= 4 ? 0 : k.length <= 8 ? 1 : 2;
  let best: string | null = null;
  let bestDistance = allowed + 1;
  const folded = foldedKeys(known);
  for (let i = 0; i < known.length; i++) {
    const d = editDistance(k, folded[i]!, bestDistance);
    if (d < bestDistance) {
      best = known[i]!;
      bestDistance = d;
    }
  }
  return best;
}

/** The known keys folded and made singular, once per list (an object may have 100,000 unknown keys to check). */
const foldedCache = new WeakMap<readonly string[], string[]>();
function foldedKeys(known: readonly string[]): string[] {
  let folded = foldedCache.get(known);
  if (folded === undefined) {
    folded = known.map((c) => singular(fold(c)));
    foldedCache.set(known, folded);
  }
  return folded;
}

/** fold drops what a misspelling may change without meaning another key: case, "-", "_" and spaces. */
function fold(s: string): string {
  return s.toLowerCase().replace(/[-_\s]/g, '');
}

/** singular drops an English plural ending, so prefix and prefixes, priority and priorities, are one key. */
function singular(s: string): string {
  return s.replace(/ies$/, 'y').replace(/(x|s|z|ch|sh)es$/, '$1').replace(/s$/, '');
}

/**
 * editDistance is the optimal-string-alignment distance (a swap of
 * neighbours is one edit), or `limit` once it is that far. Only cells within
 * `limit` of the diagonal are computed (the others are that far at least):
 * it runs for every unknown key of an object against every known key.
 */
let scratch = [new Int32Array(32), new Int32Array(32), new Int32Array(32)];
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  if (a === b) return 0;
  const n = b.length;
  if (scratch[0]!.length <= n) scratch = scratch.map(() => new Int32Array(n + 1));
  let [prev2, prev, row] = scratch as [Int32Array, Int32Array, Int32Array];
  prev2.fill(limit, 0, n + 1);
  prev.fill(limit, 0, n + 1);
  for (let j = 0; j < limit && j <= n; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    const from = Math.max(1, i - limit + 1);
    const to = Math.min(n, i + limit - 1);
    row.fill(limit, 0, n + 1);
    if (i < limit) row[0] = i;
    let low = row[0]!;
    for (let j = from; j <= to; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost, limit);
      if (i > 1 && j > 1 && a.charCodeAt(i - 1) === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === b.charCodeAt(j - 1)) v = Math.min(v, prev2[j - 2]! + 1);
      row[j] = v;
      if (v < low) low = v;
    }
    if (low >= limit) return limit;
    [prev2, prev, row] = [prev, row, prev2];
  }
  return Math.min(prev[n]!, limit);
}

function toIssue(issue: z.core.$ZodIssue): PvdIssue {
  const { field, problem } = describeIssue(issue);
  return { field, problem };
}
