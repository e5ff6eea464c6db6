// The query monitor's parts that need no running pvdns: the options of
// GET /v1/monitor, the refusal of a non-loopback client when no token is
// set, the CLI's line per record, and a monitor nobody watches costing
// nothing but its `active` test.

import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { Api, type ApiDeps } from '../../src/http/api.js';
import { AuditLog } from '../../src/http/audit.js';
import { monitorLine } from '../../src/http/client.js';
import { EventHub } from '../../src/http/events.js';
import { DEFAULT_RATE, MAX_RATE, monitorOptions, QueryMonitor, type MonitorRecord } from '../../src/http/monitor.js';
import { createLogger } from '../../src/log.js';
import { Query } from '../../src/resolve/query.js';

describe('monitorOptions', () => {
  it('takes sample and rate, with defaults', () => {
    expect(monitorOptions(new URLSearchParams(''))).toEqual({ sample: 1, rate: DEFAULT_RATE });
    expect(monitorOptions(new URLSearchParams('sample=0.1&rate=50'))).toEqual({ sample: 0.1, rate: 50 });
    expect(monitorOptions(new URLSearchParams(`rate=${MAX_RATE}`)).rate).toBe(MAX_RATE);
  });

  it.each(['sample=0', 'sample=1.5', 'sample=', 'sample=x', 'rate=0', 'rate=1.5', `rate=${MAX_RATE + 1}`, 'rate='])('refuses %s in one line', (q) => {
    expect(() => monitorOptions(new URLSearchParams(q))).toThrow(/^(sample|rate) must be .*\(got "[^"\n]*"\)$/);
  });
});

/** fakeExchange is a request from `address` and a response that keeps what is written to it. */
function fakeExchange(address: string, path: string): { req: http.IncomingMessage; res: http.ServerResponse & { body: string } } {
  const req = { method: 'GET', url: path, headers: {}, socket: { remoteAddress: address }, on: () => req } as unknown as http.IncomingMessage;
  const headers: Record<string, string> = {};
  const res = {
    statusCode: 200,
    body: '',
    writableLength: 0,
    headersSent: false,
    setHeader: (k: string, v: string) => void (headers[k] = v),
    writeHead(status: number) {
      this.statusCode = status;
      return this;
    },
    write(text: string) {
      this.body += text;
      return true;
    },
    end(text = '') {
      this.body += text;
    },
    on: () => res,
  };
  return { req, res: res as unknown as http.ServerResponse & { body: string } };
}

describe('GET /v1/monitor with no token configured', () => {
  const log = createLogger('silent');
  const hub = new EventHub();
  const monitor = new QueryMonitor(hub, () => null);
  const api = new Api({ token: () => null, monitor, events: hub, audit: new AuditLog(log) } as unknown as ApiDeps);

  it.each(['192.0.2.7', '::ffff:192.0.2.7', '2001:db8::7', ''])('refuses a client at %j with 403', async (address) => {
    const { req, res } = fakeExchange(address, '/v1/monitor');
    expect(await api.handle(req, res, new URL('http://pvdns/v1/monitor'))).toBe(true);
    expect(res.statusCode).toBe(403);
    expect(JSON.parse(res.body).error).toMatch(/loopback clients only/);
    expect(monitor.subscribers).toBe(0);
  });

  it.each(['127.0.0.1', '127.0.44.9', '::1', '::ffff:127.0.0.1'])('lets a loopback client at %s attach', async (address) => {
    const { req, res } = fakeExchange(address, '/v1/monitor');
    await api.handle(req, res, new URL('http://pvdns/v1/monitor'));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('event: monitor\ndata: {"sample":1,"rate":1000}');
    expect(monitor.active).toBe(true);
    hub.close();
    expect(monitor.active).toBe(false);
  });
});

describe('QueryMonitor', () => {
  it('is inactive with nobody watching, and queues nothing', () => {
    const monitor = new QueryMonitor(new EventHub(), () => null);
    expect(monitor.active).toBe(false);
    const q = new Query('udp', '127.0.0.1', performance.now());
    monitor.observe(q, 0, null, 0.001);
    expect((monitor as unknown as { pending: unknown[] }).pending).toHaveLength(0);
  });
});

describe('monitorLine', () => {
  const base: MonitorRecord = {
    time: '2026-12-04T21:52:53.123Z',
    client: '10.0.0.5',
    transport: 'udp',
    name: 'www.corp.example',
    type: 'A',
    route: { kind: 'zone', zone: 'corp.example', local: null, order: ['corp'], skipped: [] },
    pvd: 'corp',
    cache: 'miss',
    server: '10.8.0.1:53',
    rcode: 'NOERROR',
    ede: null,
    upstreamRcode: null,
    ms: 1.84,
  };
  const t = new Date(base.time);
  const time = `${String(t.getHours()).padStart(2, '0')}:${String(t.getMinutes()).padStart(2, '0')}:53.123`;

  it('reads like resolvectl monitor: time, client, name, type, → PvD (why), cache, server, rcode, ms', () => {
    expect(monitorLine(base)).toBe(`${time} 10.0.0.5 www.corp.example A → corp (zone corp.example) miss 10.8.0.1:53 NOERROR 1.84 ms`);
  });

  it('gives the default order and why PvDs were passed over', () => {
    const r: MonitorRecord = {
      ...base,
      transport: 'tcp',
      name: 'example.com',
      route: { kind: 'default', zone: null, local: null, order: ['vpn', 'hotel', 'lte'], skipped: [{ pvd: 'vpn', why: 'down' }, { pvd: 'hotel', why: 'captive' }] },
      pvd: 'lte',
      cache: 'hit',
      server: null,
    };
    expect(monitorLine(r)).toBe(`${time} 10.0.0.5 (tcp) example.com A → lte (default vpn → hotel → lte; vpn down; hotel captive) hit - NOERROR 1.84 ms`);
  });

  it('shows the extended error, or the upstream RCODE behind a SERVFAIL', () => {
    expect(monitorLine({ ...base, rcode: 'SERVFAIL', ede: { code: 22, text: 'no reachable authority' } })).toContain(' SERVFAIL (EDE 22: no reachable authority) 1.84 ms');
    expect(monitorLine({ ...base, rcode: 'SERVFAIL', upstreamRcode: 'REFUSED' })).toContain(' SERVFAIL (upstream REFUSED) 1.84 ms');
  });

  it('says when pvdns answered itself, or refused before routing', () => {
    expect(monitorLine({ ...base, name: 'localhost', route: { kind: 'local', zone: 'localhost', local: 'localhost', order: [], skipped: [] }, pvd: null, cache: 'none', server: null })).toBe(
      `${time} 10.0.0.5 localhost A → pvdns (special-use name localhost) - - NOERROR 1.84 ms`,
    );
    expect(monitorLine({ ...base, route: { kind: 'none', zone: null, local: null, order: [], skipped: [] }, pvd: null, cache: 'none', server: null, rcode: 'REFUSED', ede: { code: 18, text: 'client address not in access.allow' } })).toContain(
      '→ (refused before routing) - - REFUSED (EDE 18: client address not in access.allow)',
    );
    expect(monitorLine({ ...base, transport: 'api', route: { kind: 'forced', zone: null, local: null, order: ['corp'], skipped: [] } })).toContain('10.0.0.5 (api) www.corp.example A → corp (chosen by the client)');
  });
});
