// fetchPvdInfo (src/pvd/sources/pvd-info.ts) against a local HTTPS server
// with a throwaway CA made by openssl: the name resolved only by the given
// lookup, the certificate checked against the PvD ID, the media type, the
// object's checks (RFC 8801 §4.3), redirects, the size bound, the timeout
// and the local address.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fetchPvdInfo, preparePvdInfo, readPvdInfo, uncoveredPrefixes, type FetchPvdInfoOptions } from '../../src/pvd/sources/pvd-info.js';

const ID = 'cafe.example.com';
const FUTURE = '2099-01-01T00:00:00Z';
const GOOD = { identifier: 'Cafe.Example.COM.', expires: FUTURE, prefixes: ['2001:db8:cafe::/48'], dnsZones: ['cafe.example.com'], noInternet: true, 'vendor-x': { a: 1 } };

let dir: string;
let context: SecureContext;
let server: Server;
let port: number;
/** What the server answers next: status, headers, body (or null: never answer). */
let reply: (path: string) => { status: number; headers?: Record<string, string>; body?: string } | null;
let seen: Array<{ path: string; accept: string | undefined; host: string | undefined; from: string | undefined }>;
let lookups: string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), `pvdns-ra-pvdinfo-${process.pid}-`));
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=pvdns test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', `/CN=${ID}`);
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=DNS:${ID},DNS:moved.example.com\n`);
  ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '1', '-extfile', 'ext.cnf');
  context = createSecureContext({ ca: readFileSync(join(dir, 'ca.pem')) });
  server = createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) }, (req, res) => {
    seen.push({ path: req.url ?? '', accept: req.headers.accept, host: req.headers.host, from: req.socket.remoteAddress });
    const r = reply(req.url ?? '');
    if (r === null) return; // never answers
    res.writeHead(r.status, r.headers ?? {});
    res.end(r.body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen = [];
  lookups = [];
  reply = () => json(GOOD);
});

function json(body: unknown, type = 'application/pvd+json'): { status: number; headers: Record<string, string>; body: string } {
  return { status: 200, headers: { 'content-type': type }, body: JSON.stringify(body) };
}

function opts(o: Partial<FetchPvdInfoOptions> = {}): FetchPvdInfoOptions {
  return {
    lookup: async (host) => {
      lookups.push(host);
      return ['127.0.0.1'];
    },
    secureContext: context,
    port,
    timeoutMs: 3000,
    ...o,
  };
}

describe('fetchPvdInfo', () => {
  it('fetches and validates https://<PvD ID>/.well-known/pvd, resolving the name only through the given lookup', async () => {
    const r = await fetchPvdInfo('CAFE.example.com.', opts({ advertisedPrefixes: ['2001:db8:cafe:1::/64'] }));
    expect(r).toEqual({ identifier: ID, expires: FUTURE, expiresAt: Date.parse(FUTURE), prefixes: ['2001:db8:cafe::/48'], dnsZones: ['cafe.example.com'], noInternet: true });
    expect(lookups).toEqual([ID]);
    expect(seen).toEqual([{ path: '/.well-known/pvd', accept: 'application/pvd+json', host: ID, from: '127.0.0.1' }]);
  });

  it('is readied by preparePvdInfo without a lookup, a connection or a request, and fetches with that context after', async () => {
    const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TLSWrap').length;
    await new Promise((r) => setTimeout(r, 100)); // the last test's sockets closed
    const before = sockets();
    let asked = 0;
    await preparePvdInfo(() => (asked++, context)); // its request has failed at its own lookup
    await new Promise((r) => setImmediate(r));
    expect(asked).toBe(1);
    expect(sockets()).toBe(before);
    expect(seen).toEqual([]);
    expect(typeof (await fetchPvdInfo(ID, opts()))).toBe('object');
    // A later call gets the context again: a reload may bring a new CA.
    await preparePvdInfo(() => (asked++, context));
    expect(asked).toBe(2);
  });

  it('connects from the local address it is given', async () => {
    expect(typeof (await fetchPvdInfo(ID, opts({ localAddress: '127.0.0.2' })))).toBe('object');
    expect(seen[0]!.from).toBe('127.0.0.2');
  });

  it('refuses a certificate that does not name the PvD ID, and one from a CA it was not given', async () => {
    expect(await fetchPvdInfo('evil.example.com', opts())).toMatch(/^https:\/\/evil\.example\.com\/\.well-known\/pvd: .*(altnames|Hostname\/IP does not match)/);
    expect(await fetchPvdInfo(ID, opts({ secureContext: undefined }))).toMatch(/certificate/);
    expect(seen).toEqual([]);
  });

  it('fails when the lookup finds nothing or throws, never asking the system resolver', async () => {
    expect(await fetchPvdInfo(ID, opts({ lookup: async () => [] }))).toMatch(/cafe\.example\.com has no address through the PvD's servers/);
    expect(await fetchPvdInfo(ID, opts({ lookup: async () => Promise.reject(new Error('SERVFAIL')) }))).toMatch(/SERVFAIL/);
    expect(await fetchPvdInfo(ID, opts({ lookup: async () => ['::1'], localAddress: '127.0.0.1' }))).toMatch(/no IPv4 address/);
  });

  it('refuses other media types, HTTP errors, non-JSON and oversized objects', async () => {
    reply = () => json(GOOD, 'application/json');
    expect(await fetchPvdInfo(ID, opts())).toMatch(/content type "application\/json", not application\/pvd\+json/);
    reply = () => ({ status: 404 });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/HTTP 404$/);
    reply = () => ({ status: 200, headers: { 'content-type': 'application/pvd+json; charset=utf-8' }, body: '{"identifier":' });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/not JSON/);
    reply = () => json({ ...GOOD, pad: 'x'.repeat(70_000) });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/at most 65536 are read|over 65536 octets/);
  });

  it('follows redirects, to another name through the same lookup, and not forever', async () => {
    reply = (path) => (path === '/.well-known/pvd' ? { status: 302, headers: { location: `https://moved.example.com:${port}/pvd.json` } } : json(GOOD));
    expect(typeof (await fetchPvdInfo(ID, opts()))).toBe('object');
    expect(lookups).toEqual([ID, 'moved.example.com']);
    reply = () => ({ status: 301, headers: { location: '/.well-known/pvd' } });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/more than 5 redirects/);
    reply = () => ({ status: 302, headers: { location: 'http://cafe.example.com/' } });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/not an https URL/);
  });

  it('gives up after its timeout', async () => {
    reply = () => null;
    const t0 = Date.now();
    expect(await fetchPvdInfo(ID, opts({ timeoutMs: 300 }))).toMatch(/no answer within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('refuses an object that is not this PvD’s, has expired, or does not cover the advertised prefixes', async () => {
    reply = () => json({ ...GOOD, identifier: 'other.example.com' });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/"identifier" "other.example.com" is not the PvD ID cafe.example.com/);
    reply = () => json({ ...GOOD, expires: '2000-01-01T00:00:00Z' });
    expect(await fetchPvdInfo(ID, opts())).toMatch(/has passed/);
    reply = () => json(GOOD);
    expect(await fetchPvdInfo(ID, opts({ advertisedPrefixes: ['2001:db8:cafe::/64', '2001:db8:beef::/64'] }))).toMatch(/advertised prefix 2001:db8:beef::\/64 is inside none of its prefixes/);
  });
});

describe('readPvdInfo', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  it('needs the three mandatory keys, each valid (RFC 8801 §4.3)', () => {
    expect(readPvdInfo([], ID, now)).toBe('not a JSON object');
    expect(readPvdInfo({ identifier: ID, expires: FUTURE }, ID, now)).toMatch(/no "prefixes"/);
    expect(readPvdInfo({ identifier: 7, expires: FUTURE, prefixes: [] }, ID, now)).toMatch(/"identifier" 7 is not a domain name/);
    expect(readPvdInfo({ identifier: ID, expires: 'tomorrow', prefixes: [] }, ID, now)).toMatch(/not an RFC 3339/);
    expect(readPvdInfo({ identifier: ID, expires: FUTURE, prefixes: ['nope'] }, ID, now)).toMatch(/"prefixes" holds "nope"/);
    expect(readPvdInfo({ identifier: ID, expires: FUTURE, prefixes: [], dnsZones: 'a.example' }, ID, now)).toMatch(/"dnsZones" is not an array/);
    expect(readPvdInfo({ identifier: ID, expires: FUTURE, prefixes: [], noInternet: 'yes' }, ID, now)).toMatch(/noInternet/);
    expect(readPvdInfo({ identifier: ID, expires: FUTURE, prefixes: [], unknown: { x: 1 } }, ID, now)).toMatchObject({ dnsZones: [], noInternet: false });
  });
});

describe('uncoveredPrefixes', () => {
  it('lists the advertised prefixes no listed prefix covers', () => {
    expect(uncoveredPrefixes(['2001:db8:1:2::/64', '2001:db8:2::/64', '2001:db8::/32'], ['2001:db8:1::/48', '2001:db8:2::/64', '192.0.2.0/24'])).toEqual(['2001:db8::/32']);
  });
});
