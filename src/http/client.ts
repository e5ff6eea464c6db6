// The command line's view of a running pvdns: `pvdns status` and
// `pvdns query`, in the spirit of resolvectl, over the HTTP API.

import type { PvdView } from '../pvd/view.js';
import type { TranslateResult } from '../resolve/translate.js';

/** The API address pvdns's default configuration listens on. */
export const DEFAULT_API = 'http://127.0.0.1:8053';

/** ClientError is a failed call, worded for the terminal. */
export class ClientError extends Error {}

async function call<T>(server: string, path: string): Promise<T> {
  const url = new URL(path, server.endsWith('/') ? server : `${server}/`);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new ClientError(`cannot reach the pvdns API at ${server}: ${cause} (is pvdns running with http.listen there?)`);
  }
  const body = (await res.json().catch(() => null)) as (T & { error?: string }) | null;
  if (!res.ok) throw new ClientError(body?.error ?? `${res.status} ${res.statusText}`);
  if (body === null) throw new ClientError(`${url} did not answer JSON`);
  return body;
}

/** status fetches the PvDs and renders them as a table (or JSON). */
export async function status(server: string, asJson: boolean): Promise<string> {
  const { pvds } = await call<{ pvds: PvdView[] }>(server, 'v1/pvds');
  if (asJson) return JSON.stringify({ pvds }, null, 2);
  if (pvds.length === 0) return 'no PvDs attached';
  const lines: string[] = [];
  for (const p of pvds) {
    const traits = [
      p.source,
      p.default ? `default, priority ${p.priority}` : 'not default',
      ...(p.noInternet ? ['noInternet'] : []),
      `${p.cacheEntries} cached`,
      ...(p.expires ? [`expires ${p.expires}`] : []),
    ];
    lines.push(`${p.identifier} (${traits.join(', ')})`);
    if (p.dnsZones.length) lines.push(`  zones:    ${p.dnsZones.join(', ')}`);
    if (p.prefixes.length) lines.push(`  prefixes: ${p.prefixes.join(', ')}`);
    if (p.servers.length === 0) lines.push('  no DNS servers');
    for (const s of p.servers) {
      const rtt = s.rttMs === null ? '' : `  rtt ${s.rttMs.toFixed(1)} ms`;
      const err = s.state === 'suspect' && s.lastError ? `  (${s.lastError})` : '';
      lines.push(`  server ${s.address.padEnd(28)} ${s.state.padEnd(11)}${rtt}${err}`);
    }
  }
  return lines.join('\n');
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
