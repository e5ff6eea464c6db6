// PvD objects as the API and PvD files receive them: DESIGN's object, or RFC
// 8801 PvD Additional Information (standards.md §2.3, vectors JV1–JV11).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePvdInput, PvdInputError } from '../../src/pvd/input.js';

const JV1 = { identifier: 'cafe.example.com.', expires: '2030-05-23T06:00:00Z', prefixes: ['2001:db8:cafe::/48'] };

describe('parsePvdInput', () => {
  it.each([
    ['JV1 the three mandatory keys', JV1],
    ['JV6 an unknown key, ignored (RFC 8801 §4.3)', { ...JV1, foo: 1 }],
    ['JV7 a vendor sub-dictionary, ignored', { ...JV1, 'vendor-acme': { x: 1 } }],
    ['JV8 dnsZones and noInternet', { ...JV1, dnsZones: ['corp.example.com'], noInternet: true }],
    ['JV9 an upper-case identifier and an RFC 3339 offset', { identifier: 'CAFE.Example.COM', expires: '2030-05-23T08:00:00+02:00', prefixes: ['2001:db8:cafe::/48'] }],
  ])('accepts %s', (_why, body) => {
    const spec = parsePvdInput(body);
    expect(spec.identifier.toLowerCase().replace(/\.$/, '')).toBe('cafe.example.com');
    expect(spec.prefixes).toEqual(['2001:db8:cafe::/48']);
  });

  it('takes only the RFC 8801 keys pvdns knows from an RFC 8801 object, plus dnsServers', () => {
    const spec = parsePvdInput({ ...JV1, dnsServers: ['2001:db8:cafe::53'], dnsZones: ['cafe.example.com'], 'vendor-x': {}, priority: 'ignored too' });
    expect(spec).toMatchObject({ dnsServers: ['2001:db8:cafe::53'], dnsZones: ['cafe.example.com'], priority: 100 });
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
