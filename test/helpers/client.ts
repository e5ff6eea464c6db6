// A real DNS client for tests: dns2 builds and reads the messages, node's
// dgram and net carry them, so pvdns is tested over its real sockets.

import dgram from 'node:dgram';
import net from 'node:net';
import { Packet } from 'dns2';
import type DNS from 'dns2';

export type Resource = DNS.Packet.Resource;
export type Question = DNS.Packet.Question;

export interface Server {
  host: string;
  port: number;
}

export interface AskOptions {
  /** false: no OPT; otherwise an OPT with this size and DO bit (default: 1232, DO off). */
  edns?: false | { udpSize?: number; do?: boolean };
  tcp?: boolean;
  /** Bind the client socket here (to test access control). */
  from?: string;
  id?: number;
  timeoutMs?: number;
  rd?: boolean;
  /** Set CD (checking disabled, RFC 4035 §3.2.2). */
  cd?: boolean;
}

/** makeQuery builds a query message. */
export function makeQuery(name: string, type: number | string = 'A', opts: AskOptions = {}): Buffer {
  const p = new Packet();
  p.header.id = opts.id ?? Math.floor(Math.random() * 65536);
  p.header.rd = opts.rd === false ? 0 : 1;
  (p.header as DNS.Packet.Header & { cd: number }).cd = opts.cd ? 1 : 0;
  p.questions.push({ name, type: typeof type === 'number' ? type : (Packet.TYPE as Record<string, number>)[type]!, class: 1 } as Question);
  if (opts.edns !== false) {
    const e = opts.edns ?? {};
    p.additionals.push(Packet.Resource.EDNS([], { udpPayloadSize: e.udpSize ?? 1232, doFlag: e.do ?? false }));
  }
  return p.toBuffer();
}

export interface Reply {
  packet: Packet;
  raw: Buffer;
}

/** ask sends one query and returns the parsed reply; rejects on timeout. */
export async function ask(server: Server, name: string, type: number | string = 'A', opts: AskOptions = {}): Promise<Reply> {
  const raw = await sendRaw(server, makeQuery(name, type, opts), opts);
  if (raw === null) throw new Error(`no reply for ${name} ${type} from ${server.host}:${server.port}`);
  return { packet: Packet.parse(raw), raw };
}

/** sendRaw sends octets and returns the first reply's octets, or null on timeout. */
export function sendRaw(server: Server, msg: Buffer, opts: { tcp?: boolean; from?: string; timeoutMs?: number } = {}): Promise<Buffer | null> {
  return opts.tcp ? sendTcp(server, [msg], opts.timeoutMs).then((r) => r[0] ?? null) : sendUdp(server, msg, opts);
}

function sendUdp(server: Server, msg: Buffer, opts: { from?: string; timeoutMs?: number }): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(null);
    }, opts.timeoutMs ?? 3000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.bind({ address: opts.from, port: 0 }, () => s.send(msg, server.port, server.host));
  });
}

/**
 * sendTcp writes messages on one connection (pipelined, or as the caller
 * frames them) and collects replies in arrival order until `count` arrive.
 */
export function sendTcp(server: Server, msgs: Buffer[], timeoutMs = 3000, count = msgs.length, raw = false): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const replies: Buffer[] = [];
    const s = net.connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(replies);
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('error', done);
    s.on('close', done);
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        replies.push(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        if (replies.length >= count) done();
      }
    });
    s.on('connect', () => {
      for (const m of msgs) {
        if (raw) s.write(m);
        else {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(m.length);
          s.write(Buffer.concat([len, m]));
        }
      }
    });
  });
}

/** opt returns the reply's OPT record, if any. */
export function opt(p: Packet): Resource | undefined {
  return p.additionals.find((r) => r.type === 41);
}

/** ede returns the reply's Extended DNS Error option, if any. */
export function ede(p: Packet): { infoCode: number; extraText: string } | undefined {
  const o = opt(p);
  return (o?.rdata as Array<{ ednsCode: number; infoCode: number; extraText: string }> | undefined)?.find((x) => x.ednsCode === 15);
}

export { Packet };
