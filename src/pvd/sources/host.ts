// Implicit PvDs from the host (RFC 7556 §2.2): one per link, from what the
// host's network manager already knows — each link's DNS servers and
// domains. A VPN link's routing domains ("~corp.example.com") become its
// dnsZones; a link that takes names nobody routes elsewhere (resolved's
// default route, or a "~." domain) is a default PvD. resolved's global
// servers (resolved.conf's DNS=, with its DNSOverTLS=) are the node-wide
// `system` PvD, a default as resolved asks them for every name. Hosts that
// tell pvdns nothing usable fall back to resolv.conf as the `system` PvD.
//
// HostFeed is the one source for all of it. The links come from the first
// LinkBackend that answers (sources.ts lists them: systemd-resolved and
// NetworkManager over D-Bus, followed by their events; resolvectl and nmcli
// polled as the fallback). The kernel's own view of the links (netlink,
// when available) is laid over them: a link that is down has no PvD, and a
// link's PvD owns the prefixes of its global addresses, so their reverse
// zones route to it and follow the addresses as they change.

import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { SocketAddress } from '../../config/address.js';
import { isOwnListener, serverLoops } from '../../config/own-listener.js';
import { parseServer, type Encryption, type UpstreamServer } from '../../upstream/server.js';
import { domainProblem, pvdSpecSchema, serverProblem, unicastProblem, type PvdSpec } from '../schema.js';
import { linkPrefixes, type LinkAddress, type LinkInfo } from './netlink.js';
import { readResolvConf, SYSTEM_PVD } from './resolvconf.js';
import type { HostLink, LinkBackend, PvdFeed, SourceSink } from './source.js';

export { parseNmcli, parseResolvectl, readHostLinks, runTool, NMCLI_FIELDS, type HostReport, type RunTool } from './host-tools.js';

/** A link as the kernel reports it (netlink.ts's LinkMonitor). */
export type LinkState = Readonly<Omit<LinkInfo, 'addresses'>> & { readonly addresses: readonly LinkAddress[] };
export type { LinkAddress };

/** LinkWatch is the kernel's view of the links: looked up by name, with a callback on every change. */
export interface LinkWatch {
  byName(ifname: string): LinkState | undefined;
  /** Calls `fn` after each batch of changes; returns the unsubscribe. */
  subscribe(fn: () => void): () => void;
}

export interface HostFeedOptions {
  /** The backends to try in order; the first that answers is used. */
  backends: readonly LinkBackend[];
  /** resolv.conf, read when no backend answers. */
  resolvConf: string;
  /** pvdns's own DNS listeners: a link server that is one of them is skipped (a loop). */
  ownListeners: () => SocketAddress[];
  /** The kernel's view of the links, where netlink is available. */
  links: LinkWatch | null;
  log: Logger;
}

/**
 * linkEncryption is the PvD's `encryption` for a link's DNS over TLS mode as
 * the backend reports it (resolved's link setting, else its global one;
 * NetworkManager's connection.dns-over-tls): "yes" is strict (never in the
 * clear), "opportunistic" is opportunistic. "no" or nothing (resolved's
 * default) is off, unless a server carries a TLS name ("192.0.2.1#dns.example"):
 * whoever set the name meant DNS over TLS, so pvdns tries it, authenticated by
 * that name, and falls back to the clear as resolved would have asked —
 * opportunistic, never worse than the host and encrypted where it can be.
 */
export function linkEncryption(l: HostLink): Encryption {
  if (l.dnsOverTls === 'yes') return 'strict';
  if (l.dnsOverTls === 'opportunistic') return 'opportunistic';
  return l.servers.some((s) => s.includes('#')) ? 'opportunistic' : 'off';
}

/**
 * linkPvd is the PvD object of one link: its servers as the host asks them,
 * `encryption` from its DNS over TLS mode (linkEncryption), an IPv6
 * link-local zone given as the link's name, domains that are valid names as
 * its zones, the default route as `default`. A server with a TLS name
 * ("192.0.2.1#dns.example") is kept as written: src/upstream/server.ts reads
 * resolved's form and the mode decides how it is asked, as resolved does.
 */
export function linkPvd(l: HostLink): Record<string, unknown> {
  const encryption = linkEncryption(l);
  // What is no server at all (a tool's odd line) is left out here; what can never answer is warned about (linkSpecs).
  const servers = l.servers.map((s) => serverText(s, l.global ? null : l.ifname, encryption)).filter((s) => typeof parseServer(s, encryption) !== 'string');
  const zones = [...new Set(l.domains.filter((d) => d !== '.' && domainProblem(d) === null))];
  // The host's global settings (RFC 7556 §2.2, the implicit node-wide PvD): resolved sends a name no
  // routing domain claims to the global servers as well as to default-route links (resolved.conf(5),
  // DNS=; systemd-resolved.service(8), "Protocols and Routing"), so they are a default, on no interface.
  if (l.global) return { identifier: SYSTEM_PVD, dnsServers: servers, dnsZones: zones, default: true, encryption };
  return { identifier: l.ifname, interface: l.ifname, dnsServers: servers, dnsZones: zones, default: l.defaultRoute, encryption };
}

/** A server written with a port: "192.0.2.1:5353", "[fd00::1]:5353". */
const WITH_PORT = /\]:\d+$|^[^:\]]+:\d+$/;

/**
 * serverText turns a server as the tools print it into pvdns's form:
 * "192.0.2.1", "192.0.2.1:5353", "fd00::1" → "[fd00::1]", "fe80::1%3" →
 * "[fe80::1%wg0]", "[fe80::1]:5353%3" → "[fe80::1%wg0]:5353" (a
 * link-local address is scoped to its link, by name; a global one keeps the
 * zone it was given), a TLS name kept after it ("[fe80::1%wg0]#dns.example"). With DNS over TLS required, resolved
 * asks a server written with a port over TLS on that port (port 853 only
 * when none is given): "tls://192.0.2.1:5353" says the same to pvdns.
 */
function serverText(s: string, ifname: string | null, encryption: Encryption): string {
  const at = s.indexOf('#');
  const name = at < 0 ? '' : s.slice(at);
  const text = addressText(at < 0 ? s : s.slice(0, at), ifname);
  if (name !== '') return text + name;
  return encryption === 'strict' && WITH_PORT.test(text) ? `tls://${text}` : text;
}

/** addressText is serverText's address part, without a TLS name; `ifname` null (the global settings) keeps the zone written. */
function addressText(s: string, ifname: string | null): string {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?(%\S+)?$/.exec(s);
  if (!bracketed && (s.match(/:/g) ?? []).length < 2) return s; // IPv4, with or without a port
  const host = bracketed ? bracketed[1]! : s;
  const port = bracketed?.[2];
  const [addr, inner] = host.split('%') as [string, string | undefined];
  const zone = ifname ?? inner ?? bracketed?.[3]?.slice(1);
  const text = /^fe[89ab]/i.test(addr) && zone ? `${addr}%${zone}` : addr;
  return port ? `[${text}]:${port}` : `[${text}]`;
}

/** A problem with what the host says, logged once while it lasts (its key names the link or file first, then a tab). */
interface Problem {
  key: string;
  fields: Record<string, unknown>;
  msg: string;
}

const problem = (key: string, fields: Record<string, unknown>, msg: string): Problem => ({ key, fields, msg });

/**
 * How long resolv.conf's folder must be quiet before the file is read: a
 * rewrite in place is a truncation and then a write (two events), and the
 * file read between them has no nameserver.
 */
const RESOLV_CONF_SETTLE_MS = 25;

/** HostFeed is the host's PvDs: one per link from the first backend that answers, else resolv.conf's `system` PvD. */
export class HostFeed implements PvdFeed {
  private active: LinkBackend | null = null;
  /** The backend being started: a change it reports before its start resolves is kept. */
  private trying: LinkBackend | null = null;
  private links: HostLink[] = [];
  private sink: SourceSink | null = null;
  private unsubscribe: (() => void) | null = null;
  private resolvWatch: FSWatcher[] | null = null;
  /** The wait before resolv.conf is read after the folder's events stop (see watchResolvConf). */
  private resolvTimer: NodeJS.Timeout | null = null;
  /**
   * Problems already logged, by key: each is logged once while it lasts,
   * however many reports repeat it, and again only once it has gone and
   * come back (or on a reload).
   */
  private warned = new Set<string>();
  /** Pushes started: a push that a newer one overtook (a slower read of resolv.conf) applies nothing. */
  private pushes = 0;
  private stopped = false;

  constructor(private readonly opts: HostFeedOptions) {}

  /** describe names where the host's PvDs come from now. */
  describe(): string {
    if (this.active === null) return `resolv.conf (${this.opts.resolvConf})`;
    return this.fallback ? `resolv.conf (${this.opts.resolvConf}): ${this.active.name} reports no link with usable servers` : this.active.name;
  }

  /** Whether the backend's links gave no PvD, so resolv.conf's `system` PvD stands in. */
  private fallback = false;
  /** Link names the kernel has reported: one it no longer knows has gone (not merely never seen here, as in a container). */
  private readonly seen = new Set<string>();

  /** The backend in use, or null for resolv.conf. */
  backend(): string | null {
    return this.active?.name ?? null;
  }

  async start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    for (const b of this.opts.backends) {
      let first: HostLink[] | null = null;
      this.trying = b;
      // A report from a backend tried before this one (which then said it was not available) is not this one's.
      this.early = null;
      try {
        first = await b.start(
          (links) => this.report(b, links),
          () => sink.hold(),
        );
      } catch (err) {
        this.opts.log.warn({ backend: b.name, error: (err as Error).message }, "cannot read the host's links this way; trying the next");
      }
      if (this.stopped) {
        b.stop();
        return;
      }
      if (first !== null) {
        this.active = b;
        this.links = this.early ?? first;
        break;
      }
      b.stop();
    }
    this.trying = null;
    this.early = null;
    // A link that changes state applies at once; the backend reads again too, as resolved, say,
    // signals nothing when a link goes away.
    if (this.opts.links !== null)
      this.unsubscribe = this.opts.links.subscribe(() => {
        this.active?.refresh?.();
        void this.push();
      });
    if (this.active === null) this.watchResolvConf();
    await this.push();
  }

  /** refresh applies the links again (pvdns's own listeners changed on a reload). */
  async refresh(): Promise<void> {
    this.warned.clear();
    await this.push();
  }

  /** Links a backend reported while it was starting, newer than its first report. */
  private early: HostLink[] | null = null;

  private report(b: LinkBackend, links: HostLink[]): void {
    if (this.stopped) return;
    if (b === this.trying && this.active === null) this.early = links;
    if (b !== this.active) return;
    this.links = links;
    void this.push();
  }

  /** push brings the registry in line with the links (or resolv.conf) as known now. */
  private async push(): Promise<void> {
    if (this.stopped || this.sink === null) return;
    const n = ++this.pushes;
    const problems: Problem[] = [];
    let specs = this.active !== null ? this.linkSpecs(problems) : [];
    // A backend that answers with no usable link and no global servers (every link down, resolved
    // with only a foreign resolv.conf's pvdns itself): the host still has resolv.conf, as before
    // there was a backend. resolved's global servers are a `system` PvD already: no fallback then.
    const fallback = this.active !== null && specs.length === 0;
    if (this.active === null || fallback) {
      if (fallback) this.watchResolvConf();
      specs = await this.resolvConfSpecs(problems);
    }
    if (this.stopped || n !== this.pushes) return;
    this.fallback = fallback;
    this.opts.log.debug({ backend: this.describe(), links: this.links.map((l) => l.ifname), pvds: specs.map((p) => p.identifier) }, "host's links read");
    this.sink.sync(specs);
    this.warnNew(problems);
  }

  /**
   * warnNew logs the problems not logged before, and forgets the logged
   * ones that are gone: a link whose server loops is one line, not one per
   * report, and a line again when the problem comes back. A link the
   * kernel says is down keeps its problems (it was not read this time).
   */
  private warnNew(problems: Problem[]): void {
    const now = new Set(problems.map((p) => p.key));
    const down = new Set(this.links.filter((l) => this.opts.links?.byName(l.ifname)?.up === false).map((l) => l.ifname));
    for (const key of this.warned) if (!now.has(key) && !down.has(key.split('\t', 1)[0]!)) this.warned.delete(key);
    for (const p of problems) {
      if (this.warned.has(p.key)) continue;
      this.warned.add(p.key);
      this.opts.log.warn(p.fields, p.msg);
    }
  }

  private linkSpecs(problems: Problem[]): PvdSpec[] {
    const own = this.opts.ownListeners();
    const tool = this.active!.name;
    const specs: PvdSpec[] = [];
    const names = new Set(this.links.map((l) => l.ifname));
    for (const name of this.seen) if (!names.has(name)) this.seen.delete(name);
    for (const name of this.encryptions.keys()) if (!names.has(name)) this.encryptions.delete(name);
    for (const link of this.links) {
      // The global settings are no link: no kernel state, no prefixes.
      const state = link.global ? undefined : this.opts.links?.byName(link.ifname);
      if (state) this.seen.add(link.ifname);
      // The kernel says the link is down, or has gone (the backend has yet to say so): its servers
      // are out of reach.
      if (!link.global && ((state && !state.up) || (!state && this.seen.has(link.ifname)))) {
        this.opts.log.debug({ link: link.ifname, backend: tool }, 'link is down or gone: no PvD for it');
        continue;
      }
      const raw = linkPvd(link);
      const encryption = raw.encryption as Encryption;
      const servers = (raw.dnsServers as string[]).filter((s) => {
        const never = serverProblem(s);
        if (never) {
          problems.push(problem(`${link.ifname}\tnever ${s}`, { link: link.ifname, server: s, backend: tool, error: never }, "skipping a link's DNS server that can never answer"));
          return false;
        }
        // Where pvdns would send: the server's own address and, opportunistic, its cleartext one.
        const server = parseServer(s, encryption) as UpstreamServer;
        const loop = serverLoops(server, own);
        if (loop) problems.push(problem(`${link.ifname}\tloop ${s}`, { link: link.ifname, server: s, backend: tool }, "skipping a link's DNS server that is pvdns itself (a loop)"));
        return !loop;
      });
      if (servers.length === 0) continue;
      const r = pvdSpecSchema.safeParse({ ...raw, dnsServers: servers, prefixes: state ? linkPrefixes(state) : [] });
      if (r.success) {
        specs.push(r.data);
        this.sayEncryption(link.ifname, encryption, tool);
      } else problems.push(problem(`${link.ifname}\tbad`, { link: link.ifname, backend: tool, error: r.error.issues[0]?.message }, 'skipping a link pvdns cannot make a PvD of'));
    }
    return specs;
  }

  /** Each link's encryption as last said: a change is one line, not one per report. */
  private readonly encryptions = new Map<string, Encryption>();

  /**
   * sayEncryption logs a link's DNS over TLS mode when it changes: the host
   * encrypts, so pvdns does too (one short line; a link that never had
   * encryption says nothing).
   */
  private sayEncryption(ifname: string, encryption: Encryption, backend: string): void {
    const was = this.encryptions.get(ifname) ?? 'off';
    this.encryptions.set(ifname, encryption);
    if (was === encryption) return;
    this.opts.log.info({ link: ifname, encryption, backend }, `DNS over TLS ${encryption}, from ${backend}`);
  }

  private async resolvConfSpecs(problems: Problem[]): Promise<PvdSpec[]> {
    const file = this.opts.resolvConf;
    const own = this.opts.ownListeners();
    let all: SocketAddress[];
    try {
      all = await readResolvConf(file);
    } catch (err) {
      problems.push(problem(`${file}\tread`, { file, error: (err as Error).message }, 'cannot read resolv.conf; the system PvD has no servers'));
      all = [];
    }
    const servers = all.filter((s) => {
      const never = unicastProblem(s, s.label);
      if (never) problems.push(problem(`${file}\tnever ${s.label}`, { server: s.label, file, error: never }, 'skipping a resolv.conf nameserver that can never answer'));
      return never === null && !isOwnListener(s, own);
    });
    for (const s of all) if (!servers.includes(s) && isOwnListener(s, own)) problems.push(problem(`${file}\tloop ${s.label}`, { server: s.label, file }, 'skipping a resolv.conf nameserver that is pvdns itself (a loop)'));
    if (servers.length === 0) problems.push(problem(`${file}\tnone`, { file }, 'resolv.conf lists no usable nameserver: the system PvD has no servers and is no default'));
    // RFC 7556 §2.2: the host's node-wide configuration is one implicit PvD (a default only with servers).
    return [pvdSpecSchema.parse({ identifier: SYSTEM_PVD, dnsServers: servers.map((s) => s.label), default: servers.length > 0 })];
  }

  /**
   * watchResolvConf follows resolv.conf's folder for the file being
   * rewritten or replaced (a DHCP client renames a new one into place):
   * one inotify watch; the file is read once its events have been quiet
   * for RESOLV_CONF_SETTLE_MS, so a rewrite is read whole.
   */
  private watchResolvConf(): void {
    if (this.resolvWatch !== null) return;
    this.resolvWatch = [];
    const file = this.opts.resolvConf;
    // A symbolic link (/etc/resolv.conf → /run/…/resolv.conf) changes where it points to: watch there too.
    let target = file;
    try {
      target = realpathSync(file);
    } catch {
      // not there yet: its folder is watched
    }
    const names = new Set([basename(file), basename(target)]);
    if (dirname(target) !== dirname(file)) this.watchFolder(dirname(target), names);
    this.watchFolder(dirname(file), names);
  }

  /** watchFolder reads resolv.conf again when one of `names` changes in `dir`. */
  private watchFolder(dir: string, names: ReadonlySet<string>): void {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && !names.has(String(name))) return;
        if (this.resolvTimer !== null) clearTimeout(this.resolvTimer);
        this.resolvTimer = setTimeout(() => {
          this.resolvTimer = null;
          void this.push();
        }, RESOLV_CONF_SETTLE_MS);
        this.resolvTimer.unref();
      });
      w.on('error', () => w.close());
      this.resolvWatch?.push(w);
    } catch {
      // A folder pvdns may not watch: resolv.conf is read again on reload.
    }
  }

  stop(): void {
    this.stopped = true;
    this.active?.stop();
    this.unsubscribe?.();
    for (const w of this.resolvWatch ?? []) w.close();
    if (this.resolvTimer !== null) clearTimeout(this.resolvTimer);
  }
}
