// The control API under /v1 (DESIGN's table; the MIF API's announce, Translate
// Name and change announcements over HTTP). Mutating calls need the bearer
// token (http.token or http.tokenFile) on every listener, loopback included:
// any local process and, through the browser, any web page can reach
// loopback. With no token configured, the API takes no changes. Each change,
// and each refusal, is one audit line in the log.

import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { AuditLog } from './audit.js';
import type { Pvd } from '../pvd/model.js';
import { PvdInputError, readPvdInput } from '../pvd/input.js';
import type { PvdRegistry } from '../pvd/registry.js';
import type { PvdSpec } from '../pvd/schema.js';
import { normalizeDomain } from '../pvd/schema.js';
import type { PvdView } from '../pvd/view.js';
import { TranslateInputError, type TranslateResult } from '../resolve/translate.js';
import type { EventHub, EventName } from './events.js';
import { monitorOptions, type MonitorOptions, type QueryMonitor } from './monitor.js';
import ipaddr from 'ipaddr.js';
import type { ReloadOutcome } from './reload.js';
import { json } from './server.js';

/** The most a request body may carry: a PvD object is a few hundred octets. */
const MAX_BODY = 64 * 1024;

/** What PUT did: a new PvD, a changed one, or why it could not. */
export type AnnounceOutcome =
  | { ok: true; result: 'announced' | 'updated' | 'unchanged'; pvd: Pvd }
  | { ok: false; status: number; error: string };

export interface ApiDeps {
  pvds: PvdRegistry;
  view(pvd: Pvd): PvdView;
  announce(spec: PvdSpec): AnnounceOutcome;
  /** withdraw removes an API-announced PvD: 404 when unknown, 409 when another source holds it. */
  withdraw(id: string): { ok: true } | { ok: false; status: number; error: string };
  /** translate resolves a name; throws TranslateInputError for a bad name or type. */
  translate(name: string, type: string, pvd: Pvd | null, client: string): Promise<TranslateResult>;
  flush(pvd: Pvd | null): number;
  /** reload reads the configuration file again and applies it, as SIGHUP does (src/http/reload.ts). */
  reload(): Promise<ReloadOutcome>;
  events: EventHub;
  /** The live query stream of GET /v1/monitor. */
  monitor: QueryMonitor;
  /** The PvD sources in use and how each learns its PvDs ("host" via "resolved (D-Bus)"). */
  sources(): Array<{ source: string; via: string }>;
  token(): string | null;
  audit: AuditLog;
}

/** What a change did, for its audit line. */
type Audit = Record<string, unknown>;

/** ApiError is a request problem with its HTTP status (and the headers that status calls for). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export class Api {
  constructor(private readonly deps: ApiDeps) {}

  /** handle serves /v1 paths; false when the path is not one of them. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (!path.startsWith('/v1/')) return false;
    const audit: Audit = {};
    const change = req.method !== 'GET' && req.method !== 'HEAD';
    let error: string | undefined;
    try {
      await this.route(req, res, url, path, audit);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
      json(res, err.status, { error: err.message });
      error = err.message;
    }
    // The audit trail: who (peer address, and whether a token was shown), what, and the outcome.
    const refused = res.statusCode === 401 || res.statusCode === 403;
    if (change || refused) {
      const { authorized, ...what } = audit;
      const fields = {
        client: req.socket.remoteAddress ?? null,
        // 'unchecked': the request failed before its token was looked at (a bad path, say).
        auth: authorized === true ? 'token' : authorized === false ? (req.headers.authorization === undefined ? 'none' : 'bad token') : 'unchecked',
        method: req.method,
        path: url.pathname + url.search,
        status: res.statusCode,
        ...what,
        ...(error !== undefined ? { error } : {}),
      };
      if (refused) this.deps.audit.refused(fields, 'api request refused');
      else this.deps.audit.change(fields);
    }
    return true;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, path: string, audit: Audit): Promise<void> {
    // HEAD is GET without the body (node drops the body of a HEAD reply).
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const pvdMatch = /^\/v1\/pvds\/([^/]+)$/.exec(path);
    if (path === '/v1/pvds') {
      allow(method, ['GET']);
      return json(res, 200, { pvds: this.deps.pvds.list().map((p) => this.deps.view(p)), sources: this.deps.sources() });
    }
    if (pvdMatch) {
      let id: string;
      try {
        id = decodeURIComponent(pvdMatch[1]!);
      } catch {
        throw new ApiError(400, `the PvD id in the path is not valid percent-encoding: ${pvdMatch[1]}`);
      }
      allow(method, ['GET', 'PUT', 'DELETE']);
      if (method === 'GET') return json(res, 200, this.deps.view(this.pvd(id)));
      this.authorize(req, audit);
      audit.pvd = normalizeDomain(id);
      if (method === 'DELETE') {
        const r = this.deps.withdraw(id);
        if (!r.ok) audit.error = r.error;
        return r.ok ? json(res, 200, { withdrawn: normalizeDomain(id) }) : json(res, r.status, { error: r.error });
      }
      return this.put(req, res, id, audit);
    }
    if (path === '/v1/resolve') {
      allow(method, ['GET']);
      const name = url.searchParams.get('name');
      if (!name) throw new ApiError(400, 'name is required');
      const pvdId = url.searchParams.get('pvd');
      const pvd = pvdId === null ? null : this.pvd(pvdId);
      try {
        return json(res, 200, await this.deps.translate(name, url.searchParams.get('type') ?? 'A', pvd, req.socket.remoteAddress ?? ''));
      } catch (err) {
        if (err instanceof TranslateInputError) throw new ApiError(400, err.message);
        throw err;
      }
    }
    if (path === '/v1/cache/flush') {
      allow(method, ['POST']);
      this.authorize(req, audit);
      const pvdId = url.searchParams.get('pvd');
      const pvd = pvdId === null ? null : this.pvd(pvdId);
      const flushed = this.deps.flush(pvd);
      audit.flushed = flushed;
      audit.pvd = pvd?.id ?? null;
      return json(res, 200, { flushed, pvd: pvd?.id ?? null });
    }
    if (path === '/v1/reload') {
      allow(method, ['POST']);
      this.authorize(req, audit);
      const r = await this.deps.reload();
      if (!r.ok) {
        audit.error = r.error;
        return json(res, r.status, { error: r.error, ...(r.errors ? { errors: r.errors } : {}) });
      }
      audit.config = r.changes.config;
      audit.settings = r.changes.settings;
      audit.pvds = r.changes.pvds;
      return json(res, 200, r.changes);
    }
    if (path === '/v1/events') {
      allow(method, ['GET']);
      const initial = this.deps.pvds.list().map((p): [EventName, unknown] => ['pvd-announced', this.deps.view(p)]);
      if (!this.deps.events.subscribe(req, res, initial)) throw new ApiError(503, 'too many event subscribers');
      return;
    }
    if (path === '/v1/monitor') {
      allow(method, ['GET']);
      return this.monitor(req, res, url, audit);
    }
    throw new ApiError(404, `no such endpoint: ${path}`);
  }

  /**
   * monitor attaches a client to the live query stream. It shows every
   * client's names, so it needs the token whenever one is configured (as a
   * change does), and without one it is for loopback clients only.
   */
  private monitor(req: http.IncomingMessage, res: http.ServerResponse, url: URL, audit: Audit): void {
    let opts: MonitorOptions;
    try {
      opts = monitorOptions(url.searchParams);
    } catch (err) {
      throw new ApiError(400, (err as Error).message);
    }
    if (this.deps.token() !== null) this.authorize(req, audit);
    else if (!isLoopback(req.socket.remoteAddress ?? '')) {
      throw new ApiError(403, 'the query monitor shows every client\'s names: with no http.token or http.tokenFile set it is for loopback clients only');
    }
    if (!this.deps.monitor.subscribe(req, res, opts)) throw new ApiError(503, 'too many monitor subscribers');
    // Who watches every client's names is worth a line, as a change is.
    this.deps.audit.note({ client: req.socket.remoteAddress ?? null, auth: audit.authorized === true ? 'token' : 'loopback', path: url.pathname + url.search, ...opts }, 'query monitor attached');
  }

  private pvd(id: string): Pvd {
    const p = this.deps.pvds.get(id);
    if (!p) throw new ApiError(404, `no PvD ${JSON.stringify(id)}`);
    return p;
  }

  private async put(req: http.IncomingMessage, res: http.ServerResponse, id: string, audit: Audit): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError(400, `body is not JSON: ${(err as Error).message}`);
    }
    // The path names the PvD; an identifier in the body must agree (RFC 8801 §3.4: case-insensitive).
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
      const obj = body as Record<string, unknown>;
      obj.identifier ??= id;
      if (typeof obj.identifier === 'string' && normalizeDomain(obj.identifier) !== normalizeDomain(id)) {
        throw new ApiError(400, `identifier: ${JSON.stringify(obj.identifier)} does not match the PvD in the path, ${JSON.stringify(id)}`);
      }
    }
    let spec: PvdSpec;
    let ignoredKeys: string[];
    try {
      ({ spec, ignoredKeys } = readPvdInput(body));
    } catch (err) {
      if (err instanceof PvdInputError) throw new ApiError(400, err.message);
      throw err;
    }
    const r = this.deps.announce(spec);
    if (!r.ok) {
      audit.error = r.error;
      return json(res, r.status, { error: r.error });
    }
    audit.result = r.result;
    audit.servers = spec.dnsServers;
    audit.dnsZones = spec.dnsZones;
    // RFC 8801 §4.3 has unknown keys ignored; the reply says which were, so none goes in silence.
    if (ignoredKeys.length > 0) audit.ignoredKeys = ignoredKeys;
    json(res, r.result === 'announced' ? 201 : 200, { result: r.result, pvd: this.deps.view(r.pvd), ignoredKeys });
  }

  /** authorize lets a change through only with the right bearer token; with none configured, nothing changes. */
  private authorize(req: http.IncomingMessage, audit: Audit): void {
    const token = this.deps.token();
    audit.authorized = false;
    if (token === null) throw new ApiError(403, 'this pvdns takes no changes through its API: set http.token or http.tokenFile');
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m || !sameSecret(m[1]!, token)) {
      throw new ApiError(401, 'a valid "Authorization: Bearer <token>" header is required (the token of http.token or http.tokenFile)', {
        'www-authenticate': 'Bearer realm="pvdns"',
      });
    }
    audit.authorized = true;
  }
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) {
    const list = methods.includes('GET') ? [...methods, 'HEAD'] : methods;
    throw new ApiError(405, `method not allowed; use ${methods.join(' or ')}`, { allow: list.join(', ') });
  }
}

/** isLoopback: 127.0.0.0/8, ::1, or 127.x as an IPv4-mapped IPv6 address. */
function isLoopback(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  const ip = ipaddr.process(address);
  return ip.range() === 'loopback';
}

/** sameSecret compares in constant time: hashing first makes the lengths equal too. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** readBody collects a request body, refusing one over MAX_BODY with 413. */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    // Refused without reading the rest: the reply closes the connection.
    const tooLarge = (): ApiError => new ApiError(413, `body larger than ${MAX_BODY} octets`, { connection: 'close' });
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > MAX_BODY) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
