// The command line's view of a running pvdns, in the spirit of resolvectl,
// over the HTTP API: `pvdns status` and `pvdns query` read; `flush`,
// `reload`, `announce` and `withdraw` change it, and `pvdns monitor` follows
// the queries as they are answered, with the API's bearer token.

import { isIP } from 'node:net';
import { readFile } from 'node:fs/promises';
import type nodeHttp from 'node:http';
import ipaddr from 'ipaddr.js';
import { http } from '../node-http.js';
import { reverseZones } from '../pvd/reverse.js';
import type { MonitorRecord } from './monitor.js';
import type { PvdView } from '../pvd/view.js';
import type { TranslateResult } from '../resolve/translate.js';
import type { ReloadChanges } from './reload.js';

/** The API address pvdns's default configuration listens on. */
export const DEFAULT_API = 'http://127.0.0.1:8053';

/** ClientError is a failed call, worded for the terminal. */
export class ClientError extends Error {}

/**
 * apiUrl reads --server: an http URL with a host, such as
 * http://127.0.0.1:8053 (with a path, the API is found below it). Anything
 * else is a ClientError saying what to write, not a TypeError from URL.
 */
export function apiUrl(server: string): URL {
  const example = `--server must be a URL such as ${DEFAULT_API}`;
  if (!URL.canParse(server)) throw new ClientError(`${example} (got "${server}")`);
  const url = new URL(server.endsWith('/') ? server : `${server}/`);
  // "127.0.0.1:8053" is no URL, but "localhost:8053" is one of scheme "localhost:".
  if (url.protocol !== 'http:' || url.hostname === '') throw new ClientError(`${example}, starting http:// (got "${server}")`);
  return url;
}

/** What a call sends besides its path: a method other than GET, a JSON body, the API's bearer token. */
interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  token?: string | null;
}

/** ApiRefusal is the API's answer of an error status, with its one-line `error` (and `errors`, where it gives them). */
export class ApiRefusal extends ClientError {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: string[] = [],
  ) {
    super(message);
  }
}

/**
 * call asks the API and reads its JSON answer. node:http rather than fetch,
 * which refuses some ports pvdns may use (e.g. 10080). The token goes in a
 * header, never in the URL (where logs and proxies would keep it).
 */
function call<T>(server: string, path: string, opts: CallOptions = {}): Promise<T> {
  const url = new URL(path, apiUrl(server));
  const body = opts.body === undefined ? null : Buffer.from(JSON.stringify(opts.body));
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  // The API refuses a body of any other type (415): a web page cannot send this one without CORS.
  if (body !== null) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let answer: (T & { error?: string; errors?: string[] }) | null = null;
        try {
          answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T & { error?: string; errors?: string[] };
        } catch {
          // not JSON: said below
        }
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) reject(new ApiRefusal(status, answer?.error ?? `${status} ${res.statusMessage ?? ''}`.trim(), answer?.errors ?? []));
        else if (answer === null) reject(new ClientError(`${url.href} did not answer JSON`));
        else resolve(answer);
      });
      res.on('error', (err) => reject(new ClientError(`reading the answer from ${server}: ${err.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // Connected, then dropped without an answer: not "cannot reach".
      if (req.reusedSocket || err.code === 'ECONNRESET') reject(new ClientError(`pvdns at ${server} closed the connection without answering (${err.code ?? err.message})`));
      else reject(new ClientError(`cannot reach the pvdns API at ${server}: ${err.code ?? err.message} (is pvdns running with http.listen there?)`));
    });
    req.end(body ?? undefined);
  });
}

/** status fetches the PvDs and renders them as a table (or JSON). */
export async function status(server: string, asJson: boolean): Promise<string> {
  const { pvds, sources = [] } = await call<{ pvds: PvdView[]; sources?: Array<{ source: string; via: string }> }>(server, 'v1/pvds');
  if (asJson) return JSON.stringify({ pvds, sources }, null, 2);
  const lines: string[] = [];
  // Where the PvDs come from, first: "host PvDs from resolved (D-Bus)" says the events are followed.
  for (const s of sources) lines.push(`${s.source} PvDs from ${s.via}`);
  if (pvds.length === 0) return [...lines, ...(sources.length > 0 ? [''] : []), 'no PvDs attached'].join('\n');
  lines.push(defaultRouting(pvds), '');
  for (const p of pvds) {
    const traits = [
      p.origin ? `${p.source}: ${p.origin}` : p.source,
      p.default ? `default, priority ${p.priority}` : 'not default',
      ...(p.noInternet ? ['noInternet'] : []),
      `${p.cacheEntries} cached`,
      ...(p.expires ? [`expires ${p.expires}`] : []),
    ];
    lines.push(`${p.identifier} (${traits.join(', ')})`);
    if (p.dnsZones.length) lines.push(`  zones:    ${p.dnsZones.join(', ')}`);
    if (p.prefixes.length) lines.push(`  prefixes: ${p.prefixes.join(', ')}`);
    if (p.listen?.length) lines.push(`  listen:   ${p.listen.map((l) => (l.bound ?? `${l.address} (not bound: ${l.error ?? 'not yet'})`)).join(', ')} (this PvD only)`);
    if (p.pref64?.length) lines.push(`  nat64:    ${p.pref64.join(', ')} (synthesized by ${p.dns64 === 'pvdns' ? 'pvdns' : 'the network'}${p.pref64Source ? `, from ${p.pref64Source}` : ''})`);
    else if (p.dns64 === 'discovering' || p.pref64Error) lines.push(`  nat64:    ${p.dns64 === 'discovering' ? 'discovering (RFC 7050)' : 'none found'}${p.pref64Error ? ` (${p.pref64Error})` : ''}`);
    if (p.servers.length === 0) lines.push('  no DNS servers');
    if (p.encryption && p.encryption !== 'off') lines.push(`  encryption: ${p.encryption}`);
    // The RFC 8908 API the PvD names (RFC 8910), where the portal's state and login page are read.
    const api = p.captivePortal ? `; RFC 8908 API ${p.captivePortal}` : '';
    if (p.captive) {
      const where = p.userPortalUrl ? `, log in at ${p.userPortalUrl}` : '';
      lines.push(`  captive portal${where}${p.captiveCleartext ? ': names go in the clear until then' : p.cleartextServers?.length ? ": only the portal's names go in the clear" : ''}`);
      if (p.captiveSince || p.captiveReason) lines.push(`  captive:  since ${p.captiveSince ?? '?'}${p.captiveReason ? ` (${p.captiveReason})` : ''}${api}`);
    } else {
      // Unknown says why: not probed yet, or never (a noInternet PvD is not probed).
      const state = p.captive === false ? 'no (open)' : `unknown (${p.captiveReason ?? 'not probed yet'})`;
      lines.push(`  captive:  ${state}${p.userPortalUrl ? `, portal ${p.userPortalUrl}` : ''}${api}`);
    }
    if (p.captiveApiError) lines.push(`  captive API (RFC 8908): ${p.captiveApiError}`);
    if (p.ddr && p.ddr.state !== 'off') lines.push(`  ddr: ${p.ddr.state}${p.ddr.lastError ? ` (${p.ddr.lastError})` : ''}${p.ddr.rejected.length ? `; rejected: ${p.ddr.rejected.map((r) => `${r.address}: ${r.reason}`).join('; ')}` : ''}`);
    for (const s of p.servers) {
      const rtt = s.rttMs === null ? '' : `  rtt ${s.rttMs.toFixed(1)} ms`;
      // Why a server is suspect or down: the first thing to know when names stop resolving.
      const err = (s.state === 'suspect' || s.state === 'down') && s.lastError ? `  (${s.lastError})` : '';
      // A stale "down": nothing asked its PvD for a minute, so it is not probed until something does.
      const paused = s.probesPaused ? '  (probes paused until a query: none for a minute)' : '';
      // Learned other than with the PvD itself: by DDR (RFC 9462) or DNR (RFC 9463).
      const how = s.learned === 'ddr' || s.learned === 'dnr' ? `  (${s.learned}${s.verified === false ? ', unverified' : ''})` : '';
      lines.push(`  server ${s.address.padEnd(28)} ${s.state.padEnd(11)}${rtt}${err}${paused}${encryptionNote(s)}${how}`);
    }
    for (const s of p.captive ? (p.cleartextServers ?? []) : []) lines.push(`  cleartext ${s.address.padEnd(25)} ${s.state.padEnd(11)} (the portal's names)`);
  }
  return lines.join('\n');
}

/**
 * defaultRouting is the line saying where names no PvD claims go, as the
 * router decides (src/resolve/routes.ts, router.ts): the default PvDs with
 * DNS servers, by priority then declaration order; of those, one whose
 * servers are all down or that is captive is passed over while another can
 * serve. noInternet PvDs are named as skipped (they never are default).
 */
export function defaultRouting(pvds: readonly PvdView[]): string {
  const skipped: string[] = [];
  const route: PvdView[] = [];
  for (const p of pvds) {
    // A noInternet PvD is never a default one: named, as that is why a VPN gets no other names.
    if (p.noInternet) skipped.push(`${p.identifier} (noInternet)`);
    else if (!p.default) continue;
    else if (p.servers.length === 0) skipped.push(`${p.identifier} (no DNS servers)`);
    else route.push(p);
  }
  // Stable: ties keep the API's order, which is declaration order.
  route.sort((a, b) => a.priority - b.priority);
  const why = (p: PvdView): string | null => (p.captive === true ? 'captive' : p.servers.every((s) => s.state === 'down') ? 'servers down' : null);
  const usable = route.filter((p) => why(p) === null);
  // With none usable the router keeps them all (a captive PvD must still reach its portal).
  const order = usable.length > 0 ? usable : route;
  if (usable.length > 0) for (const p of route) if (why(p) !== null) skipped.push(`${p.identifier} (${why(p)})`);
  const head = order.length === 0 ? 'default route: none (names no PvD claims get SERVFAIL)' : `default route: ${order.map((p) => p.identifier).join(' → ')}`;
  const kept = usable.length === 0 && route.length > 0 ? ` (${route.map((p) => `${p.identifier} ${why(p)}`).join(', ')}: asked anyway, no other default PvD can serve)` : '';
  return `${head}${kept}${skipped.length ? `; skipped: ${skipped.join(', ')}` : ''}`;
}

/** encryptionNote says how an encrypted server is spoken to now: "  [tls, authenticated as dns.example]". */
function encryptionNote(s: PvdView['servers'][number]): string {
  if (s.transport === undefined || s.transport === 'udp') return '';
  const who = s.authName ? ` as ${s.authName}` : ' by address';
  if (s.encryption === 'cleartext') return `  [cleartext fallback${s.fallback ? ` to ${s.fallback}` : ''}${s.encryptionError ? `: ${s.encryptionError}` : ''}]`;
  if (s.encryption === null) return `  [${s.transport}, not connected yet${s.encryptionError ? `: ${s.encryptionError}` : ''}]`;
  return `  [${s.encryption}, ${s.authenticated ? `authenticated${who}` : 'not authenticated (opportunistic)'}]`;
}

/**
 * Exit codes of `pvdns query` for an answer that is not one: resolvectl
 * exits 1 for all of them, but 1 is already "could not ask" (pvdns not
 * reached, no such PvD) and 2 a usage error, so a script can tell a name
 * that does not exist from a resolver that is not there.
 */
export const QUERY_EXIT = { answered: 0, nxdomain: 3, noAnswer: 4, failed: 5 } as const;

/** A command's output and its exit code. */
export interface Outcome {
  text: string;
  exit: number;
}

/**
 * reverseName is the PTR name of an IP address (RFC 1035 §3.5 in-addr.arpa,
 * RFC 3596 §2.5 ip6.arpa), or null when `text` is not an address. A zone
 * index (fe80::1%eth0) names a link, not part of the address: it is dropped.
 */
export function reverseName(text: string): string | null {
  const bare = text.replace(/%.*$/, '');
  if (isIP(bare) === 0) return null;
  const addr = ipaddr.parse(bare);
  return reverseZones(addr, addr.kind() === 'ipv4' ? 32 : 128)[0]!;
}

/**
 * query resolves a name through the API and renders the answer (or JSON).
 * An IP address asked with no type or PTR is looked up by its reverse name,
 * as `dig -x` and resolvectl do. The exit code says whether there was an
 * answer (QUERY_EXIT).
 */
export async function query(server: string, name: string, type: string | null, pvd: string | null, asJson: boolean): Promise<Outcome> {
  const reverse = type === null || type.toUpperCase() === 'PTR' || type === '12' ? reverseName(name) : null;
  const params = new URLSearchParams({ name: reverse ?? name, type: reverse !== null ? 'PTR' : (type ?? 'A') });
  if (pvd !== null) params.set('pvd', pvd);
  const r = await call<TranslateResult>(server, `v1/resolve?${params}`);
  const answered = r.rcode === 'NOERROR' && r.answers.some((a) => a.type === r.type || r.type === 'ANY');
  const exit = answered ? QUERY_EXIT.answered : r.rcode === 'NXDOMAIN' ? QUERY_EXIT.nxdomain : r.rcode === 'NOERROR' ? QUERY_EXIT.noAnswer : QUERY_EXIT.failed;
  if (asJson) return { text: JSON.stringify(r, null, 2), exit };
  const from = r.pvd === null ? 'pvdns itself' : `pvd ${r.pvd}${r.server ? ` (server ${r.server})` : ''}`;
  const notes = [r.cached ? 'cached' : '', r.synthesized ? 'synthesized' : '', r.captive ? 'captive' : ''].filter(Boolean);
  const lines = [`${r.name} ${r.type}: ${r.rcode} from ${from}${notes.length ? `, ${notes.join(', ')}` : ''}`];
  if (r.ede) lines.push(`  extended error ${r.ede.code}: ${r.ede.text}`);
  for (const a of r.answers) lines.push(`  ${a.name}.\t${a.ttl}\t${a.type}\t${a.data}`);
  if (exit === QUERY_EXIT.noAnswer) lines.push(`  no ${r.type} record`);
  return { text: lines.join('\n'), exit };
}

/** The API token for a change or the monitor, and where it came from (for the message when pvdns refuses it). */
export interface Credentials {
  token: string | null;
  /** "--token-file /run/pvdns/token", "PVDNS_TOKEN", "http.token of /etc/pvdns/config.yaml"; '' with no token. */
  from: string;
}

/** The token file the packaged configurations name (packaging/config.yaml, docker/config.yaml): the VPN hooks' default too. */
export const DEFAULT_TOKEN_FILE = '/run/pvdns/token';

/** A token file is one line; anything bigger is not one (src/http/token.ts). */
const MAX_TOKEN_FILE = 4096;

/**
 * readToken reads a token file as the VPN hooks do (its first line, trimmed);
 * unlike pvdns it does not judge the file's owner and mode, which are
 * pvdns's business: root reads the service user's file.
 */
export async function readToken(path: string): Promise<string> {
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const hint = code === 'EACCES' ? ' (only pvdns\'s user and root may read it: sudo)' : code === 'ENOENT' ? ' (pvdns writes its http.tokenFile at start: is it running?)' : '';
    throw new ClientError(`cannot read the API token from ${path}: ${code}${hint}`);
  }
  const token = text.length > MAX_TOKEN_FILE ? '' : text.toString('utf8').trim();
  if (token === '' || /\s/.test(token)) throw new ClientError(`${path} holds no API token (one line, as pvdns writes it)`);
  return token;
}

/** Where the token was looked for when none was found, for the 401 message. */
const TOKEN_SOURCES = `--token-file FILE, PVDNS_TOKEN, PVDNS_TOKEN_FILE, --config FILE (its http.token or http.tokenFile) or ${DEFAULT_TOKEN_FILE}`;

/**
 * change runs one call that needs the token, turning the refusals a person
 * can act on into one line saying what to do (refusal).
 */
async function change<T>(server: string, path: string, creds: Credentials, opts: Omit<CallOptions, 'token'>): Promise<T> {
  try {
    return await call<T>(server, path, { ...opts, token: creds.token });
  } catch (err) {
    if (!(err instanceof ApiRefusal)) throw err;
    throw refusal(err, server, creds, 'the change');
  }
}

/**
 * refusal says in one line what to do about an API refusal of a call made
 * with the token (`what` names the call): 401 (no token, or not pvdns's),
 * 403 (this pvdns takes no changes, or refuses the request's Host or a
 * tokenless monitor from afar), 404 (no such PvD), 409 (the PvD belongs to
 * another source). Any other status is kept as it is.
 */
function refusal(err: ApiRefusal, server: string, creds: Credentials, what: string): ApiRefusal {
  switch (err.status) {
    case 401:
      return new ApiRefusal(401, creds.token === null ? `pvdns needs its API token for this and none was found: give ${TOKEN_SOURCES}` : `pvdns refused the API token from ${creds.from} (401): it is not the token of its http.token or http.tokenFile (a restart writes a new token file)`);
    case 403:
      return new ApiRefusal(403, `pvdns refused ${what} (403): ${err.message}`);
    case 404:
      return new ApiRefusal(404, /^no PvD /.test(err.message) ? `${err.message} (pvdns status lists them)` : `${err.message} (an older pvdns at ${server}?)`);
    case 409:
      return new ApiRefusal(409, `${err.message} (409)`);
    default:
      return err;
  }
}

/** flush empties the cache, of one PvD or of all (POST /v1/cache/flush). */
export async function flush(server: string, creds: Credentials, pvd: string | null, asJson: boolean): Promise<string> {
  const r = await change<{ flushed: number; pvd: string | null }>(server, `v1/cache/flush${pvd === null ? '' : `?${new URLSearchParams({ pvd })}`}`, creds, { method: 'POST' });
  if (asJson) return JSON.stringify(r, null, 2);
  return `flushed ${r.flushed} cached answer${r.flushed === 1 ? '' : 's'} ${r.pvd === null ? 'of every PvD' : `of pvd ${r.pvd}`}`;
}

/**
 * reload has pvdns read its configuration file again, as SIGHUP does
 * (POST /v1/reload), and says what changed. A file pvdns refuses is an
 * error naming its first problem; pvdns keeps the running configuration.
 */
export async function reload(server: string, creds: Credentials, asJson: boolean): Promise<string> {
  let r: ReloadChanges;
  try {
    r = await change<ReloadChanges>(server, 'v1/reload', creds, { method: 'POST' });
  } catch (err) {
    if (err instanceof ApiRefusal && err.status === 422) {
      const more = err.errors.length > 1 ? ` (and ${err.errors.length - 1} more: pvdns check-config FILE lists them)` : '';
      throw new ApiRefusal(422, `reload refused, pvdns keeps its running configuration: ${err.message}${more}`);
    }
    // A new http.listen closes the listener this call came through before it is answered.
    if (!(err instanceof ApiRefusal) && err instanceof ClientError && /closed the connection/.test(err.message)) {
      throw new ClientError(`${err.message}: a reload that moves http.listen closes the old listener; pvdns status --server NEW-URL shows whether it applied`);
    }
    throw err;
  }
  if (asJson) return JSON.stringify(r, null, 2);
  const lines = [`reloaded ${r.config}`];
  if (r.settings.length) lines.push(`  settings changed: ${r.settings.join(', ')}`);
  if (r.pvds.added.length) lines.push(`  pvds added:       ${r.pvds.added.join(', ')}`);
  if (r.pvds.removed.length) lines.push(`  pvds removed:     ${r.pvds.removed.join(', ')}`);
  if (r.pvds.changed.length) lines.push(`  pvds changed:     ${r.pvds.changed.join(', ')}`);
  if (lines.length === 1) lines.push('  nothing changed');
  return lines.join('\n');
}

/**
 * announce PUTs a PvD (the object of a PvD file) to /v1/pvds/{identifier}:
 * announced anew, updated, or unchanged; keys pvdns ignored are listed.
 */
export async function announce(server: string, creds: Credentials, pvd: Record<string, unknown> & { identifier: string }, asJson: boolean): Promise<string> {
  const r = await change<{ result: string; pvd: PvdView; ignoredKeys: string[] }>(server, `v1/pvds/${encodeURIComponent(pvd.identifier)}`, creds, { method: 'PUT', body: pvd });
  if (asJson) return JSON.stringify(r, null, 2);
  const lines = [`${r.result} ${r.pvd.identifier}`];
  if (r.ignoredKeys.length) lines.push(`  ignored keys: ${r.ignoredKeys.join(', ')} (unknown to pvdns, RFC 8801 §4.3)`);
  return lines.join('\n');
}

/** withdraw removes a PvD announced through the API (DELETE /v1/pvds/{id}). */
export async function withdraw(server: string, creds: Credentials, id: string, asJson: boolean): Promise<string> {
  let r: { withdrawn: string };
  try {
    r = await change<{ withdrawn: string }>(server, `v1/pvds/${encodeURIComponent(id)}`, creds, { method: 'DELETE' });
  } catch (err) {
    // Only the API's own PvDs can be withdrawn through it; the others have a place to be removed from.
    if (err instanceof ApiRefusal && err.status === 409) throw new ApiRefusal(409, `${err.message.replace(/ \(409\)$/, '')} (only PvDs announced through the API are withdrawn with pvdns withdraw)`);
    throw err;
  }
  return asJson ? JSON.stringify(r, null, 2) : `withdrew ${r.withdrawn}`;
}

/** What `pvdns monitor` asks for. */
export interface MonitorRequest {
  json: boolean;
  /** The share of queries to see (0 < R ≤ 1), null for all. */
  sample: number | null;
  /** Records per second at most, null for the API's default. */
  rate: number | null;
  /** The API token and where it came from, found as for a change (the CLI's one lookup). */
  creds: Credentials;
}

/** A running `pvdns monitor`: `done` settles when the stream ends; `stop()` ends it. */
export interface MonitorSession {
  done: Promise<void>;
  stop(): void;
}

/**
 * monitor follows GET /v1/monitor, handing `write` one line per query
 * (monitorLine, or the record's JSON with --json) and one per "dropped"
 * notice. `done` rejects with a ClientError on a refusal (one line, as
 * for a change: 401 says where the CLI looks for a token) or a lost stream,
 * and resolves when stop() ends it.
 */
export function monitor(server: string, r: MonitorRequest, write: (line: string) => void): MonitorSession {
  const params = new URLSearchParams();
  if (r.sample !== null) params.set('sample', String(r.sample));
  if (r.rate !== null) params.set('rate', String(r.rate));
  const url = new URL(`v1/monitor${params.size ? `?${params}` : ''}`, apiUrl(server));
  let stopped = false;
  let req: nodeHttp.ClientRequest | null = null;
  const done = new Promise<void>((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (r.creds.token) headers.authorization = `Bearer ${r.creds.token}`;
    req = http.get(url, { headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let error = `${status} ${res.statusMessage ?? ''}`.trim();
          try {
            error = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string }).error ?? error;
          } catch {
            // not JSON: the status says it
          }
          reject(refusal(new ApiRefusal(status, error), server, r.creds, 'the monitor'));
        });
        return;
      }
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk: string) => {
        buf += chunk.replace(/\r\n?/g, '\n');
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const event = sseEvent(buf.slice(0, end));
          buf = buf.slice(end + 2);
          if (event === null) continue;
          if (event.event === 'query') write(r.json ? JSON.stringify(event.data) : monitorLine(event.data as MonitorRecord));
          else if (event.event === 'dropped') {
            const d = event.data as { dropped: number; rate: number };
            write(r.json ? JSON.stringify(d) : `-- dropped ${d.dropped} queries: over ${d.rate} records/s (--rate, --sample)`);
          }
        }
      });
      // The first of these settles `done`: an error says what, a close without one that the server ended it.
      res.on('error', (err) => (stopped ? resolve() : reject(new ClientError(`the monitor stream from ${server} broke: ${err.message} (pvdns stopped, or cut this monitor off for not reading fast enough)`))));
      res.on('close', () => (stopped ? resolve() : reject(new ClientError(`${server} ended the monitor stream (pvdns stopped, or cut this monitor off for not reading fast enough)`))));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (stopped) return resolve();
      reject(new ClientError(`cannot reach the pvdns API at ${server}: ${err.code ?? err.message} (is pvdns running with http.listen there?)`));
    });
  });
  return {
    done,
    stop: () => {
      stopped = true;
      (req as nodeHttp.ClientRequest | null)?.destroy();
    },
  };
}

/** sseEvent reads one text/event-stream block: its event name and JSON data; null for comments and blocks without data. */
function sseEvent(block: string): { event: string; data: unknown } | null {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  try {
    return { event, data: JSON.parse(data.join('\n')) };
  } catch {
    return null;
  }
}

/**
 * monitorLine is one query as `pvdns monitor` prints it, in the manner of
 * `resolvectl monitor`: local time, client, name, type, → the PvD and why,
 * cache verdict, server, RCODE (and its extended error), milliseconds.
 *   21:52:53.123 127.0.0.1 www.corp.example A → corp (zone corp.example) miss 10.8.0.1:53 NOERROR 1.84 ms
 */
export function monitorLine(r: MonitorRecord): string {
  const t = new Date(r.time);
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  const client = r.transport === 'udp' ? r.client : `${r.client} (${r.transport})`;
  const rcode = r.ede ? `${r.rcode} (EDE ${r.ede.code}${r.ede.text ? `: ${r.ede.text}` : ''})` : r.upstreamRcode && r.upstreamRcode !== r.rcode ? `${r.rcode} (upstream ${r.upstreamRcode})` : r.rcode;
  return `${time} ${client} ${r.name} ${r.type} → ${routeText(r)} ${r.cache === 'none' ? '-' : r.cache} ${r.server ?? '-'} ${rcode} ${r.ms} ms`;
}

/** routeText is where a query went and why: "corp (zone corp.example)", "wifi (default; vpn down)". */
function routeText(r: MonitorRecord): string {
  const route = r.route;
  switch (route.kind) {
    case 'none':
      return '(refused before routing)';
    case 'local':
      return `pvdns (${route.local === 'empty' ? 'locally served empty zone' : 'special-use name'} ${route.zone})`;
    case 'forced':
      return `${r.pvd} (chosen by the client)`;
    case 'zone':
    case 'default': {
      const why = [route.kind === 'zone' ? `zone ${route.zone}` : route.order.length ? `default ${route.order.join(' → ')}` : 'default: no default PvD'];
      for (const s of route.skipped) why.push(`${s.pvd} ${s.why}`);
      return `${r.pvd ?? '(none)'} (${why.join('; ')})`;
    }
  }
}
