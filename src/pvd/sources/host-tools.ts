// The host's links from its command-line tools: `resolvectl` (systemd-resolved)
// or `nmcli` (NetworkManager), run again every pvdSources.hostPollIntervalS.
// This is the fallback for hosts where neither service is reachable over
// D-Bus (resolved.ts and networkmanager.ts follow their events instead):
// a change is seen at the next poll, not at once.

import { execFile } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
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

/**
 * parseResolvectl reads `resolvectl dns`, `resolvectl domain` and
 * `resolvectl default-route` (each prints "Link N (ifname): values"). The
 * global lines are the host's own settings, not a link's: left out.
 */
export function parseResolvectl(dns: string, domain: string, defaultRoute: string): HostLink[] {
  const servers = linkLines(dns);
  const domains = linkLines(domain);
  const routes = linkLines(defaultRoute);
  const links: HostLink[] = [];
  for (const [ifname, list] of servers) {
    const ds = (domains.get(ifname) ?? '').split(/\s+/).filter(Boolean);
    links.push({
      ifname,
      servers: list.split(/\s+/).filter(Boolean),
      domains: ds.map((d) => (d === '~.' ? '.' : d.replace(/^~/, '').toLowerCase())),
      defaultRoute: routes.get(ifname) === 'yes' || ds.includes('~.'),
    });
  }
  return links;
}

/** The fields pvdns asks nmcli for. */
export const NMCLI_FIELDS = 'GENERAL.DEVICE,IP4.GATEWAY,IP6.GATEWAY,IP4.DNS,IP6.DNS,IP4.SEARCHES,IP6.SEARCHES,IP4.DOMAIN,IP6.DOMAIN';

/**
 * parseNmcli reads `nmcli -t -f NMCLI_FIELDS device show`: "FIELD[n]:value"
 * lines, a GENERAL.DEVICE line starting each device, empty lists left out
 * (an escaped "\:" is read as ":" where a version escapes it). A
 * connection's DNS search and routing domains (ipv4.dns-search, "~x" for
 * routing only) are its SEARCHES; DOMAIN holds what DHCP or a VPN plugin
 * gave. As NetworkManager does, names nobody routes elsewhere go to a device
 * with the default route (a gateway) unless its domains are all routing
 * domains, and to any device with a "~." domain.
 */
export function parseNmcli(text: string): HostLink[] {
  const devices: Array<{ ifname: string; servers: string[]; raw: string[]; gateway: boolean }> = [];
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at < 0) continue;
    const field = line.slice(0, at).trim().replace(/\[\d+\]$/, '');
    const value = line.slice(at + 1).trim().replace(/\\:/g, ':').replace(/\\\\/g, '\\');
    if (field === 'GENERAL.DEVICE') devices.push({ ifname: value, servers: [], raw: [], gateway: false });
    else if (devices.length > 0 && value !== '' && value !== '--') {
      const d = devices.at(-1)!;
      if (field === 'IP4.DNS' || field === 'IP6.DNS') d.servers.push(value);
      else if (field.endsWith('.SEARCHES') || field.endsWith('.DOMAIN')) {
        for (const x of value.split(/[\s,]+/).filter(Boolean)) if (!d.raw.includes(x)) d.raw.push(x);
      } else if (field.endsWith('.GATEWAY')) d.gateway = true;
    }
  }
  return devices
    .filter((d) => d.servers.length > 0)
    .map((d) => {
      const routingOnly = d.raw.length > 0 && d.raw.every((x) => x.startsWith('~'));
      return {
        ifname: d.ifname,
        servers: d.servers,
        domains: d.raw.map((x) => (x === '~.' ? '.' : x.replace(/^~/, '').toLowerCase())),
        defaultRoute: d.raw.includes('~.') || (d.gateway && !routingOnly),
      };
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
    const [dns, domain, route] = await Promise.all([
      run('resolvectl', ['--no-pager', 'dns']),
      run('resolvectl', ['--no-pager', 'domain']),
      run('resolvectl', ['--no-pager', 'default-route']),
    ]);
    if (dns === null || domain === null) return null;
    return parseResolvectl(dns, domain, route ?? '').filter((l) => l.servers.length > 0);
  }
  const nm = await run('nmcli', ['-t', '-f', NMCLI_FIELDS, 'device', 'show']);
  if (nm === null) return null;
  return parseNmcli(nm);
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
