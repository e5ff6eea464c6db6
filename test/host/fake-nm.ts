// A fake NetworkManager 1.42 on a private bus, for the NetworkManager backend's
// test (src/pvd/sources/networkmanager.ts). A real NetworkManager cannot run
// in this test's machine, so this is a REPLAY built from NM's D-Bus API and
// source, not a recording of a real NM: it exports the objects and properties
// NM 1.42 (Debian bookworm's) exports, with the names and signatures of its
// introspection/*.xml, and emits the signals NM emits for the scenario's
// changes in the order NM's code emits them. What each step mirrors, read in
// NetworkManager's repository at tag 1.42.4:
//
// - Objects: /org/freedesktop/NetworkManager (org.freedesktop.NetworkManager:
//   GetDevices, GetAllDevices, Devices, AllDevices, …), one Device object per
//   device (org.freedesktop.NetworkManager.Device, properties of
//   introspection/org.freedesktop.NetworkManager.Device.xml, and
//   GetAppliedConnection with the "connection" setting only), IP4Config and
//   IP6Config objects (numbered paths, NM_DBUS_EXPORT_PATH_NUMBERED in
//   src/core/nm-ip-config.c) and /org/freedesktop/NetworkManager/DnsManager.
// - Property changes go out only as org.freedesktop.DBus.Properties
//   .PropertiesChanged (src/core/nm-dbus-manager.c,
//   _nm_dbus_manager_obj_notify; NEWS for 1.32 removed NM's own per-interface
//   PropertiesChanged), one signal per batch of notifications.
// - A device state change (src/core/devices/nm-device.c, _set_state_full):
//   PropertiesChanged {State}, then {StateReason} (two notifications, no
//   freeze), then Device.StateChanged(new, old, reason).
// - A software device (WireGuard) realized (nm-device.c _set_ifindex, then
//   nm-manager.c device_realized → _emit_device_added_removed): the Device's
//   {Ip4Config, Ip6Config} change to its new IP config objects, {Real}
//   becomes true, then DeviceAdded(o) and the manager's {Devices}. A profile
//   of a virtual device keeps an unrealized placeholder Device (AllDevices
//   only, Real false) before and after, as NM does.
// - A configuration committed (src/core/nm-ip-config.c, _handle_l3cd_changed):
//   one PropertiesChanged on the IP config with, in this order, whichever
//   changed of NameserverData and Nameservers (IPv4; Nameservers for IPv6),
//   Domains, Searches, DnsPriority; addresses and the gateway follow from the
//   platform (_handle_platform_change) in a PropertiesChanged of their own.
//   The DnsManager's {Configuration} changes after it
//   (src/core/dns/nm-dns-manager.c, _notify PROP_CONFIGURATION).
// - Deactivation: DEACTIVATING (110), the configuration cleared, DISCONNECTED
//   (30); a software device is then unrealized: DeviceRemoved(o) and
//   {Devices} (nm-manager.c), its Ip4Config/Ip6Config back to "/" and its IP
//   config objects unexported (nm_ip_config_take_and_unexport_on_idle) — the
//   test's D-Bus client cannot unexport, so they answer UnknownObject as an
//   unexported path does.
// Steps are spaced a few milliseconds apart, as NM makes them in different
// main-loop iterations; each step returns when (performance.now()) the state
// it makes became readable.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DBusConnection, DBusError } from '../../src/dbus/connection.js';
import { Variant } from '../../src/dbus/wire.js';

const NM = 'org.freedesktop.NetworkManager';
const NM_PATH = '/org/freedesktop/NetworkManager';
const DEVICE = 'org.freedesktop.NetworkManager.Device';
const IP4 = 'org.freedesktop.NetworkManager.IP4Config';
const IP6 = 'org.freedesktop.NetworkManager.IP6Config';
const DNS_MANAGER = 'org.freedesktop.NetworkManager.DnsManager';
const DNS_MANAGER_PATH = '/org/freedesktop/NetworkManager/DnsManager';

/** A private dbus-daemon listening on a socket in its own temp dir: its address, and how to restart and stop it. */
export interface PrivateBus {
  address: string;
  /** Stops the daemon (every connection on it closes) and starts a new one on the same socket. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** startPrivateBus runs dbus-daemon with a permissive config of its own (anyone may own and call anything), named after `tag` and the pid. */
export async function startPrivateBus(tag: string): Promise<PrivateBus> {
  const dir = mkdtempSync(join(tmpdir(), `pvdns-${tag}-${process.pid}-`));
  const socket = join(dir, 'bus');
  const config = join(dir, 'bus.conf');
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_requested_reply="true"/>
  </policy>
</busconfig>
`,
  );
  const run = async (): Promise<{ child: ChildProcess; address: string }> => {
    rmSync(socket, { force: true });
    const child = spawn('dbus-daemon', ['--config-file', config, '--nofork', '--nopidfile', '--print-address=1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`dbus-daemon exited with ${code} before listening`)));
    });
    return { child, address };
  };
  const kill = async (child: ChildProcess): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  let current = await run();
  return {
    address: current.address,
    async restart() {
      await kill(current.child);
      current = await run();
    },
    async stop() {
      await kill(current.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An IP configuration's DNS and gateway, as NM's l3cd holds them. */
export interface IpSetup {
  nameservers: string[];
  domains: string[];
  searches: string[];
  /** nm_l3_config_data_get_dns_priority_or_default: 100 for a normal connection, 50 for a VPN, unless the profile says. */
  dnsPriority: number;
  gateway: string;
  addresses: Array<{ address: string; prefix: number }>;
}

const emptyIp = (): IpSetup => ({ nameservers: [], domains: [], searches: [], dnsPriority: 0, gateway: '', addresses: [] });

interface IpObject {
  path: string;
  family: 4 | 6;
  setup: IpSetup;
  exported: boolean;
}

interface DeviceObject {
  path: string;
  iface: string;
  deviceType: number;
  driver: string;
  real: boolean;
  state: number;
  reason: number;
  ip4: IpObject | null;
  ip6: IpObject | null;
}

function v6bytes(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, ''];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** IPv4 text → the uint32 NM puts in the deprecated "au" properties (in_addr_t, network order in memory, read little-endian here). */
function v4u32(text: string): number {
  const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number];
  return ((d << 24) | (c << 16) | (b << 8) | a) >>> 0;
}

/** NMDeviceState values the scenario passes through (NetworkManager's nm-dbus-interface.h). */
export const STATE = { UNKNOWN: 0, UNMANAGED: 10, UNAVAILABLE: 20, DISCONNECTED: 30, PREPARE: 40, CONFIG: 50, IP_CONFIG: 70, IP_CHECK: 80, SECONDARIES: 90, ACTIVATED: 100, DEACTIVATING: 110 } as const;
/** NMDeviceType: ethernet 1, wifi 2, loopback 32, wireguard 29. */
const TYPE = { WIFI: 2, WIREGUARD: 29, LOOPBACK: 32 } as const;
/** A few milliseconds between steps NM takes in different main-loop iterations. */
const STEP_MS = 15;

/**
 * FakeNetworkManager owns org.freedesktop.NetworkManager on a bus and plays
 * NM 1.42 with lo (unmanaged), wlp2s0 (activated, with a gateway, a server
 * per family and a search domain) and a WireGuard profile's unrealized wg0.
 */
export class FakeNetworkManager {
  private nextIp = 1;
  private readonly devices: DeviceObject[] = [];
  private constructor(
    private readonly conn: DBusConnection,
    /** wlp2s0's IPv4 server, so a restarted NM can come back with another. */
    private readonly wifiServer: string,
    /** wlp2s0's profile's connection.dns-over-tls (-1 default, 0 no, 1 opportunistic, 2 yes). */
    private readonly wifiDnsOverTls: number,
  ) {}

  /** start connects, exports NM's objects and takes the name, as NM does once its objects are exported. */
  static async start(address: string, opts: { wifiServer?: string; wifiDnsOverTls?: number } = {}): Promise<FakeNetworkManager> {
    const conn = await DBusConnection.connect(address);
    const nm = new FakeNetworkManager(conn, opts.wifiServer ?? '192.168.1.1', opts.wifiDnsOverTls ?? -1);
    nm.build();
    await conn.requestName(NM);
    return nm;
  }

  /** close ends the connection: the bus says NM's name lost its owner. */
  close(): void {
    this.conn.close();
  }

  private newIp(family: 4 | 6, setup: IpSetup = emptyIp()): IpObject {
    const ip: IpObject = { path: `${NM_PATH}/IP${family}Config/${this.nextIp++}`, family, setup, exported: true };
    const live = <T>(get: () => T) => () => {
      if (!ip.exported) throw new DBusError('org.freedesktop.DBus.Error.UnknownObject', `No object at path ${ip.path}`);
      return get();
    };
    const s = () => ip.setup;
    const common = {
      AddressData: { signature: 'aa{sv}', get: live(() => s().addresses.map((a) => ({ address: new Variant('s', a.address), prefix: new Variant('u', a.prefix) }))) },
      Gateway: { signature: 's', get: live(() => s().gateway) },
      RouteData: { signature: 'aa{sv}', get: live(() => []) },
      Domains: { signature: 'as', get: live(() => s().domains) },
      Searches: { signature: 'as', get: live(() => s().searches) },
      DnsOptions: { signature: 'as', get: live(() => []) },
      DnsPriority: { signature: 'i', get: live(() => s().dnsPriority) },
    };
    if (family === 4) {
      this.conn.exportObject(ip.path, IP4, {
        properties: {
          Addresses: { signature: 'aau', get: live(() => s().addresses.map((a) => [v4u32(a.address), a.prefix, v4u32(s().gateway || '0.0.0.0')])) },
          ...common,
          Routes: { signature: 'aau', get: live(() => []) },
          Nameservers: { signature: 'au', get: live(() => s().nameservers.map(v4u32)) },
          NameserverData: { signature: 'aa{sv}', get: live(() => s().nameservers.map((n) => ({ address: new Variant('s', n) }))) },
          WinsServers: { signature: 'au', get: live(() => []) },
          WinsServerData: { signature: 'as', get: live(() => []) },
        },
      });
    } else {
      this.conn.exportObject(ip.path, IP6, {
        properties: {
          Addresses: { signature: 'a(ayuay)', get: live(() => s().addresses.map((a) => [v6bytes(a.address), a.prefix, v6bytes(s().gateway || '::')])) },
          ...common,
          Routes: { signature: 'a(ayuayu)', get: live(() => []) },
          Nameservers: { signature: 'aay', get: live(() => s().nameservers.map(v6bytes)) },
        },
      });
    }
    return ip;
  }

  private addDevice(index: number, iface: string, deviceType: number, driver: string, real: boolean, state: number, ip4: IpObject | null, ip6: IpObject | null): DeviceObject {
    const d: DeviceObject = { path: `${NM_PATH}/Devices/${index}`, iface, deviceType, driver, real, state, reason: 0, ip4, ip6 };
    this.devices.push(d);
    const p = (signature: string, get: () => unknown) => ({ signature, get });
    this.conn.exportObject(d.path, DEVICE, {
      methods: {
        Disconnect: { fn: () => [] },
        // nm-device.c impl_device_get_applied_connection: the applied profile without secrets, and
        // its version id; NotActive without one. Only the "connection" setting is given here.
        GetAppliedConnection: {
          in: 'u',
          out: 'a{sa{sv}}t',
          fn: () => {
            if (!d.real || d.state < STATE.PREPARE || d.state > STATE.DEACTIVATING) throw new DBusError('org.freedesktop.NetworkManager.Device.NotActive', 'Device is not activated');
            const dot = d.iface === 'wlp2s0' ? this.wifiDnsOverTls : -1;
            return [{ connection: { id: new Variant('s', d.iface), interface_name: new Variant('s', d.iface), 'dns-over-tls': new Variant('i', dot) } }, 1n];
          },
        },
      },
      properties: {
        Udi: p('s', () => `/sys/devices/virtual/net/${d.iface}`),
        Path: p('s', () => ''),
        Interface: p('s', () => d.iface),
        IpInterface: p('s', () => (d.real && d.state >= STATE.IP_CONFIG && d.state <= STATE.DEACTIVATING ? d.iface : d.real && d.deviceType === TYPE.LOOPBACK ? d.iface : '')),
        Driver: p('s', () => d.driver),
        DriverVersion: p('s', () => ''),
        FirmwareVersion: p('s', () => ''),
        Capabilities: p('u', () => 7),
        Ip4Address: p('u', () => 0),
        State: p('u', () => d.state),
        StateReason: p('(uu)', () => [d.state, d.reason]),
        ActiveConnection: p('o', () => '/'),
        Ip4Config: p('o', () => d.ip4?.path ?? '/'),
        Dhcp4Config: p('o', () => '/'),
        Ip6Config: p('o', () => d.ip6?.path ?? '/'),
        Dhcp6Config: p('o', () => '/'),
        Managed: p('b', () => d.deviceType !== TYPE.LOOPBACK),
        Autoconnect: p('b', () => true),
        FirmwareMissing: p('b', () => false),
        NmPluginMissing: p('b', () => false),
        DeviceType: p('u', () => d.deviceType),
        AvailableConnections: p('ao', () => []),
        PhysicalPortId: p('s', () => ''),
        Mtu: p('u', () => (d.deviceType === TYPE.WIREGUARD ? 1420 : 1500)),
        Metered: p('u', () => 0),
        LldpNeighbors: p('aa{sv}', () => []),
        Real: p('b', () => d.real),
        Ip4Connectivity: p('u', () => 0),
        Ip6Connectivity: p('u', () => 0),
        InterfaceFlags: p('u', () => (d.real ? 0x10001 : 0)),
        HwAddress: p('s', () => ''),
        Ports: p('ao', () => []),
      },
    });
    return d;
  }

  private realDevices = (): string[] => this.devices.filter((d) => d.real).map((d) => d.path);

  private build(): void {
    const lo = this.addDevice(1, 'lo', TYPE.LOOPBACK, 'unknown', true, STATE.UNMANAGED, this.newIp(4), this.newIp(6));
    lo.ip4!.setup.addresses = [{ address: '127.0.0.1', prefix: 8 }];
    this.addDevice(2, 'wlp2s0', TYPE.WIFI, 'iwlwifi', true, STATE.ACTIVATED, this.newIp(4, {
      nameservers: [this.wifiServer],
      domains: ['home.example'],
      searches: [],
      dnsPriority: 100,
      gateway: '192.168.1.1',
      addresses: [{ address: '192.168.1.23', prefix: 24 }],
    }), this.newIp(6, {
      nameservers: ['fd00::1'],
      domains: [],
      searches: [],
      dnsPriority: 100,
      gateway: 'fe80::1',
      addresses: [{ address: 'fd00::23', prefix: 64 }],
    }));
    // The WireGuard profile's placeholder: exported, in AllDevices, not realized.
    this.addDevice(3, 'wg0', TYPE.WIREGUARD, '', false, STATE.UNKNOWN, null, null);
    this.conn.exportObject(NM_PATH, NM, {
      methods: {
        GetDevices: { out: 'ao', fn: () => [this.realDevices()] },
        GetAllDevices: { out: 'ao', fn: () => [this.devices.map((d) => d.path)] },
      },
      properties: {
        Devices: { signature: 'ao', get: () => this.realDevices() },
        AllDevices: { signature: 'ao', get: () => this.devices.map((d) => d.path) },
        Checkpoints: { signature: 'ao', get: () => [] },
        NetworkingEnabled: { signature: 'b', get: () => true },
        WirelessEnabled: { signature: 'b', get: () => true },
        WirelessHardwareEnabled: { signature: 'b', get: () => true },
        ActiveConnections: { signature: 'ao', get: () => [] },
        PrimaryConnection: { signature: 'o', get: () => '/' },
        Startup: { signature: 'b', get: () => false },
        Version: { signature: 's', get: () => '1.42.4' },
        State: { signature: 'u', get: () => 70 },
      },
    });
    this.conn.exportObject(DNS_MANAGER_PATH, DNS_MANAGER, {
      properties: {
        Mode: { signature: 's', get: () => 'systemd-resolved' },
        RcManager: { signature: 's', get: () => 'unmanaged' },
        Configuration: { signature: 'aa{sv}', get: () => this.dnsConfiguration() },
      },
    });
  }

  /** DnsManager.Configuration as _get_config_variant builds it: one entry per configuration with servers. */
  private dnsConfiguration(): Array<Record<string, Variant>> {
    const out: Array<Record<string, Variant>> = [];
    for (const d of this.devices) {
      for (const ip of [d.ip4, d.ip6]) {
        if (!ip || ip.setup.nameservers.length === 0) continue;
        const domains = [...ip.setup.searches, ...(ip.setup.domains.length > 1 || ip.setup.searches.length === 0 ? ip.setup.domains : [])];
        out.push({
          nameservers: new Variant('as', ip.setup.nameservers),
          ...(domains.length > 0 ? { domains: new Variant('as', domains) } : {}),
          interface: new Variant('s', d.iface),
          priority: new Variant('i', ip.setup.dnsPriority),
          vpn: new Variant('b', false),
        });
      }
    }
    return out;
  }

  private device(iface: string): DeviceObject {
    const d = this.devices.find((x) => x.iface === iface);
    if (!d) throw new Error(`fake NM has no device ${iface}`);
    return d;
  }

  /** _set_state_full: {State}, {StateReason}, StateChanged. */
  private async setState(d: DeviceObject, state: number, reason = 0): Promise<number> {
    const old = d.state;
    d.state = state;
    d.reason = reason;
    const at = performance.now();
    this.conn.emitPropertiesChanged(d.path, DEVICE, { State: new Variant('u', state) });
    this.conn.emitPropertiesChanged(d.path, DEVICE, { StateReason: new Variant('(uu)', [state, reason]) });
    this.conn.emitSignal(d.path, DEVICE, 'StateChanged', 'uuu', [state, old, reason]);
    await sleep(STEP_MS);
    return at;
  }

  /** _handle_l3cd_changed, then the platform's addresses and gateway, then the DnsManager: returns when the DNS part became readable. */
  private async commit(ip: IpObject, next: IpSetup): Promise<number> {
    const old = ip.setup;
    ip.setup = next;
    const at = performance.now();
    const changed: Record<string, Variant> = {};
    const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(old.nameservers, next.nameservers)) {
      if (ip.family === 4) {
        changed.NameserverData = new Variant('aa{sv}', next.nameservers.map((n) => ({ address: new Variant('s', n) })));
        changed.Nameservers = new Variant('au', next.nameservers.map(v4u32));
      } else changed.Nameservers = new Variant('aay', next.nameservers.map(v6bytes));
    }
    if (!same(old.domains, next.domains)) changed.Domains = new Variant('as', next.domains);
    if (!same(old.searches, next.searches)) changed.Searches = new Variant('as', next.searches);
    if (old.dnsPriority !== next.dnsPriority) changed.DnsPriority = new Variant('i', next.dnsPriority);
    const iface = ip.family === 4 ? IP4 : IP6;
    if (Object.keys(changed).length > 0) this.conn.emitPropertiesChanged(ip.path, iface, changed);
    await sleep(1);
    const platform: Record<string, Variant> = {};
    if (JSON.stringify(old.addresses) !== JSON.stringify(next.addresses))
      platform.AddressData = new Variant('aa{sv}', next.addresses.map((a) => ({ address: new Variant('s', a.address), prefix: new Variant('u', a.prefix) })));
    if (old.gateway !== next.gateway) platform.Gateway = new Variant('s', next.gateway);
    if (Object.keys(platform).length > 0) this.conn.emitPropertiesChanged(ip.path, iface, platform);
    this.conn.emitPropertiesChanged(DNS_MANAGER_PATH, DNS_MANAGER, { Configuration: new Variant('aa{sv}', this.dnsConfiguration()) });
    await sleep(STEP_MS);
    return at;
  }

  /**
   * wireguardUp plays `nmcli connection up wg0`: realize, unmanaged →
   * … → ip-config, the configuration committed, → activated. Returns when
   * the DNS became readable.
   */
  async wireguardUp(setup: IpSetup): Promise<number> {
    const d = this.device('wg0');
    d.ip4 = this.newIp(4);
    d.ip6 = this.newIp(6);
    this.conn.emitPropertiesChanged(d.path, DEVICE, { Ip4Config: new Variant('o', d.ip4.path), Ip6Config: new Variant('o', d.ip6.path) });
    d.real = true;
    this.conn.emitPropertiesChanged(d.path, DEVICE, { Real: new Variant('b', true) });
    this.conn.emitSignal(NM_PATH, NM, 'DeviceAdded', 'o', [d.path]);
    this.conn.emitPropertiesChanged(NM_PATH, NM, { Devices: new Variant('ao', this.realDevices()) });
    await sleep(STEP_MS);
    for (const s of [STATE.UNMANAGED, STATE.UNAVAILABLE, STATE.DISCONNECTED, STATE.PREPARE, STATE.CONFIG, STATE.IP_CONFIG]) await this.setState(d, s);
    const at = await this.commit(d.ip4, setup);
    for (const s of [STATE.IP_CHECK, STATE.SECONDARIES, STATE.ACTIVATED]) await this.setState(d, s);
    return at;
  }

  /** changeDns plays `nmcli device reapply` with new servers: one IPv4 configuration commit. */
  async changeDns(iface: string, nameservers: string[]): Promise<number> {
    const ip = this.device(iface).ip4!;
    return this.commit(ip, { ...ip.setup, nameservers });
  }

  /** wireguardDown plays `nmcli connection down wg0`: deactivating, cleared, disconnected, unrealized. Returns when deactivating was readable. */
  async wireguardDown(): Promise<number> {
    const d = this.device('wg0');
    const at = await this.setState(d, STATE.DEACTIVATING, 39);
    await this.commit(d.ip4!, emptyIp());
    await this.setState(d, STATE.DISCONNECTED, 39);
    d.real = false;
    this.conn.emitSignal(NM_PATH, NM, 'DeviceRemoved', 'o', [d.path]);
    this.conn.emitPropertiesChanged(NM_PATH, NM, { Devices: new Variant('ao', this.realDevices()) });
    d.ip4!.exported = false;
    d.ip6!.exported = false;
    d.ip4 = null;
    d.ip6 = null;
    this.conn.emitPropertiesChanged(d.path, DEVICE, { Ip4Config: new Variant('o', '/'), Ip6Config: new Variant('o', '/'), Real: new Variant('b', false) });
    await this.setState(d, STATE.UNMANAGED, 0);
    return at;
  }
}
