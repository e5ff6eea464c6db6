// PvD objects as the API and PvD files receive them: DESIGN's object, or RFC
// 8801 PvD Additional Information (standards.md §2.3, vectors JV1–JV11), read
// one way ("take both, documented exactly"): every key pvdns knows is
// honoured; unknown keys are ignored and returned only in an RFC 8801 object,
// and refused where they look like a misspelling of a known key.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { MAX_PVD_PROBLEMS, parsePvdInput, PvdInputError, readPvdInput, suggestKey, PVD_KEYS } from '../../src/pvd/input.js';
import { pvdFromSpec } from '../../src/pvd/model.js';
import { MAX_DNS_SERVERS, MAX_DNS_ZONES, MAX_LISTED, pvdSpecSchema } from '../../src/pvd/schema.js';

/** JV1 with the servers its link gave: what a host adds to the RFC's object. */
const JV1 = { identifier: 'cafe.example.com.', expires: '2030-05-23T06:00:00Z', prefixes: ['2001:db8:cafe::/48'], dnsServers: ['2001:db8:cafe::53'] };
const CORP_VPN = JSON.parse(readFileSync(join(import.meta.dirname, '../../config/pvd.d/corp-vpn.json'), 'utf8')) as Record<string, unknown>;

/** issuesOf returns "field: problem" for every problem readPvdInput finds, or [] when it accepts. */
function issuesOf(body: unknown): string[] {
  try {
    readPvdInput(body);
    return [];
  } catch (err) {
    expect(err).toBeInstanceOf(PvdInputError);
    return (err as PvdInputError).issues.map((i) => `${i.field}: ${i.problem}`);
  }
}

describe('readPvdInput: what is accepted, and which keys are ignored', () => {
  it.each([
    ['JV1 the three mandatory keys (and the link\'s servers)', JV1, []],
    ['JV6 an unknown key, ignored (RFC 8801 §4.3)', { ...JV1, foo: 1 }, ['foo']],
    ['JV7 a vendor sub-dictionary, ignored', { ...JV1, 'vendor-acme': { x: 1 } }, ['vendor-acme']],
    ['a URN-named sub-dictionary, ignored', { ...JV1, 'urn:example:acme': { tunnel: 'gre' } }, ['urn:example:acme']],
    ['a key registered for RFC 8801 objects that pvdns does not use (RFC 9704)', { ...JV1, splitDnsClaims: [] }, ['splitDnsClaims']],
    ['JV8 dnsZones and noInternet', { ...JV1, dnsZones: ['corp.example.com'], noInternet: true }, []],
    ['JV9 an upper-case identifier and an RFC 3339 offset', { ...JV1, identifier: 'CAFE.Example.COM', expires: '2030-05-23T08:00:00+02:00' }, []],
    ['several unknown keys, in the object\'s order', { metered: false, ...JV1, extraInfo: { note: 'x' }, 'vendor-x': {} }, ['metered', 'extraInfo', 'vendor-x']],
  ])('accepts %s', (_why, body, ignored) => {
    const { spec, ignoredKeys } = readPvdInput(body);
    expect(spec.identifier.toLowerCase().replace(/\.$/, '')).toBe('cafe.example.com');
    expect(spec.prefixes).toEqual(['2001:db8:cafe::/48']);
    expect(ignoredKeys).toEqual(ignored);
  });

  it('honours every pvdns key in an RFC 8801 object: the shipped corp-vpn.json with priority, rebindProtection, dns64 and interface', () => {
    const { spec, ignoredKeys } = readPvdInput({ ...CORP_VPN, priority: 5, rebindProtection: true, dns64: 'off', interface: 'tun0' });
    expect(spec).toMatchObject({ identifier: 'vpn.corp.example.com', priority: 5, rebindProtection: true, dns64: 'off', interface: 'tun0', noInternet: true });
    expect(spec.dnsZones).toEqual(['corp.example.com']);
    expect(ignoredKeys).toEqual(['vendor-example']);
    const pvd = pvdFromSpec(spec, 'file', 0);
    expect(pvd).toMatchObject({ priority: 5, interface: 'tun0', dns64: 'off', rebindProtection: true, isDefault: false });
  });

  it('honours default and priority in an RFC 8801 object with unknown keys (a default PvD stays one)', () => {
    const { spec } = readPvdInput({ ...JV1, default: true, priority: 1, foo: 1 });
    expect(pvdFromSpec(spec, 'api', 0)).toMatchObject({ isDefault: true, priority: 1 });
  });

  it('takes pvdns\'s own object as it is, with nothing ignored', () => {
    expect(readPvdInput({ identifier: 'wifi', dnsServers: ['192.0.2.1'], priority: 5 })).toEqual({
      spec: expect.objectContaining({ identifier: 'wifi', priority: 5 }),
      ignoredKeys: [],
    });
    expect(parsePvdInput({ identifier: 'wifi', dnsServers: ['192.0.2.1'] }).identifier).toBe('wifi'); // the old call shape
  });
});

describe('readPvdInput: what is refused, naming every key', () => {
  it.each([
    ['dnsZone', { ...JV1, dnsZone: ['corp.example'] }, 'dnsZone: unknown key (did you mean "dnsZones"?)'],
    ['dnsserver', { ...JV1, dnsserver: ['192.0.2.1'] }, 'dnsserver: unknown key (did you mean "dnsServers"?)'],
    ['Prefixes', { ...JV1, Prefixes: ['2001:db8::/32'] }, 'Prefixes: unknown key (did you mean "prefixes"?)'],
    ['expire', { ...JV1, expire: '2031-01-01T00:00:00Z' }, 'expire: unknown key (did you mean "expires"?)'],
    ['DNSServers', { ...JV1, DNSServers: [] }, 'DNSServers: unknown key (did you mean "dnsServers"?)'],
    ['dns_zones', { ...JV1, dns_zones: [] }, 'dns_zones: unknown key (did you mean "dnsZones"?)'],
    ['priorities', { ...JV1, priorities: 1 }, 'priorities: unknown key (did you mean "priority"?)'],
    ['Default', { ...JV1, Default: true }, 'Default: unknown key (did you mean "default"?)'],
    ['dnsSever', { ...JV1, dnsSever: [] }, 'dnsSever: unknown key (did you mean "dnsServers"?)'],
    ['noInternets', { ...JV1, noInternets: true }, 'noInternets: unknown key (did you mean "noInternet"?)'],
    ['rebind_protection', { ...JV1, rebind_protection: true }, 'rebind_protection: unknown key (did you mean "rebindProtection"?)'],
    ['captivePortals', { ...JV1, captivePortals: 'https://x.example' }, 'captivePortals: unknown key (did you mean "captivePortal"?)'],
  ])('a misspelling of a known key, even in an RFC 8801 object: %s', (_key, body, message) => {
    expect(issuesOf(body)).toEqual([message]);
  });

  // Short keys get fewer edits: dns4 is one edit from dns64 and internet two from noInternet, yet
  // each is a word of its own that an RFC 8801 object may well carry.
  it.each(['metered', 'extraInfo', 'splitDnsClaims', 'foo', 'x', 'vendor-dnsZones', 'urn:x:prefixes', 'comment', 'dns', 'dns4', 'dns6', 'DNS6', 'internet', 'ttl', 'mtu'])('does not take %s for a misspelling', (key) => {
    expect(issuesOf({ ...JV1, [key]: 1 })).toEqual([]);
  });

  it('names every unknown key of an object that is not RFC 8801\'s (no identifier, expires and prefixes)', () => {
    expect(issuesOf({ identifier: 'wifi', dnsServers: ['192.0.2.1'], foo: 1, dnsZone: [], bar: {} })).toEqual([
      'foo: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)',
      'dnsZone: unknown key (did you mean "dnsZones"?)',
      'bar: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)',
    ]);
    // JV2: without prefixes it is not RFC 8801 PvD Additional Information (RFC 8801 §4.3), so foo is not ignored.
    const { prefixes: _, ...jv2 } = JV1;
    expect(issuesOf({ ...jv2, foo: 1 })).toEqual(['foo: unknown key (only an RFC 8801 object, with identifier, expires and prefixes, may carry keys pvdns does not know)']);
  });

  it('refuses an RFC 8801 object without the servers its link gave: it would answer nothing', () => {
    const { dnsServers: _, ...bare } = JV1;
    expect(issuesOf(bare)).toEqual(['dnsServers: an RFC 8801 PvD needs the DNS servers its link gave']);
    expect(issuesOf({ ...bare, dnsServers: [] })).toEqual(['dnsServers: an RFC 8801 PvD needs the DNS servers its link gave']);
    expect(issuesOf({ ...bare, 'vendor-x': {} })).toEqual(['dnsServers: an RFC 8801 PvD needs the DNS servers its link gave']);
  });

  it.each([
    ['IPv4 multicast (mDNS)', '224.0.0.251', 'is a multicast address'],
    ['IPv4 multicast with a port', '239.1.2.3:5353', 'is a multicast address'],
    ['IPv6 multicast', '[ff02::fb]', 'is a multicast address'],
    ['IPv4-mapped multicast', '[::ffff:224.0.0.1]', 'is a multicast address'],
    ['the limited broadcast', '255.255.255.255', 'is the broadcast address'],
    ['0.0.0.0', '0.0.0.0', 'is an unspecified address, which names no host'],
    ['an address of 0.0.0.0/8', '0.1.2.3:53', 'is an unspecified address, which names no host'],
    ['::', '[::]:53', 'is an unspecified address, which names no host'],
    ['port 0', '192.0.2.1:0', 'has port 0'],
  ])('refuses a server that can never be a unicast DNS server: %s', (_why, server, problem) => {
    expect(issuesOf({ identifier: 'wifi', dnsServers: ['192.0.2.1', server] })).toEqual([expect.stringMatching(new RegExp(`^dnsServers\\[1\\]: "${server.replace(/[.[\]]/g, '\\$&')}" ${problem}`))]);
    expect(issuesOf({ ...JV1, dnsServers: [server] })[0]).toMatch(/^dnsServers\[0\]: /);
    // The configuration reads servers with the same schema.
    const r = configSchema.safeParse({ pvdSources: { host: false }, pvds: [{ identifier: 'wifi', dnsServers: [server] }] });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['pvds', 0, 'dnsServers', 0]);
    expect(r.error!.issues[0]!.message).toContain(problem);
  });

  it('a PvD with no servers is never a default: not by default, and default: true is refused', () => {
    expect(pvdFromSpec(parsePvdInput({ identifier: 'zones-only', dnsZones: ['x.example'] }), 'api', 0).isDefault).toBe(false);
    expect(pvdFromSpec(parsePvdInput({ identifier: 'wifi', dnsServers: ['192.0.2.1'] }), 'api', 0).isDefault).toBe(true);
    expect(issuesOf({ identifier: 'wifi', default: true })).toEqual(['default: a PvD with no dnsServers cannot serve names nobody owns']);
    expect(pvdSpecSchema.safeParse({ identifier: 'wifi', dnsServers: [], default: true }).success).toBe(false);
  });

  it.each([
    ['JV11 prefixes that is not an array', { ...JV1, prefixes: '2001:db8:cafe::/48' }, 'prefixes'],
    ['JV11 a prefix longer than 128 bits', { ...JV1, prefixes: ['2001:db8:cafe::/129'] }, 'prefixes[0]'],
    ['a DESIGN object with an unknown key', { identifier: 'wifi', dnsServerz: ['192.0.2.1'] }, 'dnsServerz'],
    ['a bad server address', { identifier: 'wifi', dnsServers: ['192.0.2.300'] }, 'dnsServers[0]'],
    ['a missing identifier', { dnsServers: ['192.0.2.1'] }, 'identifier'],
  ])('refuses %s, naming the field', (_why, body, field) => {
    expect(() => parsePvdInput(body)).toThrow(PvdInputError);
    try {
      parsePvdInput(body);
    } catch (err) {
      expect((err as PvdInputError).field).toBe(field);
    }
  });

  it('lists every problem at once, in one line', () => {
    let err: PvdInputError | null = null;
    try {
      readPvdInput({ ...JV1, dnsZone: [], dnsServers: ['224.0.0.1', '192.0.2.1'], priority: -1 });
    } catch (e) {
      err = e as PvdInputError;
    }
    expect(err?.issues.map((i) => i.field)).toEqual(['dnsZone', 'dnsServers[0]', 'priority']);
    expect(err?.message).not.toContain('\n');
    expect(err?.message).toMatch(/^dnsZone: unknown key \(did you mean "dnsZones"\?\); dnsServers\[0\]: .*; priority: /);
  });

  it('bounds each list: one problem for a list too long, whatever it holds', () => {
    const t0 = performance.now();
    expect(issuesOf({ identifier: 'a.example', dnsServers: Array<number>(150_000).fill(1) })).toEqual([`dnsServers: has 150000 items; a PvD takes at most ${MAX_DNS_SERVERS}`]);
    expect(issuesOf({ identifier: 'a.example', dnsZones: Array<string>(MAX_DNS_ZONES + 1).fill('a.example') })).toEqual([`dnsZones: has ${MAX_DNS_ZONES + 1} items; a PvD takes at most ${MAX_DNS_ZONES}`]);
    expect(performance.now() - t0).toBeLessThan(2000); // was seconds: zod made an issue of every item
    expect(readPvdInput({ identifier: 'a.example', dnsServers: Array<string>(MAX_DNS_SERVERS).fill('192.0.2.1') }).spec.dnsServers).toHaveLength(MAX_DNS_SERVERS);
  });

  it(`names the first ${MAX_LISTED} bad items of a list, after how many there are`, () => {
    const zones = Array.from({ length: 150_000 }, (_, i) => (i % 2 ? 'ok.example' : `bad..${i}`));
    const got = issuesOf({ identifier: 'a.example', dnsZones: zones });
    expect(got).toHaveLength(MAX_LISTED + 1);
    expect(got[0]).toBe('dnsZones: 75000 of its 150000 items are wrong');
    expect(got[1]).toBe('dnsZones[0]: "bad..0" has an invalid label "" (letters, digits, "-" and "_", 1–63 long)');
    expect(got.at(-1)).toMatch(/^dnsZones\[18\]: "bad\.\.18" /);
    expect(issuesOf({ identifier: 'a.example', dnsServers: ['192.0.2.1', 53, null, ['x']] })).toEqual([
      'dnsServers[1]: must be a string, not a number',
      'dnsServers[2]: must be a string, not null',
      'dnsServers[3]: must be a string, not an array',
    ]);
  });

  it(`lists at most ${MAX_PVD_PROBLEMS} problems, and says how many more: 130,000 unknown keys are a short message`, () => {
    const body: Record<string, unknown> = { identifier: 'a.example', dnsServers: ['192.0.2.1'] };
    for (let i = 0; i < 130_000; i++) body[`key${i}`] = i;
    let err: PvdInputError | null = null;
    try {
      readPvdInput(body);
    } catch (e) {
      err = e as PvdInputError;
    }
    expect(err).toBeInstanceOf(PvdInputError);
    expect(err!.issues).toHaveLength(MAX_PVD_PROBLEMS);
    expect(err!.total).toBe(130_000);
    expect(err!.message).toMatch(/; 129980 more problems not shown$/);
    expect(err!.message.length).toBeLessThan(5000);
    // In an RFC 8801 object the same keys are ignored, and returned.
    const { ignoredKeys } = readPvdInput({ ...body, expires: '2030-01-01T00:00:00Z', prefixes: [] });
    expect(ignoredKeys).toHaveLength(130_000);
  });

  it('quotes the values it echoes, so a problem stays one line', () => {
    expect(issuesOf({ identifier: 'a\nfake.json:1: dnsServers: forged', dnsServers: ['192.0.2.1'] })).toEqual([
      'identifier: "a\\nfake.json:1: dnsServers: forged" has an invalid label "a\\nfake" (letters, digits, "-" and "_", 1–63 long)',
    ]);
    expect(issuesOf({ identifier: 'a.example', dnsZones: ['x.localhost\n'] })[0]).toMatch(/^dnsZones\[0\]: "x\.localhost\\n" /);
    for (const line of issuesOf({ identifier: 'a.example', dnsZones: ['evil\n.localhost'], dnsServers: ['224.0.0.1'] })) expect(line).not.toMatch(/[\n\r]/);
  });

  it('refuses what is not an object', () => {
    for (const v of [null, [], 'wifi', 3]) expect(() => parsePvdInput(v)).toThrow('a PvD must be a JSON object');
  });

  it('JV10: the RFC text\'s own example, with its trailing comma, is not JSON (RFC 8801 §4.3.1)', () => {
    expect(() => JSON.parse('{"identifier":"cafe.example.com.","expires":"2030-05-23T06:00:00Z","prefixes":["2001:db8:cafe::/48"],}')).toThrow();
  });

  it('accepts every example PvD file shipped in config/pvd.d', () => {
    const dir = join(import.meta.dirname, '../../config/pvd.d');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(() => parsePvdInput(JSON.parse(readFileSync(join(dir, f), 'utf8'))), f).not.toThrow();
  });
});

describe('suggestKey', () => {
  it('finds the key a misspelling meant, and nothing for a different word', () => {
    expect(suggestKey('prefix', PVD_KEYS)).toBe('prefixes');
    expect(suggestKey('dns64synthesise', PVD_KEYS)).toBe('dns64Synthesize');
    expect(suggestKey('sourceAdress', PVD_KEYS)).toBe('sourceAddress');
    expect(suggestKey('identifer', PVD_KEYS)).toBe('identifier');
    expect(suggestKey('interfaces', PVD_KEYS)).toBe('interface');
    expect(suggestKey('proxies', PVD_KEYS)).toBeNull();
    expect(suggestKey('metered', PVD_KEYS)).toBeNull();
  });

  it('allows no edit up to 4 characters, one up to 8, two beyond', () => {
    // The misspellings the rule is for, and words it must leave alone.
    const caught = { dnsZone: 'dnsZones', expire: 'expires', dnsSever: 'dnsServers', Prefixes: 'prefixes', dnsserver: 'dnsServers', priorty: 'priority', dns46: 'dns64', DNS64: 'dns64', identifer: 'identifier', rebindProtecton: 'rebindProtection', capitvePortal: 'captivePortal' };
    for (const [key, known] of Object.entries(caught)) expect(suggestKey(key, PVD_KEYS), key).toBe(known);
    for (const key of ['dns', 'dns4', 'dns6', 'dn64', 'internet', 'Internet']) expect(suggestKey(key, PVD_KEYS), key).toBeNull();
    expect(suggestKey('intrnet', PVD_KEYS)).toBeNull(); // two edits from interface, three from noInternet
    expect(suggestKey('noInternt', PVD_KEYS)).toBe('noInternet');
  });
});
