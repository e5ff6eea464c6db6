// The host's links as systemd-resolved knows them, read over D-Bus
// (org.freedesktop.resolve1, systemd 252's API) and re-read the moment
// something changes them: each link's servers (with port and TLS name, from
// DNSEx), its search and routing domains, DefaultRoute, DNSOverTLS (the
// Manager's where the link has none) and DNSSEC; and resolved's global
// servers and domains (the Manager's DNSEx and Domains entries of no link:
// resolved.conf's DNS= and Domains=, or a foreign resolv.conf's
// nameservers) as the `system` link, with the global DNSOverTLS.
//
// What tells pvdns that something changed. Measured with resolved 252 on a
// private bus (test/host/resolved.test.ts): SetLinkDNS(Ex) and RevertLink
// send PropertiesChanged for the Manager's DNS before their reply, but
// SetLinkDomains, SetLinkDefaultRoute, SetLinkDNSOverTLS and SetLinkDNSSEC
// send nothing, a link that goes away sends nothing, and their only trace is
// resolved's private state file in a 0700 directory. So:
//
// - Running as root (or as the bus's user), pvdns opens a second connection
//   and makes it a monitor (org.freedesktop.DBus.Monitoring.BecomeMonitor, D-Bus
//   Specification "Becoming a monitor") of resolved's replies: every reply
//   resolved sends to someone else is after a call it has processed, so a
//   re-read then sees the change (resolved answers on one connection, in
//   order: our Get reaches it after the call it answered). Stock system bus
//   policies allow it for root, dbus-daemon and dbus-broker alike; nothing
//   to install. Eavesdropping (a match rule with eavesdrop='true') is not an
//   alternative: dbus-daemon refuses such a rule from any uid but root's and
//   the bus's whatever the policy says (measured: "rejected attempt to call
//   AddMatch … with uid 994"), root would also need a policy file, and
//   dbus-broker has no eavesdropping at all.
//   A call whose caller wants no reply is read after at once (it gets
//   none); one whose reply does not come within the routing gate's 100 ms
//   is read after then and forgotten. If the bus drops the monitor alone
//   (dbus-daemon does so to one that falls behind), the links stay and pvdns
//   follows resolved the unprivileged way below until it is a monitor again.
// - Without that privilege pvdns re-reads when any client leaves the bus
//   (NameOwnerChanged to ""): resolvectl, resolvconf and the VPN scripts that
//   run them leave right after their call. A long-lived client (NetworkManager,
//   networkd) setting only domains is caught by a poll every `pollMs`; the
//   backend's name says so.
// - Always: PropertiesChanged from resolved, resolved leaving or coming back
//   (NameOwnerChanged of org.freedesktop.resolve1), and `refresh()`, which the
//   host source calls when netlink says a link came or went.
//
// Triggers within one turn of the event loop make one re-read; one re-read
// runs at a time, and one more follows if something triggered meanwhile. A
// re-read that finds the same links reports nothing.

import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { DBusConnection, DBusError, systemBusAddress, type DBusMessage } from '../../dbus/connection.js';
import { interfaceNames } from './ifnames.js';
import { CoalescedRead } from './coalesced-read.js';
import { SYSTEM_PVD } from './resolvconf.js';
import type { HostLink, LinkBackend } from './source.js';

const RESOLVE1 = 'org.freedesktop.resolve1';
const ROOT_PATH = '/org/freedesktop/resolve1';
const MANAGER = 'org.freedesktop.resolve1.Manager';
const LINK = 'org.freedesktop.resolve1.Link';
const BUS = 'org.freedesktop.DBus';
const BUS_PATH = '/org/freedesktop/DBus';
const AF_INET = 2;
const AF_INET6 = 10;
/** How long to wait before connecting again after the bus went away (or before trying to be a monitor again). */
const RECONNECT_MS = 5000;
/**
 * How long a changing call seen by the monitor is waited for: the routing
 * gate's own bound (SourceSink.hold). A call whose reply never comes (its
 * caller asked for none, the bus answered it, resolved restarted) is
 * forgotten after this, so it holds no query again and takes no room.
 */
const CHANGING_MS = 100;

/**
 * formatServer writes a server as resolvectl does (systemd's
 * in_addr_port_ifindex_name_to_string): "192.0.2.1", "192.0.2.1:5353",
 * "fd00::1", "[fd00::1]:5353", "fe80::1%3", "[fe80::1]:5353%3", each with
 * "#name" after it when it has a TLS name. The zone (the link's index) is
 * written for an IPv6 link-local address only. null: not an address.
 */
export function formatServer(family: number, address: Uint8Array, port: number, ifindex: number, name: string): string | null {
  let ip: string;
  let zone = '';
  if (family === AF_INET && address.length === 4) ip = address.join('.');
  else if (family === AF_INET6 && address.length === 16) {
    const a = ipaddr.fromByteArray([...address]) as ipaddr.IPv6;
    ip = a.toString();
    if (ifindex > 0 && a.range() === 'linkLocal') zone = `%${ifindex}`;
  } else return null;
  const tls = name ? `#${name}` : '';
  if (port > 0) return family === AF_INET6 ? `[${ip}]:${port}${zone}${tls}` : `${ip}:${port}${tls}`;
  return `${ip}${zone}${tls}`;
}

/** One link's properties as resolved gives them (org.freedesktop.resolve1.Link). */
export interface ResolvedLinkProps {
  DNSEx?: unknown;
  Domains?: unknown;
  DefaultRoute?: unknown;
  DNSOverTLS?: unknown;
  DNSSEC?: unknown;
}

/**
 * hostLink turns a link's properties into a HostLink: servers in resolvectl's
 * forms, domains lower case without "~" ("." for the routing domain "~."),
 * a default route when resolved says so or the link routes "~.", and the
 * DNS over TLS mode in effect: the link's, else `globalDnsOverTls` (the
 * Manager's DNSOverTLS). resolved 252 gives a link without a setting of its
 * own the global mode itself (measured); a version that gives "" is covered.
 */
export function hostLink(ifindex: number, ifname: string, p: ResolvedLinkProps, globalDnsOverTls = ''): HostLink {
  const servers: string[] = [];
  for (const s of Array.isArray(p.DNSEx) ? (p.DNSEx as unknown[][]) : []) {
    const text = formatServer(Number(s[0]), s[1] as Uint8Array, Number(s[2] ?? 0), ifindex, String(s[3] ?? ''));
    if (text !== null) servers.push(text);
  }
  const domains: string[] = [];
  let routesAll = false;
  for (const [name, routingOnly] of Array.isArray(p.Domains) ? (p.Domains as Array<[string, boolean]>) : []) {
    const d = String(name).toLowerCase().replace(/\.$/, '') || '.';
    if (d === '.' && routingOnly) routesAll = true;
    if (!domains.includes(d)) domains.push(d);
  }
  const link: HostLink = { ifname, ifindex, servers, domains, defaultRoute: p.DefaultRoute === true || routesAll };
  const dot = typeof p.DNSOverTLS === 'string' && p.DNSOverTLS !== '' ? p.DNSOverTLS : globalDnsOverTls;
  if (dot !== '') link.dnsOverTls = dot;
  if (typeof p.DNSSEC === 'string' && p.DNSSEC !== '') link.dnssec = p.DNSSEC;
  return link;
}

/** A Manager DNSEx entry's identity: index, family, address, port, name (`withIndex` false: a link's own entry, without one). */
const serverKey = (s: unknown[], withIndex: boolean): string => {
  const [i, rest] = withIndex ? [Number(s[0]), s.slice(1)] : [0, s];
  return `${i} ${Number(rest[0])} ${Buffer.from(rest[1] as Uint8Array).toString('hex')} ${Number(rest[2] ?? 0)} ${String(rest[3] ?? '')}`;
};

/**
 * globalHostLink is resolved's global DNS settings as the `system` link, or
 * null when it has no global server. `dnsEx` and `domains` are the Manager's
 * (a(iiayqs) and a(isb), each entry with its link's index, 0 for the global
 * settings); `own` is every link's own DNSEx entries (Link.DNSEx a(iayqs)).
 * Global entries are those of index 0 and, measured with resolved 252, a
 * loopback server under lo's index or a link-local one under its zone's that
 * no link has: resolved lists a loopback server under lo's index whether it
 * is global (a foreign resolv.conf's 127.0.0.1) or a link's (127.0.0.10 set
 * on wifi0); each link's own entries are taken out once each. `names` are
 * the links the kernel has (an index it does not know is no global's). Its
 * domains are the index-0 ones (search and routing: resolved routes on
 * both), its DNS over TLS mode the Manager's, and it is a default route.
 */
export function globalHostLink(dnsEx: unknown, domains: unknown, own: readonly unknown[], dnsOverTls: string, names: ReadonlyMap<number, string>): HostLink | null {
  const links = new Map<string, number>();
  for (const s of own) {
    if (!Array.isArray(s)) continue;
    const k = serverKey(s, false);
    links.set(k, (links.get(k) ?? 0) + 1);
  }
  const servers: string[] = [];
  for (const s of Array.isArray(dnsEx) ? (dnsEx as unknown[][]) : []) {
    const i = Number(s[0]);
    if (i !== 0) {
      // Only where resolved files a global server under a link's index, and only a link that exists:
      // a link gone from the kernel (resolved has yet to notice) keeps its servers to itself.
      if (!names.has(i) || !underLinkIndex(Number(s[1]), s[2] as Uint8Array)) continue;
      const k = serverKey(s.slice(1), false);
      const n = links.get(k) ?? 0;
      if (n > 0) {
        links.set(k, n - 1);
        continue; // a link's
      }
    }
    const text = formatServer(Number(s[1]), s[2] as Uint8Array, Number(s[3] ?? 0), i, String(s[4] ?? ''));
    // A global link-local server's zone by name, as pvdns writes it ("fe80::1%3" → "fe80::1%wlan0").
    if (text !== null) servers.push(text.replace(new RegExp(`%${i}(?=#|$)`), `%${names.get(i) ?? i}`));
  }
  if (servers.length === 0) return null;
  const global = (Array.isArray(domains) ? (domains as unknown[][]) : []).filter((d) => Number(d[0]) === 0).map((d) => [d[1], d[2]]);
  const l = hostLink(0, SYSTEM_PVD, { Domains: global, DefaultRoute: true, DNSOverTLS: dnsOverTls });
  delete l.ifindex;
  return { ...l, servers, defaultRoute: true, global: true };
}

/** underLinkIndex: an address resolved lists under a link's index even when it is global: loopback (lo's) and IPv6 link-local (its zone's). */
function underLinkIndex(family: number, a: Uint8Array): boolean {
  if (family === AF_INET) return a.length === 4 && a[0] === 127;
  if (family !== AF_INET6 || a.length !== 16) return false;
  if (a[0] === 0xfe && (a[1]! & 0xc0) === 0x80) return true;
  return a.every((b, j) => b === (j === 15 ? 1 : 0));
}

/** common is the entries of `a` that `b` lists too, each as often as both do (a multiset intersection, in `a`'s order). */
function common(a: unknown, b: unknown): unknown[][] {
  const inB = new Map<string, number>();
  for (const s of Array.isArray(b) ? (b as unknown[][]) : []) inB.set(serverKey(s, true), (inB.get(serverKey(s, true)) ?? 0) + 1);
  return (Array.isArray(a) ? (a as unknown[][]) : []).filter((s) => {
    const k = serverKey(s, true);
    const n = inB.get(k) ?? 0;
    inB.set(k, n - 1);
    return n > 0;
  });
}

/** resolvedOnBus says whether systemd-resolved runs on the bus now (an activatable name nobody owns is not running: it is not started). */
export async function resolvedOnBus(address: string = systemBusAddress()): Promise<boolean> {
  let conn: DBusConnection;
  try {
    conn = await DBusConnection.connect(address, { timeoutMs: 2000 });
  } catch {
    return false;
  }
  try {
    const [has] = await conn.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'NameHasOwner', signature: 's', body: [RESOLVE1] });
    return has === true;
  } catch {
    return false;
  } finally {
    conn.close();
  }
}

export interface ResolvedBackendOptions {
  /** The system bus's address; DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket by default. */
  address?: string;
  log?: Logger;
  /** Without a bus monitor, re-read this often to catch long-lived clients' domain changes; 0: never. 1000 by default. */
  pollMs?: number;
  /** Try to become a bus monitor (root only); true by default. */
  monitor?: boolean;
  /** Where the interface names are read; /sys/class/net by default. */
  sysClassNet?: string;
}

/** resolved's methods that change a link (Manager.SetLink…, RevertLink; Link.Set…, Revert). */
const CHANGING = /^(SetLink\w+|RevertLink|Set(DNS|DNSEx|Domains|DefaultRoute|LLMNR|MulticastDNS|DNSOverTLS|DNSSEC|DNSSECNegativeTrustAnchors)|Revert)$/;
const noop = (): void => undefined;
/** Unprivileged polls between two full reads (see pollTick). */
const FULL_READ_POLLS = 10;
/** Changing calls awaiting their reply at once: more are someone flooding resolved, not news. */
const MAX_CHANGING = 64;

/**
 * ResolvedBackend follows systemd-resolved over D-Bus (see the file's
 * header for what tells it of a change). start() resolves null when no bus
 * is reachable or resolved is not running on it.
 */
export class ResolvedBackend implements LinkBackend {
  name = 'resolved (D-Bus)';
  private readonly address: string;
  private readonly pollMs: number;
  private conn: DBusConnection | null = null;
  private monitor: DBusConnection | null = null;
  private onReport: (links: HostLink[]) => void = () => {};
  private last: string | null = null;
  private stopped = false;
  private monitored = false;
  private poll: NodeJS.Timeout | null = null;
  private reconnect: NodeJS.Timeout | null = null;
  private readonly paths = new Map<number, string>();
  /** Closes the routing gate (the host source's sink.hold). */
  private hold: (() => () => void) | null = null;
  /** Calls to resolved that change a link, seen by the monitor and not yet answered: "sender serial" → the gate's release and when the call was seen. */
  private readonly changing = new Map<string, { release: () => void; at: number }>();
  /** Forgets changing calls older than CHANGING_MS; armed only while there are some. */
  private pruneTimer: NodeJS.Timeout | null = null;
  /** Tries to become a monitor again after the monitor connection alone was lost. */
  private remonitor: NodeJS.Timeout | null = null;
  /** The match rule for every client leaving, added while there is no monitor. */
  private clientsRule: string | null = null;
  /** Reads again on each trigger, one at a time; a hold given with a trigger is released after. */
  private readonly reads = new CoalescedRead(() => this.reread());

  constructor(private readonly opts: ResolvedBackendOptions = {}) {
    this.address = opts.address ?? systemBusAddress();
    this.pollMs = opts.pollMs ?? 1000;
  }

  async start(onReport: (links: HostLink[]) => void, hold?: () => () => void): Promise<HostLink[] | null> {
    this.onReport = onReport;
    this.hold = hold ?? null;
    const links = await this.attach();
    if (links === null) return null;
    this.last = key(links);
    return links;
  }

  /**
   * refresh re-reads resolved's links soon (coalesced): the host source calls
   * it when netlink reports a link change. `release` (a routing hold) is
   * called once the links read after it have been reported.
   */
  refresh(release?: () => void): void {
    if (this.stopped || !this.conn) {
      release?.();
      return this.reads.releaseAll();
    }
    this.reads.request(release);
  }

  stop(): void {
    this.stopped = true;
    if (this.poll) clearInterval(this.poll);
    if (this.reconnect) clearTimeout(this.reconnect);
    if (this.remonitor) clearTimeout(this.remonitor);
    this.poll = this.reconnect = this.remonitor = null;
    this.monitor?.close();
    this.conn?.close();
    this.monitor = this.conn = null;
    this.forgetChanging();
    this.reads.releaseAll();
  }

  /** forgetChanging releases every changing call awaiting its reply: none of their replies will be seen (or matter) now. */
  private forgetChanging(): void {
    if (this.pruneTimer) clearTimeout(this.pruneTimer);
    this.pruneTimer = null;
    const held = [...this.changing.values()];
    this.changing.clear();
    for (const c of held) c.release();
  }

  /** prune forgets the changing calls seen CHANGING_MS ago or more (a re-read releases them), and arms one timer for the oldest left. */
  private prune(): void {
    if (this.pruneTimer) clearTimeout(this.pruneTimer);
    this.pruneTimer = null;
    const now = performance.now();
    let oldest = Infinity;
    for (const [k, c] of this.changing) {
      if (now - c.at >= CHANGING_MS) {
        // Its reply was not seen (the bus answered it, resolved went, …): read anyway, it costs little.
        this.changing.delete(k);
        this.refresh(c.release);
      } else oldest = Math.min(oldest, c.at);
    }
    if (oldest !== Infinity) this.pruneTimer = setTimeout(() => this.prune(), Math.max(1, oldest + CHANGING_MS - now)).unref();
  }

  /** The Manager's DNSEx and Domains as the last read saw them; polls since a read. */
  private polledKey = '';
  private polls = 0;

  /**
   * pollTick is the unprivileged poll: two Gets on the Manager (every link's
   * servers and domains), and a full read only when they changed — or every
   * FULL_READ_POLLS polls, for what only the links carry (DefaultRoute,
   * DNSOverTLS). An idle host costs two small calls a second, not one per link.
   */
  private pollTick(): void {
    const conn = this.conn;
    if (this.stopped || !conn || this.reads.busy) return;
    if (++this.polls >= FULL_READ_POLLS) {
      this.polls = 0;
      this.refresh();
      return;
    }
    this.managerKey(conn)
      .then((k) => {
        // Compared with what the last read saw, not the last poll: a change undone and made again
        // between two polls, while other triggers read, must still be read (seen in the host test).
        if (k === this.polledKey) return;
        this.polls = 0;
        this.refresh();
      })
      .catch(() => undefined); // resolved gone mid-poll: NameOwnerChanged says so
  }

  /** managerKey is the Manager's DNSEx and Domains (every link's servers and domains) as one string: what the poll compares. */
  private async managerKey(conn: DBusConnection): Promise<string> {
    return valuesKey(await this.managerValues(conn));
  }

  /** managerValues is the Manager's DNSEx and Domains: every link's servers and domains, and the global ones (index 0). */
  private managerValues(conn: DBusConnection): Promise<[unknown, unknown]> {
    return Promise.all([conn.getProperty(RESOLVE1, ROOT_PATH, MANAGER, 'DNSEx'), conn.getProperty(RESOLVE1, ROOT_PATH, MANAGER, 'Domains')]);
  }

  /**
   * attach connects, subscribes, tries to become a monitor and reads the
   * links; null when resolved is not there, or when stop() ran meanwhile
   * (what it opened is closed then: stop() could not see it).
   */
  private async attach(): Promise<HostLink[] | null> {
    let conn: DBusConnection;
    try {
      conn = await DBusConnection.connect(this.address, { timeoutMs: 2000 });
    } catch (err) {
      this.opts.log?.debug({ err: (err as Error).message }, 'no system bus for systemd-resolved');
      return null;
    }
    const abandon = (): null => {
      if (this.conn === conn) this.conn = null;
      conn.close();
      this.monitor?.close();
      this.monitor = null;
      return null;
    };
    if (this.stopped) return abandon();
    try {
      // Subscribe before the first read, so no change between them is lost.
      await conn.addMatch(`type='signal',sender='${BUS}',interface='${BUS}',member='NameOwnerChanged',arg0='${RESOLVE1}'`);
      await conn.addMatch(`type='signal',sender='${RESOLVE1}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path_namespace='${ROOT_PATH}'`);
      const [has] = await conn.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'NameHasOwner', signature: 's', body: [RESOLVE1] });
      if (has !== true || this.stopped) return abandon();
      const mon = this.opts.monitor !== false ? await this.becomeMonitor() : null;
      if (this.stopped) {
        mon?.close();
        return abandon();
      }
      this.monitored = false;
      if (mon) this.useMonitor(mon);
      else await this.watchClients(conn);
      if (this.stopped) return abandon();
      this.setName();
      this.conn = conn;
      conn.on('message', (m) => this.onMessage(m));
      conn.on('close', (err) => {
        if (this.conn === conn) this.lost(err);
      });
      // A change signalled during this first read makes one re-read after it (on a later turn, after
      // the caller has taken these links), not a second read beside it.
      const links = await this.reads.first(() => this.read());
      if (this.stopped) return abandon();
      if (!this.monitored && this.pollMs > 0 && !this.poll) this.poll = setInterval(() => this.pollTick(), this.pollMs).unref();
      return links;
    } catch (err) {
      if (!this.stopped) this.opts.log?.warn({ err: (err as Error).message }, 'cannot read systemd-resolved over D-Bus');
      return abandon();
    }
  }

  /** setName says in the backend's name what it cannot see at once. */
  private setName(): void {
    if (this.monitored) this.name = 'resolved (D-Bus)';
    else if (this.pollMs === 0) this.name = 'resolved (D-Bus; no bus monitor, not root: some domain changes not seen)';
    else this.name = `resolved (D-Bus; no bus monitor, not root: changes by long-lived clients polled every ${this.pollMs / 1000} s)`;
  }

  /** watchClients subscribes to every client leaving the bus: without a monitor, that is the sign a resolvectl has made its change. */
  private async watchClients(conn: DBusConnection): Promise<void> {
    const rule = `type='signal',sender='${BUS}',interface='${BUS}',member='NameOwnerChanged'`;
    await conn.addMatch(rule);
    this.clientsRule = rule;
  }

  /** becomeMonitor opens the second connection that sees resolved's replies; null when the bus refuses (not root), or stop() ran meanwhile. */
  private async becomeMonitor(): Promise<DBusConnection | null> {
    let mon: DBusConnection;
    try {
      mon = await DBusConnection.connect(this.address, { timeoutMs: 2000 });
    } catch {
      return null;
    }
    try {
      // Replies only: a monitor must never send, and a method call it sees is someone else's
      // to answer. sender= a well-known name matches whoever owns it at the time, across restarts.
      await mon.call({
        destination: BUS,
        path: BUS_PATH,
        interface: 'org.freedesktop.DBus.Monitoring',
        member: 'BecomeMonitor',
        signature: 'asu',
        body: [[`type='method_call',destination='${RESOLVE1}'`, `type='method_return',sender='${RESOLVE1}'`, `type='error',sender='${RESOLVE1}'`], 0],
      });
    } catch (err) {
      mon.close();
      if (!(err instanceof DBusError)) throw err;
      this.opts.log?.info({ reason: err.message }, 'not allowed to monitor the system bus (root only): some of resolved\'s changes are seen late');
      return null;
    }
    if (this.stopped) {
      mon.close();
      return null;
    }
    return mon;
  }

  /** useMonitor makes mon the monitor: its calls and replies are followed, and its loss is the monitor's alone. */
  private useMonitor(mon: DBusConnection): void {
    this.monitor = mon;
    this.monitored = true;
    mon.on('message', (m) => this.onMonitorMessage(m, mon));
    mon.on('close', (err) => {
      if (this.monitor === mon && !this.stopped) this.monitorLost(err);
    });
  }

  /** onMonitorMessage takes a call to resolved that changes a link (a hold) or the reply to one (a re-read, then the release). */
  private onMonitorMessage(m: DBusMessage, mon?: DBusConnection): void {
    this.prune();
    if (m.type === 'method_call') {
      // A call that will change a link: routing waits from now until the change is read, so no
      // query is routed the old way in between (the gate opens by itself after 100 ms at most).
      if (m.member === undefined || !CHANGING.test(m.member)) return;
      // A caller that asked for no reply (busctl --expect-reply=no, dbus-send without
      // --print-reply) gets none: sd-bus sends none. Read now: our Get reaches resolved after
      // this call on the same path through the bus, and resolved handles its messages in order.
      if (mon?.noReplyExpected(m) === true) return this.refresh(this.hold?.());
      if (this.changing.size >= MAX_CHANGING) return;
      this.changing.set(`${m.sender} ${m.serial}`, { release: this.hold?.() ?? noop, at: performance.now() });
      this.prune();
      return;
    }
    // The reply to a changing call: resolved has processed it, so a read now sees the change.
    if (m.destination === this.conn?.uniqueName) return;
    const key = `${m.destination} ${m.replySerial}`;
    const call = this.changing.get(key);
    this.changing.delete(key);
    // Replies to anything else (lookups, say) are not news.
    if (call) this.refresh(call.release);
  }

  /**
   * monitorLost: the bus dropped the monitor connection alone (dbus-daemon
   * does that to a monitor that falls behind). The main connection and the
   * links stay; until a monitor is back, changes are found the unprivileged
   * way (clients leaving, the poll), and becoming one is tried again every
   * RECONNECT_MS.
   */
  private monitorLost(err: Error | null): void {
    this.monitor = null;
    this.monitored = false;
    this.forgetChanging();
    const conn = this.conn;
    if (!conn) return;
    this.opts.log?.warn({ err: err?.message }, `lost the bus monitor; following systemd-resolved without it, trying again every ${RECONNECT_MS / 1000} s`);
    this.setName();
    if (!this.clientsRule) {
      this.watchClients(conn).catch(() => {
        // the connection is going too: lost() follows
      });
    }
    if (this.pollMs > 0 && !this.poll) this.poll = setInterval(() => this.pollTick(), this.pollMs).unref();
    this.refresh(); // what changed while the monitor was falling behind
    const retry = (): void => {
      this.remonitor = setTimeout(() => {
        this.remonitor = null;
        void this.becomeMonitor()
          .catch(() => null)
          .then((mon) => {
            if (this.stopped || this.conn !== conn) {
              mon?.close(); // stopped, or the bus went: lost() started over
              return;
            }
            if (!mon) return retry();
            this.useMonitor(mon);
            this.setName();
            if (this.poll) clearInterval(this.poll);
            this.poll = null;
            const rule = this.clientsRule;
            this.clientsRule = null;
            if (rule) conn.removeMatch(rule).catch(() => {});
            this.opts.log?.info('a bus monitor again: systemd-resolved\'s changes are seen at once');
            this.refresh();
          });
      }, RECONNECT_MS);
      this.remonitor.unref();
    };
    retry();
  }

  private onMessage(m: DBusMessage): void {
    if (m.type !== 'signal') return;
    if (m.sender === BUS && m.member === 'NameOwnerChanged') {
      const [name, , owner] = m.body as [string, string, string];
      if (name === RESOLVE1) {
        this.paths.clear();
        // A call the old owner had not answered never will be.
        this.forgetChanging();
        if (owner === '') {
          this.opts.log?.warn('systemd-resolved left the bus: its links are withdrawn until it is back');
          this.publish([]);
        } else {
          this.opts.log?.info('systemd-resolved is on the bus again: reading its links');
          this.refresh();
        }
      } else if (!this.monitored && name.startsWith(':') && owner === '') {
        this.refresh(); // a client left: resolvectl and its like leave right after their call
      }
    } else if (m.member === 'PropertiesChanged' && m.path?.startsWith(ROOT_PATH)) {
      // resolved says what changed before it answers the caller: hold routing until it is read.
      this.refresh(this.hold?.());
    }
  }

  /** lost: the bus went away (our main connection closed). The links are withdrawn and the bus is tried again every RECONNECT_MS. */
  private lost(err: Error | null): void {
    if (this.stopped || this.reconnect) return;
    this.opts.log?.warn({ err: err?.message }, `lost the system bus; resolved's links are withdrawn, trying again every ${RECONNECT_MS / 1000} s`);
    const { monitor, conn } = this;
    this.monitor = this.conn = null; // first: closing them below must not bring us here again
    this.clientsRule = null;
    monitor?.close();
    conn?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.remonitor) clearTimeout(this.remonitor);
    this.poll = this.remonitor = null;
    this.forgetChanging();
    this.paths.clear();
    this.publish([]);
    const retry = (): void => {
      this.reconnect = setTimeout(() => {
        void this.attach().then((links) => {
          if (this.stopped) return;
          this.reconnect = null;
          if (links === null) retry();
          else this.publish(links);
        });
      }, RECONNECT_MS);
      this.reconnect.unref();
    };
    retry();
  }

  private async reread(): Promise<void> {
    if (this.stopped || !this.conn) return;
    try {
      const links = await this.read();
      if (!this.stopped) this.publish(links);
    } catch (err) {
      // resolved left mid-read: NameOwnerChanged says so and withdraws; anything else is worth a line.
      if (!(err instanceof DBusError && err.name === 'org.freedesktop.DBus.Error.ServiceUnknown')) {
        this.opts.log?.warn({ err: (err as Error).message }, 'cannot read systemd-resolved\'s links');
      }
    }
  }

  private publish(links: HostLink[]): void {
    const k = key(links);
    if (k === this.last) return;
    this.last = k;
    this.onReport(links);
  }

  /**
   * read asks every link that exists here for its properties, and the
   * Manager for its DNSEx a(iiayqs) and Domains a(isb), which carry each
   * link's index, 0 for the global settings: what no link has is the
   * `system` link (globalHostLink), last.
   */
  private async read(): Promise<HostLink[]> {
    const conn = this.conn;
    if (!conn) return [];
    // Every link the kernel has, not only those the Manager's DNSEx names: DNSEx gives a loopback
    // server the loopback's ifindex whichever link it was set on (seen with 252: a server
    // 127.0.0.10 set on wifi0 is listed under lo), and Domains lists only links with domains.
    const names = interfaceNames(this.opts.sysClassNet);
    const indexes = new Set<number>(names.keys());
    // The Manager's state is asked first: resolved answers in order, so what the poll compares
    // with is never newer than the links read here.
    const manager = this.managerValues(conn);
    manager.catch(() => undefined); // awaited below; a failed link read must not leave it unhandled
    // The global DNS over TLS mode, for a link without its own: what the host encrypts is never asked
    // in the clear. Asked beside the links, not before them: a read is what routing waits for.
    const global = conn.getProperty(RESOLVE1, ROOT_PATH, MANAGER, 'DNSOverTLS').then((v) => (typeof v === 'string' ? v : ''));
    global.catch(() => undefined); // awaited below, as key is
    const own: unknown[] = [];
    const links = await Promise.all(
      [...indexes]
        .sort((a, b) => a - b)
        .map(async (i) => {
          const ifname = names.get(i);
          if (ifname === undefined) return null; // gone from the kernel; resolved has yet to notice
          try {
            let path = this.paths.get(i);
            if (!path) {
              path = String((await conn.call({ destination: RESOLVE1, path: ROOT_PATH, interface: MANAGER, member: 'GetLink', signature: 'i', body: [i] }))[0]);
              this.paths.set(i, path);
            }
            const props = (await conn.getAllProperties(RESOLVE1, path, LINK)) as ResolvedLinkProps;
            if (Array.isArray(props.DNSEx)) own.push(...(props.DNSEx as unknown[]));
            const l = hostLink(i, ifname, props, await global);
            // Listed for a global server (resolved gives one from a foreign resolv.conf lo's index), nothing of its own.
            return l.servers.length === 0 && l.domains.length === 0 ? null : l;
          } catch (err) {
            if (err instanceof DBusError && /NoSuchLink|UnknownObject/.test(err.name)) {
              this.paths.delete(i);
              return null;
            }
            throw err;
          }
        }),
    );
    const [dnsEx, domains] = await manager;
    this.polledKey = valuesKey([dnsEx, domains]);
    // A server counts as global only when the Manager lists it both before and after the links were
    // read: a link's loopback server added or removed meanwhile (listed under lo's index, see
    // globalHostLink) is never taken for a global one, not even until the next read.
    const after = await conn.getProperty(RESOLVE1, ROOT_PATH, MANAGER, 'DNSEx');
    const system = globalHostLink(common(dnsEx, after), domains, own, await global, names);
    const found = links.filter((l): l is HostLink => l !== null);
    return system ? [...found, system] : found;
  }
}

/** valuesKey is the Manager's values as one string (bigints as text). */
const valuesKey = (values: unknown): string => JSON.stringify(values, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));

/** key is what two reports are compared by. */
const key = (links: HostLink[]): string => JSON.stringify(links);
