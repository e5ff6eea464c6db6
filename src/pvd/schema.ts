// PvdSpec: a PvD as configuration, the API and PvD files write it — the RFC
// 8801 PvD Additional Information keys (identifier, expires, prefixes,
// dnsZones, noInternet) plus pvdns's local ones. Unknown keys are refused
// here; input.ts says when an RFC 8801 object's unknown keys are ignored.
// A PvD with no dnsServers is never a default: not by default, and
// `default: true` is refused. Its lists are bounded (MAX_DNS_SERVERS,
// MAX_DNS_ZONES, MAX_PREFIXES) and name at most MAX_LISTED bad items each, so
// a 4 MiB file of two million bad items is refused in a few lines and
// milliseconds.

import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { parsePref64 } from '../dns64/prefix.js';
import { parsePrefix, parseSocketAddress, isIpLiteral, type SocketAddress } from '../config/address.js';
import { ENCRYPTIONS, isEncryptedForm, parseServer } from '../upstream/server.js';

export { domainProblem, normalizeDomain } from '../dns/domain.js';
import { domainProblem, normalizeDomain } from '../dns/domain.js';

const domain = z.string().superRefine((v, ctx) => {
  const problem = domainProblem(v);
  // JSON.stringify: a value echoed in a problem stays on its line, whatever it holds.
  if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} ${problem}` });
});

/** zoneProblem says why a name cannot be one of a PvD's dnsZones, or null. */
function zoneProblem(v: string): string | null {
  const problem = domainProblem(v);
  if (problem) return `${JSON.stringify(v)} ${problem}`;
  const n = normalizeDomain(v);
  // RFC 6761 §6.3, §6.4: these names never leave the host, whoever claims them.
  for (const pinned of ['localhost', 'invalid']) {
    if (n === pinned || n.endsWith(`.${pinned}`)) return `${JSON.stringify(v)} is always answered locally (RFC 6761) and cannot be claimed by a PvD`;
  }
  return null;
}

/**
 * unicastProblem says why a parsed server address can never be a unicast
 * DNS server, or null: a query sent there reaches no one, or everyone.
 * Multicast (224.0.0.0/4, ff00::/8) is mDNS's, not a resolver's (RFC 6762);
 * 255.255.255.255 is the limited broadcast; 0.0.0.0/8 and :: name no host
 * (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2: never a destination); port 0 is no port.
 */
export function unicastProblem(addr: SocketAddress, text: string): string | null {
  const never = "never a DNS server, which is one host's unicast address";
  const quoted = JSON.stringify(text);
  if (addr.port === 0) return `${quoted} has port 0`;
  const range = addr.family === 4 ? ipv4Range(addr.host) : ipaddr.process(addr.host.split('%', 1)[0]!).range();
  if (range === 'multicast') return `${quoted} is a multicast address: ${never}`;
  if (range === 'broadcast') return `${quoted} is the broadcast address: ${never}`;
  if (range === 'unspecified') return `${quoted} is an unspecified address, which names no host: ${never} (this host is 127.0.0.1 or ::1)`;
  return null;
}

/** ipv4Range is ipaddr's range() for the three ranges above, from the dotted quad parseSocketAddress checked (a second parse of every server costs more than the rest of a PvD). */
function ipv4Range(host: string): 'multicast' | 'broadcast' | 'unspecified' | null {
  const first = Number(host.slice(0, host.indexOf('.')));
  if (first === 0) return 'unspecified';
  if (first >= 224 && first <= 239) return 'multicast';
  return host === '255.255.255.255' ? 'broadcast' : null;
}

/**
 * serverProblem says what is wrong with a DNS server as written, or null: an
 * IP literal (port 53 unless given) that can be one host's unicast address,
 * or one of the encrypted forms (src/upstream/server.ts).
 */
export function serverProblem(text: string): string | null {
  if (!isEncryptedForm(text)) {
    const r = parseSocketAddress(text, 53);
    return typeof r === 'string' ? r : unicastProblem(r, text);
  }
  const r = parseServer(text, 'strict');
  if (typeof r === 'string') return r;
  return r.hostName !== null ? null : unicastProblem(r, text);
}

/**
 * designatedProblem says what is wrong with a designated resolver as
 * written (RFC 9463 DNR): one of the encrypted forms only, since a
 * designated resolver is by definition an encrypted one.
 */
export function designatedProblem(text: string): string | null {
  if (!isEncryptedForm(text)) return `${JSON.stringify(text)} is not an encrypted server: write tls://ADDR[:PORT]#NAME or https://HOST[:PORT]/PATH[#NAME]`;
  return serverProblem(text);
}

/** The most addresses one PvD may listen on. */
export const MAX_PVD_LISTEN = 16;

/**
 * listenProblem says what is wrong with an address a PvD's own listener
 * binds (`listen`: UDP and TCP, port 53 unless given), or null.
 */
export function listenProblem(text: string): string | null {
  const r = parseSocketAddress(text, 53);
  if (typeof r === 'string') return r;
  if (r.family === 6 && /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/i.test(r.host.split('%')[0]!)) return `"${text}" is an IPv4-mapped address, which cannot be bound: write the IPv4 address`;
  return null;
}

/** prefixProblem says why a text is not an address prefix, or null. */
function prefixProblem(v: string): string | null {
  const r = parsePrefix(v);
  return typeof r === 'string' ? r : null;
}

/** The most servers a PvD may list: a link gives a few, and servers are asked in order, so no PvD needs this many. */
export const MAX_DNS_SERVERS = 256;
/** The most zones a PvD may claim: room for a split-DNS list of a whole country's domains. */
export const MAX_DNS_ZONES = 200_000;
/** The most prefixes a PvD may list (each also claims its reverse zones). */
export const MAX_PREFIXES = 10_000;
/** Bad items named per list; when there are more, one problem first says how many (20 problems are shown at most). */
export const MAX_LISTED = 10;

/** typeName names a JSON value's type for "must be a string, not …". */
function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * listOf is a list of at most `max` strings, each checked by `problem`. It
 * checks the items itself, not with z.array(item): zod makes an issue of
 * every bad item (150,000 of them took most of a second), while this names
 * the first MAX_LISTED and says how many there were. The length is checked first
 * (zod checks an array's size before its items), so an overlong list is
 * one problem.
 */
function listOf(max: number, problem: (v: string) => string | null) {
  return z
    .array(z.unknown())
    .max(max, { error: (issue) => `has ${(issue.input as unknown[]).length} items; a PvD takes at most ${max}` })
    .superRefine((items, ctx) => {
      const named: Array<[index: number, problem: string]> = [];
      let bad = 0;
      for (let i = 0; i < items.length; i++) {
        const v = items[i];
        const p = typeof v === 'string' ? problem(v) : `must be a string, not ${typeName(v)}`;
        if (p !== null && ++bad <= MAX_LISTED) named.push([i, p]);
      }
      // The count first: where problems are cut short (MAX_PVD_PROBLEMS), it is the one kept.
      if (bad > MAX_LISTED) ctx.addIssue({ code: 'custom', message: `${bad} of its ${items.length} items are wrong` });
      for (const [i, p] of named) ctx.addIssue({ code: 'custom', path: [i], message: p });
    })
    .transform((items) => items as string[]);
}

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
    dnsServers: listOf(MAX_DNS_SERVERS, serverProblem).default([]),
    dnsZones: listOf(MAX_DNS_ZONES, zoneProblem).default([]),
    prefixes: listOf(MAX_PREFIXES, prefixProblem).default([]),
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
    // How its servers are spoken to (DESIGN.md "Encrypted DNS"); null: strict when it lists an
    // encrypted server, else off.
    encryption: z.enum(ENCRYPTIONS).nullable().default(null),
    // The network's encrypted resolvers (RFC 9463 DNR: an RA or DHCP option, an RFC 8801 PvD, a PvD
    // file): asked before dnsServers, which stay the PvD's cleartext servers.
    designatedResolvers: listOf(MAX_DNS_SERVERS, designatedProblem).default([]),
    // Discovery of Designated Resolvers (RFC 9462) through the PvD's cleartext servers; null: on for a
    // network's PvDs (host, RA), off for PvDs written by hand (config, API, files).
    ddr: z.boolean().nullable().default(null),
    // Addresses of the PvD's own DNS listener: every query there is resolved in this PvD only
    // (no routing, no fallback), for a container or namespace pinned to one network.
    listen: listOf(MAX_PVD_LISTEN, listenProblem).default([]),
  })
  .superRefine((p, ctx) => {
    if (p.encryption === 'off') {
      p.dnsServers.forEach((s, i) => {
        if (typeof s === 'string' && s.trim().startsWith('https://')) {
          ctx.addIssue({ code: 'custom', path: ['dnsServers', i], message: `${JSON.stringify(s)} is DNS over HTTPS, which has no cleartext form: it cannot be used with encryption: off` });
        }
      });
    }
    if (p.encryption === 'off' && p.designatedResolvers.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['designatedResolvers'], message: 'designated resolvers are encrypted: they cannot be used with encryption: off' });
    }
    if (p.noInternet && p.default === true) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: 'a PvD with noInternet: true cannot serve names nobody owns' });
    }
    // A default that answers nothing would turn every name nobody claims into SERVFAIL.
    if (p.default === true && p.dnsServers.length === 0 && p.designatedResolvers.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: 'a PvD with no dnsServers cannot serve names nobody owns' });
    }
  });

/** PvdSpec is a validated PvD object with defaults filled in. */
export type PvdSpec = z.output<typeof pvdSpecSchema>;
