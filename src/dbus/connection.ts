// A D-Bus connection of our own (D-Bus Specification: "Message Protocol",
// "Authentication Protocol", "Message Bus Specification"): pvdns follows
// systemd-resolved and NetworkManager on the system bus with it, and tests
// run fake services with it on a private bus. It speaks SASL EXTERNAL over a
// unix socket, sends little-endian, reads both byte orders, and answers
// method calls for objects it exports.
//
// pvdns is a daemon, so a peer must not be able to hurt it: garbage or a
// message over 128 MiB closes the connection with a one-line error (the
// 'close' event carries it), nothing throws out of a socket handler, at most
// one message is buffered, and every pending call has a timeout.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { DBusWireError, decodeMessage, encodeMessage, frameLength, MAX_MESSAGE, splitSignature, Variant, type DBusMessage } from './wire.js';

export { MAX_MESSAGE, type DBusMessage } from './wire.js';

/** DBusError is an error reply: `name` is the D-Bus error name, such as org.freedesktop.DBus.Error.ServiceUnknown. */
export class DBusError extends Error {
  override readonly name: string;
  constructor(name: string, message: string) {
    super(oneLine(message || name));
    this.name = name;
  }
}

/** A method call to make. */
export interface CallOptions {
  destination: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: unknown[];
  /** How long to wait for the reply; 5000 ms by default. */
  timeoutMs?: number;
}

/** What `onSignal` matches; every field given must be equal ("pathNamespace": the path or below it). */
export interface SignalFilter {
  /** A unique name (":1.5") or a well-known one, followed to its current owner. */
  sender?: string;
  path?: string;
  pathNamespace?: string;
  interface?: string;
  member?: string;
}

/** A method of an exported object: `in` and `out` are its signatures ("" when absent). */
export interface ExportedMethod {
  in?: string;
  out?: string;
  fn: (body: unknown[], m: DBusMessage) => unknown[] | Promise<unknown[]>;
}

/** A read-only property of an exported object: `get` gives its value, written as `signature`. */
export interface ExportedProperty {
  signature: string;
  get: () => unknown;
}

/** The implementation of one interface at one path. */
export interface ExportedInterface {
  methods?: Record<string, ExportedMethod>;
  properties?: Record<string, ExportedProperty>;
}

/** A well-known name followed for onSignal: its owner, how many subscriptions follow it, and signals held while its owner is asked for (null once known). */
interface OwnerEntry {
  owner: string;
  users: number;
  held: DBusMessage[] | null;
}
/** Signals held per name while its owner is asked for. */
const MAX_HELD = 64;

const NO_REPLY_EXPECTED = 0x1;
const BUS = 'org.freedesktop.DBus';
const BUS_PATH = '/org/freedesktop/DBus';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable';
const PEER = 'org.freedesktop.DBus.Peer';
const ERR = 'org.freedesktop.DBus.Error.';

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** systemBusAddress is where the system bus listens: $DBUS_SYSTEM_BUS_ADDRESS, or the spec's well-known default. */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.DBUS_SYSTEM_BUS_ADDRESS || 'unix:path=/run/dbus/system_bus_socket';
}

/**
 * socketPath picks the first entry of a ';'-separated address list that
 * names a unix socket to connect to (path= or abstract=; spec: "Server
 * Addresses"), as a path for net.connect ("\0name" for abstract sockets).
 */
export function socketPath(address: string): string {
  for (const entry of address.split(';')) {
    const colon = entry.indexOf(':');
    if (colon < 0 || entry.slice(0, colon) !== 'unix') continue;
    const keys = new Map<string, string>();
    for (const kv of entry.slice(colon + 1).split(',')) {
      const eq = kv.indexOf('=');
      if (eq < 0) continue;
      try {
        keys.set(kv.slice(0, eq), decodeURIComponent(kv.slice(eq + 1)));
      } catch {
        // a badly escaped value: this entry is unusable
      }
    }
    const path = keys.get('path');
    if (path) return path;
    const abstract = keys.get('abstract');
    if (abstract) return `\0${abstract}`;
  }
  throw new Error(`no usable D-Bus address in "${oneLine(address)}" (pvdns connects to unix:path= or unix:abstract=)`);
}

interface Pending {
  resolve: (body: unknown[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Subscription {
  filter: SignalFilter;
  fn: (m: DBusMessage) => void;
}

// The rule a connection adds to follow who owns a well-known name.
function ownerRule(name: string): string {
  return `type='signal',sender='${BUS}',path='${BUS_PATH}',interface='${BUS}',member='NameOwnerChanged',arg0='${name}'`;
}

/**
 * DBusConnection is one connection to a bus. Make one with `connect`; it
 * emits 'message' for every message it receives and 'close' once: with null
 * after `close()`, else with the error that ended it (the bus went away,
 * the peer sent garbage).
 */
export class DBusConnection extends EventEmitter<{ close: [err: Error | null]; message: [DBusMessage] }> {
  /** The name the bus gave this connection in answer to Hello (":1.42"). */
  uniqueName = '';
  private serial = 1;
  private closed = false;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Set<Subscription>();
  private readonly objects = new Map<string, Map<string, ExportedInterface>>();
  // Well-known names that onSignal filters follow: their owner ('' while unknown) and how many filters use them.
  private readonly owners = new Map<string, OwnerEntry>();
  // Received method calls whose caller wants no reply (flag NO_REPLY_EXPECTED).
  private readonly noReply = new WeakSet<DBusMessage>();
  // Received bytes not yet a whole message: at most one message.
  private chunks: Buffer[] = [];
  private buffered = 0;
  private needed = 0;

  private constructor(private readonly socket: net.Socket) {
    super();
  }

  /**
   * connect opens a connection: the first usable entry of the address, SASL
   * EXTERNAL as this process's uid, then Hello. It fails with a one-line
   * Error when any of that fails or takes longer than timeoutMs (5000).
   */
  static connect(address: string, opts: { timeoutMs?: number } = {}): Promise<DBusConnection> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    let path: string;
    try {
      path = socketPath(address);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const shown = path.startsWith('\0') ? `abstract socket ${path.slice(1)}` : path;
    return new Promise<DBusConnection>((resolve, reject) => {
      const socket = net.connect({ path });
      let settled = false;
      let conn: DBusConnection | null = null;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (conn) conn.close();
        else socket.destroy();
        reject(new Error(`D-Bus connection to ${shown} failed: ${oneLine(why)}`));
      };
      // Unref'd like every timer here: a bus that never answers must not keep a stopping process alive.
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs).unref();
      let line = '';
      const onAuth = (chunk: Buffer): void => {
        line += chunk.toString('latin1');
        if (line.length > 16384) return fail('the authentication reply is too long');
        const crlf = line.indexOf('\r\n');
        if (crlf < 0) return;
        const reply = line.slice(0, crlf);
        if (line.length > crlf + 2) return fail('the server spoke before BEGIN');
        socket.off('data', onAuth);
        if (!reply.startsWith('OK ')) return fail(`authentication refused (${reply.slice(0, 100)})`);
        conn = new DBusConnection(socket);
        conn.attach();
        const onEarlyClose = (err: Error | null): void => fail(err ? err.message : 'closed');
        conn.once('close', onEarlyClose);
        socket.write('BEGIN\r\n');
        conn
          .call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'Hello', timeoutMs })
          .then(([name]) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            conn!.uniqueName = String(name);
            conn!.off('close', onEarlyClose);
            resolve(conn!);
          })
          .catch((err: Error) => fail(`Hello: ${err.message}`));
      };
      socket.on('data', onAuth);
      socket.on('error', (err) => (conn ? undefined : fail(err.message)));
      socket.on('close', () => (conn ? undefined : fail('the bus closed the connection')));
      socket.on('connect', () => {
        // spec: "Authentication Protocol": a NUL byte, then AUTH EXTERNAL with the uid in ASCII decimal, hex-encoded.
        const uid = Buffer.from(String(process.getuid?.() ?? 0), 'ascii').toString('hex');
        socket.write(`\0AUTH EXTERNAL ${uid}\r\n`);
      });
    });
  }

  /** call makes a method call; it rejects with a DBusError on an error reply, with an Error on timeout or a closed connection. */
  call(opts: CallOptions): Promise<unknown[]> {
    if (this.closed) return Promise.reject(new Error('D-Bus connection is closed'));
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise<unknown[]>((resolve, reject) => {
      let serial: number;
      try {
        serial = this.send(
          {
            type: 'method_call',
            destination: opts.destination,
            path: opts.path,
            interface: opts.interface,
            member: opts.member,
            signature: opts.signature ?? '',
            body: opts.body ?? [],
          },
          0,
        );
      } catch (err) {
        reject(err as Error);
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        reject(new Error(`D-Bus call ${opts.interface}.${opts.member} to ${opts.destination} timed out after ${timeoutMs} ms`));
      }, timeoutMs).unref();
      this.pending.set(serial, { resolve, reject, timer });
    });
  }

  /** getProperty reads one property (org.freedesktop.DBus.Properties.Get), unwrapped from its variant. */
  async getProperty(destination: string, path: string, iface: string, name: string): Promise<unknown> {
    const [value] = await this.call({ destination, path, interface: PROPERTIES, member: 'Get', signature: 'ss', body: [iface, name] });
    return value;
  }

  /** getAllProperties reads an interface's properties (org.freedesktop.DBus.Properties.GetAll). */
  async getAllProperties(destination: string, path: string, iface: string): Promise<Record<string, unknown>> {
    const [all] = await this.call({ destination, path, interface: PROPERTIES, member: 'GetAll', signature: 's', body: [iface] });
    return all as Record<string, unknown>;
  }

  /** addMatch asks the bus for the messages a match rule describes (spec: "Match Rules"). */
  async addMatch(rule: string): Promise<void> {
    await this.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'AddMatch', signature: 's', body: [rule] });
  }

  /** removeMatch undoes one addMatch of the same rule. */
  async removeMatch(rule: string): Promise<void> {
    await this.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'RemoveMatch', signature: 's', body: [rule] });
  }

  /**
   * onSignal calls fn for each received signal the filter matches; it only
   * dispatches what arrives (the caller asks for it with addMatch). A
   * well-known sender is followed to its owner: the connection looks it up
   * and follows NameOwnerChanged itself; a signal that arrives while the
   * owner is being asked for is held and delivered once it is known to be
   * the owner's. Returns the unsubscribe.
   */
  onSignal(filter: SignalFilter, fn: (m: DBusMessage) => void): () => void {
    const sub: Subscription = { filter, fn };
    this.subs.add(sub);
    const name = filter.sender && !filter.sender.startsWith(':') && filter.sender !== BUS ? filter.sender : null;
    if (name) this.followOwner(name);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.subs.delete(sub);
      if (name) this.unfollowOwner(name);
    };
  }

  /** requestName takes a well-known name; it throws unless this connection becomes (or is) its primary owner. */
  async requestName(name: string): Promise<void> {
    // flags 4: DO_NOT_QUEUE. Replies: 1 primary owner, 2 in queue, 3 exists, 4 already owner.
    const [result] = await this.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'RequestName', signature: 'su', body: [name, 4] });
    if (result !== 1 && result !== 4) throw new Error(`D-Bus name ${name} is owned by another connection (RequestName answered ${String(result)})`);
    this.ownedNames.add(name);
  }

  /** Well-known names this connection took with requestName: method calls to them are answered. */
  private readonly ownedNames = new Set<string>();

  /**
   * exportObject answers method calls on (path, iface) with impl, and for
   * that path org.freedesktop.DBus.Properties (Get, GetAll; Set is refused),
   * Introspectable and Peer. An unknown method is an UnknownMethod error; a
   * DBusError thrown by a method is that error reply, anything else Failed.
   */
  exportObject(path: string, iface: string, impl: ExportedInterface): void {
    let ifaces = this.objects.get(path);
    if (!ifaces) this.objects.set(path, (ifaces = new Map()));
    ifaces.set(iface, impl);
  }

  /** emitSignal sends a signal (with NO_REPLY_EXPECTED); on a closed connection it is dropped. */
  emitSignal(path: string, iface: string, member: string, signature: string, body: unknown[]): void {
    if (this.closed) return;
    this.send({ type: 'signal', path, interface: iface, member, signature, body }, NO_REPLY_EXPECTED);
  }

  /** emitPropertiesChanged sends org.freedesktop.DBus.Properties.PropertiesChanged for iface at path. */
  emitPropertiesChanged(path: string, iface: string, changed: Record<string, Variant>, invalidated: string[] = []): void {
    this.emitSignal(path, PROPERTIES, 'PropertiesChanged', 'sa{sv}as', [iface, changed, invalidated]);
  }

  /** close ends the connection: pending calls reject, 'close' is emitted (with null). */
  close(): void {
    this.shutdown(null);
  }

  /**
   * noReplyExpected says whether a received method call's caller asked for
   * no reply (flag NO_REPLY_EXPECTED): a monitor knows then that none will
   * come (sd-bus sends none).
   */
  noReplyExpected(m: DBusMessage): boolean {
    return this.noReply.has(m);
  }

  /** Whether the connection is closed. */
  get isClosed(): boolean {
    return this.closed;
  }

  // -------------------------------------------------------------------------
  // Sending

  private nextSerial(): number {
    // Serials are non-zero uint32 and wrap; one still awaiting a reply is skipped.
    do {
      const s = this.serial;
      this.serial = s >= 0xffffffff ? 1 : s + 1;
      if (!this.pending.has(s)) return s;
    } while (true);
  }

  /** send writes a message and returns its serial; it throws (one line) when the message cannot be written. */
  private send(m: Omit<DBusMessage, 'serial'>, flags: number): number {
    const serial = this.nextSerial();
    const bytes = encodeMessage({ ...m, serial }, flags);
    this.socket.write(bytes);
    // A peer that does not read: stop before its backlog grows without bound.
    if (this.socket.writableLength > MAX_MESSAGE) this.shutdown(new Error('D-Bus peer is not reading (over 128 MiB unsent)'));
    return serial;
  }

  private reply(to: DBusMessage, signature: string, body: unknown[]): void {
    if (this.closed) return;
    this.send({ type: 'method_return', replySerial: to.serial, destination: to.sender, signature, body }, NO_REPLY_EXPECTED);
  }

  private replyError(to: DBusMessage, name: string, text: string): void {
    if (this.closed) return;
    this.send({ type: 'error', replySerial: to.serial, destination: to.sender, errorName: name, signature: 's', body: [oneLine(text)] }, NO_REPLY_EXPECTED);
  }

  // -------------------------------------------------------------------------
  // Receiving

  private onData(chunk: Buffer): void {
    try {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      while (!this.closed) {
        if (this.needed === 0) {
          if (this.buffered < 16) return;
          this.needed = frameLength(this.peek(16));
        }
        if (this.buffered < this.needed) return;
        const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
        const msg = all.subarray(0, this.needed);
        const rest = all.subarray(this.needed);
        this.chunks = rest.length ? [rest] : [];
        this.buffered = rest.length;
        this.needed = 0;
        const decoded = decodeMessage(msg);
        if (!decoded) continue; // a message type the spec says to ignore
        if (decoded.message.type === 'method_call' && decoded.flags & NO_REPLY_EXPECTED) this.noReply.add(decoded.message);
        this.dispatch(decoded.message);
      }
    } catch (err) {
      const why = err instanceof DBusWireError ? err.message : `unexpected: ${(err as Error).message}`;
      this.shutdown(new Error(`D-Bus peer sent an invalid message: ${oneLine(why)}`));
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!.subarray(0, n);
  }

  private dispatch(m: DBusMessage): void {
    this.guard(() => this.emit('message', m));
    switch (m.type) {
      case 'method_return':
      case 'error': {
        const p = this.pending.get(m.replySerial!);
        if (!p) return;
        this.pending.delete(m.replySerial!);
        clearTimeout(p.timer);
        if (m.type === 'method_return') p.resolve(m.body);
        else p.reject(new DBusError(m.errorName!, typeof m.body[0] === 'string' ? m.body[0] : ''));
        return;
      }
      case 'signal':
        this.onOwnerChanged(m);
        this.holdForOwner(m);
        for (const sub of [...this.subs]) if (this.matches(sub.filter, m)) this.guard(() => sub.fn(m));
        return;
      case 'method_call':
        // Only a call addressed to this connection is answered: one a monitor (BecomeMonitor) sees
        // is someone else's, and a monitor that sends anything is disconnected by the bus.
        if (m.destination === undefined || m.destination === this.uniqueName || this.ownedNames.has(m.destination)) void this.answer(m);
        return;
    }
  }

  /** guard runs a user callback: its exception is reported as a warning, never thrown into the socket handler. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      process.emitWarning(`D-Bus callback threw: ${oneLine((err as Error)?.message ?? String(err))}`);
    }
  }

  private matches(f: SignalFilter, m: DBusMessage): boolean {
    if (f.sender !== undefined && m.sender !== f.sender) {
      const owner = this.owners.get(f.sender)?.owner;
      if (!owner || m.sender !== owner) return false;
    }
    if (f.path !== undefined && m.path !== f.path) return false;
    if (f.pathNamespace !== undefined) {
      const ns = f.pathNamespace;
      if (!(m.path === ns || ns === '/' || m.path?.startsWith(`${ns}/`))) return false;
    }
    if (f.interface !== undefined && m.interface !== f.interface) return false;
    if (f.member !== undefined && m.member !== f.member) return false;
    return true;
  }

  // -------------------------------------------------------------------------
  // Following well-known senders

  private followOwner(name: string): void {
    const known = this.owners.get(name);
    if (known) {
      known.users++;
      return;
    }
    const entry: OwnerEntry = { owner: '', users: 1, held: [] };
    this.owners.set(name, entry);
    const lookup = async (): Promise<void> => {
      await this.addMatch(ownerRule(name));
      try {
        const [owner] = await this.call({ destination: BUS, path: BUS_PATH, interface: BUS, member: 'GetNameOwner', signature: 's', body: [name] });
        // A NameOwnerChanged that arrived meanwhile is newer than this answer.
        if (this.owners.get(name) === entry && entry.owner === '') entry.owner = String(owner);
      } catch (err) {
        if (!(err instanceof DBusError)) throw err; // NameHasNoOwner: '' until it gets one
      }
    };
    lookup()
      .catch(() => {
        // closed or timed out: signals from this name are not delivered until it changes hands
      })
      .finally(() => {
        // Signals that came while the owner was asked for go to this name's subscribers now, if the owner sent them.
        const held = entry.held ?? [];
        entry.held = null;
        if (this.owners.get(name) !== entry || entry.owner === '') return;
        for (const m of held) {
          if (m.sender !== entry.owner) continue;
          for (const sub of [...this.subs]) if (sub.filter.sender === name && this.matches(sub.filter, m)) this.guard(() => sub.fn(m));
        }
      });
  }

  /**
   * holdForOwner keeps a signal from a unique name while the owner of a
   * well-known name some subscriber follows is still being asked for: it may
   * be that owner's (a service signalling right after someone subscribed).
   * At most MAX_HELD a name.
   */
  private holdForOwner(m: DBusMessage): void {
    if (m.sender === undefined || !m.sender.startsWith(':')) return;
    for (const entry of this.owners.values()) if (entry.held !== null && entry.held.length < MAX_HELD) entry.held.push(m);
  }

  private unfollowOwner(name: string): void {
    const entry = this.owners.get(name);
    if (!entry || --entry.users > 0) return;
    this.owners.delete(name);
    if (!this.closed) this.removeMatch(ownerRule(name)).catch(() => {});
  }

  private onOwnerChanged(m: DBusMessage): void {
    if (m.sender !== BUS || m.interface !== BUS || m.member !== 'NameOwnerChanged' || m.signature !== 'sss') return;
    const entry = this.owners.get(m.body[0] as string);
    if (entry) entry.owner = m.body[2] as string;
  }

  // -------------------------------------------------------------------------
  // Answering method calls

  private async answer(m: DBusMessage): Promise<void> {
    const noReply = this.noReply.has(m);
    try {
      const [signature, body] = await this.handle(m);
      if (!noReply) this.reply(m, signature, body);
    } catch (err) {
      if (noReply || this.closed) return;
      try {
        if (err instanceof DBusError) this.replyError(m, err.name, err.message);
        else this.replyError(m, `${ERR}Failed`, (err as Error)?.message ?? String(err));
      } catch {
        // an error name that is not writable: the caller times out
      }
    }
  }

  private async handle(m: DBusMessage): Promise<[string, unknown[]]> {
    const ifaces = this.objects.get(m.path!);
    const member = m.member!;
    if (m.interface === PEER || (m.interface === undefined && (member === 'Ping' || member === 'GetMachineId'))) {
      if (member === 'Ping') return ['', []];
      if (member === 'GetMachineId') return ['s', [readFileSync('/etc/machine-id', 'utf8').trim()]];
    }
    if (m.interface === INTROSPECTABLE && member === 'Introspect') return ['s', [this.introspect(m.path!)]];
    if (!ifaces) throw new DBusError(`${ERR}UnknownObject`, `No object at path ${m.path}`);
    if (m.interface === PROPERTIES) return this.properties(ifaces, m);
    let impl: ExportedInterface | undefined;
    if (m.interface !== undefined) {
      impl = ifaces.get(m.interface);
      if (!impl) throw new DBusError(`${ERR}UnknownInterface`, `No interface ${m.interface} at ${m.path}`);
    } else {
      impl = [...ifaces.values()].find((i) => i.methods && Object.hasOwn(i.methods, member));
    }
    const method = impl?.methods && Object.hasOwn(impl.methods, member) ? impl.methods[member] : undefined;
    if (!method) throw new DBusError(`${ERR}UnknownMethod`, `No method ${member} in ${m.interface ?? 'any interface'} at ${m.path}`);
    if (m.signature !== (method.in ?? '')) throw new DBusError(`${ERR}InvalidArgs`, `${member} takes "${method.in ?? ''}", got "${m.signature}"`);
    const out = await method.fn(m.body, m);
    return [method.out ?? '', out];
  }

  private properties(ifaces: Map<string, ExportedInterface>, m: DBusMessage): [string, unknown[]] {
    const props = (name: string): Record<string, ExportedProperty> => {
      const impl = ifaces.get(name);
      if (!impl) throw new DBusError(`${ERR}UnknownInterface`, `No interface ${name} at ${m.path}`);
      return impl.properties ?? {};
    };
    switch (m.member) {
      case 'Get': {
        if (m.signature !== 'ss') throw new DBusError(`${ERR}InvalidArgs`, `Get takes "ss", got "${m.signature}"`);
        const [iface, name] = m.body as [string, string];
        const all = props(iface);
        const p = Object.hasOwn(all, name) ? all[name] : undefined;
        if (!p) throw new DBusError(`${ERR}UnknownProperty`, `No property ${name} in ${iface}`);
        return ['v', [new Variant(p.signature, p.get())]];
      }
      case 'GetAll': {
        if (m.signature !== 's') throw new DBusError(`${ERR}InvalidArgs`, `GetAll takes "s", got "${m.signature}"`);
        const out: Record<string, Variant> = {};
        for (const [name, p] of Object.entries(props(m.body[0] as string))) out[name] = new Variant(p.signature, p.get());
        return ['a{sv}', [out]];
      }
      case 'Set':
        throw new DBusError(`${ERR}PropertyReadOnly`, 'Properties of this object are read-only');
      default:
        throw new DBusError(`${ERR}UnknownMethod`, `No method ${m.member} in ${PROPERTIES}`);
    }
  }

  /** introspect is the minimal XML of an exported path: its interfaces' methods and properties, and its child nodes. */
  private introspect(path: string): string {
    const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
    const args = (sig: string | undefined, dir: string): string =>
      splitSignature(sig ?? '')
        .map((t) => `<arg type="${esc(t)}" direction="${dir}"/>`)
        .join('');
    const lines = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', '<node>'];
    const ifaces = this.objects.get(path);
    if (ifaces) {
      lines.push(
        `<interface name="${PROPERTIES}"><method name="Get"><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="out"/></method><method name="GetAll"><arg type="s" direction="in"/><arg type="a{sv}" direction="out"/></method><signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/><arg type="as"/></signal></interface>`,
        `<interface name="${INTROSPECTABLE}"><method name="Introspect"><arg type="s" direction="out"/></method></interface>`,
        `<interface name="${PEER}"><method name="Ping"/><method name="GetMachineId"><arg type="s" direction="out"/></method></interface>`,
      );
      for (const [name, impl] of ifaces) {
        lines.push(`<interface name="${esc(name)}">`);
        for (const [mname, meth] of Object.entries(impl.methods ?? {})) lines.push(`<method name="${esc(mname)}">${args(meth.in, 'in')}${args(meth.out, 'out')}</method>`);
        for (const [pname, p] of Object.entries(impl.properties ?? {})) lines.push(`<property name="${esc(pname)}" type="${esc(p.signature)}" access="read"/>`);
        lines.push('</interface>');
      }
    }
    const prefix = path === '/' ? '/' : `${path}/`;
    const children = new Set<string>();
    for (const p of this.objects.keys()) if (p !== path && p.startsWith(prefix)) children.add(p.slice(prefix.length).split('/')[0]!);
    for (const c of children) lines.push(`<node name="${esc(c)}"/>`);
    lines.push('</node>');
    return lines.join('\n');
  }

  // -------------------------------------------------------------------------

  private shutdown(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.chunks = [];
    this.buffered = 0;
    const why = new Error(err ? `D-Bus connection closed: ${err.message}` : 'D-Bus connection closed');
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(why);
    }
    this.pending.clear();
    this.guard(() => this.emit('close', err));
  }

  /** attach takes the socket over once authenticated: its bytes are messages, its end is the connection's. */
  private attach(): void {
    this.socket.on('data', (c: Buffer) => this.onData(c));
    this.socket.on('error', (err) => this.shutdown(new Error(`socket error: ${oneLine(err.message)}`)));
    // Only close() closes with null: the bus going away is an error pvdns reports.
    this.socket.on('close', () => this.shutdown(new Error('the bus closed the connection')));
  }
}
