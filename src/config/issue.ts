// One wording for schema errors, wherever a schema is checked (config
// files, API bodies, PvD files): the field's path and what is wrong.

import type { z } from 'zod';

export interface IssueText {
  /** The path of the offending field, an unknown key included. */
  path: (string | number)[];
  /** The same path as text: pvds[0].dnsServers[1]. */
  field: string;
  problem: string;
}

/** describeIssue turns a zod issue (from a parse with reportInput: true) into a path and a problem. */
export function describeIssue(issue: z.core.$ZodIssue): IssueText {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const full = [...path, key];
    return { path: full, field: keyPath(full), problem: `unknown key "${key}"` };
  }
  // reportInput: zod 4 leaves issue.input out otherwise, and "missing" is told apart by it.
  const problem = issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message;
  return { path, field: keyPath(path), problem };
}

/** keyPath renders ["pvds", 0, "dnsServers", 1] as pvds[0].dnsServers[1]. */
export function keyPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}
