// The host's links from NetworkManager over D-Bus, by its events: a
// LinkBackend that reads NM's devices and their IPv4/IPv6 configurations and
// reads them again the moment NM says something changed, so a VPN's routing
// domain reaches pvdns within milliseconds instead of the next nmcli poll.
//
// What is read (NetworkManager's D-Bus API, introspection/*.xml of 1.42, the
// version in Debian bookworm):
// - /org/freedesktop/NetworkManager, org.freedesktop.NetworkManager:
//   GetDevices() → ao (the realized devices).
// - each device, org.freedesktop.NetworkManager.Device: Interface,
//   IpInterface (the name the IP configuration lives on: ppp0 for a modem),
//   State, Ip4Config, Ip6Config ("/" for none). The Device has no ifindex
//   property on D-Bus, so HostLink.ifindex stays unset.
// - each IP configuration, org.freedesktop.NetworkManager.IP4Config /
//   IP6Config: NameserverData aa{sv} ("address" strings; Nameservers au is
//   deprecated) for IPv4, Nameservers aay (16 octets each; the only form in
//   1.42) for IPv6, Domains, Searches (a "~x" is a routing-only domain),
//   DnsPriority, Gateway.
// - each device's applied connection, Device.GetAppliedConnection(0) →
//   (a{sa{sv}}, t): its "connection" setting's dns-over-tls (int32: -1
//   default, 0 no, 1 opportunistic, 2 yes), which becomes the PvD's
//   encryption. A call NM refuses (the profile's permissions) reads as the
//   default.
// The DnsManager object's Configuration (aa{sv}: nameservers, domains,
// interface, priority, vpn) is not used: it carries no gateway, so it cannot
// say which link takes the default route, and since 1.32 (one NMIPConfig per
// interface, fed by every configuration on it, VPNs' included) the devices'
// configurations hold the same servers and domains.
//
// What is followed: org.freedesktop.DBus.Properties.PropertiesChanged of
// those four interfaces, the Device's StateChanged, DeviceAdded and
// DeviceRemoved, and NameOwnerChanged for org.freedesktop.NetworkManager.
// NM's own per-interface PropertiesChanged is not: NM sends the standard
// signal since 1.6 (NEWS: the NM-style one deprecated) and only it since 1.32
// (NEWS: "remove long deprecated PropertiesChanged signal"), and an NM older
// than 1.6 lacks NameserverData (1.14) anyway. Any of them schedules one re-read; reads
// never overlap (a trigger during a read asks for one more after it), and a
// report is made only when the links differ from the last report. Nothing
// runs while nothing changes. A signal that means a change also closes the
// routing gate (the host source's hold) until the re-read after it has
// reported or found nothing new, so no query is routed the old way between
// NM's signal and pvdns's reading of it.

import type { Logger } from 'pino';
import { DBusConnection, systemBusAddress, type DBusMessage } from '../../dbus/connection.js';
import { formatV6 } from '../../dns64/prefix.js';
import { CoalescedRead } from './coalesced-read.js';
import { nmDnsOverTls } from './host-tools.js';
import type { HostLink, LinkBackend } from './source.js';

/** NetworkManager's well-known bus name. */
export const NM_NAME = 'org.freedesktop.NetworkManager';
const NM_PATH = '/org/freedesktop/NetworkManager';
const NM_IFACE = 'org.freedesktop.NetworkManager';
const DEVICE_IFACE = 'org.freedesktop.NetworkManager.Device';
const IP4_IFACE = 'org.freedesktop.NetworkManager.IP4Config';
const IP6_IFACE = 'org.freedesktop.NetworkManager.IP6Config';
const PROPERTIES_IFACE = 'org.freedesktop.DBus.Properties';
const BUS_NAME = 'org.freedesktop.DBus';
const BUS_PATH = '/org/freedesktop/DBus';

/** The properties whose change can change a link, by interface; others (statistics, access points, connectivity) are not worth a read. */
const WATCHED: Readonly<Record<string, ReadonlySet<string>>> = {
  [NM_IFACE]: new Set(['Devices']),
  [DEVICE_IFACE]: new Set(['Interface', 'IpInterface', 'State', 'Ip4Config', 'Ip6Config']),
  [IP4_IFACE]: new Set(['NameserverData', 'Nameservers', 'Domains', 'Searches', 'DnsPriority', 'Gateway']),
  [IP6_IFACE]: new Set(['Nameservers', 'Domains', 'Searches', 'DnsPriority', 'Gateway']),
};

/**
 * Device states (NMDeviceState) in which a device has no DNS to offer even
 * if NM has not cleared its configuration yet: unavailable (20),
 * disconnected (30), deactivating (110), failed (120). Leaving them out
 * withdraws a VPN's PvD at the first sign of it going, not after NM's
 * cleanup.
 */
const DOWN_STATES: ReadonlySet<number> = new Set([20, 30, 110, 120]);

/** One device's properties as NM's GetAll returns them, with its two IP configurations' (null where it has none). */
export interface NmDeviceProperties {
  device: Record<string, unknown>;
  ip4: Record<string, unknown> | null;
  ip6: Record<string, unknown> | null;
  /** The "connection" setting of the device's applied connection (GetAppliedConnection), where it was read. */
  connection?: Record<string, unknown> | null;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const texts = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : []);

/** IPv4 servers from NameserverData: [{ address: "192.0.2.1" }, …]. */
function ipv4Servers(cfg: Record<string, unknown> | null): string[] {
  if (!cfg || !Array.isArray(cfg.NameserverData)) return [];
  const out: string[] = [];
  for (const entry of cfg.NameserverData as unknown[]) {
    const address = entry !== null && typeof entry === 'object' ? (entry as Record<string, unknown>).address : undefined;
    if (typeof address === 'string' && address !== '') out.push(address);
  }
  return out;
}

/** IPv6 servers from Nameservers: each 16 octets, written in RFC 5952 form. */
function ipv6Servers(cfg: Record<string, unknown> | null): string[] {
  if (!cfg || !Array.isArray(cfg.Nameservers)) return [];
  return (cfg.Nameservers as unknown[]).filter((b): b is Uint8Array => b instanceof Uint8Array && b.length === 16).map((b) => formatV6(b));
}

/**
 * nmLinks maps NM's devices to the host's links the way parseNmcli (host.ts)
 * reads `nmcli device show`, which prints these same properties: servers
 * from both families, domains from Searches and Domains ("~x" routing-only,
 * "~." the default route), and names nobody routes elsewhere going to a
 * device with a gateway unless all its domains are routing-only, or to any
 * device with "~.". A device without servers, or in a state that has none
 * (DOWN_STATES), is no link. dnsPriority is the lower of the families'
 * DnsPriority among those that have servers (lower is preferred);
 * dnsOverTls is the applied connection's dns-over-tls, left out for the
 * default (-1).
 */
export function nmLinks(devices: readonly NmDeviceProperties[]): HostLink[] {
  const links: HostLink[] = [];
  for (const { device, ip4, ip6, connection } of devices) {
    const ifname = text(device.IpInterface) || text(device.Interface);
    if (ifname === '' || (typeof device.State === 'number' && DOWN_STATES.has(device.State))) continue;
    const v4 = ipv4Servers(ip4);
    const v6 = ipv6Servers(ip6);
    const servers = [...new Set([...v4, ...v6])];
    if (servers.length === 0) continue;
    const raw: string[] = [];
    for (const cfg of [ip4, ip6]) {
      if (!cfg) continue;
      for (const d of [...texts(cfg.Searches), ...texts(cfg.Domains)]) if (!raw.includes(d)) raw.push(d);
    }
    const gateway = text(ip4?.Gateway) !== '' || text(ip6?.Gateway) !== '';
    const routingOnly = raw.length > 0 && raw.every((d) => d.startsWith('~'));
    const priorities = [v4.length > 0 ? ip4 : null, v6.length > 0 ? ip6 : null]
      .map((cfg) => cfg?.DnsPriority)
      .filter((p): p is number => typeof p === 'number');
    const link: HostLink = {
      ifname,
      servers,
      domains: [...new Set(raw.map((d) => (d === '~.' ? '.' : d.replace(/^~/, '').toLowerCase())))],
      defaultRoute: raw.includes('~.') || (gateway && !routingOnly),
    };
    if (priorities.length > 0) link.dnsPriority = Math.min(...priorities);
    const dot = nmDnsOverTls(connection?.['dns-over-tls']);
    if (dot !== undefined) link.dnsOverTls = dot;
    links.push(link);
  }
  return links;
}

/** A D-Bus object path that names an object: "/" is NM's "none". */
const objectPath = (v: unknown): string | null => (typeof v === 'string' && v.startsWith('/') && v !== '/' ? v : null);

/** Options of NetworkManagerBackend. */
export interface NetworkManagerOptions {
  /** The bus to talk to; the system bus (DBUS_SYSTEM_BUS_ADDRESS or its default socket) when left out. */
  address?: string;
  /** Where a failed read is said, one line; nothing is logged when left out. */
  log?: Logger;
  /** How long one D-Bus call may take before the read is given up. */
  timeoutMs?: number;
}

/** The match rules: NM's signals pvdns reads on, and its name's owner changing. */
function matchRules(): string[] {
  const nm = `type='signal',sender='${NM_NAME}'`;
  const rules = [`type='signal',sender='${BUS_NAME}',interface='${BUS_NAME}',member='NameOwnerChanged',arg0='${NM_NAME}'`];
  for (const iface of Object.keys(WATCHED)) {
    rules.push(`${nm},interface='${PROPERTIES_IFACE}',member='PropertiesChanged',arg0='${iface}'`);
  }
  rules.push(`${nm},interface='${DEVICE_IFACE}',member='StateChanged'`);
  rules.push(`${nm},interface='${NM_IFACE}',member='DeviceAdded'`);
  rules.push(`${nm},interface='${NM_IFACE}',member='DeviceRemoved'`);
  return rules;
}

/** Whether a changed-properties dictionary or invalidated list names a property pvdns reads. */
function touches(iface: string, changed: unknown, invalidated: unknown): boolean {
  const watched = WATCHED[iface];
  if (!watched) return false;
  const names = [...(changed !== null && typeof changed === 'object' ? Object.keys(changed) : []), ...texts(invalidated)];
  return names.some((n) => watched.has(n));
}

/**
 * NetworkManagerBackend follows NetworkManager on the system bus. start()
 * resolves null when the bus cannot be reached or nobody owns
 * org.freedesktop.NetworkManager on it (NM is never started by asking: no
 * auto-start). When NM leaves the bus, the last links stay as reported
 * (NM leaves its links configured when it stops); when it comes back they
 * are read again. If the bus connection itself closes, the backend connects
 * again, every second at first and up to every 30 s, and reads again.
 */
export class NetworkManagerBackend implements LinkBackend {
  readonly name = 'NetworkManager (D-Bus)';
  private conn: DBusConnection | null = null;
  private onReport: (links: HostLink[]) => void = () => {};
  /** NM's unique name on the bus ("" while nobody owns the well-known name): signals from anyone else are not NM's. */
  private owner = '';
  private last = '';
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  private retryMs = 1000;
  /** Closes the routing gate (the host source's sink.hold). */
  private hold: (() => () => void) | null = null;
  /** Reads again on NM's signals, one at a time; holds taken for them are released after. */
  private readonly reads = new CoalescedRead(() => this.readNow());

  constructor(private readonly opts: NetworkManagerOptions = {}) {}

  async start(onReport: (links: HostLink[]) => void, hold?: () => () => void): Promise<HostLink[] | null> {
    this.onReport = onReport;
    this.hold = hold ?? null;
    this.stopped = false;
    const got = await this.connect();
    if (got === 'no-bus' || got === 'no-nm') {
      this.stop();
      return null;
    }
    this.last = JSON.stringify(got);
    return got;
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const conn = this.conn;
    this.conn = null;
    conn?.close();
    this.reads.releaseAll();
  }

  /** changed: NM signalled a change pvdns reads; routing waits until it is read (the gate opens by itself after 100 ms at most). */
  private changed(): void {
    this.reads.request(this.hold?.());
  }

  /**
   * Connects, subscribes and reads once: the links, or why not: no bus (or
   * it failed us), or no NetworkManager on it (the connection then stays,
   * waiting for NM's NameOwnerChanged).
   */
  private async connect(): Promise<HostLink[] | 'no-bus' | 'no-nm'> {
    let conn: DBusConnection;
    try {
      conn = await DBusConnection.connect(this.opts.address ?? systemBusAddress());
    } catch {
      return 'no-bus';
    }
    if (this.stopped) {
      conn.close();
      return 'no-bus';
    }
    this.conn = conn;
    conn.on('close', () => this.lost(conn));
    try {
      // Subscribe before the first read, so a change made during it is read again after it.
      conn.onSignal({ interface: BUS_NAME, member: 'NameOwnerChanged' }, (m) => this.ownerChanged(m));
      conn.onSignal({}, (m) => this.signal(m));
      await Promise.all(matchRules().map((r) => conn.addMatch(r)));
      const [has] = await this.call(conn, BUS_NAME, BUS_PATH, BUS_NAME, 'NameHasOwner', 's', [NM_NAME]);
      if (has !== true) return 'no-nm';
      const [owner] = await this.call(conn, BUS_NAME, BUS_PATH, BUS_NAME, 'GetNameOwner', 's', [NM_NAME]);
      this.owner = text(owner);
      return await this.reads.first(() => this.read(conn));
    } catch (err) {
      this.opts.log?.warn({ err: errText(err) }, 'NetworkManager (D-Bus): not usable');
      if (this.conn === conn) this.conn = null; // closed on purpose: no reconnecting
      conn.close();
      return 'no-bus';
    }
  }

  private call(conn: DBusConnection, destination: string, path: string, iface: string, member: string, signature?: string, body?: unknown[]): Promise<unknown[]> {
    return conn.call({ destination, path, interface: iface, member, signature, body, timeoutMs: this.opts.timeoutMs ?? 5000 });
  }

  private ownerChanged(m: DBusMessage): void {
    const [name, , now] = m.body;
    // Only the bus itself says who owns a name (it sets every sender, so no one can pose as it).
    if (m.sender !== BUS_NAME || name !== NM_NAME) return;
    this.owner = text(now);
    // Gone: keep the links (NM leaves them configured); back: read them all again.
    if (this.owner !== '') this.reads.request();
  }

  private signal(m: DBusMessage): void {
    if (this.owner === '' || m.sender !== this.owner) return;
    const body = m.body;
    if (m.interface === PROPERTIES_IFACE && m.member === 'PropertiesChanged') {
      if (touches(text(body[0]), body[1], body[2])) this.changed();
    } else if (
      (m.interface === DEVICE_IFACE && m.member === 'StateChanged') ||
      (m.interface === NM_IFACE && (m.member === 'DeviceAdded' || m.member === 'DeviceRemoved'))
    ) {
      this.changed();
    }
  }

  /** refresh reads again soon (the kernel says a link changed): NM's own signals may come later. */
  refresh(): void {
    this.reads.request();
  }

  /** readNow reads the devices and reports them if they changed. */
  private async readNow(): Promise<void> {
    const conn = this.conn;
    if (this.stopped || !conn) return;
    let links: HostLink[];
    try {
      links = await this.read(conn);
    } catch (err) {
      // NM went away mid-read (its NameOwnerChanged brings the next read) or the bus closed.
      if (!this.stopped && this.owner !== '') this.opts.log?.warn({ err: errText(err) }, 'NetworkManager (D-Bus): reading the devices failed');
      return;
    }
    if (this.stopped || conn !== this.conn) return;
    const seen = JSON.stringify(links);
    if (seen !== this.last) {
      this.last = seen;
      this.onReport(links);
    }
  }

  /** Reads every device and its IP configurations; an object gone meanwhile counts as absent (its removal's signal brings another read). */
  private async read(conn: DBusConnection): Promise<HostLink[]> {
    const [paths] = await this.call(conn, NM_NAME, NM_PATH, NM_IFACE, 'GetDevices');
    const devicePaths = Array.isArray(paths) ? paths.filter((p): p is string => objectPath(p) !== null) : [];
    const getAll = (path: string | null, iface: string): Promise<Record<string, unknown> | null> =>
      path === null ? Promise.resolve(null) : conn.getAllProperties(NM_NAME, path, iface).catch(() => null);
    const devices = await Promise.all(
      devicePaths.map(async (path): Promise<NmDeviceProperties | null> => {
        const device = await getAll(path, DEVICE_IFACE);
        if (!device) return null;
        const ip4Path = objectPath(device.Ip4Config);
        const ip6Path = objectPath(device.Ip6Config);
        const [ip4, ip6, connection] = await Promise.all([
          getAll(ip4Path, IP4_IFACE),
          getAll(ip6Path, IP6_IFACE),
          // Only a device with a configuration can be a link: the others cost no call.
          ip4Path !== null || ip6Path !== null ? this.appliedConnection(conn, path) : null,
        ]);
        return { device, ip4, ip6, connection };
      }),
    );
    return nmLinks(devices.filter((d): d is NmDeviceProperties => d !== null));
  }

  /** appliedConnection is the "connection" setting of a device's applied connection; null when NM does not give it (no connection, refused). */
  private async appliedConnection(conn: DBusConnection, path: string): Promise<Record<string, unknown> | null> {
    try {
      const [settings] = await this.call(conn, NM_NAME, path, DEVICE_IFACE, 'GetAppliedConnection', 'u', [0]);
      const c = settings !== null && typeof settings === 'object' ? (settings as Record<string, unknown>).connection : undefined;
      return c !== null && typeof c === 'object' ? (c as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  /**
   * The bus connection closed: connect again until stopped, after 1 s and
   * then backing off up to 30 s (the only timer this backend runs, and only
   * while the bus is gone), then report what changed meanwhile. Reconnected
   * to a bus without NM, it waits for NM's NameOwnerChanged instead.
   */
  private lost(conn: DBusConnection): void {
    if (this.stopped || conn !== this.conn) return;
    this.conn = null;
    this.owner = '';
    this.reads.releaseAll(); // the reads they wait for cannot happen on this connection
    this.opts.log?.warn('NetworkManager (D-Bus): the bus connection closed; connecting again');
    const attempt = (): void => {
      this.retry = null;
      void this.connect().then((got) => {
        if (this.stopped) return;
        if (got === 'no-bus') {
          this.retryMs = Math.min(this.retryMs * 2, 30_000);
          this.retry = setTimeout(attempt, this.retryMs);
          return;
        }
        this.retryMs = 1000;
        if (got === 'no-nm') return;
        const seen = JSON.stringify(got);
        if (seen !== this.last) {
          this.last = seen;
          this.onReport(got);
        }
      });
    };
    this.retry = setTimeout(attempt, this.retryMs);
  }
}

/** An error as one line. */
function errText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ');
}
