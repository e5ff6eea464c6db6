// SVCB records (RFC 9460, type 64) as Discovery of Designated Resolvers
// reads them from the answer to `_dns.resolver.arpa` SVCB (RFC 9462 §4),
// and the encrypted servers one record designates (RFC 9461 §4, §5).
//
// Read off the hot path, once per discovery: the answer is decoded whole
// (records.ts), its SvcParams by src/dns/svcparams.ts (as DNR's are), and a
// record that breaks a rule of RFC 9460 §2.2 is skipped with a reason, never
// thrown.

import type { Answer } from '../dns/answer.js';
import { TYPE } from '../dns/constants.js';
import { readName } from '../dns/name.js';
import { answerSections } from '../dns/records.js';
import { READ_KEYS, readSvcParams, type SvcParams } from '../dns/svcparams.js';
import { DOH_PORT, DOT_PORT, parseServer, type UpstreamServer } from '../upstream/server.js';

/**
 * Svcb is one ServiceMode SVCB record, its SvcParams read (port null: each
 * protocol's own, 853 for DoT, 443 for DoH; dohpath relative to the target).
 */
export interface Svcb extends Pick<SvcParams, 'alpn' | 'noDefaultAlpn' | 'port' | 'ipv4hint' | 'ipv6hint' | 'dohpath'> {
  /** SvcPriority: 1 and up (0, AliasMode, is never returned: it designates nothing). */
  priority: number;
  /** TargetName in presentation form, lower case, no trailing dot. */
  target: string;
  /** The record's TTL in seconds. */
  ttl: number;
}

/** What readSvcb found: the usable records by SvcPriority, and why the others were passed over. */
export interface SvcbRead {
  records: Svcb[];
  skipped: string[];
}

/**
 * readSvcb reads the SVCB records of an answer's answer section. `question`
 * is the query message it answers (header and question: compression
 * pointers in the answer may point into it). AliasMode records and records
 * breaking RFC 9460 §2.2 are skipped with a reason; the rest are sorted by
 * SvcPriority (RFC 9460 §2.4.1: lower is preferred), ties in answer order.
 */
export function readSvcb(question: Buffer, a: Answer): SvcbRead {
  const skipped: string[] = [];
  const sections = answerSections(question, a);
  if (sections === null) return { records: [], skipped: ['the answer could not be decoded'] };
  const records: Svcb[] = [];
  for (const rec of sections.answer) {
    if (rec.type !== TYPE.SVCB) continue;
    const r = parseSvcbRdata(rec.rdata, rec.ttl);
    if (typeof r === 'string') skipped.push(r);
    else records.push(r);
  }
  records.sort((x, y) => x.priority - y.priority);
  return { records, skipped };
}

/** parseSvcbRdata reads one SVCB RDATA (RFC 9460 §2.2); a one-line reason when it cannot be used. */
export function parseSvcbRdata(rdata: Buffer, ttl: number): Svcb | string {
  if (rdata.length < 3) return 'SVCB record too short';
  const priority = rdata.readUInt16BE(0);
  // TargetName is uncompressed (RFC 9460 §2.2): a pointer in it is malformed, as readName's bounds make it.
  let off = 2;
  for (;;) {
    if (off >= rdata.length) return 'SVCB TargetName runs past the record';
    const len = rdata[off]!;
    if (len === 0) break;
    if (len > 63) return 'SVCB TargetName is compressed or malformed (RFC 9460 §2.2)';
    off += len + 1;
  }
  const target = (readName(rdata, 2, off + 1) ?? '').toLowerCase();
  off++;
  // RFC 9462 §4: the designations are ServiceMode records; AliasMode says nothing about a resolver.
  if (priority === 0) return `SVCB record for ${target || '.'} is AliasMode (priority 0): not a designated resolver`;
  // RFC 9460 §2.5.2: "." in ServiceMode is the owner name, _dns.resolver.arpa, which no certificate can be for.
  if (target === '') return 'SVCB TargetName "." names no resolver (RFC 9462 §4)';
  // RFC 9460 §2.2, §7, §8 (key order, each value's format, "mandatory"): the rules every SvcParams list follows.
  // DDR uses every key the reader reads, hints included (RFC 9462 §4: they spare resolving the TargetName).
  const p = readSvcParams(rdata, off, rdata.length, READ_KEYS);
  if (typeof p === 'string') return `SVCB record for ${target}: ${p}`;
  return { priority, target, alpn: p.alpn, noDefaultAlpn: p.noDefaultAlpn, port: p.port, ipv4hint: p.ipv4hint, ipv6hint: p.ipv6hint, dohpath: p.dohpath, ttl };
}

/** Candidate is one encrypted server a record designates, as the transports take it. */
export interface Candidate {
  server: UpstreamServer;
  /** The record's SvcPriority. */
  priority: number;
  /** Its TargetName: what the certificate must be for. */
  target: string;
  /** The record's TTL. */
  ttl: number;
}

/**
 * candidatesOf turns a record into servers (RFC 9461 §4, §5): for ALPN
 * "dot", DNS over TLS at each address on the record's port (853 when none);
 * for "h2" with a dohpath, DNS over HTTPS at each address (443 when no port),
 * the path without its "{?dns}" template (pvdns POSTs, RFC 8484 §4.1). "h3"
 * counts only beside "h2" (pvdns speaks HTTP/2 only), "doq" never. The
 * addresses are the record's hints, else `resolved` (the TargetName's A
 * and AAAA, RFC 9462 §4). Each server is authenticated by TargetName. In the
 * order of the addresses, then of the record's ALPN IDs.
 */
export function candidatesOf(rec: Svcb, resolved: readonly string[] = []): { candidates: Candidate[]; problems: string[] } {
  const problems: string[] = [];
  const addresses = rec.ipv4hint.length + rec.ipv6hint.length > 0 ? [...rec.ipv4hint, ...rec.ipv6hint] : resolved;
  const forms: Array<(host: string) => string> = [];
  for (const id of new Set(rec.alpn)) {
    if (id === 'dot') forms.push((host) => `tls://${host}:${rec.port ?? DOT_PORT}#${rec.target}`);
    else if (id === 'h2') {
      const path = dohPath(rec.dohpath);
      if (typeof path === 'string') forms.push((host) => `https://${host}:${rec.port ?? DOH_PORT}${path}#${rec.target}`);
      else problems.push(`${rec.target}: ${path.problem}`);
    }
  }
  if (forms.length === 0 && problems.length === 0) problems.push(`${rec.target}: no protocol pvdns speaks (alpn ${rec.alpn.join(',') || 'missing'}; DoT "dot" or DoH "h2" needed)`);
  if (forms.length > 0 && addresses.length === 0) problems.push(`${rec.target}: no address (no hints, and its A/AAAA gave none)`);
  const candidates: Candidate[] = [];
  for (const addr of addresses) {
    const host = addr.includes(':') ? `[${addr}]` : addr;
    for (const form of forms) {
      const s = parseServer(form(host), 'strict');
      if (typeof s === 'string') problems.push(s);
      else candidates.push({ server: s, priority: rec.priority, target: rec.target, ttl: rec.ttl });
    }
  }
  return { candidates, problems };
}

/**
 * dohPath is a dohpath template's path without the "{?dns}" expression
 * (RFC 9461 §5: the template MUST hold the "dns" variable and be relative
 * to the target; RFC 8484 §4.1: with POST, the path alone is used).
 */
function dohPath(template: string | null): string | { problem: string } {
  if (template === null) return { problem: 'alpn h2 without dohpath: no DoH path (RFC 9461 §5)' };
  if (!template.startsWith('/')) return { problem: `dohpath ${JSON.stringify(template)} is not a path (RFC 9461 §5)` };
  const m = /\{[?&]dns\}/.exec(template);
  if (m === null) return { problem: `dohpath ${JSON.stringify(template)} has no "dns" variable (RFC 9461 §5)` };
  const path = template.slice(0, m.index) + template.slice(m.index + m[0].length);
  if (path.includes('{')) return { problem: `dohpath ${JSON.stringify(template)} has other template variables` };
  return path;
}
