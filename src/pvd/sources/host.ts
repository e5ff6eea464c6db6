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
  const nm = await run('nmcli', ['-t', '-f', NMCLI_FIELDS, 'device', 'show']);
  if (nm !== null) {
    const links = parseNmcli(nm);
    if (links.length > 0) return { tool: 'nmcli', links };
  }
  return null;
}

/**
 * linkPvd is the PvD object of one link: its plain-DNS servers (an
 * encrypted one — a "#name" or port 853, DNS over TLS — is left out: pvdns
 * would ask it in the clear), an IPv6 link-local zone given as the link's
 * name, domains that are valid names as its zones, the default route as
 * `default`.
 */
export function linkPvd(l: HostLink): Record<string, unknown> {
  const servers = l.servers
    .filter((s) => !s.includes('#') && !s.includes('://') && !/:853(%\S*)?$/.test(s))
    .map((s) => serverText(s, l.ifname))
    .filter((s) => typeof parseSocketAddress(s, 53) !== 'string');
  const zones = l.domains.filter((d) => d !== '.' && domainProblem(d) === null);
  return { identifier: l.ifname, interface: l.ifname, dnsServers: servers, dnsZones: [...new Set(zones)], default: l.defaultRoute };
}

/**
 * serverText turns a server as the tools print it into pvdns's form:
 * "192.0.2.1", "192.0.2.1:5353", "fd00::1" → "[fd00::1]", "fe80::1%3" →
 * "[fe80::1%wg0]", "[fe80::1]:5353%3" → "[fe80::1%wg0]:5353" (a
 * link-local address is scoped to its link, by name).
 */
function serverText(s: string, ifname: string): string {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?(?:%\S+)?$/.exec(s);
  if (!bracketed && (s.match(/:/g) ?? []).length < 2) return s; // IPv4, with or without a port
  const host = bracketed ? bracketed[1]! : s;
  const port = bracketed?.[2];
  const addr = host.split('%')[0]!;
  const text = /^fe[89ab]/i.test(addr) ? `${addr}%${ifname}` : addr;
  return port ? `[${text}]:${port}` : `[${text}]`;
}
