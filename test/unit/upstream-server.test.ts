// The server forms of DESIGN.md's "Encrypted DNS" and what each becomes under
// each encryption mode.

import { describe, expect, it } from 'vitest';
import { defaultEncryption, parseServer, type UpstreamServer } from '../../src/upstream/server.js';
import { serverProblem } from '../../src/pvd/schema.js';

function server(text: string, mode: 'strict' | 'opportunistic' | 'off'): UpstreamServer {
  const r = parseServer(text, mode);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

describe('server forms', () => {
  it('tls://ADDR#NAME is DoT on 853, authenticated by NAME, never in the clear when strict', () => {
    expect(server('tls://192.0.2.53#DNS.Example.NET.', 'strict')).toMatchObject({
      host: '192.0.2.53', port: 853, family: 4, transport: 'tls', authName: 'dns.example.net', authenticate: true, fallback: null,
      label: 'tls://192.0.2.53:853#dns.example.net',
    });
    expect(server('tls://[2001:db8::53]:8853#dns.example.net', 'strict')).toMatchObject({ host: '2001:db8::53', port: 8853, family: 6, label: 'tls://[2001:db8::53]:8853#dns.example.net' });
  });

  it("resolved's ADDR#NAME is DoT on 853, and its ADDR:PORT#NAME keeps the port for either transport", () => {
    expect(server('192.0.2.53#dns.example.net', 'strict')).toMatchObject({ port: 853, transport: 'tls', authName: 'dns.example.net' });
    expect(server('192.0.2.53:8853#dns.example.net', 'strict')).toMatchObject({ port: 8853, transport: 'tls' });
    expect(server('192.0.2.53#dns.example.net', 'off')).toMatchObject({ port: 53, transport: 'udp', label: '192.0.2.53:53' });
    expect(server('192.0.2.53:5353#dns.example.net', 'off')).toMatchObject({ port: 5353, transport: 'udp' });
    // Opportunistically, the clear fallback is the given port, unless that is DoT's own.
    expect(server('192.0.2.53:5353#dns.example.net', 'opportunistic').fallback?.label).toBe('192.0.2.53:5353');
    expect(server('192.0.2.53:853#dns.example.net', 'opportunistic').fallback?.label).toBe('192.0.2.53:53');
    expect(server('[fe80::1%eth0]:853#dns.example.net', 'strict')).toMatchObject({ host: 'fe80::1%eth0', port: 853, transport: 'tls' });
  });

  it('opportunistic tries TLS on 853 and falls back to the address as written', () => {
    const plain = server('192.0.2.1', 'opportunistic');
    expect(plain).toMatchObject({ port: 853, transport: 'tls', authName: null, authenticate: false, label: 'tls://192.0.2.1:853' });
    expect(plain.fallback?.label).toBe('192.0.2.1:53');
    const named = server('tls://192.0.2.1#dns.example.net', 'opportunistic');
    expect(named).toMatchObject({ authenticate: true });
    expect(named.fallback?.label).toBe('192.0.2.1:53');
  });

  it('strict makes a plain address DoT authenticated by the address itself (RFC 8310 §8)', () => {
    expect(server('192.0.2.1', 'strict')).toMatchObject({ port: 853, transport: 'tls', authName: null, authenticate: true, fallback: null });
  });

  it('off leaves a plain address alone', () => {
    expect(server('192.0.2.1:5300', 'off')).toMatchObject({ port: 5300, transport: 'udp', label: '192.0.2.1:5300', fallback: null });
  });

  it('https://HOST[:PORT]/PATH[#NAME] is DoH; a host name is kept for the PvD to resolve', () => {
    expect(server('https://192.0.2.53/dns-query#dns.example.net', 'strict')).toMatchObject({
      host: '192.0.2.53', port: 443, transport: 'https', path: '/dns-query', authName: 'dns.example.net', hostName: null, label: 'https://192.0.2.53/dns-query#dns.example.net',
    });
    expect(server('https://dns.example.net:8443/q?x=1', 'strict')).toMatchObject({
      host: 'dns.example.net', port: 8443, hostName: 'dns.example.net', authName: 'dns.example.net', path: '/q?x=1', label: 'https://dns.example.net:8443/q?x=1',
    });
    expect(server('https://[2001:db8::53]/dns-query', 'strict')).toMatchObject({ host: '2001:db8::53', family: 6, authName: null, authenticate: true });
    expect(server('https://192.0.2.53/dns-query', 'opportunistic').fallback?.label).toBe('192.0.2.53:53');
    expect(server('https://dns.example.net/dns-query', 'opportunistic').fallback).toBeNull();
  });

  it('refuses what is none of the forms, with the reason', () => {
    expect(parseServer('https://dns.example.net/dns-query', 'off')).toMatch(/no cleartext form/);
    expect(parseServer('https://dns.example.net', 'strict')).toMatch(/has no path/);
    expect(parseServer('https://dns.example.net/dns-query{?dns}', 'strict')).toMatch(/URI template/);
    expect(parseServer('https://u:p@dns.example.net/dns-query', 'strict')).toMatch(/credentials/);
    expect(parseServer('tls://dns.example.net#x', 'strict')).toMatch(/not an IP address/);
    expect(parseServer('192.0.2.1#bad name', 'strict')).toMatch(/after "#"/);
    expect(serverProblem('tls://224.0.0.1#x.example')).toMatch(/multicast/);
    expect(serverProblem('tls://192.0.2.1#dns.example.net')).toBeNull();
  });

  it('a PvD that lists an encrypted server is strict unless it says otherwise', () => {
    expect(defaultEncryption(['192.0.2.1', 'tls://192.0.2.2#x.example'])).toBe('strict');
    expect(defaultEncryption(['192.0.2.1#x.example'])).toBe('strict');
    expect(defaultEncryption(['https://x.example/dns-query'])).toBe('strict');
    expect(defaultEncryption(['192.0.2.1', '[2001:db8::1]:53'])).toBe('off');
  });
});
