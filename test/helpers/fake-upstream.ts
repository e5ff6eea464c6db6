// FakeUpstream: a DNS server on a 127.0.0.x address (UDP and TCP on one
// port) that answers as a test scripts it and records every query it saw —
// so a test can prove which PvD's server was asked, and that others were not.

import dgram from 'node:dgram';
import net from 'node:net';
import { Packet } from 'dns2';
import type DNS from 'dns2';

export type Resource = DNS.Packet.Resource;
export type Question = DNS.Packet.Question;

export type Transport = 'udp' | 'tcp';

export interface Seen {
  name: string;
  type: number;
  transport: Transport;
  id: number;
  packet: Packet;
  raw: Buffer;
  /** The querier's source address and port. */
  from: string;
  port: number;
}

/** What a responder returns: a packet or raw octets to send, or null to stay silent. */
export type Response = Packet | Buffer | null;
export type Responder = (q: Packet, ctx: { transport: Transport; raw: Buffer; seen: Seen }) => Response | Promise<Response>;

export class FakeUpstream {
  readonly seen: Seen[] = [];
  /**
   * The RFC 7050 discovery queries (AAAA ipv4only.arpa) pvdns sends each PvD
   * with dns64: auto, kept apart from `seen` so tests of other things see
   * only their own queries. They are answered as a network would: with these
   * addresses (a DNS64), or NODATA (null: no DNS64).
   */
  readonly discoveries: Seen[] = [];
  dns64Answer: { addresses: string[]; ttl: number } | null = null;
  /**
   * Set to make a split-DNS server (a VPN's): a question for a name outside
   * these zones, ipv4only.arpa and captive probes included, is answered
   * REFUSED (and recorded as any other) before `respond` sees it.
   */
  owns: string[] | null = null;
  private udp: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  host = '';
  port = 0;

  constructor(public respond: Responder = (q) => answer(q, [a(q, '192.0.2.1')])) {}

  async start(host: string, port = 0): Promise<this> {
    for (let tries = 0; ; tries++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((res, rej) => {
        udp.once('error', rej);
        udp.bind({ address: host, port }, () => res());
      });
      const bound = udp.address().port;
      const tcp = net.createServer((s) => this.serveTcp(s));
      const ok = await new Promise<boolean>((res) => {
        tcp.once('error', () => res(false));
        tcp.listen({ host, port: bound }, () => res(true));
      });
      if (ok) {
        this.udp = udp;
        this.tcp = tcp;
        this.host = host;
        this.port = bound;
        break;
      }
      udp.close();
      if (tries > 20) throw new Error(`no free port on ${host} for UDP and TCP`);
    }
    this.udp.on('message', (msg, rinfo) => {
      void this.handle(msg, 'udp', rinfo.address, rinfo.port).then((out) => {
        if (out) this.udp?.send(out, rinfo.port, rinfo.address);
      });
    });
    return this;
  }

  /** address is "host:port", as a PvD's dnsServers entry. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** names lists the lower-cased names asked, in order. */
  names(): string[] {
    return this.seen.map((s) => s.name.toLowerCase());
  }

  /** sendFrom lets a test send arbitrary datagrams from this server's own address and port. */
  sendFrom(msg: Buffer, port: number, host = '127.0.0.1'): void {
    this.udp?.send(msg, port, host);
  }

  private async handle(raw: Buffer, transport: Transport, from: string, port: number): Promise<Buffer | null> {
    let packet: Packet;
    try {
      packet = Packet.parse(raw);
    } catch {
      return null;
    }
    const q = packet.questions[0];
    const seen: Seen = { name: q?.name ?? '', type: q?.type ?? 0, transport, id: packet.header.id, packet, raw, from, port };
    const lower = seen.name.toLowerCase();
    if (this.owns !== null && !this.owns.some((z) => lower === z || lower.endsWith(`.${z}`))) {
      (q?.type === Packet.TYPE.AAAA && lower === 'ipv4only.arpa' ? this.discoveries : this.seen).push(seen);
      return answer(packet, [], { rcode: 5 }).toBuffer();
    }
    if (q?.type === Packet.TYPE.AAAA && q.name.toLowerCase() === 'ipv4only.arpa') {
      this.discoveries.push(seen);
      const d = this.dns64Answer;
      const records = (d?.addresses ?? []).map((address) => ({ name: q.name, type: Packet.TYPE.AAAA, class: 1, ttl: d!.ttl, address }) as Resource);
      return answer(packet, records, { authorities: d ? [] : [soa('arpa', 3600, 3600)] }).toBuffer();
    }
    this.seen.push(seen);
    const r = await this.respond(packet, { transport, raw, seen });
    if (r === null) return null;
    return Buffer.isBuffer(r) ? r : r.toBuffer();
  }

  private serveTcp(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.handle(Buffer.from(msg), 'tcp', s.remoteAddress ?? '', s.remotePort ?? 0).then((out) => {
          if (!out || s.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          s.write(Buffer.concat([len, out]));
        });
      }
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => (this.udp ? this.udp.close(() => res()) : res()));
    await new Promise<void>((res) => (this.tcp ? this.tcp.close(() => res()) : res()));
    this.udp = null;
    this.tcp = null;
  }
}

/** answer builds the reply to `q` with the given answer records (and more sections via opts). */
export function answer(
  q: Packet,
  answers: Resource[],
  opts: { rcode?: number; authorities?: Resource[]; additionals?: Resource[]; tc?: boolean; aa?: boolean } = {},
): Packet {
  const p = new Packet();
  p.header.id = q.header.id;
  p.header.qr = 1;
  p.header.rd = q.header.rd;
  p.header.ra = 1;
  p.header.aa = opts.aa ? 1 : 0;
  p.header.tc = opts.tc ? 1 : 0;
  p.header.rcode = opts.rcode ?? 0;
  p.questions.push(...q.questions);
  p.answers.push(...answers);
  p.authorities.push(...(opts.authorities ?? []));
  p.additionals.push(...(opts.additionals ?? []));
  return p;
}

/** a is an A record for the question's name. */
export function a(q: Packet, address: string, ttl = 300, name = q.questions[0]!.name): Resource {
  return { name, type: Packet.TYPE.A, class: 1, ttl, address } as Resource;
}

/** soa is an SOA record for a negative answer. */
export function soa(zone: string, ttl: number, minimum: number): Resource {
  return {
    name: zone,
    type: Packet.TYPE.SOA,
    class: 1,
    ttl,
    primary: `ns.${zone}`,
    admin: `hostmaster.${zone}`,
    serial: 1,
    refresh: 3600,
    retry: 600,
    expiration: 86400,
    minimum,
  } as Resource;
}

export { Packet };
