// The host's links from its command-line tools: `resolvectl` (systemd-resolved)
// or `nmcli` (NetworkManager), run again every pvdSources.hostPollIntervalS.
// This is the fallback for hosts where neither service is reachable over
// D-Bus (resolved.ts and networkmanager.ts follow their events instead):
// a change is seen at the next poll, not at once.

import { execFile } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { SYSTEM_PVD } from './resolvconf.js';
import type { HostLink, LinkBackend } from './source.js';

/** Runs one of the host's tools: its standard output, or null when it is missing or fails. */
export type RunTool = (cmd: string, args: string[]) => Promise<string | null>;

/**
 * runTool runs a tool with a short timeout and no shell, in the C locale,
 * and as wide as systemd allows so resolvectl wraps no list.
 */
export const runTool: RunTool = (cmd, args) =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5000, encoding: 'utf8', maxBuffer: 1 << 20, env: { ...process.env, LC_ALL: 'C', COLUMNS: '65535' } }, (err, stdout) =>
      resolve(err ? null : stdout),
    );
  });

/**
 * "Link 3 (wg0): a b c" → wg0 → "a b c". A list too long for the terminal
 * goes on in lines that start with blanks: they belong to the line above.
 */
function linkLines(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let last: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^Link\s+\d+\s+\(([^)]+)\):\s*(.*)$/.exec(line.trim());
    if (m) {
      last = m[1]!;
      out.set(last, m[2]!.trim());
    } else if (/^\s+\S/.test(line) && last !== null) {
      out.set(last, `${out.get(last)} ${line.trim()}`.trim());
    } else {
      last = null; // "Global:" and anything else pvdns does not read
    }
  }
  return out;
}

/** "Global: a b c" → "a b c" (and the lines that carry it on), or "" when there is none. */
function globalLine(text: string): string {
  let out: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^Global:[ \t]*(.*)$/.exec(line.trim());
    if (m && out === null) out = m[1]!.trim();
    else if (out !== null && /^\s+\S/.test(line)) out = `${out} ${line.trim()}`;
    else if (out !== null) break;
  }
  return out ?? '';
}

/** A loopback server as resolvectl prints it ("127.0.0.10", "127.0.0.1:5353#x", "::1", "[::1]:5353"). */
const LOOPBACK = /^(127\.\d+\.\d+\.\d+(:\d+)?|::1|\[::1\]:\d+)(#.*)?$/;

/**
 * parseResolvectl reads `resolvectl dns`, `resolvectl domain`, `resolvectl
 * default-route` and `resolvectl dnsovertls` (each prints "Link N (ifname):
 * values"). The "Global:" lines are the host's own settings (resolved.conf's
 * DNS=, Domains=, DNSOverTLS=, or a foreign resolv.conf's nameservers): with
 * servers, they are the `system` link, last, a default route; and "Global:
 * MODE" of dnsovertls is also the mode of a link that prints none
 * (resolvectl 252 prints each link's mode in effect, the global one where it
 * has none of its own). resolvectl 252 prints a link's loopback server on
 * the "Global:" line too (resolved lists it under lo's index, measured): one
 * a link prints is taken out of the global ones once. Servers are kept as
 * printed, with their "#name" (resolvectl 252 writes a link-local server
 * without its zone).
 */
export function parseResolvectl(dns: string, domain: string, defaultRoute: string, dnsOverTls = ''): HostLink[] {
  const servers = linkLines(dns);
  const domains = linkLines(domain);
  const routes = linkLines(defaultRoute);
  const dots = linkLines(dnsOverTls);
  const globalDot = /^Global:[ \t]*(\S+)/m.exec(dnsOverTls)?.[1];
  const links: HostLink[] = [];
  for (const [ifname, list] of servers) {
    const ds = (domains.get(ifname) ?? '').split(/\s+/).filter(Boolean);
    const link: HostLink = {
      ifname,
      servers: list.split(/\s+/).filter(Boolean),
      domains: ds.map((d) => (d === '~.' ? '.' : d.replace(/^~/, '').toLowerCase())),
      defaultRoute: routes.get(ifname) === 'yes' || ds.includes('~.'),
    };
    const dot = dots.get(ifname) || globalDot;
    if (dot) link.dnsOverTls = dot;
    links.push(link);
  }
  const global = globalLine(dns).split(/\s+/).filter(Boolean);
  for (const l of links) {
    for (const s of l.servers) {
      const at = LOOPBACK.test(s) ? global.lastIndexOf(s) : -1;
      if (at >= 0) global.splice(at, 1);
    }
  }
  if (global.length > 0) {
    const ds = globalLine(domain).split(/\s+/).filter(Boolean);
    const link: HostLink = { ifname: SYSTEM_PVD, servers: global, domains: ds.map((d) => (d === '~.' ? '.' : d.replace(/^~/, '').toLowerCase())), defaultRoute: true, global: true };
    if (globalDot) link.dnsOverTls = globalDot;
    links.push(link);
  }
  return links;
}

/** The fields pvdns asks nmcli for. */
export const NMCLI_FIELDS = 'GENERAL.DEVICE,GENERAL.CON-PATH,IP4.GATEWAY,IP6.GATEWAY,IP4.DNS,IP6.DNS,IP4.SEARCHES,IP6.SEARCHES,IP4.DOMAIN,IP6.DOMAIN';

/**
 * nmDnsOverTls reads NetworkManager's connection.dns-over-tls as D-Bus gives
 * it (an int32: -1 default, 0 no, 1 opportunistic, 2 yes) or nmcli prints it
 * ("yes", "2 (yes)", "-1 (default)") in resolved's words; undefined for the
 * default (NM's global default, which pvdns cannot read, else no) and
 * anything else.
 */
export function nmDnsOverTls(v: unknown): 'yes' | 'opportunistic' | 'no' | undefined {
  const t = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim().split(/\s+/)[0]!.toLowerCase() : '';
  if (t === '2' || t === 'yes') return 'yes';
  if (t === '1' || t === 'opportunistic') return 'opportunistic';
  if (t === '0' || t === 'no') return 'no';
  return undefined;
}

/**
 * nmcliConnections lists the active connections (GENERAL.CON-PATH) of the
 * devices with servers in `nmcli device show`: whose connection.dns-over-tls
 * readTool asks for (`nmcli connection show apath PATH`).
 */
export function nmcliConnections(text: string): string[] {
  return [...new Set(nmcliDevices(text).filter((d) => d.servers.length > 0 && d.conPath !== '').map((d) => d.conPath))];
}

interface NmcliDevice {
  ifname: string;
  conPath: string;
  servers: string[];
  raw: string[];
  gateway: boolean;
}

function nmcliDevices(text: string): NmcliDevice[] {
  const devices: NmcliDevice[] = [];
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at < 0) continue;
    const field = line.slice(0, at).trim().replace(/\[\d+\]$/, '');
    const value = line.slice(at + 1).trim().replace(/\\:/g, ':').replace(/\\\\/g, '\\');
    if (field === 'GENERAL.DEVICE') devices.push({ ifname: value, conPath: '', servers: [], raw: [], gateway: false });
    else if (devices.length > 0 && value !== '' && value !== '--') {
      const d = devices.at(-1)!;
      if (field === 'IP4.DNS' || field === 'IP6.DNS') d.servers.push(value);
      else if (field === 'GENERAL.CON-PATH') d.conPath = value;
      else if (field.endsWith('.SEARCHES') || field.endsWith('.DOMAIN')) {
        for (const x of value.split(/[\s,]+/).filter(Boolean)) if (!d.raw.includes(x)) d.raw.push(x);
      } else if (field.endsWith('.GATEWAY')) d.gateway = true;
    }
  }
  return devices;
}

/**
 * parseNmcli reads `nmcli -t -f NMCLI_FIELDS device show`: "FIELD[n]:value"
 * lines, a GENERAL.DEVICE line starting each device, empty lists left out
 * (an escaped "\:" is read as ":" where a version escapes it). A
 * connection's DNS search and routing domains (ipv4.dns-search, "~x" for
 * routing only) are its SEARCHES; DOMAIN holds what DHCP or a VPN plugin
 * gave. As NetworkManager does, names nobody routes elsewhere go to a device
 * with the default route (a gateway) unless its domains are all routing
 * domains, and to any device with a "~." domain. `dnsOverTls` holds what
 * `nmcli -t -f connection.dns-over-tls connection show apath PATH` printed
 * for a device's active connection (GENERAL.CON-PATH).
 */
export function parseNmcli(text: string, dnsOverTls: ReadonlyMap<string, string> = new Map()): HostLink[] {
  return nmcliDevices(text)
    .filter((d) => d.servers.length > 0)
    .map((d) => {
      const routingOnly = d.raw.length > 0 && d.raw.every((x) => x.startsWith('~'));
      const link: HostLink = {
        ifname: d.ifname,
        servers: d.servers,
        domains: d.raw.map((x) => (x === '~.' ? '.' : x.replace(/^~/, '').toLowerCase())),
        defaultRoute: d.raw.includes('~.') || (d.gateway && !routingOnly),
      };
      const printed = dnsOverTls.get(d.conPath);
      // "connection.dns-over-tls:yes": the value after the field's name.
      const dot = nmDnsOverTls(printed?.slice(printed.indexOf(':') + 1));
      if (dot !== undefined) link.dnsOverTls = dot;
      return link;
    });
}

/** What the host said: the links and which tool said it. */
export interface HostReport {
  tool: 'resolvectl' | 'nmcli';
  links: HostLink[];
}

/**
 * readHostLinks asks systemd-resolved, then NetworkManager, for the links'
 * DNS configuration once; null when neither answers with a link that has servers.
 */
export async function readHostLinks(run: RunTool = runTool): Promise<HostReport | null> {
  for (const tool of ['resolvectl', 'nmcli'] as const) {
    const links = await readTool(tool, run);
    if (links !== null && links.length > 0) return { tool, links };
  }
  return null;
}

/**
 * readTool asks one tool for the links' DNS configuration: the links with
 * servers (none: [], as when the last link with DNS went away), or null
 * when the tool is missing or fails.
 */
async function readTool(tool: 'resolvectl' | 'nmcli', run: RunTool): Promise<HostLink[] | null> {
  if (tool === 'resolvectl') {
    const [dns, domain, route, dot] = await Promise.all([
      run('resolvectl', ['--no-pager', 'dns']),
      run('resolvectl', ['--no-pager', 'domain']),
      run('resolvectl', ['--no-pager', 'default-route']),
      run('resolvectl', ['--no-pager', 'dnsovertls']),
    ]);
    // Without the modes, a link that requires DNS over TLS would be asked in the clear: no reading rather than that.
    if (dns === null || domain === null || dot === null) return null;
    return parseResolvectl(dns, domain, route ?? '', dot ?? '').filter((l) => l.servers.length > 0);
  }
  const nm = await run('nmcli', ['-t', '-f', NMCLI_FIELDS, 'device', 'show']);
  if (nm === null) return null;
  const modes = new Map<string, string>();
  await Promise.all(
    nmcliConnections(nm).map(async (path) => {
      const out = await run('nmcli', ['-t', '-f', 'connection.dns-over-tls', 'connection', 'show', 'apath', path]);
      if (out !== null) modes.set(path, out.trim());
    }),
  );
  return parseNmcli(nm, modes);
}

/**
 * PolledTool is the fallback LinkBackend: one of the tools, run again every
 * `intervalS` seconds (0: never again until a reload), reporting when what
 * it prints changes. Its timer is unref'd: it never keeps pvdns alive.
 */
export class PolledTool implements LinkBackend {
  readonly name: string;
  private timer: NodeJS.Timeout | null = null;
  private last: HostLink[] = [];
  private stopped = false;

  constructor(
    private readonly tool: 'resolvectl' | 'nmcli',
    private readonly intervalS: number,
    private readonly run: RunTool = runTool,
  ) {
    this.name = intervalS > 0 ? `${tool} (polled every ${intervalS} s)` : `${tool} (read at start and reload)`;
  }

  async start(onReport: (links: HostLink[]) => void): Promise<HostLink[] | null> {
    const first = await readTool(this.tool, this.run);
    // A tool that answers with no link with servers is no backend (the next one, or resolv.conf, is tried).
    if (first === null || first.length === 0 || this.stopped) return null;
    this.last = first;
    this.schedule(onReport);
    return first;
  }

  private schedule(onReport: (links: HostLink[]) => void): void {
    if (this.intervalS === 0 || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      readTool(this.tool, this.run)
        .then((links) => {
          // A tool that fails once keeps the links as they were; one that reports none has none.
          if (this.stopped || links === null) return;
          if (!isDeepStrictEqual(links, this.last)) {
            this.last = links;
            onReport(links);
          }
        })
        .catch(() => undefined)
        .finally(() => this.schedule(onReport));
    }, this.intervalS * 1000);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
