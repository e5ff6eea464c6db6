// DNS over TCP (RFC 7766, RFC 9210) as a client sees it: messages split over
// any number of segments, pipelined queries answered on the same connection
// as each is ready (out of order, each with its own ID), the idle timeout
// that spares connections still waiting for an answer, the cap on
// concurrent connections, and answers to a client that has half-closed.
// Back-pressure: a client that pipelines and never reads is stopped and
// dropped while others are served; a connection pvdns has closed frees its
// slot even if the client never closes its side, and nothing it sends then
// is forwarded.

import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeQuery, Packet, sendTcp } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { eventually, metricSum } from '../helpers/http.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One client connection kept open across several exchanges. */
class Conn {
  private buf = Buffer.alloc(0);
  private readonly queue: Buffer[] = [];
  private wake: (() => void) | null = null;
  closed = false;
  readonly whenClosed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const len = this.buf.readUInt16BE(0);
        this.queue.push(Buffer.from(this.buf.subarray(2, 2 + len)));
        this.buf = this.buf.subarray(2 + len);
      }
      this.wake?.();
    });
    this.whenClosed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  /** open connects; with `allowHalfOpen` the client's side stays open when pvdns closes its own. */
  static open(server: { host: string; port: number }, opts: { allowHalfOpen?: boolean } = {}): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: server.host, port: server.port, allowHalfOpen: opts.allowHalfOpen ?? false });
      const c = new Conn(s);
      open.add(c);
      s.once('connect', () => resolve(c));
      s.once('error', reject);
    });
  }

  /** send writes one message with its length prefix, in one write. */
  send(msg: Buffer): void {
    this.socket.write(Buffer.concat([u16(msg.length), msg]));
  }

  write(octets: Buffer): void {
    this.socket.write(octets);
  }

  /** reply resolves with the next reply, or null when none comes in time or the connection closes. */
  async reply(timeoutMs = 3000): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
    return this.queue.shift() ?? null;
  }

  /** closedWithin resolves true if the connection closes (by the peer) within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    if (this.closed) return true;
    return Promise.race([this.whenClosed.then(() => true), sleep(ms).then(() => false)]);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const open = new Set<Conn>();
afterEach(() => {
  for (const c of open) c.destroy();
  open.clear();
});

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function parsed(raw: Buffer | null | undefined): Packet {
  expect(raw, 'no reply').toBeTruthy();
  return Packet.parse(raw!);
}

/** The upstream: names starting "slow-" answer after 300 ms, "slower-" after 1200 ms; "big-" get 64 addresses (a reply of ~1 KiB). */
const up = new FakeUpstream(async (q) => {
  const name = q.questions[0]!.name.toLowerCase();
  if (name.startsWith('slower-')) await sleep(1200);
  else if (name.startsWith('slow-')) await sleep(300);
  if (name.startsWith('big-')) return answer(q, Array.from({ length: 64 }, (_, i) => a(q, `192.0.2.${i + 1}`)));
  return answer(q, [a(q, '192.0.2.53')]);
});

beforeAll(async () => {
  await up.start('127.0.0.43');
});
afterAll(async () => {
  await up.stop();
});

const pvdsConfig = () => ({
  upstream: { timeoutMs: 3000, attempts: 1 },
  pvds: [{ identifier: 'wifi', dnsServers: [up.address], default: true }],
});

describe('TCP framing and pipelining', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns(pvdsConfig());
  });
  afterAll(async () => {
    await pvdns.stop();
  });

  it('answers a query whose length prefix and message arrive in separate segments', async () => {
    // RFC 7766 §8: servers MUST NOT close a connection (or fail) because a read did not
    // return the whole message; the length and the message may arrive in pieces.
    const c = await Conn.open(pvdns.dns);
    const msg = makeQuery('split.example.net', 'A', { id: 0x5151 });
    c.write(u16(msg.length));
    await sleep(60);
    const cuts = [0, 5, 17, msg.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      c.write(msg.subarray(cuts[i], cuts[i + 1]));
      await sleep(60);
    }
    const r = parsed(await c.reply());
    expect(r.header.id).toBe(0x5151);
    expect(r.header.rcode).toBe(0);
    expect(r.questions[0]!.name).toBe('split.example.net');
    expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);
  });

  it('answers two queries cut at odd places: the length prefix split, the second glued to the first', async () => {
    // RFC 7766 §8: framing comes from the length prefix alone, never from segment boundaries.
    const c = await Conn.open(pvdns.dns);
    const m1 = makeQuery('glue-one.example.net', 'A', { id: 0x0101 });
    const m2 = makeQuery('glue-two.example.net', 'A', { id: 0x0202 });
    const stream = Buffer.concat([u16(m1.length), m1, u16(m2.length), m2]);
    const cuts = [0, 1, 2, 9, m1.length + 3, stream.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      c.write(stream.subarray(cuts[i], cuts[i + 1]));
      await sleep(50);
    }
    const replies = [parsed(await c.reply()), parsed(await c.reply())];
    const byId = new Map(replies.map((r) => [r.header.id, r.questions[0]!.name]));
    expect(byId).toEqual(
      new Map([
        [0x0101, 'glue-one.example.net'],
        [0x0202, 'glue-two.example.net'],
      ]),
    );
  });

  it('answers pipelined queries on the same connection as each is ready, out of order, each with its own ID', async () => {
    // RFC 7766 §6.2.1.1: servers MUST expect pipelined queries and SHOULD process them
    // concurrently; §7: responses may be sent out of order, matched by ID; §5: on the same
    // connection. The first name is slow upstream, so 2 and 3 come back before 1.
    const names = ['slow-pipe1.example.net', 'pipe2.example.net', 'pipe3.example.net'];
    const msgs = names.map((n, i) => makeQuery(n, 'A', { id: i + 1 }));
    const raw = await sendTcp(pvdns.dns, msgs, 5000); // one connection, all three written at once
    expect(raw).toHaveLength(3);
    const replies = raw.map((r) => Packet.parse(r));
    const ids = replies.map((r) => r.header.id);
    expect(ids.slice(0, 2).sort()).toEqual([2, 3]);
    expect(ids[2]).toBe(1);
    for (const r of replies) {
      expect(r.questions[0]!.name).toBe(names[r.header.id - 1]);
      expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);
    }
  });

  it('still answers a client that sent its query and half-closed the connection, then closes', async () => {
    // RFC 7766 §6.2.4: a client may close its sending side; the server answers what it was
    // asked. The upstream is slow, so the answer is not ready when the FIN arrives.
    const c = await Conn.open(pvdns.dns);
    c.send(makeQuery('slow-half.example.net', 'A', { id: 0x4a4a }));
    c.socket.end();
    const r = parsed(await c.reply(5000));
    expect(r.header.id).toBe(0x4a4a);
    expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);
    expect(await c.closedWithin(5000)).toBe(true);
  });
});

describe('TCP idle timeout (RFC 7766 §6.2.3)', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns({ ...pvdsConfig(), tcp: { idleTimeoutMs: 300 } });
  });
  afterAll(async () => {
    await pvdns.stop();
  });

  it('closes a connection that sends nothing', async () => {
    const c = await Conn.open(pvdns.dns);
    expect(await c.closedWithin(5000)).toBe(true);
  });

  it('closes a connection that trickles octets but never completes a message', async () => {
    // The idle timer restarts on a whole message, not on a segment (§6.2.3): a client
    // dribbling one octet at a time must not hold the connection open forever.
    const c = await Conn.open(pvdns.dns);
    c.write(u16(200));
    let stop = false;
    const trickle = (async () => {
      for (let i = 0; i < 60 && !stop && !c.closed; i++) {
        c.write(Buffer.from([0x41]));
        await sleep(100);
      }
    })();
    const closed = await c.closedWithin(5000);
    stop = true;
    await trickle;
    expect(closed).toBe(true);
  });

  it('keeps a connection open while its query waits for a slow upstream, answers it, then closes it', async () => {
    // A connection with a query in flight is not idle: the upstream takes 1200 ms, four idle timeouts.
    const c = await Conn.open(pvdns.dns);
    c.send(makeQuery('slower-idle.example.net', 'A', { id: 0x1d1e }));
    const raw = await c.reply(5000);
    expect(raw, 'the connection was closed before the answer came').not.toBeNull();
    const r = parsed(raw);
    expect(r.header.id).toBe(0x1d1e);
    expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);
    expect(await c.closedWithin(5000)).toBe(true);
  });
});

describe('TCP connection limit (tcp.maxConnections)', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns({ ...pvdsConfig(), tcp: { maxConnections: 2 } });
  });
  afterAll(async () => {
    await pvdns.stop();
  });

  const works = async (c: Conn, name: string, id: number): Promise<void> => {
    c.send(makeQuery(name, 'A', { id }));
    const r = parsed(await c.reply());
    expect(r.header.id).toBe(id);
    expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);
  };

  it('serves no third concurrent connection while the first two keep working', async () => {
    const c1 = await Conn.open(pvdns.dns);
    const c2 = await Conn.open(pvdns.dns);
    await works(c1, 'one.example.net', 1);
    await works(c2, 'two.example.net', 2);

    let c3: Conn | null = null;
    try {
      c3 = await Conn.open(pvdns.dns);
      c3.send(makeQuery('three.example.net', 'A', { id: 3 }));
    } catch {
      // refused outright: no service either
    }
    if (c3 !== null) {
      expect(await c3.reply(1500)).toBeNull();
      expect(await c3.closedWithin(3000)).toBe(true);
    }
    expect(up.names()).not.toContain('three.example.net');

    await works(c1, 'one-again.example.net', 11);
    await works(c2, 'two-again.example.net', 12);

    // Once a connection goes, its place is free again.
    c1.destroy();
    await c1.whenClosed;
    let served = false;
    for (let i = 0; i < 20 && !served; i++) {
      const c = await Conn.open(pvdns.dns);
      c.send(makeQuery('four.example.net', 'A', { id: 4 }));
      const raw = await c.reply(1000);
      served = raw !== null && Packet.parse(raw).header.id === 4;
      c.destroy();
      if (!served) await sleep(100);
    }
    expect(served).toBe(true);
  });
});

/** tcpQueries is how many queries pvdns has counted over TCP (pvdns_queries_total{transport="tcp"}). */
async function tcpQueries(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith('pvdns_queries_total{') && line.includes('transport="tcp"')) n += Number(line.split(' ').pop());
  return n;
}

const dropped = async (base: string, reason: string): Promise<number> => metricSum(base, `pvdns_tcp_connections_dropped_total{reason="${reason}"}`);

describe('TCP back-pressure: a client that pipelines and never reads', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns({ ...pvdsConfig(), tcp: { idleTimeoutMs: 2000 } });
  });
  afterAll(async () => {
    await pvdns.stop();
  });

  it('stops reading it, drops it, counts it, and keeps answering other clients', async () => {
    // Cached ~1 KiB answers to 40-octet queries: without back-pressure pvdns would read all
    // 40,000 queries and hold ~40 MiB of replies for a client that never takes them.
    const warm = await Conn.open(pvdns.dns);
    warm.send(makeQuery('big-pile.example.net', 'A', { id: 1 }));
    expect(parsed(await warm.reply()).answers).toHaveLength(64);
    const before = await tcpQueries(pvdns.http);

    const hog = await Conn.open(pvdns.dns);
    hog.socket.pause(); // never reads: its receive window fills, then pvdns's send buffer
    const one = Buffer.concat([u16(makeQuery('big-pile.example.net', 'A', { id: 2 }).length), makeQuery('big-pile.example.net', 'A', { id: 2 })]);
    const SENT = 40_000;
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => one));
    for (let i = 0; i < SENT / 1000; i++) hog.write(batch); // the client buffers what pvdns does not take

    // pvdns stops reading: far fewer queries are taken than were sent, and the count stops growing.
    await sleep(1000);
    const taken = (await tcpQueries(pvdns.http)) - before;
    expect(taken).toBeLessThan(SENT / 2);

    // Meanwhile another client is served, over TCP and over UDP.
    const other = await Conn.open(pvdns.dns);
    other.send(makeQuery('other.example.net', 'A', { id: 0x0777 }));
    const r = parsed(await other.reply());
    expect(r.header.id).toBe(0x0777);
    expect(r.answers.map((x) => x.address)).toEqual(['192.0.2.53']);

    // Over the cap past its grace (here the 2 s idle timeout), it is dropped and counted; the
    // client, paused, learns it on its next write.
    await eventually('the client to be dropped as slow', async () => (await dropped(pvdns.http, 'slow')) === 1, 6000);
    hog.write(one);
    expect(await hog.closedWithin(3000)).toBe(true);
    expect((await tcpQueries(pvdns.http)) - before).toBeLessThan(SENT / 2);

    other.send(makeQuery('after.example.net', 'A', { id: 0x0778 }));
    expect(parsed(await other.reply()).header.id).toBe(0x0778);
  });

  it('counts replies not yet sent toward tcp.maxPipelined: small replies that are never read stop reading too', async () => {
    // 40-octet replies: 100 of them are far below the octet cap, so only the pipelining
    // limit stops reading here. The kernel's buffers take a few hundred thousand replies
    // first, so send more than that.
    const before = await tcpQueries(pvdns.http);
    const hog = await Conn.open(pvdns.dns);
    hog.socket.pause();
    const q = makeQuery('small-pile.example.net', 'A', { id: 3, edns: false });
    const one = Buffer.concat([u16(q.length), q]);
    const SENT = 400_000;
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => one));
    for (let i = 0; i < SENT / 10_000; i++) hog.write(batch);
    await sleep(1500);
    const taken = (await tcpQueries(pvdns.http)) - before;
    expect(taken).toBeLessThan(SENT * 0.75);
    await sleep(500);
    expect((await tcpQueries(pvdns.http)) - before).toBe(taken);
    hog.destroy();
  });
});

describe('TCP connections pvdns has closed (idle timeout)', () => {
  let pvdns: Running;
  beforeAll(async () => {
    pvdns = await startPvdns({ ...pvdsConfig(), tcp: { idleTimeoutMs: 300, maxConnections: 3 } });
  });
  afterAll(async () => {
    await pvdns.stop();
  });

  it('forwards nothing that arrives after pvdns closed the connection for idleness', async () => {
    const c = await Conn.open(pvdns.dns, { allowHalfOpen: true });
    const ended = new Promise<void>((resolve) => c.socket.once('end', resolve));
    await Promise.race([ended, sleep(3000)]);
    expect(c.socket.readableEnded, 'pvdns did not close the idle connection').toBe(true);
    // The client's side is still open: it sends a query anyway.
    c.send(makeQuery('after-idle.example.net', 'A', { id: 0x1d1d }));
    await sleep(800);
    expect(up.names()).not.toContain('after-idle.example.net');
    expect(await c.reply(200)).toBeNull();
  });

  it('frees the slots of idle connections whose clients never close their side', async () => {
    // tcp.maxConnections is 3: three clients that go silent and ignore pvdns's FIN must not
    // deny TCP for good. pvdns destroys them a short grace after closing its side.
    const droppedBefore = await dropped(pvdns.http, 'unclosed');
    const silent = await Promise.all([0, 1, 2].map(() => Conn.open(pvdns.dns, { allowHalfOpen: true })));
    await sleep(300 + 2000 + 700); // idle timeout, then the grace
    let served = false;
    for (let i = 0; i < 20 && !served; i++) {
      const c = await Conn.open(pvdns.dns);
      c.send(makeQuery('slot-free.example.net', 'A', { id: 0x5105 }));
      const raw = await c.reply(500);
      served = raw !== null && Packet.parse(raw).header.id === 0x5105;
      c.destroy();
      if (!served) await sleep(200);
    }
    expect(served).toBe(true);
    expect((await dropped(pvdns.http, 'unclosed')) - droppedBefore).toBeGreaterThanOrEqual(silent.length);
  });
});
