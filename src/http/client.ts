// The command line's view of a running pvdns: `pvdns status` and
// `pvdns query`, in the spirit of resolvectl, over the HTTP API.

import { http } from '../node-http.js';
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
