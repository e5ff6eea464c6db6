// Domain names in presentation form as configuration and the API write them:
// the checks every name-valued key shares.

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** domainProblem says what is wrong with a domain name in presentation form, or null. */
export function domainProblem(name: string): string | null {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed.length === 0) return 'is empty';
  if (trimmed.length > 253) return 'is longer than 253 characters';
  for (const label of trimmed.split('.')) {
    if (!LABEL.test(label)) return `has an invalid label ${JSON.stringify(label)} (letters, digits, "-" and "_", 1–63 long)`;
  }
  return null;
}

/** normalizeDomain lower-cases a name and drops the trailing dot (RFC 4343). */
export function normalizeDomain(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
