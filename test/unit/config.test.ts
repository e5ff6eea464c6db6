// Configuration loading (src/config/load.ts): the shipped files load, every
// default is filled in as DESIGN.md documents it, the result cannot be
// changed, and every mistake is reported in one line naming the file, the
// line and the key path.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ConfigError, loadConfig, MAX_CONFIG_BYTES, MAX_PROBLEMS, parseConfig } from '../../src/config/load.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEFAULT_YAML = join(ROOT, 'config/default.yaml');
const EXAMPLE_YAML = join(ROOT, 'config/example.yaml');

/** The defaults DESIGN.md's configuration section documents (plus the keys it leaves out). */
const DEFAULTS = {
  listen: ['127.0.0.1:5300'], // `npm start` listens on 127.0.0.1:5300
  http: { listen: '127.0.0.1:8053', token: null, tokenFile: null, allow: null, allowedHosts: [] },
  log: { level: 'info' },
  access: { allow: ['127.0.0.0/8', '::1/128'], rateLimit: { qps: 0, burst: 100, action: 'refuse' } },
  cache: { maxEntries: 100000, minTtl: 0, maxTtl: 86400, negativeTtl: 900, serveStale: false },
  upstream: { timeoutMs: 1500, attempts: 3, queryTimeoutMs: 3000, probeIntervalMs: 1000, probeMaxIntervalMs: 2000, maxInflight: 10000 },
  tcp: { idleTimeoutMs: 10000, maxConnections: 256, maxPipelined: 100 },
  captive: { probeIntervalS: 60, canary: { name: 'example.com', addresses: [] } },
  pvdSources: { directory: null, host: true, hostBackend: 'auto', hostPollIntervalS: 10, resolvConf: '/etc/resolv.conf', routerAdvertisements: false },
  tls: { caFile: null },
  pvds: [],
};

/** The PvD keys a minimal PvD gets by default. */
const PVD_DEFAULTS = {
  dnsZones: [],
  prefixes: [],
  noInternet: false,
  priority: 100,
  expires: null,
  sourceAddress: null,
  interface: null,
  dns64: 'auto',
  dns64Synthesize: false,
  captivePortal: null,
  rebindProtection: false,
  encryption: null,
  designatedResolvers: [],
  ddr: null,
  listen: [],
};

/** configError parses `text` and returns the ConfigError it must raise. */
function configError(text: string, file = 'x.yaml'): ConfigError {
  try {
    parseConfig(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('the configuration was accepted');
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** expectError checks the one-line message: "file:line: key: problem". */
function expectError(text: string, line: number, key: string, problem: RegExp | string, file = 'x.yaml'): ConfigError {
  const e = configError(text, file);
  const prefix = `${file}:${line}: ${key ? `${key}: ` : ''}`;
  expect(e.message.startsWith(prefix), `"${e.message}" should start with "${prefix}"`).toBe(true);
  expect(e.message).not.toContain('\n');
  expect(e.message.slice(prefix.length)).toMatch(typeof problem === 'string' ? new RegExp(esc(problem)) : problem);
  expect(e.file).toBe(file);
  expect(e.line).toBe(line);
  expect(e.key).toBe(key);
  return e;
}

describe('valid configuration', () => {
  it('config/default.yaml loads with every default filled in', async () => {
    const c = await loadConfig(DEFAULT_YAML);
    expect(c).toEqual(DEFAULTS);
  });

  it('{} is the default configuration', () => {
    expect(parseConfig('{}', 'empty.json')).toEqual(DEFAULTS);
    expect(parseConfig('# every default\n{}\n', 'empty.yaml')).toEqual(DEFAULTS);
  });

  it.each([
    ['an empty file', ''],
    ['only white space', '  \n\t\n\n'],
    ['only comments', '# pvdns\n# (nothing yet)\n'],
    ['a YAML null', '~\n'],
    ['a null', 'null'],
    ['an empty document', '---\n...\n'],
  ])('refuses %s, naming the file: a file cut short must not stand for every default', (_, text) => {
    const e = configError(text, '/etc/pvdns/config.yaml');
    expect(e.message).toBe('/etc/pvdns/config.yaml: the file has no settings (write {} to use every default)');
    expect(e.file).toBe('/etc/pvdns/config.yaml');
  });

  it('the JSON equivalent of config/default.yaml loads to the same configuration', async () => {
    const json = JSON.stringify(parseYaml(readFileSync(DEFAULT_YAML, 'utf8')), null, 2);
    expect(parseConfig(json, 'default.json')).toEqual(await loadConfig(DEFAULT_YAML));
  });

  it('config/example.yaml (every key, annotated) loads', async () => {
    const c = await loadConfig(EXAMPLE_YAML);
    expect(c.listen).toEqual(['127.0.0.53:53', '[::1]:53']);
    expect(c.pvds.map((p) => p.identifier)).toEqual(['corp.example.com', 'home', 'wifi']);
    expect(c.pvds[0]).toMatchObject({ noInternet: true, dnsServers: ['10.8.0.1', '[fd00::53]:53'], expires: '2030-01-01T00:00:00Z' });
    expect(c.pvds[1]).toMatchObject({ encryption: 'strict', dnsServers: ['tls://192.168.1.53#dns.home.example', 'https://192.168.1.53/dns-query#dns.home.example'] });
    expect(c.pvds[2]).toMatchObject({ default: true, priority: 10, prefixes: ['192.168.1.0/24'] });
  });

  it('fills in the defaults of a PvD', () => {
    const c = parseConfig('pvds:\n  - identifier: wifi\n    dnsServers: ["192.168.1.1"]\n', 'x.yaml');
    expect(c.pvds[0]).toEqual({ identifier: 'wifi', dnsServers: ['192.168.1.1'], ...PVD_DEFAULTS });
    expect(c.pvds[0]!.default).toBeUndefined(); // "default: true unless noInternet" is decided later
  });

  it('keeps what is set and defaults only what is not, key by key', () => {
    const c = parseConfig('cache:\n  maxTtl: 3600\nhttp:\n  token: "0123456789abcdef"\n', 'x.yaml');
    expect(c.cache).toEqual({ ...DEFAULTS.cache, maxTtl: 3600 });
    expect(c.http).toEqual({ listen: '127.0.0.1:8053', token: '0123456789abcdef', tokenFile: null, allow: null, allowedHosts: [] });
  });

  it.each([
    ['32', '2001:db8::/32'],
    ['40', '2001:db8:100::/40'],
    ['48', '2001:db8:122::/48'],
    ['56', '2001:db8:122:300::/56'],
    ['64', '2001:db8:122:344::/64'],
    ['96', '64:ff9b::/96'],
    ['auto', 'auto'],
    ['off', 'off'],
  ])('accepts dns64 %s (RFC 6052 §2.2)', (_, v) => {
    expect(parseConfig(`pvds:\n  - identifier: a\n    dns64: "${v}"\n`, 'x.yaml').pvds[0]!.dns64).toBe(v);
  });

  it('accepts a PvD named "system" when pvdSources.host is false', () => {
    const c = parseConfig('pvdSources:\n  host: false\npvds:\n  - identifier: system\n', 'x.yaml');
    expect(c.pvds[0]!.identifier).toBe('system');
  });

  it('is frozen all the way down', () => {
    const c = parseConfig('pvds:\n  - identifier: wifi\n    dnsServers: ["192.168.1.1"]\n', 'x.yaml');
    for (const o of [c, c.cache, c.captive.canary, c.pvds, c.pvds[0]!, c.pvds[0]!.dnsServers, c.listen]) expect(Object.isFrozen(o)).toBe(true);
    expect(() => {
      (c.cache as { maxTtl: number }).maxTtl = 1;
    }).toThrow(TypeError);
    expect(() => (c.pvds[0]!.dnsServers as string[]).push('10.0.0.1')).toThrow(TypeError);
    expect(c.cache.maxTtl).toBe(86400);
  });
});

describe('errors name the file, the line and the key', () => {
  it.each<[string, string, number, string, RegExp | string]>([
    ['an unknown top-level key', 'listen: ["127.0.0.1:5300"]\ncache:\n  maxEntries: 10\nverbose: true\n', 4, 'verbose', 'unknown key "verbose"'],
    [
      'an unknown key inside pvds[1]',
      'pvds:\n  - identifier: wifi\n    dnsServers: ["192.168.1.1"]\n  - identifier: corp\n    dnsServers: ["10.8.0.1"]\n    dnsZone: ["corp.example.com"]\n',
      6,
      'pvds[1].dnsZone',
      'unknown key "dnsZone"',
    ],
    ['an unknown key inside a nested object', 'captive:\n  canary:\n    name: example.com\n    adresses: []\n', 4, 'captive.canary.adresses', 'unknown key "adresses"'],
    [
      'a bad server address',
      'pvds:\n  - identifier: wifi\n    dnsServers: ["192.168.1.1"]\n  - identifier: corp\n    dnsZones: [corp.example.com]\n    dnsServers:\n      - 10.8.0.300\n      - 10.8.0.2\n',
      7,
      'pvds[1].dnsServers[0]',
      '"10.8.0.300"',
    ],
    ['a host name as a server', 'pvds:\n  - identifier: corp\n    dnsServers:\n      - 10.8.0.1\n      - dns.corp.example.com\n', 5, 'pvds[0].dnsServers[1]', /"dns\.corp\.example\.com" is not an IP address/],
    ['a server port out of range', 'pvds:\n  - identifier: corp\n    dnsServers: ["10.8.0.1:70000"]\n', 3, 'pvds[0].dnsServers[0]', /port/],
    ['a server on port 0', 'pvds:\n  - identifier: corp\n    dnsServers: ["10.8.0.1:0"]\n', 3, 'pvds[0].dnsServers[0]', /port 0/],
    ['a prefix longer than the address', 'pvds:\n  - identifier: corp\n    prefixes:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n', 5, 'pvds[0].prefixes[1]', '"10.0.0.0/33"'],
    ['a prefix that is not dotted-quad', 'pvds:\n  - identifier: corp\n    prefixes: ["10.0.0/8"]\n', 3, 'pvds[0].prefixes[0]', '"10.0.0/8"'],
    ['an IPv6 prefix over 128', 'pvds:\n  - identifier: corp\n    prefixes: ["fd00::/129"]\n', 3, 'pvds[0].prefixes[0]', '"fd00::/129"'],
    ['a prefix without a length', 'pvds:\n  - identifier: corp\n    prefixes: ["10.0.0.0"]\n', 3, 'pvds[0].prefixes[0]', '"10.0.0.0"'],
    ['a bad access prefix', 'access:\n  allow:\n    - 127.0.0.0/8\n    - localhost\n', 4, 'access.allow[1]', '"localhost"'],
    ['a listen address that is a host name', 'listen:\n  - localhost:53\n', 2, 'listen[0]', '"localhost:53"'],
    ['dns64 prefix length 95 (RFC 6052 §2.2)', 'pvds:\n  - identifier: cell\n    dns64: "64:ff9b::/95"\n', 3, 'pvds[0].dns64', /RFC 6052/],
    ['dns64 prefix length 128 (RFC 6052 §2.2)', 'pvds:\n  - identifier: cell\n    dns64: "64:ff9b::/128"\n', 3, 'pvds[0].dns64', /RFC 6052/],
    ['dns64 as an IPv4 prefix', 'pvds:\n  - identifier: cell\n    dns64: "192.0.2.0/24"\n', 3, 'pvds[0].dns64', /IPv6 prefix/],
    ['dns64 as a word', 'pvds:\n  - identifier: cell\n    dns64: "on"\n', 3, 'pvds[0].dns64', /auto, off/],
    [
      'identifiers differing only in case (RFC 8801 §3.4)',
      'pvds:\n  - identifier: Corp.Example.com\n  - identifier: wifi\n  - identifier: corp.example.COM\n',
      4,
      'pvds[2].identifier',
      /already the identifier of pvds\[0\]/,
    ],
    ['identifiers differing only in a trailing dot', 'pvds:\n  - identifier: corp.example.com\n  - identifier: corp.example.com.\n', 3, 'pvds[1].identifier', /already/],
    ['noInternet with default: true (RFC 8801 §4.3)', 'pvds:\n  - identifier: corp\n    noInternet: true\n    default: true\n', 4, 'pvds[0].default', /noInternet/],
    ['a zone claiming localhost (RFC 6761 §6.3)', 'pvds:\n  - identifier: corp\n    dnsZones: ["corp.example", "localhost"]\n', 3, 'pvds[0].dnsZones[1]', /"localhost" is always answered locally/],
    ['a zone below localhost (RFC 6761 §6.3)', 'pvds:\n  - identifier: corp\n    dnsZones:\n      - printer.LOCALHOST.\n', 4, 'pvds[0].dnsZones[0]', /always answered locally/],
    ['a zone below invalid (RFC 6761 §6.4)', 'pvds:\n  - identifier: corp\n    dnsZones: ["x.invalid"]\n', 3, 'pvds[0].dnsZones[0]', /"x\.invalid" is always answered locally/],
    ['a zone that is not a domain name', 'pvds:\n  - identifier: corp\n    dnsZones: ["corp..example"]\n', 3, 'pvds[0].dnsZones[0]', /invalid label/],
    ['minTtl above maxTtl', 'listen: ["127.0.0.1:5300"]\ncache:\n  maxTtl: 60\n  minTtl: 120\n', 4, 'cache.minTtl', /minTtl must not exceed maxTtl/],
    ['minTtl above the default maxTtl', 'cache:\n  minTtl: 100000\n', 2, 'cache.minTtl', /minTtl must not exceed maxTtl/],
    ['a negative TTL', 'cache:\n  negativeTtl: -1\n', 2, 'cache.negativeTtl', />=0/],
    // A value of the wrong type is not a missing one: the message must say what was expected.
    ['a string where a number belongs', 'upstream:\n  timeoutMs: "1500"\n', 2, 'upstream.timeoutMs', /^(?!is required).*expected number/],
    ['a PvD without an identifier', 'pvds:\n  - dnsServers: ["10.0.0.1"]\n', 2, 'pvds[0].identifier', 'is required'],
    ['a PvD named "system" while pvdSources.host is true', 'pvdSources:\n  host: true\npvds:\n  - identifier: wifi\n  - identifier: SYSTEM\n', 5, 'pvds[1].identifier', /pvdSources\.host/],
    ['a PvD named "system" with pvdSources.host left at its default', 'pvds:\n  - identifier: system\n', 2, 'pvds[0].identifier', /pvdSources\.host: false/],
    ['an expiry that is not RFC 3339', 'pvds:\n  - identifier: corp\n    expires: "next tuesday"\n', 3, 'pvds[0].expires', /RFC 3339/],
    ['a captive portal over http (RFC 8908 §2)', 'pvds:\n  - identifier: hotel\n    captivePortal: "http://portal.example/api"\n', 3, 'pvds[0].captivePortal', /https/],
    ['a short API token', 'http:\n  token: "secret"\n', 2, 'http.token', /16/],
    ['an API token no bearer header can carry (RFC 6750 §2.1)', 'http:\n  token: "correct horse battery staple"\n', 2, 'http.token', /bearer token/],
    ['a token and a token file at once', 'http:\n  token: "0123456789abcdef"\n  tokenFile: /run/pvdns/token\n', 3, 'http.tokenFile', /not both/],
    ['an http.allow entry that is not a prefix', 'http:\n  allow: ["localhost"]\n', 2, 'http.allow[0]', /CIDR/],
    ['an allowed host with a port', 'http:\n  allowedHosts: ["pvdns.lan:8053"]\n', 2, 'http.allowedHosts[0]', /host name/],
    ['an unknown log level', 'log:\n  level: verbose\n', 2, 'log.level', /"info"/],
    // What serve would refuse later, or do without a word, is refused here (check-config and serve share it).
    ['an empty access.allow (every client refused)', 'access:\n  allow: []\n', 2, 'access.allow', /is empty: every client would be refused/],
    ['a canary name that is not a domain name', 'captive:\n  canary:\n    name: "example..com"\n', 3, 'captive.canary.name', /"example\.\.com" has an invalid label/],
    ['an empty canary name', 'captive:\n  canary: { name: "" }\n', 2, 'captive.canary.name', /is empty/],
    ['a canary address that is a name', 'captive:\n  canary:\n    addresses:\n      - 93.184.215.14\n      - example.com\n', 5, 'captive.canary.addresses[1]', '"example.com" is not an IPv4 address'],
    ['a canary address in IPv6 (the probe asks for A)', 'captive:\n  canary: { addresses: ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"] }\n', 2, 'captive.canary.addresses[0]', /is IPv6: the canary is asked for A records only/],
    ['a canary address with leading zeros', 'captive:\n  canary: { addresses: ["093.184.215.014"] }\n', 2, 'captive.canary.addresses[0]', /"093\.184\.215\.014" is not an IPv4 address/],
    ['a DNS listener listed twice', 'listen:\n  - 127.0.0.1:5300\n  - 127.0.0.2:5300\n  - 127.0.0.1:5300\n', 4, 'listen[2]', '127.0.0.1:5300 is already listen[0]'],
    ['a DNS listener listed twice, once with the default port', 'listen: ["127.0.0.1", "127.0.0.1:53"]\n', 1, 'listen[1]', '127.0.0.1:53 is already listen[0]'],
    ['an address beside the wildcard of its family on one port', 'listen:\n  - 0.0.0.0:5300\n  - 127.0.0.1:5300\n', 3, 'listen[1]', /127\.0\.0\.1:5300 and listen\[0\] \(0\.0\.0\.0:5300\) cannot both listen/],
    ['a wildcard after an address of its family on one port', 'listen:\n  - "[::1]:5300"\n  - "[::]:5300"\n', 3, 'listen[1]', /\[::\]:5300 and listen\[0\] \(\[::1\]:5300\) cannot both listen/],
    ['http.listen on a DNS listener', 'listen: ["127.0.0.1:5300"]\nhttp:\n  listen: 127.0.0.1:5300\n', 3, 'http.listen', '127.0.0.1:5300 is on a DNS port: listen[0] (127.0.0.1:5300) takes TCP there'],
    ['http.listen on the wildcard of a DNS port', 'listen: ["127.0.0.53:53"]\nhttp: { listen: "0.0.0.0:53" }\n', 2, 'http.listen', /0\.0\.0\.0:53 is on a DNS port: listen\[0\]/],
  ])('%s', (_, text, line, key, problem) => {
    expectError(text, line, key, problem);
  });

  it.each([
    ['a duplicate key', 'listen: ["127.0.0.1:5300"]\nlog:\n  level: info\n  level: debug\n', 4],
    ['a tab used for indentation', 'listen: ["127.0.0.1:5300"]\nlog:\n\tlevel: info\n', 3],
  ])('invalid YAML: %s, with its line', (_, text, line) => {
    expectError(text, line, '', /not valid YAML or JSON/);
  });

  it.each([
    ['a list', '- listen\n- pvds\n'],
    ['a number', '42\n'],
    ['a string', '"listen"\n'],
  ])('a top-level %s is refused at line 1', (_, text) => {
    expectError(text, 1, '', /must be a mapping/);
  });

  it('JSON errors carry JSON lines too', () => {
    const json = [
      '{',
      '  "listen": ["127.0.0.1:5300"],',
      '  "pvds": [',
      '    { "identifier": "wifi", "dnsServers": ["192.168.1.1"] },',
      '    {',
      '      "identifier": "corp",',
      '      "dnsServers": ["dns.corp.example"]',
      '    }',
      '  ]',
      '}',
    ].join('\n');
    expectError(json, 7, 'pvds[1].dnsServers[0]', '"dns.corp.example"', 'pvdns.json');
    expectError('{\n  "listen": ["127.0.0.1:5300"],\n  "Listen": []\n}\n', 3, 'Listen', 'unknown key "Listen"', 'pvdns.json');
  });

  describe('loadConfig', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvdns-config-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('names a missing file and why it cannot be read', async () => {
      const file = join(dir, 'missing.yaml');
      const err = await loadConfig(file).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toBe(`${file}: cannot read: ENOENT`);
    });

    it('refuses an empty file', async () => {
      const file = join(dir, 'empty.yaml');
      writeFileSync(file, '');
      await expect(loadConfig(file)).rejects.toThrow(`${file}: the file has no settings (write {} to use every default)`);
    });

    it("reports errors with the file's own path", async () => {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, 'pvds:\n  - identifier: corp\n    dnsServers: ["ns.corp.example"]\n');
      await expect(loadConfig(file)).rejects.toThrow(`${file}:3: pvds[0].dnsServers[0]: "ns.corp.example"`);
    });
  });
});

describe('listeners that can be bound together are accepted', () => {
  it.each([
    ['the IPv4 and IPv6 wildcards (IPv6 listeners are IPv6-only)', ['0.0.0.0:5300', '[::]:5300'], '127.0.0.1:8053'],
    ['two loopback addresses on one port', ['127.0.0.1:5300', '127.0.0.2:5300'], '127.0.0.3:5300'],
    ['ports the kernel picks', ['127.0.0.1:0', '127.0.0.1:0', '0.0.0.0:0'], '127.0.0.1:0'],
    ['HTTP on the other family of a DNS port', ['127.0.0.1:5300'], '[::1]:5300'],
    ['HTTP off', ['0.0.0.0:53'], null],
  ])('%s', (_, listen, http) => {
    expect(parseConfig(JSON.stringify({ listen, http: { listen: http } }), 'x.json').listen).toEqual(listen);
  });
});

describe('every problem of a file, one line each', () => {
  it('reports every schema problem, in the order of the file, each with its line and key', () => {
    const e = configError('listen: ["127.0.0.1:5300"]\ncache:\n  maxTtl: "long"\n  mxEntries: 5\npvds:\n  - identifier: "a b"\n    dnsServers: [ns.example]\n', 'x.yaml');
    expect(e.lines).toEqual([
      'x.yaml:3: cache.maxTtl: Invalid input: expected number, received string',
      'x.yaml:4: cache.mxEntries: unknown key "mxEntries"',
      'x.yaml:6: pvds[0].identifier: "a b" has an invalid label "a b" (letters, digits, "-" and "_", 1–63 long)',
      'x.yaml:7: pvds[0].dnsServers[0]: "ns.example" is not an IP address with an optional port',
    ]);
    expect(e.message).toBe(e.lines[0]);
  });

  it('names each unknown key of one object on its own line', () => {
    const e = configError('cache:\n  maxEntrys: 1\n  maxTTL: 2\n', 'x.yaml');
    expect(e.lines).toEqual(['x.yaml:2: cache.maxEntrys: unknown key "maxEntrys"', 'x.yaml:3: cache.maxTTL: unknown key "maxTTL"']);
  });

  it(`stops at ${MAX_PROBLEMS} lines and says how many more there were`, () => {
    const text = `pvds:\n${Array.from({ length: 50 }, (_, i) => `  - identifier: p${i}\n    dnsServers: ["bad${i}"]\n`).join('')}`;
    const e = configError(text, 'x.yaml');
    expect(e.lines).toHaveLength(MAX_PROBLEMS);
    expect(e.lines[0]).toBe('x.yaml:3: pvds[0].dnsServers[0]: "bad0" is not an IP address with an optional port');
    expect(e.lines[MAX_PROBLEMS - 2]).toMatch(/^x\.yaml:\d+: pvds\[18\]\.dnsServers\[0\]: "bad18"/);
    expect(e.lines[MAX_PROBLEMS - 1]).toBe('x.yaml: 31 more problems not shown');
  });
});

describe('input that would take pvdns down is refused in one line, at once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-config-big-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** timed runs `f` and says how long it took, in ms. */
  const timed = (f: () => void): number => {
    const t = performance.now();
    f();
    return performance.now() - t;
  };

  it('an alias bomb ("billion laughs"): not valid YAML, at the line of the first alias', () => {
    const laughs = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...'bcdefgh'.split('').map((n, i) => `${n}: &${n} [${Array(10).fill(`*${'abcdefg'[i]}`).join(',')}]`), 'pvdSources: { host: false }'];
    let e!: ConfigError;
    expect(timed(() => (e = configError(laughs.join('\n'), 'bomb.yaml')))).toBeLessThan(2000);
    expect(e.message).toMatch(/^bomb\.yaml:2: not valid YAML or JSON: too many aliases/);
  });

  it('aliases within reason are fine', () => {
    const c = parseConfig('pvdSources: { host: false }\npvds:\n  - { identifier: a, dnsServers: &ns ["192.0.2.1"] }\n  - { identifier: b, dnsServers: *ns }\n', 'x.yaml');
    expect(c.pvds[1]!.dnsServers).toEqual(['192.0.2.1']);
  });

  it.each([
    ['flow sequences', `listen: ${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}\n`, 1],
    ['flow mappings', `listen: ${'{a: '.repeat(500_000)}${'}'.repeat(500_000)}\n`, 1],
    ['block sequences on one line', `pvdSources: { host: false }\nlisten:\n${'- '.repeat(1_000_000)}x\n`, 3],
    ['explicit keys', `listen:\n  ${'? '.repeat(1_000_000)}x\n`, 2],
  ])('collections nested a million deep (%s) stop the parse at once', (_, text, line) => {
    let e!: ConfigError;
    // The yaml package alone took 8–20 s to refuse these.
    expect(timed(() => (e = configError(text, 'deep.yaml')))).toBeLessThan(2000);
    expect(e.message).toBe(`deep.yaml:${line}: not valid YAML or JSON: collections nested more than 64 deep`);
  });

  it('a mapping of 100,000 keys is read in linear time (the duplicate-key check compared each key with every other)', () => {
    const text = `{${Array.from({ length: 100_000 }, (_, i) => `"k${i}": 1`).join(', ')}}`;
    let e!: ConfigError;
    expect(timed(() => (e = configError(text, 'keys.json')))).toBeLessThan(10_000);
    expect(e.lines[0]).toBe('keys.json:1: k0: unknown key "k0"');
    expect(e.lines.at(-1)).toBe(`keys.json: ${100_000 - MAX_PROBLEMS + 1} more problems not shown`);
  });

  it('a key twice in one mapping is still refused, at the second one', () => {
    expectError('pvdSources: { host: false }\ncache:\n  maxTtl: 60\n  minTtl: 1\n  maxTtl: 61\n', 5, '', 'not valid YAML or JSON: the key "maxTtl" appears twice in one mapping');
  });

  it('JSON is read by JSON.parse, which would keep the last of two keys: a key twice is still refused, escaped or not', () => {
    expectError('{\n  "pvdSources": { "host": false },\n  "cache": { "maxTtl": 60, "maxTtl": 61 }\n}\n', 3, '', /the key "maxTtl" appears twice/, 'x.json');
    expectError('{\n  "pvdSources": { "host": false },\n  "pvdSources": { "host": true }\n}\n', 3, '', /the key "pvdSources" appears twice/, 'x.json');
    expectError('{\n  "log": { "level": "info" },\n  "l\\u006fg": { "level": "debug" }\n}\n', 3, '', /the key "log" appears twice/, 'x.json');
    // The same key in different objects, and a string value that looks like a key, are fine.
    const c = parseConfig('{"pvdSources": {"host": false}, "pvds": [{"identifier": "a", "dnsZones": ["identifier"]}, {"identifier": "b"}]}', 'x.json');
    expect(c.pvds.map((p) => p.identifier)).toEqual(['a', 'b']);
  });

  it('JSON nested a million deep is refused at once too', () => {
    let e!: ConfigError;
    expect(timed(() => (e = configError(`{"listen": ${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`, 'deep.json')))).toBeLessThan(2000);
    expect(e.message).toBe('deep.json:1: not valid YAML or JSON: collections nested more than 64 deep');
  });

  it('a second document is refused', () => {
    expectError('pvdSources: { host: false }\n---\nlisten: []\n', 2, '', /not valid YAML or JSON: more than one document/);
  });

  it(`a file over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB is refused by its size, before it is read; one at the limit loads`, async () => {
    const head = 'pvdSources: { host: false }\n';
    const atLimit = join(dir, 'limit.yaml');
    writeFileSync(atLimit, head + '#'.repeat(MAX_CONFIG_BYTES - head.length - 1) + '\n');
    expect((await loadConfig(atLimit)).pvdSources.host).toBe(false);
    const over = join(dir, 'over.yaml');
    writeFileSync(over, head + '#'.repeat(MAX_CONFIG_BYTES - head.length) + '\n');
    await expect(loadConfig(over)).rejects.toThrow(`${over}: the file is ${MAX_CONFIG_BYTES + 1} bytes: configuration files over 4 MiB (4194304 bytes) are refused`);
  });

  it('a file that never ends (a device, a pipe) is read only up to the limit', async () => {
    await expect(loadConfig('/dev/zero')).rejects.toThrow(`/dev/zero: the file is over ${MAX_CONFIG_BYTES} bytes: configuration files over 4 MiB (4194304 bytes) are refused`);
  });

  it('a folder is named as one', async () => {
    await expect(loadConfig(dir)).rejects.toThrow(`${dir}: cannot read: EISDIR`);
  });
});

describe('every object refuses a key it does not know (the Hickory test)', () => {
  /** A valid configuration that sets every key there is. */
  const FULL = {
    listen: ['127.0.0.53:53', '[::1]:53'],
    http: { listen: '127.0.0.1:8053', token: 'abcdefghijklmnop', tokenFile: null, allow: ['127.0.0.0/8'], allowedHosts: ['pvdns.lan'] },
    log: { level: 'debug' },
    access: { allow: ['127.0.0.0/8', '::1/128'], rateLimit: { qps: 50, burst: 20, action: 'drop' } },
    cache: { maxEntries: 1000, minTtl: 5, maxTtl: 3600, negativeTtl: 300, serveStale: true },
    upstream: { timeoutMs: 1000, attempts: 2, queryTimeoutMs: 2500, probeIntervalMs: 500, probeMaxIntervalMs: 30000, maxInflight: 2000 },
    tcp: { idleTimeoutMs: 5000, maxConnections: 16, maxPipelined: 8 },
    captive: { probeIntervalS: 30, canary: { name: 'canary.example', addresses: ['192.0.2.80'] } },
    pvdSources: { directory: '/etc/pvdns/pvds', host: false, hostBackend: 'resolved', hostPollIntervalS: 30, resolvConf: '/run/resolv.conf', routerAdvertisements: true },
    tls: { caFile: '/etc/pvdns/ca.pem' },
    pvds: [
      {
        identifier: 'corp.example.com',
        dnsServers: ['10.8.0.1', '[fd00::53]:53'],
        dnsZones: ['corp.example.com'],
        prefixes: ['10.0.0.0/8', 'fd00::/8'],
        noInternet: true,
        default: false,
        priority: 5,
        expires: '2030-01-01T00:00:00Z',
        sourceAddress: '10.8.0.2',
        interface: 'tun0',
        dns64: 'off',
        dns64Synthesize: false,
        captivePortal: null,
        rebindProtection: true,
        encryption: 'strict',
        designatedResolvers: ['tls://10.8.0.53#dns.corp.example.com'],
        ddr: false,
        listen: ['127.0.1.53:53'],
      },
      {
        identifier: 'wifi',
        dnsServers: ['192.168.1.1'],
        dnsZones: [],
        prefixes: ['192.168.1.0/24'],
        noInternet: false,
        default: true,
        priority: 10,
        expires: null,
        sourceAddress: null,
        interface: 'wlan0',
        dns64: '64:ff9b::/96',
        dns64Synthesize: true,
        captivePortal: 'https://portal.example/api',
        rebindProtection: false,
        encryption: 'opportunistic',
        designatedResolvers: [],
        ddr: true,
        listen: [],
      },
    ],
  };

  /** Every object in the fixture, as key paths. */
  function objectPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
    if (Array.isArray(v)) return v.flatMap((x, i) => objectPaths(x, [...path, i]));
    if (v && typeof v === 'object') return [path, ...Object.entries(v).flatMap(([k, x]) => objectPaths(x, [...path, k]))];
    return [];
  }
  const render = (path: (string | number)[]): string =>
    path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
  const withJunk = (path: (string | number)[]): unknown => {
    const copy = structuredClone(FULL) as Record<string | number, unknown>;
    let o = copy;
    for (const p of path) o = o[p] as Record<string | number, unknown>;
    o.junk = 1;
    return copy;
  };
  const paths = objectPaths(FULL);

  it('the fixture itself is valid and sets every key (nothing left to defaults)', () => {
    const c = parseConfig(toYaml(FULL), 'full.yaml');
    expect(c).toEqual(FULL);
    expect(paths.map(render)).toEqual([
      '',
      'http',
      'log',
      'access',
      'access.rateLimit',
      'cache',
      'upstream',
      'tcp',
      'captive',
      'captive.canary',
      'pvdSources',
      'tls',
      'pvds[0]',
      'pvds[1]',
    ]);
  });

  it.each(paths.map((p) => [render(p) || '(top level)', p] as const))('YAML: junk in %s', (_, path) => {
    const text = toYaml(withJunk(path));
    const line = text.split('\n').findIndex((l) => /\bjunk:/.test(l)) + 1;
    const key = [render(path), 'junk'].filter(Boolean).join('.');
    expectError(text, line, key, 'unknown key "junk"', 'full.yaml');
  });

  it.each(paths.map((p) => [render(p) || '(top level)', p] as const))('JSON: junk in %s', (_, path) => {
    const text = JSON.stringify(withJunk(path), null, 2);
    const line = text.split('\n').findIndex((l) => l.includes('"junk"')) + 1;
    const key = [render(path), 'junk'].filter(Boolean).join('.');
    expectError(text, line, key, 'unknown key "junk"', 'full.json');
  });
});
