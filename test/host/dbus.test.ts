// The D-Bus connection (src/dbus/connection.ts) against a real dbus-daemon:
// a private bus in a temp dir (never the host's system bus), our own fake
// service on it, and busctl and dbus-send as the other side, so what pvdns
// reads from systemd-resolved and NetworkManager is tested against the
// reference implementation rather than only against itself.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DBusConnection, DBusError, socketPath, systemBusAddress, type DBusMessage } from '../../src/dbus/connection.js';
import { encodeMessage, Variant } from '../../src/dbus/wire.js';

const run = promisify(execFile);
let dir = '';
const daemons: ChildProcess[] = [];
const conns: DBusConnection[] = [];

/** startBus runs a private, session-like dbus-daemon that allows everything; it resolves with its address. */
async function startBus(listen: string, name: string): Promise<{ address: string; daemon: ChildProcess }> {
  const config = join(dir, `${name}.conf`);
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>${listen}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );
  const daemon = spawn('dbus-daemon', [`--config-file=${config}`, '--print-address', '--nofork'], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemons.push(daemon);
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    daemon.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl).trim());
    });
    daemon.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    daemon.once('exit', (code) => reject(new Error(`dbus-daemon exited ${code}: ${err.trim()}`)));
    setTimeout(() => reject(new Error('dbus-daemon printed no address in 10 s')), 10_000);
  });
  return { address, daemon };
}

async function connect(address: string): Promise<DBusConnection> {
  const c = await DBusConnection.connect(address);
  conns.push(c);
  return c;
}

/** next resolves with the first message a subscription delivers (or fails after 5 s). */
function nextSignal(conn: DBusConnection, filter: Parameters<DBusConnection['onSignal']>[0]): Promise<DBusMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no signal within 5 s'));
    }, 5000);
    const off = conn.onSignal(filter, (m) => {
      clearTimeout(timer);
      off();
      resolve(m);
    });
  });
}

const SERVICE = 'org.pvdns.Test';
const PATH = '/org/pvdns/Test';
let bus: string;
let client: DBusConnection;
let service: DBusConnection;
let count = 7;
let release: (() => void) | null = null;

beforeAll(async () => {
  // Made here, not at import, so a file that fails to load leaves nothing behind.
  dir = mkdtempSync(join(tmpdir(), `pvdns-dbus-${process.pid}-`));
  bus = (await startBus(`unix:path=${join(dir, 'bus.sock')}`, 'main')).address;
  client = await connect(bus);
  service = await connect(bus);
  await service.requestName(SERVICE);
  service.exportObject(PATH, SERVICE, {
    methods: {
      Echo: { in: 's', out: 's', fn: ([s]) => [`${String(s)}!`] },
      Sum: { in: 'au', out: 't', fn: ([xs]) => [BigInt((xs as number[]).reduce((a, b) => a + b, 0))] },
      Refuse: {
        fn: () => {
          throw new DBusError('org.pvdns.Error.Refused', 'not today');
        },
      },
      Crash: {
        fn: () => {
          throw new Error('a bug\nover two lines');
        },
      },
      Hang: { fn: () => new Promise<unknown[]>((resolve) => (release = () => resolve([]))) },
    },
    properties: {
      Count: { signature: 'u', get: () => count },
      Servers: { signature: 'a(iay)', get: () => [[2, Buffer.from([192, 0, 2, 1])]] },
      Name: { signature: 's', get: () => 'eth0' },
    },
  });
});

afterAll(() => {
  release?.();
  for (const c of conns) c.close();
  for (const d of daemons) d.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('addresses', () => {
  it('takes the first usable entry of a list, unescaping values', () => {
    expect(socketPath('tcp:host=localhost,port=1;unix:path=/run/a%20b,guid=00')).toBe('/run/a b');
    expect(socketPath('unix:abstract=/tmp/dbus-x')).toBe('\0/tmp/dbus-x');
    expect(() => socketPath('tcp:host=localhost,port=1')).toThrow(/no usable D-Bus address in "tcp:host=localhost,port=1"/);
    expect(systemBusAddress({})).toBe('unix:path=/run/dbus/system_bus_socket');
    expect(systemBusAddress({ DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/x' })).toBe('unix:path=/x');
  });

  it('fails to connect with one line naming the socket', async () => {
    await expect(DBusConnection.connect(`unix:path=${join(dir, 'nobody.sock')}`)).rejects.toThrow(/^D-Bus connection to .*nobody\.sock failed: .*ENOENT[^\n]*$/);
  });
});

describe('a client on a private bus', () => {
  it('says Hello and lists names', async () => {
    expect(client.uniqueName).toMatch(/^:1\.\d+$/);
    const [names] = await client.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'ListNames' });
    expect(names).toEqual(expect.arrayContaining(['org.freedesktop.DBus', client.uniqueName, service.uniqueName, SERVICE]));
  });

  it('calls a fake service and reads its properties', async () => {
    expect(await client.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Echo', signature: 's', body: ['hi'] })).toEqual(['hi!']);
    expect(await client.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Sum', signature: 'au', body: [[1, 2, 3]] })).toEqual([6n]);
    expect(await client.getProperty(SERVICE, PATH, SERVICE, 'Count')).toBe(7);
    const all = await client.getAllProperties(SERVICE, PATH, SERVICE);
    expect({ ...all }).toEqual({ Count: 7, Servers: [[2, Buffer.from([192, 0, 2, 1])]], Name: 'eth0' });
    await client.call({ destination: SERVICE, path: PATH, interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
  });

  it('turns error replies into DBusError with their name', async () => {
    const call = (member: string, extra: Partial<Parameters<DBusConnection['call']>[0]> = {}) =>
      client.call({ destination: SERVICE, path: PATH, interface: SERVICE, member, ...extra }).then(
        () => null,
        (e: Error) => e,
      );
    const refused = await call('Refuse');
    expect(refused).toBeInstanceOf(DBusError);
    expect(refused).toMatchObject({ name: 'org.pvdns.Error.Refused', message: 'not today' });
    expect(await call('Crash')).toMatchObject({ name: 'org.freedesktop.DBus.Error.Failed', message: 'a bug over two lines' });
    expect(await call('Nope')).toMatchObject({ name: 'org.freedesktop.DBus.Error.UnknownMethod' });
    expect(await call('Echo', { signature: 'u', body: [1] })).toMatchObject({ name: 'org.freedesktop.DBus.Error.InvalidArgs' });
    expect(await call('Echo', { path: '/elsewhere' })).toMatchObject({ name: 'org.freedesktop.DBus.Error.UnknownObject' });
    expect(await call('Echo', { destination: 'org.pvdns.Nobody' })).toMatchObject({ name: 'org.freedesktop.DBus.Error.ServiceUnknown' });
    await expect(client.getProperty(SERVICE, PATH, SERVICE, 'Missing')).rejects.toMatchObject({ name: 'org.freedesktop.DBus.Error.UnknownProperty' });
  });

  it('refuses a name another connection owns', async () => {
    await expect(client.requestName(SERVICE)).rejects.toThrow(/org\.pvdns\.Test is owned by another connection/);
    await client.requestName('org.pvdns.Client');
    await client.requestName('org.pvdns.Client'); // already the owner: fine
  });

  it('times out a call nobody answers, with an Error (not a DBusError)', async () => {
    const started = Date.now();
    const err = await client.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Hang', timeoutMs: 300 }).catch((e: Error) => e);
    expect(err).not.toBeInstanceOf(DBusError);
    expect((err as Error).message).toMatch(/Hang to org\.pvdns\.Test timed out after 300 ms/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    release?.();
    // the late reply is dropped; the connection goes on
    expect(await client.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Echo', signature: 's', body: ['still'] })).toEqual(['still!']);
  });

  it('receives PropertiesChanged through addMatch and onSignal, a well-known sender followed to its owner', async () => {
    const rule = `type='signal',sender='${SERVICE}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='${PATH}'`;
    await client.addMatch(rule);
    const wrongPath = vi.fn();
    const offWrong = client.onSignal({ sender: SERVICE, path: '/other' }, wrongPath);
    // The owner lookup is under way: let it finish before the signal.
    await client.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
    const got = nextSignal(client, { sender: SERVICE, pathNamespace: '/org/pvdns', interface: 'org.freedesktop.DBus.Properties', member: 'PropertiesChanged' });
    await client.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
    count = 8;
    service.emitPropertiesChanged(PATH, SERVICE, { Count: new Variant('u', count) }, ['Servers']);
    const m = await got;
    expect(m.sender).toBe(service.uniqueName);
    expect(m.body[0]).toBe(SERVICE);
    expect({ ...(m.body[1] as object) }).toEqual({ Count: 8 });
    expect(m.body[2]).toEqual(['Servers']);
    expect(wrongPath).not.toHaveBeenCalled();
    offWrong();
    await client.removeMatch(rule);
  });
});

describe('a signal sent right after subscribing to a well-known sender', () => {
  it('is held while the owner is asked for, and delivered once it is known to be the owner\'s', async () => {
    const listener = await connect(bus);
    const rule = `type='signal',sender='${SERVICE}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'`;
    await listener.addMatch(rule);
    // No wait at all: the signal is on its way before the owner lookup (AddMatch, GetNameOwner) is done.
    const got = nextSignal(listener, { sender: SERVICE, member: 'PropertiesChanged' });
    service.emitPropertiesChanged(PATH, SERVICE, { Count: new Variant('u', 9) });
    const m = await got;
    expect(m.sender).toBe(service.uniqueName);
    expect({ ...(m.body[1] as object) }).toEqual({ Count: 9 });
    listener.close();
  });
});

describe('interop with busctl and dbus-send', () => {
  it('answers busctl call, get-property and introspect', async () => {
    const busctl = (...args: string[]) => run('busctl', [`--address=${bus}`, ...args], { timeout: 10_000 }).then((r) => r.stdout.trim());
    expect(await busctl('call', SERVICE, PATH, SERVICE, 'Echo', 's', 'from busctl')).toBe('s "from busctl!"');
    expect(await busctl('call', SERVICE, PATH, SERVICE, 'Sum', 'au', '3', '1', '2', '40')).toBe('t 43');
    expect(await busctl('get-property', SERVICE, PATH, SERVICE, 'Count')).toBe(`u ${count}`);
    expect(await busctl('get-property', SERVICE, PATH, SERVICE, 'Servers')).toBe('a(iay) 1 2 4 192 0 2 1');
    const introspected = await busctl('introspect', '--xml-interface', SERVICE, PATH);
    expect(introspected).toContain('<method name="Echo"><arg type="s" direction="in"/><arg type="s" direction="out"/></method>');
    const table = await busctl('introspect', SERVICE, PATH, SERVICE);
    expect(table).toMatch(/\.Count\s+property\s+u\s+\d+/);
    const err = await busctl('call', SERVICE, PATH, SERVICE, 'Refuse').catch((e: { stderr: string }) => e.stderr);
    expect(err).toMatch(/not today/);
  });

  it('receives signals sent by busctl emit and dbus-send', async () => {
    await client.addMatch(`type='signal',interface='org.pvdns.Interop'`);
    const fromBusctl = nextSignal(client, { interface: 'org.pvdns.Interop', member: 'Changed' });
    await run('busctl', [`--address=${bus}`, 'emit', '/org/pvdns/Interop', 'org.pvdns.Interop', 'Changed', 'sa{sv}', 'eth0', '2', 'Default', 'b', 'true', 'Scopes', 't', '3']);
    const a = await fromBusctl;
    expect(a.path).toBe('/org/pvdns/Interop');
    expect(a.body[0]).toBe('eth0');
    expect({ ...(a.body[1] as object) }).toEqual({ Default: true, Scopes: 3n });

    const fromDbusSend = nextSignal(client, { path: '/org/pvdns/Interop', interface: 'org.pvdns.Interop', member: 'Sent' });
    await run('dbus-send', [`--bus=${bus}`, '--type=signal', '/org/pvdns/Interop', 'org.pvdns.Interop.Sent', 'string:héllo', 'array:string:a,b', 'int32:-5']);
    expect((await fromDbusSend).body).toEqual(['héllo', ['a', 'b'], -5]);
  });

  it('sends signals dbus-monitor reads', async () => {
    const monitor = spawn('dbus-monitor', ['--address', bus, "type='signal',interface='org.pvdns.Out'"], { stdio: ['ignore', 'pipe', 'ignore'] });
    daemons.push(monitor);
    let out = '';
    monitor.stdout.on('data', (c: Buffer) => (out += c.toString()));
    // It is a monitor once it has given up its own name (NameLost).
    for (let i = 0; i < 50 && !out.includes('member=NameLost'); i++) await new Promise((r) => setTimeout(r, 100));
    service.emitSignal('/org/pvdns/Out', 'org.pvdns.Out', 'Ping', 'sav', ['x', [new Variant('u', 5), new Variant('s', 'y')]]);
    for (let i = 0; i < 50 && !out.includes('string "y"'); i++) await new Promise((r) => setTimeout(r, 100));
    monitor.kill();
    expect(out).toMatch(/signal .*path=\/org\/pvdns\/Out; interface=org\.pvdns\.Out; member=Ping/);
    expect(out).toMatch(/array \[\s+variant\s+uint32 5\s+variant\s+string "y"\s+\]/);
  });
});

describe('endings', () => {
  it('emits close and rejects pending calls when the bus goes away (abstract socket)', async () => {
    const { address, daemon } = await startBus(`unix:abstract=${join(dir, 'abstract')}`, 'abstract');
    expect(address).toMatch(/^unix:abstract=/);
    const a = await connect(address);
    const b = await connect(address);
    await b.requestName('org.pvdns.Slow');
    b.exportObject('/', 'org.pvdns.Slow', { methods: { Hang: { fn: () => new Promise<unknown[]>(() => {}) } } });
    const closed = new Promise<Error | null>((resolve) => a.once('close', resolve));
    const pending = a.call({ destination: 'org.pvdns.Slow', path: '/', interface: 'org.pvdns.Slow', member: 'Hang', timeoutMs: 60_000 }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 200));
    daemon.kill();
    expect((await closed)?.message).toBe('the bus closed the connection');
    expect(((await pending) as Error).message).toBe('D-Bus connection closed: the bus closed the connection');
    await expect(a.call({ destination: 'x.y', path: '/', interface: 'x.y', member: 'Z' })).rejects.toThrow('D-Bus connection is closed');
  });

  it('close() rejects pending calls and emits close with null', async () => {
    const c = await DBusConnection.connect(bus);
    const closed = new Promise<Error | null>((resolve) => c.once('close', resolve));
    const pending = c.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Hang', timeoutMs: 60_000 }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    expect(await closed).toBeNull();
    expect(((await pending) as Error).message).toBe('D-Bus connection closed');
    release?.();
  });

  /** Timers that keep the process alive (unref'd ones are not listed). */
  const refedTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it("keeps no process alive by a call's timeout or a connect's: their timers are unref'd", async () => {
    const c = await connect(bus);
    const before = refedTimers();
    const pending = c.call({ destination: SERVICE, path: PATH, interface: SERVICE, member: 'Hang', timeoutMs: 60_000 }).catch((e: Error) => e);
    const connecting = DBusConnection.connect(bus, { timeoutMs: 60_000 });
    expect(refedTimers()).toBe(before);
    (await connecting).close();
    c.close();
    expect(((await pending) as Error).message).toBe('D-Bus connection closed');
    release?.();
  });

  it('leaves nothing open when a connect fails midway: a bus that never answers, or one that stops after authenticating', async () => {
    for (const stage of ['silent', 'no Hello'] as const) {
      const path = join(dir, `half-${stage.length}.sock`);
      const closed = new Promise<void>((resolve) => {
        const server = net.createServer((s) => {
          s.on('data', (c: Buffer) => {
            if (stage === 'no Hello' && c.toString('latin1').includes('AUTH EXTERNAL')) s.write('OK 0123456789abcdef0123456789abcdef\r\n');
          });
          s.on('error', () => {});
          s.on('close', () => {
            server.close();
            resolve();
          });
        });
        server.listen(path);
      });
      await new Promise((r) => setTimeout(r, 20));
      const why = stage === 'silent' ? /no answer within 200 ms/ : /no answer within 200 ms|Hello/;
      await expect(DBusConnection.connect(`unix:path=${path}`, { timeoutMs: 200 })).rejects.toThrow(why);
      // The bus side sees the socket closed: the client kept nothing open.
      await closed;
    }
  });

  // A fake bus: authenticates, answers Hello, then sends what the test gives it.
  async function fakeBus(name: string, after: (s: net.Socket) => void): Promise<DBusConnection> {
    const path = join(dir, `${name}.sock`);
    const server = net.createServer((s) => {
      let stage = 0;
      s.on('data', (c: Buffer) => {
        const text = c.toString('latin1');
        if (stage === 0 && text.includes('AUTH EXTERNAL')) {
          stage = 1;
          s.write('OK 0123456789abcdef0123456789abcdef\r\n');
        } else if (stage === 1 && text.includes('BEGIN')) {
          stage = 2;
          s.write(encodeMessage({ type: 'method_return', serial: 1, replySerial: 1, sender: 'org.freedesktop.DBus', signature: 's', body: [':1.99'] }));
          setTimeout(() => after(s), 50);
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(path, r));
    const c = await DBusConnection.connect(`unix:path=${path}`);
    c.once('close', () => server.close());
    expect(c.uniqueName).toBe(':1.99');
    return c;
  }

  // A signal whose string's NUL is an "A".
  const unterminated = (): Buffer => {
    const m = encodeMessage({ type: 'signal', serial: 2, path: '/', interface: 'a.b', member: 'C', signature: 's', body: ['x'] });
    m[m.length - 1] = 0x41;
    return m;
  };

  it.each([
    ['garbage', Buffer.from('this is not D-Bus at all\r\n'), /^D-Bus peer sent an invalid message: byte order 0x74 is neither 'l' nor 'B'$/],
    ['a message over 128 MiB', Buffer.from('6c04010100000008010000000000000000', 'hex'), /over the 128 MiB limit/],
    ['a string that is not NUL-terminated', unterminated(), /not NUL-terminated/],
  ])('closes the connection with a clear error when the peer sends %s', async (name, bytes, why) => {
    const c = await fakeBus(`garbage-${name.length}`, (s) => s.write(bytes));
    const pending = c.call({ destination: 'a.b', path: '/', interface: 'a.b', member: 'C', timeoutMs: 60_000 }).catch((e: Error) => e);
    const err = await new Promise<Error | null>((resolve) => c.once('close', resolve));
    expect(err?.message).toMatch(why);
    expect(err?.message).not.toContain('\n');
    expect(((await pending) as Error).message).toMatch(/^D-Bus connection closed: D-Bus peer sent an invalid message/);
  });
});
