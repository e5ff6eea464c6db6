// DNS64 without a network: RFC 6052 address math (Table 1, both ways), RFC
// 7050 Pref64 discovery from AAAA answers (one prefix, several, ambiguous,
// hijacked), and RFC 6147 synthesis from A answers (TTL rule, exclusions,
// CNAME chains, PTR).

import type DNS from 'dns2';
import { Packet } from 'dns2';
import { describe, expect, it } from 'vitest';
import { ANSWER_SYNTHESIZED, parseResponse, type Answer } from '../../src/dns/answer.js';
import { RCODE } from '../../src/dns/constants.js';
import { encodeName, wireKey } from '../../src/dns/name.js';
import { PARSE_OK, parseQuery, questionMessage, type WireQuery } from '../../src/dns/query.js';
import { answerSections, expandName } from '../../src/dns/records.js';
import { encodeReply, TCP_LIMIT } from '../../src/dns/reply.js';
import { prefixesFromAddresses } from '../../src/dns64/discover.js';
import { contains, embed, extract, formatV6, parsePref64, WELL_KNOWN_PREFIX, type Pref64 } from '../../src/dns64/prefix.js';
import { excludedV4, insidePref64, judgeAaaa, ptrTarget, ptrViaCname, synthesizeAaaa } from '../../src/dns64/synthesize.js';
import { soa } from '../helpers/fake-upstream.js';
import ipaddr from 'ipaddr.js';

const T = Packet.TYPE;
const v6 = (text: string): Uint8Array => Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray());
const v4 = (text: string): Uint8Array => Uint8Array.from(ipaddr.IPv4.parse(text).toByteArray());
const P = (text: string): Pref64 => {
  const p = parsePref64(text);
  if (typeof p === 'string') throw new Error(p);
  return p;
};

describe('RFC 6052 address format', () => {
  // RFC 6052 §2.4, Table 1: 192.0.2.33 embedded in each prefix length.
  it.each([
    ['2001:db8::/32', '2001:db8:c000:221::'],
    ['2001:db8:100::/40', '2001:db8:1c0:2:21::'],
    ['2001:db8:122::/48', '2001:db8:122:c000:2:2100::'],
    ['2001:db8:122:300::/56', '2001:db8:122:3c0:0:221::'],
    ['2001:db8:122:344::/64', '2001:db8:122:344:c0:2:2100:0'],
    ['2001:db8:122:344::/96', '2001:db8:122:344::c000:221'],
  ])('embeds 192.0.2.33 in %s as %s, and extracts it back (Table 1)', (prefix, address) => {
    const p = P(prefix);
    expect(formatV6(embed(p, v4('192.0.2.33')))).toBe(address);
    expect(contains(p, v6(address))).toBe(true);
    expect([...extract(p, v6(address))]).toEqual([192, 0, 2, 33]);
  });

  it('embeds in the Well-Known Prefix as 64:ff9b::c000:221 (§2.4)', () => {
    expect(formatV6(embed(WELL_KNOWN_PREFIX, v4('192.0.2.33')))).toBe('64:ff9b::c000:221');
  });

  it.each([
    ['64:ff9b::/95', /\/32, \/40, \/48, \/56, \/64 or \/96/],
    ['192.0.2.0/24', /not an IPv6 prefix/],
    ['2001:db8::1/32', /bits set past \/32/],
    ['2001:db8:0:0:ff00::/96', /bits 64–71/],
    ['nonsense', /not an IPv6 prefix/],
  ])('refuses %s as a NAT64 prefix', (text, why) => {
    expect(parsePref64(text)).toMatch(why);
  });

  it('tells addresses outside the prefix apart', () => {
    expect(contains(P('2001:db8:122::/48'), v6('2001:db8:123:c000:2:2100::'))).toBe(false);
    expect(contains(WELL_KNOWN_PREFIX, v6('64:ff9c::c000:221'))).toBe(false);
  });
});

describe('RFC 7050 Pref64::/n discovery', () => {
  const discover = (...addrs: string[]): string[] => prefixesFromAddresses(addrs.map(v6)).map((p) => p.text);

  // standards.md §4.2 worked examples: the AAAA records for 192.0.0.170 and .171 at each length.
  it.each([
    ['64:ff9b::c000:aa', '64:ff9b::c000:ab', '64:ff9b::/96'],
    ['2001:db8:c000:aa::', '2001:db8:c000:ab::', '2001:db8::/32'],
    ['2001:db8:1c0:0:aa::', '2001:db8:1c0:0:ab::', '2001:db8:100::/40'],
    ['2001:db8:122:c000:0:aa00::', '2001:db8:122:c000:0:ab00::', '2001:db8:122::/48'],
    ['2001:db8:122:3c0:0:aa::', '2001:db8:122:3c0:0:ab::', '2001:db8:122:300::/56'],
    ['2001:db8:122:344:c0:0:aa00:0', '2001:db8:122:344:c0:0:ab00:0', '2001:db8:122:344::/64'],
    ['2001:db8:122:344::c000:aa', '2001:db8:122:344::c000:ab', '2001:db8:122:344::/96'],
  ])('finds the prefix of %s and %s: %s', (x, y, prefix) => {
    expect(discover(x, y)).toEqual([prefix]);
  });

  it('keeps several prefixes in the order received (§3.4, vector V3)', () => {
    expect(discover('2001:db8:42::c000:aa', '2001:db8:43::c000:aa', '64:ff9b::c000:aa')).toEqual(['2001:db8:42::/96', '2001:db8:43::/96', '64:ff9b::/96']);
  });

  it('refuses a "prefix" in the IPv4-mapped, link-local or multicast space (a hijacking resolver)', () => {
    expect(discover('::ffff:c000:aa')).toEqual([]);
    expect(discover('fe80::c000:aa')).toEqual([]);
    expect(parsePref64('::ffff:0:0/96')).toMatch(/IPv4-mapped/);
    expect(parsePref64('ff02::/96')).toMatch(/multicast/);
  });

  it('keeps one copy of a prefix listed twice', () => {
    expect(discover('64:ff9b::c000:aa', '64:ff9b::c000:ab', '64:ff9b::c000:aa')).toEqual(['64:ff9b::/96']);
  });

  it('repeats the search with 192.0.0.171 when .170 appears twice in an address (V4)', () => {
    expect(discover('2001:db8:c000:aa::c000:aa', '2001:db8:c000:aa::c000:ab')).toEqual(['2001:db8:c000:aa::/96']);
  });

  it('fails when .170 is ambiguous and .171 is absent (V4b)', () => {
    expect(discover('2001:db8:c000:aa::c000:aa')).toEqual([]);
  });

  it.each([
    ['an address without a well-known IPv4 address (a hijacked answer, V5)', '2001:db8::1'],
    ['a well-known address with the u octet set (V6)', '2001:db8:122:c000:100:aa00::'],
    ['a well-known address followed by a non-zero suffix', '2001:db8:c000:aa::1'],
  ])('finds nothing in %s', (_, addr) => {
    expect(discover(addr)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Synthesis: answers as an upstream sends them, built with dns2 and read by parseResponse.

const NAME = 'v4only.example';
type Rr = DNS.Packet.Resource;
const A = (address: string, ttl = 3600, name = NAME): Rr => ({ name, type: T.A, class: 1, ttl, address }) as Rr;
const AAAA = (address: string, ttl = 300, name = NAME): Rr => ({ name, type: T.AAAA, class: 1, ttl, address }) as Rr;
const CNAME = (name: string, target: string, ttl = 120): Rr => ({ name, type: T.CNAME, class: 1, ttl, domain: target }) as Rr;
const SOA = (ttl: number, minimum = ttl): Rr => soa('example', ttl, minimum);

function upstream(type: number, o: { rcode?: number; answers?: Rr[]; authorities?: Rr[]; name?: string } = {}): Answer {
  const name = o.name ?? NAME;
  const p = new Packet();
  Object.assign(p.header, { id: 7, qr: 1, rd: 1, ra: 1, rcode: o.rcode ?? 0 });
  p.questions.push({ name, type, class: 1 } as DNS.Packet.Question);
  p.answers.push(...(o.answers ?? []));
  p.authorities.push(...(o.authorities ?? []));
  const r = parseResponse(p.toBuffer(), { id: 7, nameKey: wireKey(name), qtype: type, qclass: 1 });
  if (!r.ok) throw new Error(r.reason);
  return r.answer;
}

const question = (name = NAME, type: number = T.AAAA): Buffer => questionMessage(encodeName(name), type);

/** seen is what a client asking AAAA for the name gets with this answer. */
function seen(a: Answer, name = NAME, type: number = T.AAAA) {
  const q = {} as WireQuery;
  expect(parseQuery(question(name, type), q)).toBe(PARSE_OK);
  const p = Packet.parse(encodeReply(q, a, TCP_LIMIT));
  return {
    rcode: p.header.rcode,
    answers: p.answers.map((r) => ({ name: r.name, type: r.type, ttl: r.ttl, data: (r as { address?: string; domain?: string }).address ?? (r as { domain?: string }).domain })),
    authorities: p.authorities.length,
  };
}

const WKP = [WELL_KNOWN_PREFIX];

describe('RFC 6147 AAAA synthesis', () => {
  it('makes 64:ff9b::c000:201 with TTL min(A TTL, SOA of the AAAA answer) (D64-1)', () => {
    const nodata = upstream(T.AAAA, { authorities: [SOA(300)] });
    expect(judgeAaaa(question(), nodata).kind).toBe('empty');
    const made = synthesizeAaaa(question(), nodata, upstream(T.A, { answers: [A('192.0.2.1', 3600)] }), WKP)!;
    expect(seen(made).answers).toEqual([{ name: NAME, type: T.AAAA, ttl: 300, data: '64:ff9b::c000:201' }]);
    expect(made.flags & ANSWER_SYNTHESIZED).toBeTruthy();
  });

  it('caps the TTL at 600 s when the AAAA answer has no SOA (D64-2)', () => {
    const made = synthesizeAaaa(question(), upstream(T.AAAA), upstream(T.A, { answers: [A('192.0.2.1', 3600)] }), WKP)!;
    expect(seen(made).answers[0]!.ttl).toBe(600);
  });

  it('keeps the A TTL when it is the smaller', () => {
    const made = synthesizeAaaa(question(), upstream(T.AAAA, { authorities: [SOA(900)] }), upstream(T.A, { answers: [A('192.0.2.1', 60)] }), WKP)!;
    expect(seen(made).answers[0]!.ttl).toBe(60);
  });

  it('treats an answer with only IPv4-mapped AAAA as empty (D64-3, §5.1.4)', () => {
    expect(judgeAaaa(question(), upstream(T.AAAA, { answers: [AAAA('::ffff:c000:201')] })).kind).toBe('empty');
  });

  it('drops IPv4-mapped AAAA records beside real ones and never returns them, nor AD (§5.1.4)', () => {
    const mixed = upstream(T.AAAA, { answers: [AAAA('::ffff:c000:201'), AAAA('2001:db8::1')] });
    mixed.flags |= 0x20;
    const v = judgeAaaa(question(), mixed);
    expect(v.kind).toBe('filtered');
    if (v.kind !== 'filtered') return;
    expect(seen(v.answer).answers.map((r) => r.data)).toEqual(['2001:db8::1']);
    expect(v.answer.flags & 0x20).toBe(0);
  });

  it('answers NODATA with the chain when every A address is excluded', () => {
    const made = synthesizeAaaa(question(), upstream(T.AAAA), upstream(T.A, { answers: [CNAME(NAME, 'lan.example.net'), A('10.0.0.1', 300, 'lan.example.net')] }), WKP)!;
    expect(made.flags & ANSWER_SYNTHESIZED).toBe(0);
    expect(seen(made).answers.map((r) => r.type)).toEqual([T.CNAME]);
  });

  it('leaves real AAAA records and NXDOMAIN alone (§5.1.1, §5.1.2)', () => {
    expect(judgeAaaa(question(), upstream(T.AAAA, { answers: [AAAA('2001:db8::1')] })).kind).toBe('real');
    expect(judgeAaaa(question(), upstream(T.AAAA, { rcode: RCODE.NXDOMAIN, authorities: [SOA(300)] })).kind).toBe('nxdomain');
  });

  it('treats SERVFAIL and other errors as an empty answer (§5.1.2)', () => {
    expect(judgeAaaa(question(), upstream(T.AAAA, { rcode: RCODE.SERVFAIL })).kind).toBe('empty');
  });

  it('does not represent non-global IPv4 addresses with the Well-Known Prefix (D64-5, RFC 6052 §3.1)', () => {
    expect(excludedV4(WELL_KNOWN_PREFIX, v4('10.0.0.1'))).toBe(true);
    expect(excludedV4(WELL_KNOWN_PREFIX, v4('192.168.1.1'))).toBe(true);
    expect(excludedV4(WELL_KNOWN_PREFIX, v4('192.0.2.1'))).toBe(false);
    // A network-specific prefix may carry private addresses (RFC 6052 §3.2), never loopback or multicast.
    expect(excludedV4(P('2001:db8:64::/96'), v4('10.0.0.1'))).toBe(false);
    expect(excludedV4(P('2001:db8:64::/96'), v4('127.0.0.1'))).toBe(true);
    expect(excludedV4(P('2001:db8:64::/96'), v4('224.0.0.1'))).toBe(true);
    expect(synthesizeAaaa(question(), upstream(T.AAAA), upstream(T.A, { answers: [A('10.0.0.1')] }), WKP)!.an).toBe(0);
  });

  it('keeps the CNAME chain and makes one AAAA per A record and per prefix, in order (§5.1.5, RFC 7050 §3)', () => {
    const a = upstream(T.A, { answers: [CNAME(NAME, 'alias.example.net'), A('192.0.2.1', 300, 'alias.example.net'), A('198.51.100.7', 300, 'alias.example.net')] });
    const prefixes = [P('2001:db8:42::/96'), WELL_KNOWN_PREFIX];
    const made = synthesizeAaaa(question(), upstream(T.AAAA, { answers: [CNAME(NAME, 'alias.example.net')] }), a, prefixes)!;
    expect(seen(made).answers.map((r) => `${r.name} ${r.type} ${r.data}`)).toEqual([
      `${NAME} ${T.CNAME} alias.example.net`,
      `alias.example.net ${T.AAAA} 2001:db8:42::c000:201`,
      `alias.example.net ${T.AAAA} 64:ff9b::c000:201`,
      `alias.example.net ${T.AAAA} 2001:db8:42::c633:6407`,
      `alias.example.net ${T.AAAA} 64:ff9b::c633:6407`,
    ]);
  });

  it('clears AD: pvdns validates nothing (§5.5)', () => {
    const a = upstream(T.A, { answers: [A('192.0.2.1')] });
    a.flags |= 0x20;
    expect(synthesizeAaaa(question(), upstream(T.AAAA), a, WKP)!.flags & 0x20).toBe(0);
  });

  it('marks an answer from the network as synthesized only when an address lies inside the Pref64', () => {
    expect(insidePref64(upstream(T.AAAA, { answers: [AAAA('64:ff9b::c000:201')] }), WKP)).toBe(true);
    expect(insidePref64(upstream(T.AAAA, { answers: [AAAA('2001:db8::1')] }), WKP)).toBe(false);
    expect(insidePref64(upstream(T.AAAA, { answers: [AAAA('64:ff9b::c000:201')] }), [])).toBe(false);
  });
});

describe('RFC 6147 §5.3.1 PTR under the Pref64', () => {
  const reverse = (addr: string): string =>
    [...Buffer.from(v6(addr)).toString('hex')].reverse().join('.') + '.ip6.arpa';

  it('reads the embedded IPv4 address from a full ip6.arpa name (NAT3)', () => {
    const name = 'a.a.0.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa';
    expect(reverse('64:ff9b::c000:aa')).toBe(name);
    expect([...ptrTarget(wireKey(name), WKP)!.v4]).toEqual([192, 0, 0, 170]);
  });

  it('ignores names outside the prefixes and names that are not a whole address', () => {
    expect(ptrTarget(wireKey(reverse('2001:db8::c000:aa')), WKP)).toBeNull();
    expect(ptrTarget(wireKey('b.9.f.f.4.6.0.0.ip6.arpa'), WKP)).toBeNull();
    expect(ptrTarget(wireKey('1.0.0.127.in-addr.arpa'), WKP)).toBeNull();
  });

  it('answers with a CNAME to the in-addr.arpa name followed by its PTR records', () => {
    const qname = reverse('64:ff9b::c000:201');
    const target = '1.2.0.192.in-addr.arpa';
    const ptr = upstream(T.PTR, { name: target, answers: [{ name: target, type: T.PTR, class: 1, ttl: 300, domain: 'host.example' } as Rr] });
    const made = ptrViaCname(encodeName(qname), question(target, T.PTR), ptr)!;
    expect(seen(made, qname, T.PTR).answers).toEqual([
      { name: qname, type: T.CNAME, ttl: 600, data: target },
      { name: target, type: T.PTR, ttl: 300, data: 'host.example' },
    ]);
  });
});

describe('record decoding', () => {
  it('expands compression pointers in owner names and in the RDATA of CNAME, MX and SOA', () => {
    // A reply built by hand with pointers: the question name at 12, the CNAME target pointing into it.
    const q = question('www.example.com', T.A);
    const body = Buffer.concat([
      Buffer.from([0xc0, 12]), // owner: www.example.com
      Buffer.from([0, 5, 0, 1, 0, 0, 0, 60, 0, 6]),
      Buffer.from([3, 0x66, 0x6f, 0x6f, 0xc0, 16]), // foo.example.com
      Buffer.from([0xc0, q.length + 12]), // owner: foo.example.com (the CNAME target)
      Buffer.from([0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]),
    ]);
    const a: Answer = { rcode: 0, flags: 0, body, an: 2, ns: 0, ar: 0, rr: new Uint32Array(6), soaTtl: -1, ede: null };
    const s = answerSections(q, a)!;
    expect(s.answer.map((r) => r.name.toString('latin1'))).toEqual(['\x03www\x07example\x03com\x00', '\x03foo\x07example\x03com\x00']);
    expect(s.answer[0]!.rdata.toString('latin1')).toBe('\x03foo\x07example\x03com\x00');
  });

  it('refuses a pointer loop', () => {
    expect(expandName(Buffer.from([0xc0, 0]), 0)).toBeNull();
  });
});
