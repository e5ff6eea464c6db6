// PvdSpec: a PvD as configuration, the API and PvD files write it — the RFC
// 8801 PvD Additional Information keys (identifier, expires, prefixes,
// dnsZones, noInternet) plus pvdns's local ones. Unknown keys are refused
// here; input.ts says when an RFC 8801 object's unknown keys are ignored.
// A PvD with no dnsServers is never a default: not by default, and
// `default: true` is refused.

import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { parsePref64 } from '../dns64/prefix.js';
import { parsePrefix, parseSocketAddress, isIpLiteral, type SocketAddress } from '../config/address.js';

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** domainProblem says what is wrong with a domain name in presentation form, or null. */
export function domainProblem(name: string): string | null {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed.length === 0) return 'is empty';
  if (trimmed.length > 253) return 'is longer than 253 characters';
  for (const label of trimmed.split('.')) {
    if (!LABEL.test(label)) return `has an invalid label "${label}" (letters, digits, "-" and "_", 1–63 long)`;
  }
  return null;
}

/** normalizeDomain lower-cases a name and drops the trailing dot (RFC 4343). */
export function normalizeDomain(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

const domain = z.string().superRefine((v, ctx) => {
  const problem = domainProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `"${v}" ${problem}` });
});

const zone = domain.superRefine((v, ctx) => {
  const n = normalizeDomain(v);
  // RFC 6761 §6.3, §6.4: these names never leave the host, whoever claims them.
  for (const pinned of ['localhost', 'invalid']) {
    if (n === pinned || n.endsWith(`.${pinned}`)) {
      ctx.addIssue({ code: 'custom', message: `"${v}" is always answered locally (RFC 6761) and cannot be claimed by a PvD` });
    }
  }
});

/**
 * unicastProblem says why a parsed server address can never be a unicast
 * DNS server, or null: a query sent there reaches no one, or everyone.
 * Multicast (224.0.0.0/4, ff00::/8) is mDNS's, not a resolver's (RFC 6762);
 * 255.255.255.255 is the limited broadcast; 0.0.0.0/8 and :: name no host
 * (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2: never a destination); port 0 is no port.
 */
export function unicastProblem(addr: SocketAddress, text: string): string | null {
  const never = "never a DNS server, which is one host's unicast address";
  if (addr.port === 0) return `"${text}" has port 0`;
  const range = addr.family === 4 ? ipv4Range(addr.host) : ipaddr.process(addr.host.split('%', 1)[0]!).range();
  if (range === 'multicast') return `"${text}" is a multicast address: ${never}`;
  if (range === 'broadcast') return `"${text}" is the broadcast address: ${never}`;
  if (range === 'unspecified') return `"${text}" is an unspecified address, which names no host: ${never} (this host is 127.0.0.1 or ::1)`;
  return null;
}

/** ipv4Range is ipaddr's range() for the three ranges above, from the dotted quad parseSocketAddress checked (a second parse of every server costs more than the rest of a PvD). */
function ipv4Range(host: string): 'multicast' | 'broadcast' | 'unspecified' | null {
  const first = Number(host.slice(0, host.indexOf('.')));
  if (first === 0) return 'unspecified';
  if (first >= 224 && first <= 239) return 'multicast';
  return host === '255.255.255.255' ? 'broadcast' : null;
}

/** serverProblem says what is wrong with a DNS server as written (see serverAddress), or null. */
export function serverProblem(text: string): string | null {
  const r = parseSocketAddress(text, 53);
  return typeof r === 'string' ? r : unicastProblem(r, text);
}

/** A DNS server: an IP literal, port 53 unless given, that can be one host's unicast address. */
export const serverAddress = z.string().superRefine((v, ctx) => {
  const problem = serverProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const prefix = z.string().superRefine((v, ctx) => {
  const r = parsePrefix(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

const rfc3339 = /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)$/;

const dns64 = z.string().superRefine((v, ctx) => {
  if (v === 'auto' || v === 'off') return;
  const r = parsePref64(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: `must be auto, off or a NAT64 prefix: ${r}` });
});

/** pvdSpecSchema validates one PvD object. */
export const pvdSpecSchema = z
  .strictObject({
    identifier: domain,
    dnsServers: z.array(serverAddress).default([]),
    dnsZones: z.array(zone).default([]),
    prefixes: z.array(prefix).default([]),
    noInternet: z.boolean().default(false),
    default: z.boolean().optional(),
    priority: z.number().int().min(0).max(65535).default(100),
    expires: z
      .string()
      .regex(rfc3339, 'must be an RFC 3339 date-time, e.g. "2030-01-01T00:00:00Z"')
      .refine((v) => !Number.isNaN(Date.parse(v)), 'is not a valid date-time')
      .nullable()
      .default(null),
    sourceAddress: z
      .string()
      .refine(isIpLiteral, 'must be an IP address of this host')
      .nullable()
      .default(null),
    interface: z.string().min(1).nullable().default(null),
    dns64: dns64.default('auto'),
    dns64Synthesize: z.boolean().default(false),
    captivePortal: z
      .string()
      .refine(
        (v) => v === 'urn:ietf:params:capport:unrestricted' || (URL.canParse(v) && new URL(v).protocol === 'https:'),
        'must be an https URI (RFC 8908 §4.1) or urn:ietf:params:capport:unrestricted (RFC 8910 §2)',
      )
      .nullable()
      .default(null),
    rebindProtection: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    if (p.noInternet && p.default === true) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: 'a PvD with noInternet: true cannot serve names nobody owns' });
    }
    // A default that answers nothing would turn every name nobody claims into SERVFAIL.
    if (p.default === true && p.dnsServers.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: 'a PvD with no dnsServers cannot serve names nobody owns' });
    }
  });

/** PvdSpec is a validated PvD object with defaults filled in. */
export type PvdSpec = z.output<typeof pvdSpecSchema>;
