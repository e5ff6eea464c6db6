// Implicit PvDs from the host (RFC 7556 §2.2): one per link, from what the
// host's network manager already knows — systemd-resolved (resolvectl) or
// NetworkManager (nmcli) — with each link's DNS servers and domains. A VPN
// link's routing domains ("~corp.example.com") become its dnsZones; a link
// that takes names nobody routes elsewhere (resolved's default route, or a
// "~." domain) is a default PvD. Hosts with neither tool fall back to
// resolv.conf as the single `system` PvD (resolvconf.ts).

import { execFile } from 'node:child_process';
import { parseSocketAddress } from '../../config/address.js';
import { domainProblem } from '../schema.js';

/** HostLink is one link's DNS configuration as the host's tools report it. */
export interface HostLink {
  ifname: string;
  /** Server addresses as the tools print them (an IPv6 one may carry a %zone or a port). */
  servers: string[];
  /** Search and routing domains without the "~", lower case; "." stands for the "~." default route. */
  domains: string[];
  /** Whether names nobody routes elsewhere may go to this link. */
  defaultRoute: boolean;
}

/** Runs one of the host's tools: its standard output, or null when it is missing or fails. */
export type RunTool = (cmd: string, args: string[]) => Promise<string | null>;

/** runTool runs a tool with a short timeout and no shell. */
export const runTool: RunTool = (cmd, args) =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5000, encoding: 'utf8', maxBuffer: 1 << 20, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout) => resolve(err ? null : stdout));
  });

/** "Link 3 (wg0): a b c" → [ifname, rest]. */
function linkLines(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^Link\s+\d+\s+\(([^)]+)\):\s*(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!.trim());
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

/**
 * parseNmcli reads `nmcli -t -f GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN device show`:
 * "FIELD[n]:value" lines, a GENERAL.DEVICE line starting each device, ":"
 * inside values escaped as "\:". NetworkManager sends names nobody routes
 * elsewhere to every link with DNS servers unless a "~." domain says
 * otherwise; a link with only routing domains ("~x") is a split-DNS link.
 */
export function parseNmcli(text: string): HostLink[] {
  const devices: Array<{ ifname: string; servers: string[]; raw: string[] }> = [];
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at < 0) continue;
    const field = line.slice(0, at).trim().replace(/\[\d+\]$/, '');
    const value = line.slice(at + 1).trim().replace(/\\:/g, ':').replace(/\\\\/g, '\\');
    if (field === 'GENERAL.DEVICE') devices.push({ ifname: value, servers: [], raw: [] });
    else if (devices.length > 0 && value !== '' && value !== '--') {
      const d = devices.at(-1)!;
      if (field === 'IP4.DNS' || field === 'IP6.DNS') d.servers.push(value);
      else if (field === 'IP4.DOMAIN' || field === 'IP6.DOMAIN') d.raw.push(value);
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
        defaultRoute: d.raw.includes('~.') || !routingOnly,
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
 * DNS configuration; null when neither answers with a link that has servers.
 */
export async function readHostLinks(run: RunTool = runTool): Promise<HostReport | null> {
  const [dns, domain, route] = await Promise.all([
    run('resolvectl', ['--no-pager', 'dns']),
    run('resolvectl', ['--no-pager', 'domain']),
    run('resolvectl', ['--no-pager', 'default-route']),
  ]);
  if (dns !== null && domain !== null) {
    const links = parseResolvectl(dns, domain, route ?? '').filter((l) => l.servers.length > 0);
    if (links.length > 0) return { tool: 'resolvectl', links };
  }
  const nm = await run('nmcli', ['-t', '-f', 'GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN', 'device', 'show']);
  if (nm !== null) {
    const links = parseNmcli(nm);
    if (links.length > 0) return { tool: 'nmcli', links };
  }
  return null;
}

/**
 * linkPvd is the PvD object of one link: servers that parse (without an
 * IPv6 zone the socket layer could use, kept as written), domains that are
 * valid names as its zones, the default route as `default`.
 */
export function linkPvd(l: HostLink): Record<string, unknown> {
  const servers = l.servers
    .map((s) => (s.includes(':') && !s.startsWith('[') && (s.match(/:/g) ?? []).length > 1 ? `[${s.split('#')[0]}]` : s.split('#')[0]!))
    .filter((s) => typeof parseSocketAddress(s, 53) !== 'string');
  const zones = l.domains.filter((d) => d !== '.' && domainProblem(d) === null);
  return { identifier: l.ifname, interface: l.ifname, dnsServers: servers, dnsZones: [...new Set(zones)], default: l.defaultRoute };
}
