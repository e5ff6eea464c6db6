// Runs inside a test's network namespace (`ip netns exec NS node ns-dns.mjs`):
// fake DNS servers that answer every A query with their own answer (and
// every AAAA query with their IPv6 answer, when given one) and log each name
// they are asked, and a client that asks one name of pvdns at a
// steady pace and logs who answered. Every event is one JSON line on stdout
// with `t`, epoch milliseconds with sub-millisecond precision, so the test
// can lay them beside the times of its own commands.
//
//   node ns-dns.mjs --server NAME=ADDR:PORT=ANSWER[,ANSWER6] … [--client ADDR:PORT --name N --every MS [--unique]]
//
// ADDR may be IPv6, unbracketed ("2001:db8::1:53"). Without ANSWER6 every
// query, of whatever type, gets the A record. With --unique the client asks
// qK.N, K counting up: a server's log then says which query it was asked.

import dgram from 'node:dgram';

const now = () => performance.timeOrigin + performance.now();
const emit = (o) => process.stdout.write(`${JSON.stringify({ t: Math.round(now() * 1000) / 1000, ...o })}\n`);

/** The question's name, type and where it ends, from a query message. */
function question(msg) {
  const labels = [];
  let i = 12;
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i];
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  return { name: labels.join('.').toLowerCase(), type: i + 3 <= msg.length ? msg.readUInt16BE(i + 1) : 0, end: i + 5 };
}

/** Expands an IPv6 address to its 16 octets. */
function ipv6Bytes(address) {
  const [head, tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, k) => out.writeUInt16BE(parseInt(g, 16), 2 * k));
  return out;
}

/** An answer to an AAAA query: the question and one AAAA record (TTL 0). */
function reply6(msg, address) {
  const { end } = question(msg);
  const head = Buffer.from(msg.subarray(0, end));
  head[2] = 0x84 | (msg[2] & 0x01);
  head[3] = 0x80;
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(1, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(28, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(0, 6);
  rr.writeUInt16BE(16, 10);
  return Buffer.concat([head, rr, ipv6Bytes(address)]);
}

/** An answer to an A query: the question and one A record (TTL 0: every query goes upstream again). */
function reply(msg, address) {
  const { end } = question(msg);
  const head = Buffer.from(msg.subarray(0, end));
  head[2] = 0x84 | (msg[2] & 0x01); // QR, AA, RD copied
  head[3] = 0x80; // RA, NOERROR
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(1, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(1, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(0, 6);
  rr.writeUInt16BE(4, 10);
  address.split('.').forEach((b, k) => (rr[12 + k] = Number(b)));
  return Buffer.concat([head, rr]);
}

const args = process.argv.slice(2);
const opt = (k) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const sockets = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] !== '--server') continue;
  const [name, hostPort, answers] = args[i + 1].split('=');
  const [answer, answer6] = answers.split(',');
  const at = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, at);
  const port = Number(hostPort.slice(at + 1));
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (msg, rinfo) => {
    if (msg.length < 17) return;
    const q = question(msg);
    emit({ kind: 'asked', server: name, name: q.name, type: q.type });
    s.send(answer6 !== undefined && q.type === 28 ? reply6(msg, answer6) : reply(msg, answer), rinfo.port, rinfo.address);
  });
  await new Promise((res) => s.bind(port, host, res));
  sockets.push(s);
}

const name = opt('--name') ?? 'x.example';
const every = Number(opt('--every') ?? 10);
const target = opt('--client');
const unique = args.includes('--unique');
let asked = 0;
let timer = null;
if (target) {
  const at = target.lastIndexOf(':');
  const host = target.slice(0, at);
  const port = Number(target.slice(at + 1));
  const c = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const sent = new Map();
  let id = 0;
  c.on('message', (msg) => {
    const q = sent.get(msg.readUInt16BE(0));
    if (!q) return;
    sent.delete(msg.readUInt16BE(0));
    const rcode = msg[3] & 0x0f;
    const an = msg.readUInt16BE(6);
    // The last 4 bytes are the A record's address when there is one answer.
    const address = rcode === 0 && an > 0 ? [...msg.subarray(msg.length - 4)].join('.') : null;
    emit({ kind: 'answer', name: q.name, sentAt: q.t, rcode, address });
  });
  const ask = () => {
    id = (id + 1) & 0xffff;
    const qn = unique ? `q${++asked}.${name}` : name;
    const labels = qn.split('.');
    const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
    const msg = Buffer.concat([Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), qname, Buffer.from([0, 1, 0, 1])]);
    sent.set(id, { name: qn, t: now() });
    if (sent.size > 10_000) sent.clear();
    c.send(msg, port, host);
  };
  const loop = () => {
    ask();
    timer = setTimeout(loop, every);
  };
  loop();
  sockets.push(c);
}
emit({ kind: 'ready' });

// SIGTERM ends it (the harness spawns it with no standard input).
process.on('SIGTERM', () => {
  clearTimeout(timer);
  for (const s of sockets) s.close();
});
