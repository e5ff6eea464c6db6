// The configuration file's schema. Defaults live here, next to the keys they
// belong to; every object is strict so a misspelt key is an error, not a
// silently ignored wish.

import { z } from 'zod';
import ipaddr from 'ipaddr.js';
import { domainProblem, normalizeDomain, pvdSpecSchema } from '../pvd/schema.js';
import { isWildcard, parsePrefix, parseSocketAddress, type SocketAddress } from './address.js';

// Schemas here are used a few times (start-up, reload, an API call), not in a
// loop: zod's generated fast path costs more to make than it saves (~5 ms of
// start-up, measured).
z.config({ jitless: true });

const listenAddress = (defaultPort: number) =>
  z.string().superRefine((v, ctx) => {
    const r = parseSocketAddress(v, defaultPort);
    if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
    // An IPv4-mapped address is how an IPv6 socket sees an IPv4 peer; Linux refuses to bind one
    // (EINVAL), so it is refused here, where check-config sees it too.
    else if (r.family === 6 && /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/i.test(r.host.split('%')[0]!)) {
      ctx.addIssue({ code: 'custom', message: `"${v}" is an IPv4-mapped address, which cannot be bound: write the IPv4 address` });
    }
  });

const cidr = z.string().superRefine((v, ctx) => {
  const r = parsePrefix(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

const seconds = z.number().int().min(0);

/** The ways pvdSources.hostBackend may name of learning the host's links (src/pvd/sources/host.ts). */
export const HOST_BACKENDS = ['auto', 'resolved', 'networkmanager', 'resolvectl', 'nmcli', 'resolvconf'] as const;

/** A known address of the captive-portal canary: an IPv4 literal as answers print it. */
const canaryAddress = z.string().superRefine((v, ctx) => {
  if (ipaddr.IPv6.isValid(v)) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is IPv6: the canary is asked for A records only, so give its IPv4 addresses` });
  } else if (!ipaddr.IPv4.isValidFourPartDecimal(v)) {
    // Dotted-quad without leading zeros: the form answers are printed in.
    ctx.addIssue({ code: 'custom', message: `"${v}" is not an IPv4 address (four decimal numbers, e.g. 192.0.2.1)` });
  }
});

export const configSchema = z
  .strictObject({
    listen: z.array(listenAddress(53)).min(1).default(['127.0.0.1:5300']),
    http: z
      .strictObject({
        listen: listenAddress(8053).nullable().default('127.0.0.1:8053'),
        token: z
          .string()
          .min(16, 'must be at least 16 characters')
          // RFC 6750 §2.1 b64token: what fits in "Authorization: Bearer <token>".
          .regex(/^[A-Za-z0-9\-._~+/]+=*$/, 'may only contain letters, digits and -._~+/ (then = padding): it is sent as a bearer token')
          .nullable()
          .default(null),
        // A file holding the token: read at start and reload, or made (mode 0600, a fresh random
        // token) when it is not there. Who can read it can change the host's DNS (src/http/token.ts).
        tokenFile: z.string().min(1).nullable().default(null),
        // Clients that may use the HTTP listener (/healthz and /readyz excepted); null: access.allow.
        allow: z.array(cidr).nullable().default(null),
        // Host header values accepted besides loopback names and addresses and the listen address:
        // what closes DNS rebinding (a web page's name pointed at 127.0.0.1 is refused).
        allowedHosts: z.array(z.string().regex(/^[A-Za-z0-9.-]+$/, 'must be a host name (letters, digits, "-" and ".")')).default([]),
      })
      .prefault({})
      .refine((h) => h.token === null || h.tokenFile === null, {
        message: 'set http.token or http.tokenFile, not both',
        path: ['tokenFile'],
      }),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
    access: z
      .strictObject({
        // Empty would refuse every client: certainly a mistake, so an error rather than a silent outage.
        allow: z
          .array(cidr)
          .min(1, 'is empty: every client would be refused; list the networks to serve, e.g. ["127.0.0.0/8", "::1/128"]')
          .default(['127.0.0.0/8', '::1/128']),
        rateLimit: z
          .strictObject({
            // Queries per second per client address; 0: no limit.
            qps: z.number().min(0).max(1_000_000).default(0),
            burst: z.number().int().min(1).max(1_000_000).default(100),
            action: z.enum(['refuse', 'drop']).default('refuse'),
          })
          .prefault({}),
      })
      .prefault({}),
    cache: z
      .strictObject({
        maxEntries: z.number().int().min(0).max(10_000_000).default(100_000),
        minTtl: seconds.default(0),
        maxTtl: seconds.default(86_400),
        negativeTtl: seconds.default(900),
        serveStale: z.boolean().default(false),
      })
      .prefault({})
      .refine((c) => c.minTtl <= c.maxTtl, { message: 'minTtl must not exceed maxTtl', path: ['minTtl'] }),
    upstream: z
      .strictObject({
        // The longest one try waits before the query is sent again (the adaptive RTO's ceiling).
        timeoutMs: z.number().int().min(10).max(60_000).default(1500),
        // Servers one query may try.
        attempts: z.number().int().min(1).max(10).default(3),
        // The time one query may take upstream in all, across its tries and servers.
        queryTimeoutMs: z.number().int().min(10).max(60_000).default(3000),
        probeIntervalMs: z.number().int().min(10).max(3_600_000).default(1000),
        // Capped low so a server's return is seen within a couple of seconds (a probe is one packet).
        probeMaxIntervalMs: z.number().int().min(10).max(3_600_000).default(2000),
        // Upstream queries in flight at once, all PvDs together; more are answered SERVFAIL at once.
        maxInflight: z.number().int().min(1).max(1_000_000).default(10_000),
      })
      .prefault({})
      .refine((u) => u.probeIntervalMs <= u.probeMaxIntervalMs, {
        message: 'probeIntervalMs must not exceed probeMaxIntervalMs',
        path: ['probeIntervalMs'],
      }),
    tcp: z
      .strictObject({
        idleTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        maxConnections: z.number().int().min(1).max(65_535).default(256),
        maxPipelined: z.number().int().min(1).max(65_535).default(100),
      })
      .prefault({}),
    captive: z
      .strictObject({
        // 0 turns the DNS heuristics off; a PvD's RFC 8908 API is still read.
        probeIntervalS: z.union([z.literal(0), z.number().int().min(1).max(86_400)]).default(60),
        canary: z
          .strictObject({
            name: z
              .string()
              .superRefine((v, ctx) => {
                const problem = domainProblem(v);
                if (problem) ctx.addIssue({ code: 'custom', message: `"${v}" ${problem}` });
              })
              .default('example.com'),
            // Compared as text with the addresses of the canary's A answers (the probe asks for A only).
            addresses: z.array(canaryAddress).default([]),
          })
          .prefault({}),
      })
      .prefault({}),
    pvdSources: z
      .strictObject({
        directory: z.string().min(1).nullable().default(null),
        host: z.boolean().default(true),
        // Where the host's links come from: auto tries systemd-resolved and NetworkManager over
        // D-Bus (by their events), then resolvectl and nmcli (polled), then resolv.conf.
        hostBackend: z.enum(HOST_BACKENDS).default('auto'),
        // How often resolvectl or nmcli is run again when they are the backend (no bus); 0: only at
        // start and on reload. The D-Bus backends follow events and never poll.
        hostPollIntervalS: z.number().int().min(0).max(86_400).default(10),
        resolvConf: z.string().min(1).default('/etc/resolv.conf'),
        // RFC 8801 explicit PvDs from Router Advertisements (needs CAP_NET_RAW).
        routerAdvertisements: z.boolean().default(false),
      })
      .prefault({}),
    tls: z
      .strictObject({
        // Extra trust anchors (PEM) beside the system's: for RFC 8801 PvD Additional Information
        // fetched over HTTPS, and for encrypted upstreams.
        caFile: z.string().min(1).nullable().default(null),
      })
      .prefault({}),
    pvds: z.array(pvdSpecSchema).default([]),
  })
  .superRefine((c, ctx) => {
    listenerClashes(c, ctx);
    const seen = new Map<string, number>();
    c.pvds.forEach((p, i) => {
      const id = normalizeDomain(p.identifier);
      const first = seen.get(id);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['pvds', i, 'identifier'],
          message: `"${p.identifier}" is already the identifier of pvds[${first}] (identifiers compare case-insensitively, RFC 8801 §3.4)`,
        });
      } else {
        seen.set(id, i);
      }
      if (id === 'system' && c.pvdSources.host) {
        ctx.addIssue({
          code: 'custom',
          path: ['pvds', i, 'identifier'],
          message: '"system" is the PvD pvdSources.host builds from resolv.conf; set pvdSources.host: false to define it here',
        });
      }
    });
  });

/**
 * listenerClashes refuses listeners serve could never bind together: a DNS
 * address listed twice, one beside a wildcard of its family on the same
 * port, and http.listen where a DNS listener takes TCP (see sharesPort).
 * Linear in the number of listeners: they are grouped by family and port.
 */
function listenerClashes(c: { listen: string[]; http: { listen: string | null }; pvds?: Array<{ listen?: string[] }> }, ctx: z.RefinementCtx): void {
  const groups = new Map<string, { wildcard: number | null; any: number | null; hosts: Map<string, number> }>();
  // The DNS listeners: `listen`, then each PvD's own (pvds[i].listen[j]).
  const entries: Array<{ addr: SocketAddress; path: (string | number)[] }> = [
    ...c.listen.map((l, i) => ({ addr: parseSocketAddress(l, 53) as SocketAddress, path: ['listen', i] })),
    ...(c.pvds ?? []).flatMap((p, i) => (p.listen ?? []).map((l, j) => ({ addr: parseSocketAddress(l, 53) as SocketAddress, path: ['pvds', i, 'listen', j] }))),
  ];
  const addrs = entries.map((e) => e.addr);
  const name = (j: number): string => entries[j]!.path.map((k, n) => (typeof k === 'number' ? `[${k}]` : n === 0 ? k : `.${k}`)).join('');
  const groupOf = (a: SocketAddress) => `${a.family}/${a.port}`;
  /** The listener `a` would clash with, if any. */
  const clash = (a: SocketAddress): number | null => {
    const g = groups.get(groupOf(a));
    if (a.port === 0 || g === undefined) return null;
    return g.hosts.get(a.host) ?? g.wildcard ?? (isWildcard(a) ? g.any : null);
  };
  addrs.forEach((a, i) => {
    const j = clash(a);
    if (j !== null) {
      const other = addrs[j]!;
      const message =
        other.host === a.host
          ? `${a.label} is already ${name(j)}`
          : `${a.label} and ${name(j)} (${other.label}) cannot both listen: a wildcard address takes its port on every address of its family`;
      ctx.addIssue({ code: 'custom', path: entries[i]!.path, message });
      return;
    }
    const key = groupOf(a);
    const g = groups.get(key) ?? { wildcard: null, any: null, hosts: new Map<string, number>() };
    groups.set(key, g);
    g.any ??= i;
    if (isWildcard(a)) g.wildcard ??= i;
    g.hosts.set(a.host, i);
  });
  if (c.http.listen === null) return;
  const http = parseSocketAddress(c.http.listen, 8053) as SocketAddress;
  const j = clash(http);
  if (j !== null) {
    ctx.addIssue({ code: 'custom', path: ['http', 'listen'], message: `${http.label} is on a DNS port: ${name(j)} (${addrs[j]!.label}) takes TCP there` });
  }
}

/** Config is the validated configuration with every default filled in. */
export type Config = z.output<typeof configSchema>;
