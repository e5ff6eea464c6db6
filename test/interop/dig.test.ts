// pvdns, run as a user runs it (node dist/cli.js serve), in front of real DNS
// servers from Debian, and asked with Debian's dig:
//
//   dig ─▶ pvdns 127.0.0.84 ─┬─ PvD lab  (dnsZones interop.test)            ─▶ nsd     127.0.0.81
//                            ├─ PvD corp (corp.test, prefixes 10.1.0.0/16)  ─▶ dnsmasq 127.0.0.82
//                            └─ PvD wifi (default: names nobody claims)     ─▶ unbound 127.0.0.83 ─▶ nsd
//
// Which server saw a query is read from the servers themselves: dnsmasq's and
// unbound's query logs, and nsd's query counter (nsd has no query log).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dig,
  requirePrograms,
  startDnsmasq,
  startNsd,
  startPvdnsCli,
  startUnbound,
  withoutTtl,
  type DigResult,
  type Dnsmasq,
  type LoggedQuery,
  type Nsd,
  type PvdnsCli,
  type Unbound,
} from './servers.js';

/** Six TXT records of 250 octets each: about 1.5 KB, more than a 1232-octet UDP reply holds. */
const BIG_TXT = Array.from({ length: 6 }, (_, i) => `big TXT "part ${i} ${'abcdefghij'.repeat(24)}"`);

const INTEROP_ZONE = [
  '$ORIGIN interop.test.',
  '$TTL 300',
  '@ SOA ns hostmaster 1 3600 600 86400 300',
  '@ NS ns',
  'ns A 127.0.0.81',
  'www A 192.0.2.10',
  'www AAAA 2001:db8::10',
  'alias CNAME alias2', // alias → alias2 → www: a CNAME chain
  'alias2 CNAME www',
  '@ MX 10 mail',
  'mail A 192.0.2.25',
  'opaque TYPE65280 \\# 4 deadbeef', // a type nobody knows (RFC 3597 §5)
  'cached A 192.0.2.30', // asked only by the cache test
  ...BIG_TXT,
  '',
].join('\n');

let nsd: Nsd | undefined;
let dnsmasq: Dnsmasq | undefined;
let unbound: Unbound | undefined;
let pvdns: PvdnsCli | undefined;

beforeAll(async () => {
  requirePrograms('dig', 'nsd', 'nsd-checkconf', 'nsd-control', 'unbound', 'unbound-checkconf', 'dnsmasq');
  nsd = await startNsd({ 'interop.test': INTEROP_ZONE }, '127.0.0.81');
  // corp's server knows every name under corp.test, and one reverse name.
  dnsmasq = await startDnsmasq(['--address=/corp.test/10.1.2.3', '--ptr-record=3.2.1.10.in-addr.arpa,gw.corp.test'], '127.0.0.82');
  // wifi's server answers wifi.test itself and forwards the rest to nsd (never to the root servers).
  unbound = await startUnbound({
    host: '127.0.0.83',
    forwardTo: nsd,
    localZones: { 'wifi.test': ['www.wifi.test. 300 IN A 192.0.2.80'] },
  });
  pvdns = await startPvdnsCli(`
listen: ["127.0.0.84:0"]
http: { listen: null }
log: { level: debug }          # a line per query, shown when a test fails
pvdSources: { host: false }    # no PvD from /etc/resolv.conf
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
upstream: { timeoutMs: 1000, attempts: 1 }
# dns64 off: the servers' query logs and counters then show only the tests'
# queries (dns64.test.ts covers RFC 7050 discovery against these programs).
pvds:
  - identifier: lab
    dnsServers: ["${nsd.host}:${nsd.port}"]
    dnsZones: [interop.test]
    noInternet: true
    dns64: "off"
  - identifier: corp
    dnsServers: ["${dnsmasq.host}:${dnsmasq.port}"]
    dnsZones: [corp.test]
    prefixes: ["10.1.0.0/16"]
    noInternet: true
    dns64: "off"
  - identifier: wifi
    dnsServers: ["${unbound.host}:${unbound.port}"]
    default: true
    dns64: "off"
`);
});

afterAll(async () => {
  await Promise.all([pvdns?.stop(), unbound?.stop(), dnsmasq?.stop(), nsd?.stop()]);
});

/** ask asks pvdns; when dig gets no reply at all, the error shows pvdns's log too. */
async function ask(...args: string[]): Promise<DigResult> {
  try {
    return await dig(pvdns!, args);
  } catch (err) {
    throw new Error(`${(err as Error).message}${deaths()}${pvdns!.logs()}`);
  }
}

/** deaths names the servers that are no longer running: a test run after that cannot be trusted. */
function deaths(): string {
  return [nsd, dnsmasq, unbound]
    .filter((s) => s?.exited())
    .map((s) => `\n  !! ${s!.name} is no longer running (${JSON.stringify(s!.exited())})`)
    .join('');
}

/** why is the message shown when an assertion on a dig reply fails: the command, its output, pvdns's log. */
const why = (r: DigResult): string => `${r.command}\n${r.text}${deaths()}${pvdns!.logs()}`;

const named = (queries: LoggedQuery[], name: string): LoggedQuery[] => queries.filter((q) => q.name === name);

describe('answers from nsd come through pvdns unchanged', () => {
  // [name, type, the answer section nsd gives (TTLs left out)]
  const cases: Array<[string, string, string[]]> = [
    ['www.interop.test', 'A', ['www.interop.test. IN A 192.0.2.10']],
    ['www.interop.test', 'AAAA', ['www.interop.test. IN AAAA 2001:db8::10']],
    // RFC 1034 §3.6.2, §4.3.2: the chain and the final address, in order.
    [
      'alias.interop.test',
      'A',
      ['alias.interop.test. IN CNAME alias2.interop.test.', 'alias2.interop.test. IN CNAME www.interop.test.', 'www.interop.test. IN A 192.0.2.10'],
    ],
    ['interop.test', 'MX', ['interop.test. IN MX 10 mail.interop.test.']],
    // RFC 3597 §3, §5: an unknown type passes as opaque octets; dig shows them as "\# length hex".
    ['opaque.interop.test', 'TYPE65280', ['opaque.interop.test. IN TYPE65280 \\# 4 DEADBEEF']],
  ];
  const table = cases.flatMap(([name, type, want]) => [
    [name, type, 'UDP', want] as const,
    [name, type, 'TCP', want] as const, // RFC 7766: the same answers over TCP
  ]);

  it.each(table)('%s %s over %s', async (name, type, transport, want) => {
    const flags = transport === 'TCP' ? ['+tcp'] : [];
    const direct = await dig(nsd!, [name, type, ...flags]);
    expect(withoutTtl(direct.answer), `nsd itself: ${direct.text}`).toEqual(want);

    const r = await ask(name, type, ...flags);
    expect(r.status, why(r)).toBe(direct.status);
    expect(r.transport, why(r)).toBe(transport);
    expect(withoutTtl(r.answer), why(r)).toEqual(withoutTtl(direct.answer));
  });
});

describe('a TXT RRset of about 1.5 KB (big.interop.test)', () => {
  it('over UDP with a 1232-octet buffer, the reply is truncated: TC=1 (RFC 6891 §6.2.5, RFC 2181 §9)', async () => {
    const r = await ask('big.interop.test', 'TXT', '+ignore', '+bufsize=1232');
    expect(r.flags, why(r)).toContain('tc');
    expect(r.msgSize, why(r)).toBeLessThanOrEqual(1232);
    expect(r.answer.length, why(r)).toBeLessThan(BIG_TXT.length);
  });

  it('plain dig retries over TCP and gets the whole RRset, as nsd serves it (RFC 7766 §5)', async () => {
    const direct = await dig(nsd!, ['big.interop.test', 'TXT', '+tcp']);
    expect(direct.answer).toHaveLength(BIG_TXT.length);

    const r = await ask('big.interop.test', 'TXT');
    expect(r.retriedOverTcp, why(r)).toBe(true);
    expect(r.transport, why(r)).toBe('TCP');
    expect(r.flags, why(r)).not.toContain('tc');
    expect(withoutTtl(r.answer), why(r)).toEqual(withoutTtl(direct.answer));
    expect(r.msgSize, why(r)).toBeGreaterThan(1300);
  });

  it('without EDNS, the truncated reply fits in 512 octets and has no OPT (RFC 1035 §4.2.1, RFC 6891 §7)', async () => {
    const r = await ask('big.interop.test', 'TXT', '+noedns', '+ignore');
    expect(r.flags, why(r)).toContain('tc');
    expect(r.msgSize, why(r)).toBeLessThanOrEqual(512);
    expect(r.opt, why(r)).toBeNull();
  });
});

// A claimed name goes only to the PvD that claims it; names nobody claims go
// to the default PvD (RFC 7556 §5.2.1, RFC 8801 §3.4.4).
describe('each name goes to the server of the PvD that owns it', () => {
  it('a corp.test name reaches dnsmasq, and neither unbound nor nsd', async () => {
    const nsdBefore = await nsd!.queryCount();
    const r = await ask('host1.corp.test', 'A');
    expect(r.status, why(r)).toBe('NOERROR');
    expect(withoutTtl(r.answer), why(r)).toEqual(['host1.corp.test. IN A 10.1.2.3']);
    expect(await nsd!.queryCount()).toBe(nsdBefore);
    expect(named(await dnsmasq!.queries(), 'host1.corp.test')).toMatchObject([{ type: 'A' }]);
    expect(named(await unbound!.queries(), 'host1.corp.test')).toEqual([]);
  });

  it('a corp.test name dnsmasq refuses is SERVFAIL naming corp, not asked of another PvD', async () => {
    // dnsmasq has no IPv6 address for corp.test and no upstream: it answers REFUSED.
    const nsdBefore = await nsd!.queryCount();
    const r = await ask('host2.corp.test', 'AAAA');
    expect(r.status, why(r)).toBe('SERVFAIL');
    expect(r.ede, why(r)).toMatch(/pvd corp\b/); // RFC 8914 Extended DNS Error
    expect(await nsd!.queryCount()).toBe(nsdBefore);
    expect(named(await dnsmasq!.queries(), 'host2.corp.test')).toMatchObject([{ type: 'AAAA' }]);
    expect(named(await unbound!.queries(), 'host2.corp.test')).toEqual([]);
  });

  it('interop.test names never reach dnsmasq or unbound', async () => {
    const r = await ask('www.interop.test', 'A');
    expect(withoutTtl(r.answer), why(r)).toEqual(['www.interop.test. IN A 192.0.2.10']);
    // Every interop.test query of this file so far went to nsd alone.
    const leaked = (qs: LoggedQuery[]): string[] => qs.map((q) => q.name).filter((n) => n === 'interop.test' || n.endsWith('.interop.test'));
    expect(leaked(await dnsmasq!.queries())).toEqual([]);
    expect(leaked(await unbound!.queries())).toEqual([]);
  });

  it('a name nobody claims goes to unbound, the server of the default PvD', async () => {
    const nsdBefore = await nsd!.queryCount();
    const r = await ask('www.wifi.test', 'A');
    expect(withoutTtl(r.answer), why(r)).toEqual(['www.wifi.test. IN A 192.0.2.80']);
    expect(await nsd!.queryCount()).toBe(nsdBefore); // unbound answered from its own zone
    expect(named(await unbound!.queries(), 'www.wifi.test')).toMatchObject([{ type: 'A' }]);
    expect(named(await dnsmasq!.queries(), 'www.wifi.test')).toEqual([]);
  });

  it('dig -x 10.1.2.3 goes to dnsmasq: corp owns 10.1.0.0/16, whose reverse zone beats RFC 6303\'s 10.in-addr.arpa', async () => {
    const r = await ask('-x', '10.1.2.3');
    expect(r.status, why(r)).toBe('NOERROR');
    expect(withoutTtl(r.answer), why(r)).toEqual(['3.2.1.10.in-addr.arpa. IN PTR gw.corp.test.']);
    expect(named(await dnsmasq!.queries(), '3.2.1.10.in-addr.arpa')).toMatchObject([{ type: 'PTR' }]);
    expect(named(await unbound!.queries(), '3.2.1.10.in-addr.arpa')).toEqual([]);
  });

  it('dig -x 192.168.7.7 is answered NXDOMAIN, authoritatively, by pvdns itself (RFC 6303 §3, §4.3)', async () => {
    const nsdBefore = await nsd!.queryCount();
    const r = await ask('-x', '192.168.7.7');
    expect(r.status, why(r)).toBe('NXDOMAIN');
    expect(r.flags, why(r)).toContain('aa');
    expect(r.answer, why(r)).toEqual([]);
    // RFC 2308 §3: the empty zone's SOA, so the NXDOMAIN can be cached.
    expect(r.authority.map((rr) => `${rr.name} ${rr.type}`), why(r)).toEqual(['168.192.in-addr.arpa. SOA']);
    expect(await nsd!.queryCount()).toBe(nsdBefore);
    expect(named(await dnsmasq!.queries(), '7.7.168.192.in-addr.arpa')).toEqual([]);
    expect(named(await unbound!.queries(), '7.7.168.192.in-addr.arpa')).toEqual([]);
  });
});

describe('localhost and EDNS, as dig sees them', () => {
  it('dig localhost: 127.0.0.1 and ::1 from pvdns itself (RFC 6761 §6.3)', async () => {
    // The servers' start-up checks asked them localhost too: count, don't look for none.
    const seen = async (): Promise<number[]> => [
      named(await unbound!.queries(), 'localhost').length,
      named(await dnsmasq!.queries(), 'localhost').length,
    ];
    const before = await seen();
    const a = await ask('localhost', 'A');
    expect(a.status, why(a)).toBe('NOERROR');
    expect(a.answer.map((rr) => rr.data), why(a)).toEqual(['127.0.0.1']);
    const aaaa = await ask('localhost', 'AAAA');
    expect(aaaa.answer.map((rr) => rr.data), why(aaaa)).toEqual(['::1']);
    expect(await seen(), 'localhost queries logged by [unbound, dnsmasq]').toEqual(before);
  });

  it('dig +edns=1: BADVERS, with an OPT of version 0 (RFC 6891 §6.1.3, §7)', async () => {
    // dig negotiates EDNS versions by default: on BADVERS it asks again with
    // version 0 and prints only that reply. +noednsnegotiation shows BADVERS.
    const r = await ask('badvers.wifi.test', 'A', '+edns=1', '+noednsnegotiation');
    expect(r.status, why(r)).toBe('BADVERS');
    expect(r.opt?.version, why(r)).toBe(0);
    expect(r.answer, why(r)).toEqual([]);
    expect(named(await unbound!.queries(), 'badvers.wifi.test')).toEqual([]); // not forwarded

    const negotiated = await ask('www.wifi.test', 'A', '+edns=1');
    expect(negotiated.text).toContain(';; BADVERS, retrying with EDNS version 0.');
    expect(withoutTtl(negotiated.answer), why(negotiated)).toEqual(['www.wifi.test. IN A 192.0.2.80']);
  });

  it('dig +noedns: the reply has no OPT pseudosection (RFC 6891 §7); with EDNS it has one, advertising 1232', async () => {
    const plain = await ask('www.interop.test', 'A', '+noedns');
    expect(plain.opt, why(plain)).toBeNull();
    expect(plain.text).not.toContain('OPT PSEUDOSECTION');
    expect(withoutTtl(plain.answer), why(plain)).toEqual(['www.interop.test. IN A 192.0.2.10']);

    const edns = await ask('www.interop.test', 'A');
    expect(edns.opt, why(edns)).toEqual({ version: 0, flags: [], udp: 1232 });
  });

  it('dig +header-only: even the error for a query without a question carries an OPT (RFC 6891 §7)', async () => {
    // A reply without OPT to an EDNS query says "this server does not do
    // EDNS": dig warns "retry with '+noedns'", and resolvers fall back to
    // 512-octet replies. nsd, unbound and dnsmasq all answer this with an OPT.
    const r = await ask('+header-only');
    expect(r.opt, why(r)).not.toBeNull();
    expect(r.text).not.toContain('retry with');
  });

  it('dig +dnssec: the DO bit is echoed (RFC 3225 §3)', async () => {
    const r = await ask('www.interop.test', 'A', '+dnssec');
    expect(r.opt?.flags, why(r)).toContain('do');
    expect(withoutTtl(r.answer), why(r)).toEqual(['www.interop.test. IN A 192.0.2.10']);
  });
});

describe('the cache', () => {
  it('answers the second query itself, its TTL counted down, without asking nsd again (RFC 1035 §7.1, RFC 2181 §8)', async () => {
    const before = await nsd!.queryCount();
    const first = await ask('cached.interop.test', 'A');
    expect(withoutTtl(first.answer), why(first)).toEqual(['cached.interop.test. IN A 192.0.2.30']);
    expect(first.answer[0]!.ttl, why(first)).toBe(300); // the zone's TTL, fresh
    const asked = await nsd!.queryCount();
    expect(asked - before, 'queries nsd answered for the first lookup').toBe(1);

    await new Promise((r) => setTimeout(r, 1100));
    const second = await ask('cached.interop.test', 'A');
    expect(withoutTtl(second.answer), why(second)).toEqual(withoutTtl(first.answer));
    expect(second.answer[0]!.ttl, why(second)).toBeLessThan(first.answer[0]!.ttl);
    expect(second.answer[0]!.ttl, why(second)).toBeGreaterThanOrEqual(first.answer[0]!.ttl - 3);
    expect(await nsd!.queryCount(), 'nsd was asked again').toBe(asked);
  });
});

describe('stopping', () => {
  it('pvdns exits 0 on SIGTERM', async () => {
    expect(await pvdns!.stop()).toEqual({ code: 0, signal: null });
  });
});
