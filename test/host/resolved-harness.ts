// A real systemd-resolved 252 for the host tests, inside a network namespace
// of its own and on a private system bus, so nothing it does reaches the
// machine's network, its /etc/resolv.conf or its /run/systemd.
//
//   netns pvdns-<name>-<pid>-<n>
//   ├─ dbus-daemon  --config-file DIR/bus.conf   (Debian's system-bus policy, plus resolved's
//   │                                              policy file and the ones pvdns ships)
//   ├─ systemd-resolved (as systemd-resolve)     a private mount namespace with a tmpfs over
//   │                                              /run/systemd: its resolv.conf, netif/ and varlink
//   │                                              sockets never touch the host's /run
//   ├─ links: veth pairs (vpn0 ⇄ vpn0p), driven with the extracted resolvectl
//   └─ processes the test runs there (a pvdns, as root or as another user)
//
// `ip netns exec` bind-mounts /etc/netns/NAME/systemd over /etc/systemd and
// /etc/netns/NAME/resolv.conf over /etc/resolv.conf: resolved reads its
// resolved.conf (no LLMNR, no mDNS, no stub listener) and a resolv.conf that
// is the namespace's own. The bus socket lives in a 0755 directory because
// resolved drops to its own user before it connects.
//
// Anything missing (not root, no `ip`, no dbus-daemon, no resolved under
// /opt/resolved, a kernel without network namespaces or veth) throws with the
// reason: these tests fail loudly instead of skipping.

import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';

/** Where the tests expect systemd-resolved 252 from Debian, extracted and never installed (`dpkg -x`). */
export const RESOLVED_ROOT = process.env.PVDNS_RESOLVED_ROOT ?? '/opt/resolved';
export const RESOLVED_BIN = join(RESOLVED_ROOT, 'lib/systemd/systemd-resolved');
export const RESOLVECTL_BIN = join(RESOLVED_ROOT, 'usr/bin/resolvectl');
const RESOLVED_POLICY = join(RESOLVED_ROOT, 'usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf');
/** The D-Bus policy files pvdns ships (packaging/dbus/*.conf): the test bus includes them as a host would. */
export const PVDNS_POLICY_DIR = resolvePath(import.meta.dirname, '../../packaging/dbus');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The result of a program run in the namespace. */
export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** run runs a program and resolves with its output, or rejects with one line: the command, its exit and its stderr. */
function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env: env ?? process.env, maxBuffer: 1 << 22 }, (err, stdout, stderr) => {
      if (err) {
        const why = (stderr || err.message).trim().split('\n').slice(-3).join(' | ');
        reject(new Error(`${[cmd, ...args].join(' ')} failed (${err.code ?? err.signal}): ${why}`));
      } else resolve({ stdout, stderr });
    });
  });
}

/**
 * requireHost checks that this machine can run the harness and throws one
 * message naming everything it lacks (never a silent skip).
 */
export function requireHost(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (network namespaces, veth links and a second user need it)');
  for (const [bin, pkg] of [['ip', 'iproute2'], ['dbus-daemon', 'dbus-daemon'], ['unshare', 'util-linux'], ['setpriv', 'util-linux'], ['useradd', 'passwd']] as const) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      missing.push(`${bin} (apt-get install ${pkg})`);
    }
  }
  for (const f of [RESOLVED_BIN, RESOLVECTL_BIN, RESOLVED_POLICY]) {
    if (!existsSync(f)) missing.push(`${f} (apt-get download systemd-resolved && dpkg -x systemd-resolved_*.deb ${RESOLVED_ROOT})`);
  }
  if (missing.length > 0) throw new Error(`the resolved host tests cannot run here; missing: ${missing.join('; ')}`);
}

/** ensureSystemUser adds a system user without a home or a shell when it does not exist (CI machines lack systemd-resolve and pvdns). */
export function ensureSystemUser(name: string): void {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], { stdio: 'pipe' });
  }
}

/**
 * The bus configuration: Debian's system bus (/usr/share/dbus-1/system.conf)
 * with what a private test bus cannot have left out — no <user> (it runs as
 * root, as the real one starts), no <fork>, no activation (a name nobody owns
 * stays unowned: resolved is never started by a call), no pid file, no
 * syslog — and its policy as written, then resolved's policy file and the
 * ones pvdns ships, so a test proves what a real host allows.
 */
function busConfig(socket: string, extraPolicies: string[]): string {
  const includes = [RESOLVED_POLICY, ...extraPolicies].map((p) => `  <include>${p}</include>`);
  if (existsSync(PVDNS_POLICY_DIR)) includes.push(`  <includedir>${PVDNS_POLICY_DIR}</includedir>`);
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=${socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
${includes.join('\n')}
</busconfig>
`;
}

export interface ResolvedOptions {
  /** Part of every name the harness makes (namespace, temp dir): the helper's or test's name. */
  name?: string;
  /** The [Resolve] section's lines after LLMNR=no, MulticastDNS=no, DNSStubListener=no. */
  resolvedConf?: string[];
  /** More bus policy files to include (absolute paths). */
  policies?: string[];
}

/** What spawnInNs runs a process as: root (default) or another user, with more environment. */
export interface SpawnInNsOptions {
  user?: string;
  env?: Record<string, string>;
  cwd?: string;
}

export interface Resolved {
  /** The network namespace's name. */
  readonly ns: string;
  /** The private system bus: DBUS_SYSTEM_BUS_ADDRESS for every process that should find resolved. */
  readonly busAddress: string;
  /** The harness's temp dir (bus config, socket, logs): 0755, removed by stop(). */
  readonly dir: string;
  /** What resolved sees as /run/systemd (its resolve/resolv.conf, resolve/netif/IFINDEX), seen from the host. */
  readonly runDir: string;
  /** resolvectl with the arguments, in the namespace, on the private bus: its standard output; rejects with its stderr. */
  resolvectl(args: string[]): Promise<string>;
  /** Runs a program in the namespace (as root, with the bus address): its output; rejects with one line. */
  exec(cmd: string, args: string[], timeoutMs?: number): Promise<ExecResult>;
  /** Adds a veth pair NAME ⇄ NAMEp in the namespace, both up; the kernel's index of NAME. */
  addLink(name: string): Promise<number>;
  /** Deletes the pair NAME belongs to. */
  delLink(name: string): Promise<void>;
  /** The kernel's interface index of a link in the namespace. */
  ifindex(name: string): Promise<number>;
  /** Starts a process in the namespace with the bus address in its environment; stop() kills it if it still runs. */
  spawn(cmd: string, args: string[], opts?: SpawnInNsOptions): ChildProcess;
  /** Stops systemd-resolved (SIGTERM, then SIGKILL after 3 s) and waits for it to leave the bus. */
  stopResolved(): Promise<void>;
  /** Starts systemd-resolved again after stopResolved(), and waits for it on the bus. */
  startResolved(): Promise<void>;
  /** Stops the bus and resolved and starts both again (a host whose dbus-daemon died and came back). */
  restartBus(): Promise<void>;
  /** Stops the bus, then resolved (which would stay up without it, never to take its name again). */
  stopBus(): Promise<void>;
  /** Starts the bus and resolved after stopBus(). */
  startBus(): Promise<void>;
  /** resolved's and the bus's output so far, for a failure message. */
  logs(): string;
  /** Stops everything, removes the namespace, its /etc/netns files and the temp dir; throws if the host's /run/systemd/resolve appeared. */
  stop(): Promise<void>;
}

let serial = 0;
const live = new Set<() => void>();
process.on('exit', () => {
  for (const cleanup of live) cleanup();
});

/** waitExit resolves when the child has exited, killing it with SIGKILL after graceMs. */
function waitExit(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * startResolved makes the namespace, its bus and a running systemd-resolved
 * on it, and resolves once resolved owns org.freedesktop.resolve1.
 */
export async function startResolved(opts: ResolvedOptions = {}): Promise<Resolved> {
  requireHost();
  ensureSystemUser('systemd-resolve');
  const tag = `${opts.name ?? 'resolved'}-${process.pid}-${++serial}`;
  const ns = `pvdns-${tag}`;
  const dir = mkdtempSync(join(tmpdir(), `pvdns-${tag}-`));
  chmodSync(dir, 0o755); // resolved connects as systemd-resolve
  const socket = join(dir, 'bus');
  const runDir = join(dir, 'run'); // /run/systemd as resolved sees it
  mkdirSync(runDir, { mode: 0o755 });
  const busAddress = `unix:path=${socket}`;
  const etc = `/etc/netns/${ns}`;
  const hostResolveDir = '/run/systemd/resolve';
  const hostHadResolveDir = existsSync(hostResolveDir);
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress, LC_ALL: 'C', COLUMNS: '65535', SYSTEMD_LOG_LEVEL: 'info' };
  const children = new Set<ChildProcess>();
  let log = '';
  let bus: ChildProcess | undefined;
  let resolved: ChildProcess | undefined;

  const cleanupSync = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not made yet, or already gone
    }
    rmSync(etc, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(cleanupSync);

  const track = (child: ChildProcess, what: string): ChildProcess => {
    children.add(child);
    child.stdout?.on('data', (d: Buffer) => (log += `[${what}] ${d.toString()}`));
    child.stderr?.on('data', (d: Buffer) => (log += `[${what}] ${d.toString()}`));
    child.on('exit', () => children.delete(child));
    return child;
  };

  const exec = (cmd: string, args: string[], timeoutMs?: number): Promise<ExecResult> => run('ip', ['netns', 'exec', ns, cmd, ...args], env, timeoutMs);
  const resolvectl = async (args: string[]): Promise<string> => (await exec(RESOLVECTL_BIN, ['--no-pager', ...args])).stdout;
  const hasOwner = async (): Promise<boolean> => {
    const r = await run('dbus-send', ['--bus=' + busAddress, '--print-reply=literal', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.NameHasOwner', 'string:org.freedesktop.resolve1'], env);
    return /true/.test(r.stdout);
  };
  const waitOwner = async (want: boolean, what: string): Promise<void> => {
    const until = Date.now() + 10_000;
    while ((await hasOwner()) !== want) {
      if (Date.now() > until) throw new Error(`systemd-resolved ${what} within 10 s; its output: ${log.trim().split('\n').slice(-5).join(' | ')}`);
      if (want && resolved && (resolved.exitCode !== null || resolved.signalCode !== null)) {
        throw new Error(`systemd-resolved exited (${resolved.exitCode ?? resolved.signalCode}) at start: ${log.trim().split('\n').slice(-5).join(' | ')}`);
      }
      await sleep(20);
    }
  };

  const stopBus = async (): Promise<void> => {
    if (!bus) return;
    bus.kill('SIGTERM');
    await waitExit(bus, 3000);
    bus = undefined;
    // resolved 252 stays up without its bus and does not take its name again when the bus is
    // back (measured): stopped with it, started again with the bus.
    if (resolved) {
      resolved.kill('SIGTERM');
      await waitExit(resolved, 3000);
      resolved = undefined;
    }
  };

  const startDaemon = async (): Promise<void> => {
    // A mount namespace of its own (ip netns exec already makes one; unshare says so outright)
    // with DIR/run bound over /run/systemd: resolved's files stay out of the host's /run, and
    // they outlive a restart as they do under /run on a real host.
    resolved = track(
      spawn('ip', ['netns', 'exec', ns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${runDir} /run/systemd && exec ${RESOLVED_BIN}`], { env, stdio: ['ignore', 'pipe', 'pipe'] }),
      'resolved',
    );
    await waitOwner(true, 'did not take org.freedesktop.resolve1');
  };

  const startBus = async (): Promise<void> => {
    rmSync(socket, { force: true });
    bus = track(spawn('ip', ['netns', 'exec', ns, 'dbus-daemon', `--config-file=${join(dir, 'bus.conf')}`, '--nofork', '--nopidfile', '--print-address=1'], { env, stdio: ['ignore', 'pipe', 'pipe'] }), 'bus');
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`dbus-daemon did not listen within 10 s: ${log.trim()}`)), 10_000);
      bus!.stdout!.once('data', () => {
        clearTimeout(t);
        resolve();
      });
      bus!.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`dbus-daemon exited (${code}) at start: ${log.trim().split('\n').slice(-3).join(' | ')}`));
      });
    });
  };

  try {
    mkdirSync(join(etc, 'systemd'), { recursive: true });
    writeFileSync(join(etc, 'systemd/resolved.conf'), ['[Resolve]', 'LLMNR=no', 'MulticastDNS=no', 'DNSStubListener=no', ...(opts.resolvedConf ?? []), ''].join('\n'));
    // The namespace's own resolv.conf: resolved reads it as foreign, and nothing here asks the host's servers.
    writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    try {
      await run('ip', ['netns', 'add', ns]);
    } catch (err) {
      throw new Error(`cannot make a network namespace (a kernel without CONFIG_NET_NS?): ${(err as Error).message}`);
    }
    await exec('ip', ['link', 'set', 'lo', 'up']);
    writeFileSync(join(dir, 'bus.conf'), busConfig(socket, opts.policies ?? []));
    await startBus();
    await startDaemon();
  } catch (err) {
    cleanupSync();
    live.delete(cleanupSync);
    throw err;
  }

  const ifindex = async (name: string): Promise<number> => {
    const { stdout } = await exec('cat', [`/sys/class/net/${name}/ifindex`]);
    return Number(stdout.trim());
  };

  return {
    ns,
    busAddress,
    dir,
    runDir,
    resolvectl,
    exec,
    ifindex,
    async addLink(name) {
      try {
        await exec('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
      } catch (err) {
        throw new Error(`cannot add a veth pair (a kernel without CONFIG_VETH?): ${(err as Error).message}`);
      }
      await exec('ip', ['link', 'set', `${name}p`, 'up']);
      await exec('ip', ['link', 'set', name, 'up']);
      return ifindex(name);
    },
    async delLink(name) {
      await exec('ip', ['link', 'del', name]);
    },
    spawn(cmd, args, o = {}) {
      const wrapped = o.user ? ['setpriv', `--reuid=${o.user}`, `--regid=${o.user}`, '--clear-groups', '--', cmd, ...args] : [cmd, ...args];
      const options: SpawnOptions = { env: { ...env, ...o.env }, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] };
      const child = spawn('ip', ['netns', 'exec', ns, ...wrapped], options);
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
    async stopResolved() {
      if (!resolved) return;
      resolved.kill('SIGTERM');
      await waitExit(resolved, 3000);
      resolved = undefined;
      await waitOwner(false, 'did not leave the bus');
    },
    startResolved: startDaemon,
    stopBus,
    async startBus() {
      await startBus();
      await startDaemon();
    },
    async restartBus() {
      await stopBus();
      await startBus();
      await startDaemon();
    },
    logs: () => log,
    async stop() {
      if (resolved) {
        resolved.kill('SIGTERM');
        await waitExit(resolved, 3000);
      }
      for (const c of [...children]) {
        c.kill('SIGTERM');
        await waitExit(c, 2000);
      }
      cleanupSync();
      live.delete(cleanupSync);
      if (!hostHadResolveDir && existsSync(hostResolveDir)) {
        throw new Error(`${hostResolveDir} appeared on the host while resolved ran: its mount namespace leaked`);
      }
    },
  };
}

/** onLines hands each line a child writes on stdout to `fn`. */
export function onLines(child: ChildProcess, fn: (line: string) => void): void {
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    rest += d.toString();
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      fn(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  });
}

/** The host's /run/systemd/resolve, which must never appear because of these tests. */
export const hostResolveDirExists = (): boolean => existsSync('/run/systemd/resolve');
