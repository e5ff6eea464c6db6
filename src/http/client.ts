// The command line's view of a running pvdns: `pvdns status`, `pvdns query`
// and `pvdns monitor`, in the spirit of resolvectl, over the HTTP API.

import { readFileSync } from 'node:fs';
import type nodeHttp from 'node:http';
import { http } from '../node-http.js';
import type { MonitorRecord } from './monitor.js';
import type { PvdView } from '../pvd/view.js';
import type { TranslateResult } from '../resolve/translate.js';

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

/** call GETs a path of the API. node:http rather than fetch, which refuses some ports pvdns may use (e.g. 10080). */
function call<T>(server: string, path: string): Promise<T> {
  const url = new URL(path, apiUrl(server));
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: (T & { error?: string }) | null = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T & { error?: string };
        } catch {
          // not JSON: said below
        }
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) reject(new ClientError(body?.error ?? `${status} ${res.statusMessage ?? ''}`.trim()));
        else if (body === null) reject(new ClientError(`${url.href} did not answer JSON`));
        else resolve(body);
      });
      res.on('error', (err) => reject(new ClientError(`reading the answer from ${server}: ${err.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(new ClientError(`cannot reach the pvdns API at ${server}: ${err.code ?? err.message} (is pvdns running with http.listen there?)`));
    });
  });
}

/** status fetches the PvDs and renders them as a table (or JSON). */
export async function status(server: string, asJson: boolean): Promise<string> {
  const { pvds, sources = [] } = await call<{ pvds: PvdView[]; sources?: Array<{ source: string; via: string }> }>(server, 'v1/pvds');
  if (asJson) return JSON.stringify({ pvds, sources }, null, 2);
  const lines: string[] = [];
  // Where the PvDs come from, first: "host PvDs from resolved (D-Bus)" says the events are followed.
  for (const s of sources) lines.push(`${s.source} PvDs from ${s.via}`);
  if (sources.length > 0) lines.push('');
  if (pvds.length === 0) return [...lines, 'no PvDs attached'].join('\n');
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
    if (p.pref64?.length) lines.push(`  nat64:    ${p.pref64.join(', ')} (synthesized by ${p.dns64 === 'pvdns' ? 'pvdns' : 'the network'})`);
    if (p.servers.length === 0) lines.push('  no DNS servers');
    if (p.encryption && p.encryption !== 'off') lines.push(`  encryption: ${p.encryption}`);
    if (p.captive) {
      const where = p.userPortalUrl ? `, log in at ${p.userPortalUrl}` : '';
      lines.push(`  captive portal${where}${p.captiveCleartext ? ': names go in the clear until then' : p.cleartextServers?.length ? ": only the portal's names go in the clear" : ''}`);
    }
    if (p.ddr && p.ddr.state !== 'off') lines.push(`  ddr: ${p.ddr.state}${p.ddr.lastError ? ` (${p.ddr.lastError})` : ''}${p.ddr.rejected.length ? `; rejected: ${p.ddr.rejected.map((r) => `${r.address}: ${r.reason}`).join('; ')}` : ''}`);
    for (const s of p.servers) {
      const rtt = s.rttMs === null ? '' : `  rtt ${s.rttMs.toFixed(1)} ms`;
      const err = s.state === 'suspect' && s.lastError ? `  (${s.lastError})` : '';
      // Learned other than with the PvD itself: by DDR (RFC 9462) or DNR (RFC 9463).
      const how = s.learned === 'ddr' || s.learned === 'dnr' ? `  (${s.learned}${s.verified === false ? ', unverified' : ''})` : '';
      lines.push(`  server ${s.address.padEnd(28)} ${s.state.padEnd(11)}${rtt}${err}${encryptionNote(s)}${how}`);
    }
    for (const s of p.captive ? (p.cleartextServers ?? []) : []) lines.push(`  cleartext ${s.address.padEnd(25)} ${s.state.padEnd(11)} (the portal's names)`);
  }
  return lines.join('\n');
}

/** encryptionNote says how an encrypted server is spoken to now: "  [tls, authenticated as dns.example]". */
function encryptionNote(s: PvdView['servers'][number]): string {
  if (s.transport === undefined || s.transport === 'udp') return '';
  const who = s.authName ? ` as ${s.authName}` : ' by address';
  if (s.encryption === 'cleartext') return `  [cleartext fallback${s.fallback ? ` to ${s.fallback}` : ''}${s.encryptionError ? `: ${s.encryptionError}` : ''}]`;
  if (s.encryption === null) return `  [${s.transport}, not connected yet${s.encryptionError ? `: ${s.encryptionError}` : ''}]`;
  return `  [${s.encryption}, ${s.authenticated ? `authenticated${who}` : 'not authenticated (opportunistic)'}]`;
}

/** query resolves a name through the API and renders the answer (or JSON). */
export async function query(server: string, name: string, type: string, pvd: string | null, asJson: boolean): Promise<string> {
  const params = new URLSearchParams({ name, type });
  if (pvd !== null) params.set('pvd', pvd);
  const r = await call<TranslateResult>(server, `v1/resolve?${params}`);
  if (asJson) return JSON.stringify(r, null, 2);
  const from = r.pvd === null ? 'pvdns itself' : `pvd ${r.pvd}${r.server ? ` (server ${r.server})` : ''}`;
  const notes = [r.cached ? 'cached' : '', r.synthesized ? 'synthesized' : '', r.captive ? 'captive' : ''].filter(Boolean);
  const lines = [`${r.name} ${r.type}: ${r.rcode} from ${from}${notes.length ? `, ${notes.join(', ')}` : ''}`];
  if (r.ede) lines.push(`  extended error ${r.ede.code}: ${r.ede.text}`);
  for (const a of r.answers) lines.push(`  ${a.name}.\t${a.ttl}\t${a.type}\t${a.data}`);
  return lines.join('\n');
}

/** Where the systemd recipe and the image keep the API's token (http.tokenFile). */
export const DEFAULT_TOKEN_FILE = '/run/pvdns/token';

/**
 * apiToken is the token the CLI shows the API, as the VPN hooks find it:
 * $PVDNS_TOKEN, else the first line of $PVDNS_TOKEN_FILE (default
 * /run/pvdns/token) when this user can read it; null when there is none.
 */
export function apiToken(env: NodeJS.ProcessEnv = process.env): string | null {
  const given = env.PVDNS_TOKEN?.trim();
  if (given) return given;
  try {
    const text = readFileSync(env.PVDNS_TOKEN_FILE || DEFAULT_TOKEN_FILE, 'utf8').trim();
    return text === '' ? null : text;
  } catch {
    return null; // no file, or not ours to read: the API says whether a token was needed
  }
}

/** What `pvdns monitor` asks for. */
export interface MonitorRequest {
  json: boolean;
  /** The share of queries to see (0 < R ≤ 1), null for all. */
  sample: number | null;
  /** Records per second at most, null for the API's default. */
  rate: number | null;
  token: string | null;
}

/** A running `pvdns monitor`: `done` settles when the stream ends; `stop()` ends it. */
export interface MonitorSession {
  done: Promise<void>;
  stop(): void;
}

/**
 * monitor follows GET /v1/monitor, handing `write` one line per query
 * (monitorLine, or the record's JSON with --json) and one per "dropped"
 * notice. `done` rejects with a ClientError on a refusal (401: no or a
 * wrong token, said with where the CLI looks for one) or a lost stream, and
 * resolves when stop() ends it.
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
    if (r.token !== null) headers.authorization = `Bearer ${r.token}`;
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
          if (status === 401) error += r.token === null ? ' — no token found: set PVDNS_TOKEN, or PVDNS_TOKEN_FILE (default /run/pvdns/token) to a file you can read' : ' — the token from PVDNS_TOKEN or PVDNS_TOKEN_FILE was not accepted';
          reject(new ClientError(error));
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
