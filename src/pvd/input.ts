// PvD objects as the API and PvD files receive them: DESIGN's PvD object
// (the configuration's keys, unknown keys refused), or an RFC 8801 PvD
// Additional Information JSON, whose unknown keys and vendor sub-dictionaries
// are ignored (RFC 8801 §4.3) and whose three mandatory keys must be there.

import type { z } from 'zod';
import { describeIssue } from '../config/issue.js';
import { pvdSpecSchema, type PvdSpec } from './schema.js';

/** PvdInputError names the field that is wrong and what is wrong with it. */
export class PvdInputError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(field ? `${field}: ${problem}` : problem);
    this.name = 'PvdInputError';
  }
}

/**
 * The keys pvdns takes from an RFC 8801 object; `dnsServers` and
 * `captivePortal` (RFC 8910's API URI, from DHCP or an RA) are what the host
 * adds from the link.
 */
const RFC8801_KEYS = ['identifier', 'expires', 'prefixes', 'dnsZones', 'noInternet', 'dnsServers', 'captivePortal'] as const;
const LOCAL_KEYS = new Set(Object.keys(pvdSpecSchema.shape));

/**
 * parsePvdInput validates a parsed JSON value as a PvD. An object that has
 * keys pvdns does not know, but carries RFC 8801's mandatory identifier,
 * expires and prefixes, is read as RFC 8801 PvD Additional Information.
 */
export function parsePvdInput(value: unknown): PvdSpec {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PvdInputError('', 'a PvD must be a JSON object');
  }
  const obj = value as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !LOCAL_KEYS.has(k));
  const rfc8801 = unknown.length > 0 && 'identifier' in obj && 'expires' in obj && 'prefixes' in obj;
  const input = rfc8801 ? Object.fromEntries(RFC8801_KEYS.filter((k) => k in obj).map((k) => [k, obj[k]])) : obj;
  const r = pvdSpecSchema.safeParse(input, { reportInput: true });
  if (r.success) return r.data;
  throw toInputError(r.error.issues[0]!);
}

function toInputError(issue: z.core.$ZodIssue): PvdInputError {
  const { field, problem } = describeIssue(issue);
  return new PvdInputError(field, problem);
}
