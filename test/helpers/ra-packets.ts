// Router Advertisements built octet by octet for the RA tests: the header
// (RFC 4861 §4.2) and the options pvdns reads — RDNSS, DNSSL (RFC 8106),
// Prefix Information (RFC 4861 §4.6.2), PREF64 (RFC 8781), the Encrypted
// DNS option (RFC 9463 §6.1) with its SvcParams (RFC 9460 §2.2) and the PvD
// option (RFC 8801 §3.1). Each builder writes exactly what its RFC's figure
// shows, so a test can also break one field on purpose.

import ipaddr from 'ipaddr.js';

export function v6bytes(address: string): number[] {
  return ipaddr.IPv6.parse(address).toByteArray();
}

function u16(n: number): number[] {
  return [(n >>> 8) & 0xff, n & 0xff];
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** wireName writes a name in DNS wire form, uncompressed (RFC 1035 §3.1). */
export function wireName(name: string): number[] {
  const out: number[] = [];
  for (const label of name.split('.').filter(Boolean)) out.push(label.length, ...Buffer.from(label, 'latin1'));
  out.push(0);
  return out;
}

function pad8(bytes: number[]): number[] {
  while (bytes.length % 8 !== 0) bytes.push(0);
  return bytes;
}

/** option wraps a body (the octets after type and length) with its type and length in units of 8. */
export function option(type: number, body: number[]): number[] {
  const bytes = pad8([type, 0, ...body]);
  bytes[1] = bytes.length / 8;
  return bytes;
}

export interface HeaderFields {
  routerLifetime?: number;
  curHopLimit?: number;
  managed?: boolean;
  other?: boolean;
  reachableTimeMs?: number;
  retransTimerMs?: number;
}

/** header writes the 16-octet RA header (type 134, code 0, checksum 0). */
export function header(h: HeaderFields = {}): number[] {
  return [
    134,
    0,
    0,
    0,
    h.curHopLimit ?? 64,
    (h.managed ? 0x80 : 0) | (h.other ? 0x40 : 0),
    ...u16(h.routerLifetime ?? 1800),
    ...u32(h.reachableTimeMs ?? 0),
    ...u32(h.retransTimerMs ?? 0),
  ];
}

/** ra is a whole RA payload: the header and the options. */
export function ra(h: HeaderFields, ...options: number[][]): Buffer {
  return Buffer.from([...header(h), ...options.flat()]);
}

export function rdnss(lifetime: number, ...addresses: string[]): number[] {
  return option(25, [0, 0, ...u32(lifetime), ...addresses.flatMap(v6bytes)]);
}

export function dnssl(lifetime: number, ...domains: string[]): number[] {
  return option(31, [0, 0, ...u32(lifetime), ...domains.flatMap(wireName)]);
}

export function pio(prefix: string, o: { valid?: number; preferred?: number; onLink?: boolean; autonomous?: boolean } = {}): number[] {
  const [addr, length] = prefix.split('/') as [string, string];
  const flags = (o.onLink ?? true ? 0x80 : 0) | (o.autonomous ?? true ? 0x40 : 0);
  return option(3, [Number(length), flags, ...u32(o.valid ?? 86400), ...u32(o.preferred ?? 14400), 0, 0, 0, 0, ...v6bytes(addr)]);
}

const PLC: Record<number, number> = { 96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5 };

/** pref64 writes RFC 8781's option; `plc` overrides the code the prefix's length gives. */
export function pref64(prefix: string, lifetimeS: number, plc?: number): number[] {
  const [addr, length] = prefix.split('/') as [string, string];
  const word = ((Math.ceil(lifetimeS / 8) & 0x1fff) << 3) | (plc ?? PLC[Number(length)]!);
  return option(38, [...u16(word), ...v6bytes(addr).slice(0, 12)]);
}

export interface PvdFields {
  http?: boolean;
  legacy?: boolean;
  delay?: number;
  sequence?: number;
  /** The inner RA header (the R flag). */
  header?: HeaderFields;
}

/** pvd writes RFC 8801's PvD option: flags, delay, sequence, the PvD ID, padding, the inner header, the options. */
export function pvd(id: string, f: PvdFields, ...options: number[][]): number[] {
  const flags = (f.http ? 0x80 : 0) | (f.legacy ? 0x40 : 0) | (f.header ? 0x20 : 0);
  const head = pad8([21, 0, flags, (f.delay ?? 0) & 0x0f, ...u16(f.sequence ?? 0), ...wireName(id)]);
  const bytes = [...head, ...(f.header ? header(f.header) : []), ...options.flat()];
  bytes[1] = bytes.length / 8;
  return bytes;
}

/** svcParam writes one SvcParam (RFC 9460 §2.2): key, value length, value. */
export function svcParam(key: number, value: number[]): number[] {
  return [...u16(key), ...u16(value.length), ...value];
}

/** alpn is the "alpn" SvcParam (key 1, RFC 9460 §7.1.1): length-prefixed protocol IDs. */
export function alpn(...ids: string[]): number[] {
  return svcParam(1, ids.flatMap((id) => [id.length, ...Buffer.from(id, 'latin1')]));
}

/** port is the "port" SvcParam (key 3, RFC 9460 §7.2). */
export function port(n: number): number[] {
  return svcParam(3, u16(n));
}

/** dohpath is the "dohpath" SvcParam (key 7, RFC 9461 §5.1): a relative URI Template in UTF-8. */
export function dohpath(template: string): number[] {
  return svcParam(7, [...Buffer.from(template, 'utf8')]);
}

/** mandatory is the "mandatory" SvcParam (key 0, RFC 9460 §8). */
export function mandatory(...keys: number[]): number[] {
  return svcParam(0, keys.flatMap(u16));
}

export interface DnrFields {
  priority?: number;
  lifetime?: number;
  /** The ADN's wire form; wireName(adn) by default. */
  adnWire?: number[];
  /** None: ADN-only mode (RFC 9463 §3.1.6), no Addr Length or SvcParams. */
  addresses?: string[];
  /** The SvcParams as sent, in the order given (a test may break RFC 9460 §2.2's order). */
  params?: number[][];
}

/**
 * dnr writes RFC 9463 §6.1's Encrypted DNS option (type 144): Service
 * Priority, Lifetime, ADN Length and ADN, then (unless ADN-only) Addr
 * Length, the addresses, SvcParams Length and the SvcParams, zero padded.
 */
export function dnr(adn: string, f: DnrFields = {}): number[] {
  const name = f.adnWire ?? wireName(adn);
  const body = [...u16(f.priority ?? 1), ...u32(f.lifetime ?? 1800), ...u16(name.length), ...name];
  if (f.addresses !== undefined) {
    const params = (f.params ?? []).flat();
    body.push(...u16(f.addresses.length * 16), ...f.addresses.flatMap(v6bytes), ...u16(params.length), ...params);
  }
  return option(144, body);
}
