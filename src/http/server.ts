// The HTTP listener: health, readiness, Prometheus metrics and the control
// API. Every request first shows an acceptable Host and Origin (guard.ts),
// and everything but /healthz and /readyz is for the clients of http.allow
// only: the PvDs, the events and the metrics say where the host's names go.
// Errors are JSON with a 4xx/5xx status, never a stack trace.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { socketAddress, type SocketAddress } from '../config/address.js';
import type { Api } from './api.js';
import type { AuditLog } from './audit.js';
import type { Refusal, RequestGuard } from './guard.js';

/** Readiness is what /readyz reports: ready, or why not. */
export type Readiness = { ready: true } | { ready: false; reason: string };

export interface HttpDeps {
  registry: Registry;
  readiness: () => Readiness;
  log: Logger;
  /** The control API under /v1, when there is one. */
  api?: Api;
  /** Host, Origin and body checks of every request (read per request: a reload may replace it). */
  guard: () => RequestGuard;
  audit: AuditLog;
  /** Whether a client address may use more than /healthz and /readyz (http.allow, else access.allow). */
  clientAllowed: (address: string) => boolean;
}

/** Open to every client that passes the guard: what orchestrators' probes call. */
const OPEN_PATHS = new Set(['/healthz', '/readyz']);

/** HttpServer serves the HTTP side of pvdns on `http.listen`. */
export class HttpServer {
  private server: Server | null = null;

  constructor(
    private readonly addr: SocketAddress,
    private readonly deps: HttpDeps,
  ) {}

  start(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        this.deps.log.error({ err, url: req.url }, 'http handler failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
        else res.end();
      });
    });
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.addr.port, host: this.addr.host.split('%')[0], ipv6Only: this.addr.family === 6 }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://pvdns');
    const get = req.method === 'GET' || req.method === 'HEAD';
    const refusal = this.deps.guard().check(req);
    if (refusal !== null) return this.refuse(req, res, url, refusal);
    if (!OPEN_PATHS.has(url.pathname) && !this.deps.clientAllowed(req.socket.remoteAddress ?? '')) {
      return this.refuse(req, res, url, { status: 403, error: 'this client may not use the pvdns API (http.allow, else access.allow)' });
    }
    if (this.deps.api && (await this.deps.api.handle(req, res, url))) return;
    switch (url.pathname) {
      case '/healthz':
        if (!get) return methodNotAllowed(res, 'GET');
        return json(res, 200, { status: 'ok' });
      case '/readyz': {
        if (!get) return methodNotAllowed(res, 'GET');
        const r = this.deps.readiness();
        return r.ready ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not ready', reason: r.reason });
      }
      case '/metrics': {
        if (!get) return methodNotAllowed(res, 'GET');
        const body = await this.deps.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.registry.contentType });
        res.end(body);
        return;
      }
      default:
        return json(res, 404, { error: `no such endpoint: ${url.pathname}` });
    }
  }

  /** refuse answers a request the guard or the client list turned away, with its audit line. */
  private refuse(req: IncomingMessage, res: ServerResponse, url: URL, r: Refusal): void {
    this.deps.audit.refused(
      { client: req.socket.remoteAddress ?? null, method: req.method, path: url.pathname, host: req.headers.host ?? null, origin: req.headers.origin ?? null, status: r.status, error: r.error },
      'http request refused',
    );
    // The body is not read: closing after the answer keeps a refused upload from being drained.
    if (r.status === 415) res.setHeader('connection', 'close');
    json(res, r.status, { error: r.error });
  }

  get address(): SocketAddress {
    const a = this.server!.address() as AddressInfo;
    return socketAddress(a.address, a.port);
  }

  stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}

/** json sends a JSON body with a status. */
export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  json(res, 405, { error: `method not allowed; use ${allow}` });
}
