// DNS64 per PvD against a real DNS64 resolver nobody here wrote: Unbound
// with `module-config: "dns64 iterator"` as the cellular PvD's server, beside
// a plain Wi-Fi PvD, and pvdns's own synthesis with a plain upstream:
//
//   dig ─▶ pvdns 127.0.0.89 ─┬─ PvD wifi  (default, priority 10)           ─▶ nsd 127.0.0.87
//        (and its HTTP API)  ├─ PvD cell  (default, priority 20, from the API) ─▶ unbound 127.0.0.88 (dns64, 64:ff9b::/96) ─▶ nsd
//                            └─ PvD nat   (64:ff9b::/96, dns64Synthesize)  ─▶ nsd
//
// nsd serves the IPv4-only test names and ipv4only.arpa (RFC 8880 §2), which
// Unbound's DNS64 synthesizes AAAA records from: that is what RFC 7050
// discovery reads.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import type { TranslateResult } from '../../src/resolve/translate.js';
import { del, eventually as waitFor, getPvd, put, resolve as resolveIn } from '../helpers/http.js';
import { TEST_TOKEN } from '../helpers/pvdns.js';
import { dig, requirePrograms, startNsd, startPvdnsCli, startUnbound, withoutTtl, type Nsd, type PvdnsCli, type Unbound } from './servers.js';

const V4_ZONE = [
  '$ORIGIN v4.test.',
  '$TTL 3600',
  '@ SOA ns hostmaster 1 3600 600 86400 300',
  '@ NS ns',
  'ns A 127.0.0.87',
  'www A 192.0.2.10', // IPv4 only
  'alias CNAME www',
  'dual A 192.0.2.11',
  'dual AAAA 2001:db8::11',
  '',
].join('\n');

const IPV4ONLY_ZONE = [
  '$ORIGIN ipv4only.arpa.',
  '$TTL 86400',
  '@ SOA ns hostmaster 1 3600 600 86400 300',
  '@ NS ns',
  'ns A 127.0.0.87',
  '@ A 192.0.0.170',
  '@ A 192.0.0.171',
  '',
].join('\n');

let nsd: Nsd | undefined;
let unbound: Unbound | undefined;
let pvdns: PvdnsCli | undefined;
let cellSpec: Record<string, unknown>;

const pvd = async (id: string): Promise<PvdView> => (await getPvd(pvdns!.http!, id)).body;
const resolve = async (query: string): Promise<TranslateResult> => (await resolveIn(pvdns!.http!, query)).body;
/** eventually, with pvdns's logs when it times out. */
const eventually = (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> =>
  waitFor(what, check, timeoutMs, () => pvdns!.logs());

beforeAll(async () => {
  requirePrograms('dig', 'nsd', 'nsd-checkconf', 'nsd-control', 'unbound', 'unbound-checkconf');
  nsd = await startNsd({ 'v4.test': V4_ZONE, 'ipv4only.arpa': IPV4ONLY_ZONE }, '127.0.0.87');
  unbound = await startUnbound({ host: '127.0.0.88', forwardTo: nsd, dns64Prefix: '64:ff9b::/96' });
  pvdns = await startPvdnsCli(`
listen: ["127.0.0.89:0"]
http: { listen: "127.0.0.89:0", token: "${TEST_TOKEN}" }
log: { level: debug }
pvdSources: { host: false }
forwardTestNames: true    # its zones are under test. (RFC 6761 §6.2: NXDOMAIN by default)
upstream: { timeoutMs: 1000, attempts: 1 }
pvds:
  - identifier: wifi
    dnsServers: ["${nsd.host}:${nsd.port}"]
    default: true
    priority: 10
  - identifier: nat
    dnsServers: ["${nsd.host}:${nsd.port}"]
    noInternet: true
    dns64: "64:ff9b::/96"
    dns64Synthesize: true
`);
  // The cellular PvD comes and goes, as a connection manager would announce it.
  cellSpec = { identifier: 'cell', dnsServers: [`${unbound.host}:${unbound.port}`], default: true, priority: 20 };
  expect((await put(pvdns!.http!, 'cell', cellSpec)).status).toBe(201);
  await eventually('cell to discover its Pref64', async () => (await pvd('cell')).dns64 === 'network');
});

afterAll(async () => {
  await Promise.all([pvdns?.stop(), unbound?.stop(), nsd?.stop()]);
});

describe('Pref64 discovery against Unbound (RFC 7050)', () => {
  it('learns 64:ff9b::/96 for the cellular PvD from Unbound, and no NAT64 for Wi-Fi', async () => {
    // What Unbound itself answers for the well-known name.
    const direct = await dig(unbound!, ['ipv4only.arpa', 'AAAA']);
    expect(withoutTtl(direct.answer).sort()).toEqual(['ipv4only.arpa. IN AAAA 64:ff9b::c000:aa', 'ipv4only.arpa. IN AAAA 64:ff9b::c000:ab']);

    expect(await pvd('cell')).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'network', pref64Source: 'discovery' });
    await eventually('wifi to finish discovery', async () => (await pvd('wifi')).dns64 === 'none');
    expect((await pvd('wifi')).pref64).toEqual([]);
    expect(await pvd('nat')).toMatchObject({ pref64: ['64:ff9b::/96'], dns64: 'pvdns', pref64Source: 'config' });
  });
});

describe('synthesized answers stay in their PvD', () => {
  it('marks the AAAA Unbound synthesizes for an IPv4-only name, via the cellular PvD', async () => {
    const direct = await dig(unbound!, ['www.v4.test', 'AAAA']);
    expect(withoutTtl(direct.answer)).toEqual(['www.v4.test. IN AAAA 64:ff9b::c000:20a']);
    const r = await resolve('name=www.v4.test&type=AAAA&pvd=cell');
    expect(r).toMatchObject({ pvd: 'cell', rcode: 'NOERROR', synthesized: true });
    expect(r.answers.map((a) => a.data)).toEqual(['64:ff9b::c000:20a']);
  });

  it('gives the same name routed to Wi-Fi no AAAA', async () => {
    const r = await dig(pvdns!, ['www.v4.test', 'AAAA']);
    expect(r.status, r.text).toBe('NOERROR');
    expect(r.answer, r.text).toEqual([]);
    expect(await resolve('name=www.v4.test&type=AAAA')).toMatchObject({ pvd: 'wifi', synthesized: false, answers: [] });
  });

  it('serves no synthesized answer from the cache after the cellular PvD is withdrawn', async () => {
    expect(await resolve('name=www.v4.test&type=AAAA&pvd=cell')).toMatchObject({ cached: true, synthesized: true });
    expect((await del(pvdns!.http!, 'cell')).status).toBe(200);
    // Wi-Fi is the only default PvD left; pvd=cell is unknown now.
    expect((await resolveIn(pvdns!.http!, 'name=www.v4.test&type=AAAA&pvd=cell')).status).toBe(404);
    const r = await dig(pvdns!, ['www.v4.test', 'AAAA']);
    expect(r.answer, r.text).toEqual([]);
    // Announced again, the PvD starts with an empty cache.
    expect((await put(pvdns!.http!, 'cell', cellSpec)).status).toBe(201);
    await eventually('cell to discover its Pref64 again', async () => (await pvd('cell')).dns64 === 'network');
    expect(await resolve('name=www.v4.test&type=AAAA&pvd=cell')).toMatchObject({ cached: false, synthesized: true });
  });
});

describe("pvdns's own synthesis matches Unbound's", () => {
  it.each([['www.v4.test'], ['alias.v4.test']])('%s AAAA via the nat PvD (plain nsd behind it) gives what Unbound gives', async (name) => {
    const viaUnbound = await dig(unbound!, [name, 'AAAA']);
    const viaPvdns = await resolve(`name=${name}&type=AAAA&pvd=nat`);
    expect(viaPvdns).toMatchObject({ pvd: 'nat', rcode: 'NOERROR', synthesized: true });
    const ours = viaPvdns.answers.map((a) => `${a.name}. IN ${a.type} ${a.data}`);
    expect(ours).toEqual(withoutTtl(viaUnbound.answer));
  });

  it('leaves a name with real AAAA records alone, as Unbound does', async () => {
    const viaUnbound = await dig(unbound!, ['dual.v4.test', 'AAAA']);
    const viaPvdns = await resolve('name=dual.v4.test&type=AAAA&pvd=nat');
    expect(viaPvdns.answers.map((a) => `${a.name}. IN ${a.type} ${a.data}`)).toEqual(withoutTtl(viaUnbound.answer));
    expect(viaPvdns.synthesized).toBe(false);
  });
});
