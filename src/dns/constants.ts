// DNS protocol numbers used on the hot path (RFC 1035 §4.1, RFC 6891, RFC 8914).

/** HEADER_SIZE is the fixed DNS header length in octets (RFC 1035 §4.1.1). */
export const HEADER_SIZE = 12;

/** Header flag bits as they sit in the 16-bit flags word. */
export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
export const FLAG_AD = 0x0020;
export const FLAG_CD = 0x0010;
export const OPCODE_MASK = 0x7800;

/** EDNS DO bit in the OPT TTL's low 16 bits (RFC 3225 §3). */
export const EDNS_DO = 0x8000;

/** Record types pvdns itself looks at; everything else passes through untouched. */
export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  NAPTR: 35,
  DS: 43,
  OPT: 41,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  NSEC3: 50,
  SVCB: 64,
  HTTPS: 65,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
  CAA: 257,
} as const;

export const CLASS_IN = 1;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** Extended DNS Error INFO-CODEs pvdns emits (RFC 8914 §4). */
export const EDE = {
  OTHER: 0,
  STALE_ANSWER: 3,
  CACHED_ERROR: 13,
  NOT_READY: 14,
  BLOCKED: 15,
  PROHIBITED: 18,
  NOT_SUPPORTED: 21,
  NO_REACHABLE_AUTHORITY: 22,
  NETWORK_ERROR: 23,
} as const;

/** EDNS option code of the Extended DNS Error option (RFC 8914 §2). */
export const OPTION_EDE = 15;

/** UDP payload size pvdns advertises and answers within (DNS Flag Day 2020). */
export const EDNS_UDP_SIZE = 1232;

/** Plain-DNS UDP limit (RFC 1035 §2.3.4); also the floor for EDNS sizes (RFC 6891 §6.2.5). */
export const CLASSIC_UDP_SIZE = 512;

const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));
const TYPE_CODES = new Map<string, number>(Object.entries(TYPE));

/** typeName renders a type code as its mnemonic, or TYPEnnn (RFC 3597 §5). */
export function typeName(code: number): string {
  return TYPE_NAMES.get(code) ?? `TYPE${code}`;
}

/** typeCode parses a mnemonic or TYPEnnn; undefined when it is neither. */
export function typeCode(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = TYPE_CODES.get(upper);
  if (known !== undefined) return known;
  const m = /^TYPE(\d{1,5})$/.exec(upper);
  if (m) {
    const n = Number(m[1]);
    if (n <= 0xffff) return n;
  }
  return undefined;
}

const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));

/** rcodeName renders an RCODE as its mnemonic, or RCODEnnn. */
export function rcodeName(code: number): string {
  return RCODE_NAMES.get(code) ?? `RCODE${code}`;
}
