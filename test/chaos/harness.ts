// The chaos suite's harness: pvdns, Unbound and dnsmasq started side by side,
// each a plain forwarder to its own FaultyUpstream, and one workload sent to
// all three at the same moments by clients that ask once and wait.
//
//   client ─▶ pvdns   127.0.0.224 ─▶ FaultyUpstream 127.0.0.221
//   client ─▶ Unbound 127.0.0.225 ─▶ FaultyUpstream 127.0.0.222
//   client ─▶ dnsmasq 127.0.0.226 ─▶ FaultyUpstream 127.0.0.223
//
// Each forwarder has its own upstream, so faults and counts are per
// forwarder; a Trial switches the same fault on all three at the same time.
// Everything is on loopback.

import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { startDnsmasq, startPvdnsCli, startUnbound, type Endpoint, type Server } from '../interop/servers.js';
import { expected, FaultyUpstream, type Expectation } from './faulty-upstream.js';
import { encodeQuery, parseReply, RCODE, TYPE, type Reply } from './wire.js';

export const PEERS = ['pvdns', 'Unbound', 'dnsmasq'] as const;
export type PeerName = (typeof PEERS)[number];

/** How long a client waits for its one query (and a TCP retry after TC=1) before it counts as unanswered. */
export const CLIENT_WAIT_MS = 3500;

const HOSTS: Record<PeerName, { up: string; fw: string }> = {
  pvdns: { up: '127.0.0.221', fw: '127.0.0.224' },
  Unbound: { up: '127.0.0.222', fw: '127.0.0.225' },
  dnsmasq: { up: '127.0.0.223', fw: '127.0.0.226' },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ client

export type Outcome = 'correct' | 'servfail' | 'other' | 'unanswered';

/** classify judges a reply against what the upstream's zone says is right. */
export function classify(r: Reply, exp: Expectation): Outcome {
  if (r.rcode === RCODE.SERVFAIL) return 'servfail';
  switch (exp.kind) {
    case 'address':
      return r.rcode === RCODE.NOERROR && r.addresses.includes(exp.address) ? 'correct' : 'other';
    case 'nxdomain':
      return r.rcode === RCODE.NXDOMAIN ? 'correct' : 'other';
    case 'nodata':
      return r.rcode === RCODE.NOERROR && r.addresses.length === 0 ? 'correct' : 'other';
  }
}

interface Pending {
  name: string;
  qtype: number;
  done: (o: { outcome: Outcome; reply: Reply | null; via: 'udp' | 'tcp' }) => void;
}

/**
 * Client asks one forwarder over UDP: a random ID, one send, no retry; a
 * reply with TC=1 is asked again over TCP (as a stub does) within the same
 * CLIENT_WAIT_MS. A reply that cannot be read counts as "other".
 */
export class Client {
  private sock: dgram.Socket | null = null;
  private readonly pending = new Map<number, Pending>();
  /** performance.now() by which each pending query must be answered. */
  private readonly deadlines = new Map<number, number>();

  constructor(readonly at: Endpoint) {}

  async start(): Promise<this> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((res, rej) => {
      sock.once('error', rej);
      sock.bind({ address: '127.0.0.1', port: 0 }, () => res());
    });
    sock.setRecvBufferSize(4 << 20);
    sock.on('error', () => undefined);
    sock.on('message', (msg) => this.onMessage(msg));
    this.sock = sock;
    return this;
  }

  ask(name: string, qtype: number): Promise<{ outcome: Outcome; reply: Reply | null; via: 'udp' | 'tcp' }> {
    const deadline = performance.now() + CLIENT_WAIT_MS;
    let id = randomBytes(2).readUInt16BE(0);
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    return new Promise((resolve) => {
      const entry: Pending = {
        name: name.toLowerCase(),
        qtype,
        done: (o) => {
          clearTimeout(timer);
          resolve(o);
        },
      };
      const timer = setTimeout(() => {
        // The ID may have gone to another query already (after TC=1 this one went on over TCP).
        if (this.pending.get(id) === entry) {
          this.pending.delete(id);
          this.deadlines.delete(id);
        }
        resolve({ outcome: 'unanswered', reply: null, via: 'udp' });
      }, CLIENT_WAIT_MS);
      this.pending.set(id, entry);
      // A TCP retry after TC=1 keeps the same deadline.
      this.deadlines.set(id, deadline);
      this.sock?.send(encodeQuery(id, name, qtype), this.at.port, this.at.host);
    });
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 2) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p) return;
    let r: Reply;
    try {
      r = parseReply(msg);
    } catch {
      this.finish(id, p, { outcome: 'other', reply: null, via: 'udp' });
      return;
    }
    if (r.name !== p.name || r.qtype !== p.qtype) return; // not the answer to this question: keep waiting
    if (!r.tc) {
      this.finish(id, p, { outcome: classify(r, expected(p.name, p.qtype)), reply: r, via: 'udp' });
      return;
    }
    const deadline = this.deadlines.get(id) ?? performance.now();
    this.pending.delete(id);
    this.deadlines.delete(id);
    void askTcp(this.at, p.name, p.qtype, deadline - performance.now()).then((t) =>
      p.done(t ? { outcome: classify(t, expected(p.name, p.qtype)), reply: t, via: 'tcp' } : { outcome: 'unanswered', reply: r, via: 'tcp' }),
    );
  }

  private finish(id: number, p: Pending, o: { outcome: Outcome; reply: Reply | null; via: 'udp' | 'tcp' }): void {
    this.pending.delete(id);
    this.deadlines.delete(id);
    p.done(o);
  }

  async stop(): Promise<void> {
    await new Promise<void>((res) => (this.sock ? this.sock.close(() => res()) : res()));
    this.sock = null;
  }
}

/** askTcp asks once over TCP within `ms`; null when nothing usable came back in time. */
function askTcp(at: Endpoint, name: string, qtype: number, ms: number): Promise<Reply | null> {
  if (ms <= 0) return Promise.resolve(null);
  return new Promise((resolve) => {
    const id = randomBytes(2).readUInt16BE(0);
    const q = encodeQuery(id, name, qtype);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    const s = net.connect({ host: at.host, port: at.port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const done = (r: Reply | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), ms);
    s.on('connect', () => s.write(Buffer.concat([len, q])));
    s.on('error', () => done(null));
    s.on('close', () => done(null));
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        try {
          done(parseReply(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        } catch {
          done(null);
        }
      }
    });
  });
}

// ------------------------------------------------------------------ peers

export interface Peer {
  name: PeerName;
  up: FaultyUpstream;
  server: Server;
  client: Client;
}

/** pvdnsConfig: default settings but for where it listens, no host PvDs, and one default PvD `up`. */
function pvdnsConfig(up: FaultyUpstream): string {
  return `listen: ["${HOSTS.pvdns.fw}:0"]
http: { listen: "${HOSTS.pvdns.fw}:0" }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
pvds:
  - identifier: up
    dnsServers: ["${up.address}"]
    default: true
`;
}

/** startPeers starts three upstreams and the three forwarders, each with default settings, and warms them up. */
export async function startPeers(): Promise<Peer[]> {
  const ups = await Promise.all(PEERS.map((p) => new FaultyUpstream().start(HOSTS[p].up)));
  const [pu, uu, du] = ups as [FaultyUpstream, FaultyUpstream, FaultyUpstream];
  const started = await Promise.allSettled([
    startPvdnsCli(pvdnsConfig(pu)),
    startUnbound({ host: HOSTS.Unbound.fw, forwardTo: { host: uu.host, port: uu.port } }),
    startDnsmasq([`--server=${du.host}#${du.port}`], HOSTS.dnsmasq.fw),
  ]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)));
    await Promise.all(ups.map((u) => u.stop()));
    throw (failed as PromiseRejectedResult).reason;
  }
  const servers = started.map((s) => (s as PromiseFulfilledResult<Server>).value);
  const peers: Peer[] = [];
  for (let i = 0; i < PEERS.length; i++) {
    peers.push({ name: PEERS[i]!, up: ups[i]!, server: servers[i]!, client: await new Client(servers[i]!).start() });
  }
  try {
    await warmUp(peers);
  } catch (err) {
    await stopPeers(peers);
    throw err;
  }
  return peers;
}

/**
 * warmUp waits until every forwarder answers a name through its upstream,
 * then a second more (pvdns's first captive-portal probe round and DNS64
 * discovery go out at start), and clears the upstreams' counts.
 */
async function warmUp(peers: Peer[]): Promise<void> {
  const tag = randomBytes(3).toString('hex');
  await Promise.all(
    peers.map(async (p) => {
      const deadline = performance.now() + 15_000;
      for (let i = 0; ; i++) {
        const r = await p.client.ask(`warm${i}-${tag}.chaos.test`, TYPE.A);
        if (r.outcome === 'correct') return;
        if (performance.now() > deadline) throw new Error(`${p.name} does not answer through its upstream (last: ${r.outcome})\n${p.server.logs()}`);
        await sleep(200);
      }
    }),
  );
  await sleep(1000);
  for (const p of peers) p.up.reset();
}

export async function stopPeers(peers: Peer[]): Promise<void> {
  await Promise.all(peers.map(async (p) => {
    await p.client.stop();
    await p.server.stop();
    await p.up.stop();
  }));
}

// ------------------------------------------------------------------ trials

export interface QueryRecord {
  group: string;
  name: string;
  qtype: number;
  /** Milliseconds since the trial began when the query was sent. */
  sentAt: number;
  outcome: Outcome;
  /** Milliseconds since the trial began when the outcome was known. */
  doneAt: number;
  via: 'udp' | 'tcp';
  /** The reply's RCODE, or -1 without a readable reply. */
  rcode: number;
}

interface Event {
  at: number;
  fn: () => void;
}

/**
 * Trial is one row's run: a timeline of queries (each sent to all three
 * forwarders at the same moment) and fault switches (on all three upstreams
 * at the same moment), played in real time.
 */
export class Trial {
  readonly tag = randomBytes(3).toString('hex');
  readonly results = new Map<PeerName, QueryRecord[]>();
  /** Named moments (ms since the trial began) as they really happened. */
  readonly marks = new Map<string, number>();
  private events: Event[] = [];
  private t0 = 0;
  private readonly outstanding: Array<Promise<void>> = [];

  constructor(readonly peers: Peer[]) {
    for (const p of peers) this.results.set(p.name, []);
  }

  now(): number {
    return performance.now() - this.t0;
  }

  /** toTrial turns a performance.now() stamp (e.g. an upstream's) into trial time. */
  toTrial(stamp: number): number {
    return stamp - this.t0;
  }

  /** at runs `fn` at `ms` and marks the moment under `mark` when given. */
  at(ms: number, fn: () => void, mark?: string): void {
    this.events.push({
      at: ms,
      fn: () => {
        if (mark) this.marks.set(mark, this.now());
        fn();
      },
    });
  }

  /** fault applies `fn` to every upstream at `ms`. */
  fault(ms: number, fn: (up: FaultyUpstream, peer: Peer) => void, mark?: string): void {
    this.at(ms, () => this.peers.forEach((p) => fn(p.up, p)), mark);
  }

  /** query sends (name, qtype) to every forwarder at `ms`. */
  query(ms: number, group: string, name: string, qtype: number = TYPE.A): void {
    this.events.push({ at: ms, fn: () => this.send(group, name, qtype) });
  }

  /** steady sends `qps` queries a second, evenly spaced, from `fromMs` to `toMs`; make(i) gives the i-th's queries. */
  steady(qps: number, fromMs: number, toMs: number, make: (i: number) => Array<[group: string, name: string, qtype: number]>): void {
    const gap = 1000 / qps;
    let i = 0;
    for (let t = fromMs; t < toMs; t += gap, i++) {
      const at = t;
      const index = i;
      this.events.push({ at, fn: () => make(index).forEach(([g, n, q]) => this.send(g, n, q)) });
    }
  }

  /** unique is the i-th unique name of a background mix: 70 % A, 20 % AAAA, 10 % NXDOMAIN (A). */
  unique(group: string, prefix: string): (i: number) => Array<[string, string, number]> {
    return (i) => {
      const k = i % 10;
      if (k === 9) return [[group, `nx${prefix}${i}-${this.tag}.chaos.test`, TYPE.A]];
      return [[group, `${prefix}${i}-${this.tag}.chaos.test`, k >= 7 ? TYPE.AAAA : TYPE.A]];
    };
  }

  private send(group: string, name: string, qtype: number): void {
    const sentAt = this.now();
    for (const p of this.peers) {
      const list = this.results.get(p.name)!;
      this.outstanding.push(
        p.client.ask(name, qtype).then((r) => {
          list.push({ group, name, qtype, sentAt, outcome: r.outcome, doneAt: this.now(), via: r.via, rcode: r.reply?.rcode ?? -1 });
        }),
      );
    }
  }

  /** run plays the timeline, then waits for every query's outcome. */
  async run(): Promise<void> {
    this.events.sort((a, b) => a.at - b.at);
    this.t0 = performance.now();
    let next = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = this.now();
        while (next < this.events.length && this.events[next]!.at <= now) this.events[next++]!.fn();
        if (next >= this.events.length) return resolve();
        setTimeout(tick, Math.min(5, Math.max(0, this.events[next]!.at - this.now())));
      };
      tick();
    });
    await Promise.all(this.outstanding);
    for (const list of this.results.values()) list.sort((a, b) => a.sentAt - b.sentAt);
  }
}

// ------------------------------------------------------------------ figures

export interface Shares {
  n: number;
  /** Percentages of n. */
  correct: number;
  servfail: number;
  unanswered: number;
  other: number;
  /** servfail + unanswered + other. */
  failing: number;
}

export function shares(records: QueryRecord[]): Shares {
  const n = records.length;
  const count = (o: Outcome): number => records.filter((r) => r.outcome === o).length;
  const pct = (k: number): number => (n === 0 ? 0 : (100 * k) / n);
  const correct = count('correct');
  return {
    n,
    correct: pct(correct),
    servfail: pct(count('servfail')),
    unanswered: pct(count('unanswered')),
    other: pct(count('other')),
    failing: pct(n - correct),
  };
}

export interface Recovery {
  /** Seconds from the end of the fault to the first moment after which every query succeeded. */
  seconds: number;
  /** True when queries still failed at the end of the observation: `seconds` is a lower bound. */
  censored: boolean;
}

/**
 * recovery is the seconds of failure after a fault ends at `fromMs`: over
 * the queries sent at or after `fromMs` (a steady probe, sorted by send
 * time), the time from `fromMs` to the sending of the first query of the
 * final unbroken run of correct answers. 0 when none of them failed; when
 * the last one failed too, the time to that last one, marked censored (it
 * was still failing when the observation ended).
 */
export function recovery(records: QueryRecord[], fromMs: number): Recovery {
  const after = records.filter((r) => r.sentAt >= fromMs);
  let last = -1;
  after.forEach((r, i) => {
    if (r.outcome !== 'correct') last = i;
  });
  if (last < 0) return { seconds: 0, censored: false };
  if (last === after.length - 1) return { seconds: (after[last]!.sentAt - fromMs) / 1000, censored: true };
  return { seconds: (after[last + 1]!.sentAt - fromMs) / 1000, censored: false };
}

export interface PeerFigures {
  shares: Shares;
  recovery?: Recovery;
}

/** One line of the table: a fault, what was measured, and each forwarder's figures. */
export interface Line {
  fault: string;
  measured: string;
  /** Compared against Unbound (false: reported only). */
  asserted: boolean;
  /** What the recovery figure means, when there is one. */
  recoveryNote?: string;
  per: Record<PeerName, PeerFigures>;
}

/** tolerance of a share comparison: one point, or one query when fewer than 100 were measured. */
export function tolerance(n: number): number {
  return Math.max(1, n > 0 ? 100 / n : 1);
}

/** RECOVERY_SLACK_S: how much slower than Unbound pvdns may recover before a test fails. */
export const RECOVERY_SLACK_S = 0.5;

/** compare lists how pvdns does worse than Unbound on a line, beyond noise. */
export function compare(line: Line): string[] {
  if (!line.asserted) return [];
  const p = line.per.pvdns;
  const u = line.per.Unbound;
  const out: string[] = [];
  const tol = tolerance(p.shares.n);
  if (p.shares.failing > u.shares.failing + tol) {
    out.push(`${line.fault} — ${line.measured}: pvdns fails ${fmt(p.shares.failing)} %, Unbound ${fmt(u.shares.failing)} % (tolerance ${fmt(tol)} points)`);
  }
  if (p.recovery && u.recovery && p.recovery.seconds > u.recovery.seconds + RECOVERY_SLACK_S) {
    out.push(`${line.fault} — ${line.measured}: pvdns still fails ${rec(p.recovery)} after the fault, Unbound ${rec(u.recovery)} (slack ${RECOVERY_SLACK_S} s)`);
  }
  return out;
}

function fmt(x: number): string {
  if (x === 0) return '0';
  if (x < 0.1) return x.toFixed(2);
  return x.toFixed(1);
}

function rec(r: Recovery): string {
  return r.seconds === 0 ? '0 s' : `${r.censored ? '≥ ' : ''}${r.seconds.toFixed(1)} s`;
}

/** cell is one forwarder's figures in the table: the failing share and its parts, and the seconds of failure after the fault. */
function cell(f: PeerFigures): string {
  const s = f.shares;
  const parts: string[] = [];
  if (s.servfail > 0) parts.push(`SERVFAIL ${fmt(s.servfail)}`);
  if (s.unanswered > 0) parts.push(`no reply ${fmt(s.unanswered)}`);
  if (s.other > 0) parts.push(`other ${fmt(s.other)}`);
  let out = '0 %';
  if (parts.length === 1) out = `${fmt(s.failing)} % ${parts[0]!.replace(/ [\d.]+$/, '')}`;
  if (parts.length > 1) out = `${fmt(s.failing)} % (${parts.join(', ')})`;
  if (f.recovery) out += `; ${rec(f.recovery)} after`;
  return out;
}

/** table renders the lines as one markdown table, pvdns / Unbound / dnsmasq side by side. */
export function table(lines: Line[], header: string): string {
  const rows = [
    '| fault at the upstream | what is measured | pvdns | Unbound | dnsmasq |',
    '|---|---|---|---|---|',
    ...lines.map((l) => `| ${l.fault} | ${l.measured}${l.asserted ? '' : ' (reported, not compared)'} | ${cell(l.per.pvdns)} | ${cell(l.per.Unbound)} | ${cell(l.per.dnsmasq)} |`),
  ];
  return `${header}\n\n${rows.join('\n')}\n`;
}
