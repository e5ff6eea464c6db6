// The one shape of a PvD source: something that learns PvDs (or the host's
// links, which become PvDs) and tells the registry as soon as it knows.
// Every source in this folder is started, stopped and wired the same way
// (sources.ts); none reaches into the registry or the App by itself.

import type { PvdSpec } from '../schema.js';

/** What a link-watching backend reports: one link's DNS as the host configures it. */
export interface HostLink {
  ifname: string;
  /** The kernel's interface index, where the backend knows it. */
  ifindex?: number;
  /**
   * Server addresses in the form resolvectl prints them: "192.0.2.1",
   * "192.0.2.1:5353", "fd00::1", "fe80::1%3", "[fd00::1]:5353",
   * "192.0.2.1#dns.example" (a TLS name: DNS over TLS).
   */
  servers: string[];
  /** Search and routing domains without the "~", lower case; "." stands for the "~." default route. */
  domains: string[];
  /** Whether names nobody routes elsewhere may go to this link. */
  defaultRoute: boolean;
  /**
   * The link's DNS over TLS mode in effect where the backend reports one
   * ("yes", "opportunistic", "no"): its own setting, else the host's global
   * one. host.ts makes it the PvD's `encryption`.
   */
  dnsOverTls?: string;
  /** The link's DNSSEC mode where the backend reports one ("yes", "allow-downgrade", "no"). */
  dnssec?: string;
  /** The backend's DNS priority for the link (NetworkManager's dns-priority), lower first. */
  dnsPriority?: number;
  /**
   * Set on the host's global DNS settings, not a link's (resolved's DNS= and
   * Domains= in resolved.conf, or a foreign resolv.conf's nameservers): they
   * become the `system` PvD, with no interface and no kernel link state. Its
   * `ifname` is "system"; a link-local server carries its own zone
   * ("[fe80::1%wlan0]").
   */
  global?: boolean;
}

/**
 * LinkBackend is one way of learning the host's links' DNS: systemd-resolved
 * or NetworkManager over D-Bus (by their events), or their command-line tools
 * polled (the fallback). A backend only reports; host.ts turns links into PvDs.
 */
export interface LinkBackend {
  /** Names the backend in the start line, /v1/pvds and `pvdns status`: "resolved (D-Bus)", "resolvectl (polled every 10 s)". */
  readonly name: string;
  /**
   * start begins following the host. It resolves with the first report, or
   * null when this backend is not available here (no bus, no such service,
   * no such tool): the caller then tries the next backend. After a report,
   * every change is reported through `onReport` with the whole set of links.
   * A backend that hears of a change before it can read it (a call it sees
   * on the bus) calls `hold` then, and the release once it has reported.
   */
  start(onReport: (links: HostLink[]) => void, hold?: () => () => void): Promise<HostLink[] | null>;
  /** refresh reads again soon: the kernel says a link changed (a backend that hears of every change itself need not have it). */
  refresh?(): void;
  stop(): void;
}

/** A change a source makes: what the registry did with it, counted and published by source. */
export type SourceChange = 'announced' | 'updated' | 'withdrawn';

/**
 * SourceSink is how a source changes the registry. `sync` states the
 * source's whole set (announce new, update changed, withdraw the rest);
 * `announce` and `withdraw` change one PvD. Each returns what it changed.
 * `hold` opens a barrier: until the returned release is called (or a bound
 * of at most 100 ms passes), queries wait before they are routed, so a
 * change the source has heard of but not yet read cannot be overtaken by a
 * query routed the old way.
 */
export interface SourceSink {
  sync(specs: readonly PvdSpec[]): void;
  announce(spec: PvdSpec): void;
  withdraw(identifier: string): void;
  hold(): () => void;
}

/** PvdFeed is a source of PvDs: started with a sink, stopped when pvdns stops or the config no longer asks for it. */
export interface PvdFeed {
  /** The source as users see it: "host: resolved (D-Bus)", "directory /etc/pvdns/pvds.d", "router advertisements". */
  describe(): string;
  start(sink: SourceSink): Promise<void>;
  stop(): void;
}
