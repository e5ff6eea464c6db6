// Launchers for the encrypted-DNS interop tests (encrypted.test.ts), beside
// servers.ts's: a throwaway PKI (test/helpers/pki.ts), Unbound serving
// DNS over TLS (RFC 7858, port 853) and DNS over HTTPS (RFC 8484, port 443)
// with one of its certificates, a recording listener that only notes what
// reaches a port (to prove nothing is sent in the clear), a slow
// authoritative server (to make answers come back out of order), and `ss`
// to count and kill TCP connections.
//
// The ports are the protocols' own (853, 443, 53) because the server forms
// under test imply them ("ADDR#NAME" is port 853); each test file therefore
// uses addresses no other test uses. Everything stays on loopback, and no
// Unbound here ever asks the root servers: "." is a refusing local zone and
// only the zones given are forwarded.

import dgram from 'node:dgram';
import { execFileSync, spawnSync } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import type { Leaf } from '../helpers/pki.js';
import {
  checkConfig,
  Daemon,
  loggedQueries,
  parseUnboundLog,
  program,
  requirePrograms,
  run,
  server,
  type Endpoint,
  type LoggedQuery,
  type Server,
} from './servers.js';

// ------------------------------------------------------------------ capability

/**
 * encryptedDnsMissing says why this machine cannot run the encrypted tests
 * (an Unbound built without OpenSSL or nghttp2, a dig older than 9.18), or
 * null when it can. A missing program is not a reason: requirePrograms names
 * its package instead.
 */
export function encryptedDnsMissing(): string | null {
  let unbound: string;
  let digVersion: string;
  try {
    unbound = execFileSync(program('unbound'), ['-V'], { encoding: 'utf8' });
    // dig -v prints its version on stderr.
    const v = spawnSync(program('dig'), ['-v'], { encoding: 'utf8' });
    digVersion = `${v.stdout}${v.stderr}`;
  } catch {
    return null;
  }
  if (!/OpenSSL/i.test(unbound)) return 'unbound is built without OpenSSL (no DNS over TLS)';
  if (!/with-libnghttp2/.test(unbound)) return 'unbound is built without libnghttp2 (no DNS over HTTPS)';
  const m = /DiG (\d+)\.(\d+)/.exec(digVersion);
  if (m && Number(m[1]) * 100 + Number(m[2]) < 918) return `dig ${m[1]}.${m[2]} has no +tls/+https (9.18 or later needed)`;
  return null;
}

// ------------------------------------------------------------------ PKI

// The throwaway PKI is test/helpers/pki.ts's, shared with the carriers' unit tests.
export { testPki, type Leaf, type LeafSpec, type TestPki } from '../helpers/pki.js';

// ------------------------------------------------------------------ unbound, encrypted

/** The DNS over TLS port (RFC 7858 §3.1) and the HTTPS port: the ones pvdns's server forms imply. */
export const DOT_PORT = 853;
export const DOH_PORT = 443;

export interface EncryptedUnboundOptions {
  /** Addresses to listen on (the first is the one dig checks readiness at). */
  hosts: string[];
  /** The certificate it serves. */
  leaf: Leaf;
  /** Serve DNS over TLS on port 853 (default true). */
  tls?: boolean;
  /** Serve DNS over HTTPS (HTTP/2) on port 443, path /dns-query (default true). */
  https?: boolean;
  /** Also serve cleartext UDP and TCP on port 53. */
  cleartext?: boolean;
  /** Zones unbound answers itself (local-zone static): zone → records in zone-file syntax. */
  localZones?: Record<string, string[]>;
  /** Zones unbound forwards over UDP: zone → the server. Nothing else is ever forwarded. */
  forwardZones?: Record<string, Endpoint>;
}

export interface EncryptedUnbound extends Server {
  /** Every query unbound received (log-queries), in order; needs `cleartext` (the marker query goes over port 53). */
  queries(): Promise<LoggedQuery[]>;
}

/**
 * startEncryptedUnbound runs unbound answering from local data (and the
 * forwarded zones) over DoT and DoH, and in the clear only when asked.
 * Unbound tells TLS and HTTPS interfaces apart by their port (tls-port,
 * https-port); `http-notls-downstream: no` keeps port 443 TLS-only.
 */
export async function startEncryptedUnbound(opts: EncryptedUnboundOptions): Promise<EncryptedUnbound> {
  requirePrograms('unbound', 'unbound-checkconf', 'dig');
  const d = new Daemon('unbound-tls');
  const host = opts.hosts[0]!;
  return d.guard(async () => {
    const logPath = join(d.dir, 'unbound.log');
    d.extraLogs.push(['unbound.log', logPath]);
    const ports = [...(opts.tls === false ? [] : [DOT_PORT]), ...(opts.https === false ? [] : [DOH_PORT]), ...(opts.cleartext ? [53] : [])];
    const local = Object.entries(opts.localZones ?? {}).flatMap(([zone, records]) => [
      `  local-zone: "${zone}." static`,
      // A record with quotes in it (TXT) is quoted with single quotes, as unbound.conf(5) allows.
      ...records.map((r) => (r.includes('"') ? `  local-data: '${r}'` : `  local-data: "${r}"`)),
    ]);
    // "." refuse: a name in no zone given is refused here, never looked up on the
    // Internet; a forwarded zone is "transparent" so that its forward-zone is used.
    const forwards = Object.entries(opts.forwardZones ?? {});
    const conf = d.file(
      'unbound.conf',
      `server:
  verbosity: 1
  use-syslog: no
  logfile: "${logPath}"
  log-queries: yes
  num-threads: 1
${opts.hosts.flatMap((h) => ports.map((p) => `  interface: ${h}@${p}`)).join('\n')}
  tls-port: ${DOT_PORT}
  https-port: ${DOH_PORT}
  http-endpoint: "/dns-query"
  http-notls-downstream: no
  tls-service-key: "${opts.leaf.key}"
  tls-service-pem: "${opts.leaf.cert}"
  do-ip4: yes
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  # a slow forwarded server is waited for, not given up on after 376 ms
  unknown-server-time-limit: 3000
  local-zone: "." refuse
${local.join('\n')}
${forwards.map(([zone]) => `  local-zone: "${zone}." transparent`).join('\n')}
  chroot: ""
  username: ""
  directory: "${d.dir}"
  pidfile: "${d.dir}/unbound.pid"
  prefetch: no

remote-control:
  control-enable: no
${forwards.map(([zone, at]) => `\nforward-zone:\n  name: "${zone}."\n  forward-addr: ${at.host}@${at.port}\n`).join('')}`,
    );
    await checkConfig('unbound-checkconf', conf);
    d.start(program('unbound'), ['-d', '-c', conf]);
    // Ready when it answers one of its own default local zones; +tls without +tls-ca does not check the certificate.
    const ready = opts.cleartext ? { at: { host, port: 53 }, args: [] } : opts.tls === false ? { at: { host, port: DOH_PORT }, args: ['+https'] } : { at: { host, port: DOT_PORT }, args: ['+tls'] };
    await d.waitReady(ready.at, [...ready.args, 'localhost', 'A'], (r) => r.status === 'NOERROR');
    return {
      ...server(d, { host, port: ports[0]! }),
      queries: () => {
        if (!opts.cleartext) throw new Error('queries() needs an unbound started with cleartext: true');
        return loggedQueries(d, { host, port: 53 }, logPath, parseUnboundLog);
      },
    };
  });
}

// ------------------------------------------------------------------ recording listener

/** What reached a recording listener. */
export interface Recorded {
  proto: 'udp' | 'tcp';
  from: string;
  /** The datagram, or the bytes a TCP connection sent (empty when it sent none). */
  bytes: number;
}

export interface Recorder extends Endpoint {
  /** Everything that reached it so far; a TCP connection is one entry (its bytes counted as they come). */
  readonly seen: Recorded[];
  close(): Promise<void>;
}

/**
 * startRecorder listens on UDP and TCP `host`:`port` and notes every
 * datagram and connection without answering: a query that reaches it was
 * sent in the clear.
 */
export async function startRecorder(host: string, port = 53): Promise<Recorder> {
  const seen: Recorded[] = [];
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, rinfo) => seen.push({ proto: 'udp', from: `${rinfo.address}:${rinfo.port}`, bytes: m.length }));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, host, () => resolve());
  });
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((s) => {
    const entry: Recorded = { proto: 'tcp', from: `${s.remoteAddress}:${s.remotePort}`, bytes: 0 };
    seen.push(entry);
    sockets.add(s);
    s.on('data', (b) => (entry.bytes += b.length));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, host, () => resolve());
  });
  return {
    host,
    port,
    seen,
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}

// ------------------------------------------------------------------ slow authoritative server

export interface SlowServer extends Endpoint {
  /** Queries received, by name (lower case, no final dot). */
  readonly received: Map<string, number>;
  close(): Promise<void>;
}

/** addressFor is the A record the slow server answers for `name`: 198.51.100.0/22 from a hash of the name. */
export function addressFor(name: string): string {
  let h = 0x811c9dc5;
  for (const c of name.toLowerCase().replace(/\.$/, '')) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `198.51.${100 + (h & 3)}.${(h >>> 2) & 255}`;
}

/**
 * startSlowServer is an authoritative UDP server for any name: it answers A
 * with addressFor(name), TTL 300, after `delayMs` when the name's first
 * label starts with "slow", at once otherwise; other types get an empty
 * NOERROR. Enough DNS for unbound to forward to.
 */
export async function startSlowServer(host: string, delayMs: number): Promise<SlowServer> {
  const received = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const s = dgram.createSocket('udp4');
  s.on('message', (q, rinfo) => {
    if (q.length < 12) return;
    // The question: labels from offset 12, then type and class.
    const labels: string[] = [];
    let at = 12;
    while (at < q.length && q[at]! !== 0) {
      labels.push(q.subarray(at + 1, at + 1 + q[at]!).toString('latin1'));
      at += 1 + q[at]!;
    }
    const end = at + 5;
    if (end > q.length) return;
    const name = labels.join('.').toLowerCase();
    received.set(name, (received.get(name) ?? 0) + 1);
    const isA = q.readUInt16BE(at + 1) === 1;
    const header = Buffer.from(q.subarray(0, end));
    header[2] = 0x84 | (q[2]! & 0x01); // QR, AA, RD copied
    header[3] = 0x00; // NOERROR
    header.writeUInt16BE(1, 4); // one question
    header.writeUInt16BE(isA ? 1 : 0, 6);
    header.writeUInt16BE(0, 8);
    header.writeUInt16BE(0, 10);
    const parts = [header];
    if (isA) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(300, 6);
      rr.writeUInt16BE(4, 10);
      addressFor(name).split('.').forEach((o, i) => (rr[12 + i] = Number(o)));
      parts.push(rr);
    }
    const reply = Buffer.concat(parts);
    const send = (): void => s.send(reply, rinfo.port, rinfo.address);
    if (!labels[0]?.toLowerCase().startsWith('slow')) return send();
    const t = setTimeout(() => {
      timers.delete(t);
      send();
    }, delayMs);
    timers.add(t);
  });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, host, () => resolve());
  });
  return {
    host,
    port: s.address().port,
    received,
    async close() {
      for (const t of timers) clearTimeout(t);
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

// ------------------------------------------------------------------ ss

/** connectionsTo counts the established TCP connections to `host`:`port` (any client on this machine). */
export async function connectionsTo(host: string, port: number): Promise<number> {
  const r = await run(program('ss'), ['-tnH', 'state', 'established', 'dst', host, 'dport', '=', String(port)]);
  if (r.code !== 0) throw new Error(`ss -tnH failed (exit ${r.code}): ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

/** killConnections destroys every TCP connection to `host`:`port` (ss -K: the kernel resets them). */
export async function killConnections(host: string, port: number): Promise<void> {
  const r = await run(program('ss'), ['-tnK', 'dst', host, 'dport', '=', String(port)]);
  if (r.code !== 0) throw new Error(`ss -K failed (exit ${r.code}; the kernel needs CONFIG_INET_DIAG_DESTROY): ${r.stderr}`);
}
