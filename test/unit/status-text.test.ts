// `pvdns status`'s text for a down server whose probes wait for a query
// (src/upstream/pool.ts pauses them a minute after its PvD's last client
// query): without a word, its "down" would read as current when it is as
// old as that last probe. Served by a throwaway API on loopback.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '../../src/http/client.js';

const server = (address: string, state: string, probesPaused: boolean) => ({
  address,
  state,
  rttMs: null,
  since: '2026-12-05T06:00:00.000Z',
  lastError: state === 'down' ? 'timeout' : null,
  probesPaused,
  transport: 'udp',
  authName: null,
  encryption: null,
  authenticated: null,
  encryptionError: null,
  fallback: null,
  learned: 'config',
  verified: null,
});

const pvd = {
  identifier: 'cellular',
  source: 'config',
  default: true,
  priority: 20,
  noInternet: false,
  dnsZones: [],
  prefixes: [],
  cacheEntries: 0,
  captive: false,
  servers: [server('127.0.42.1:53', 'down', true), server('127.0.42.2:53', 'down', false)],
};

let api: Server;
let url: string;

beforeAll(async () => {
  api = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ pvds: [pvd], sources: [] }));
  });
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => api.close(() => resolve())));

describe('pvdns status, a down server', () => {
  it('says when its probes wait for a query, and only then', async () => {
    const lines = (await status(url, false)).split('\n');
    const paused = lines.find((l) => l.includes('127.0.42.1:53'));
    const probed = lines.find((l) => l.includes('127.0.42.2:53'));
    expect(paused).toMatch(/^ {2}server 127\.0\.42\.1:53\s+down\s+\(timeout\) {2}\(probes paused until a query: none for a minute\)$/);
    expect(probed).toMatch(/^ {2}server 127\.0\.42\.2:53\s+down\s+\(timeout\)$/);
  });
});
