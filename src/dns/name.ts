// Domain names in wire form (RFC 1035 §3.1, §4.1.4). Names are compared as
// lower-cased wire strings in latin1 (one char per octet), so a suffix of a
// name at a label boundary is a plain substring and case folding touches
// ASCII letters only (RFC 4343 §3).

const MAX_NAME = 255;
const MAX_POINTER_HOPS = 64;

/**
 * skipName returns the offset just after the name starting at `off`
 * (a compression pointer ends the name), or -1 when the name runs past `end`
 * or uses the reserved label types 01 and 10.
 */
export function skipName(buf: Buffer, off: number, end: number): number {
  for (;;) {
    if (off >= end) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    const kind = len & 0xc0;
    if (kind === 0xc0) return off + 2 <= end ? off + 2 : -1;
    if (kind !== 0) return -1;
    off += len + 1;
  }
}

/** The first offset a compression pointer may point at: names live after the header. */
const FIRST_NAME_OFFSET = 12;

/**
 * Pointer hops one name may take. A compressor points each name at one
 * earlier name, which has at least one label of its own before its pointer,
 * so a real name needs at most one hop per label (127 in 255 octets).
 */
const MAX_CHECKED_HOPS = 128;

/**
 * checkName is skipName for names from an upstream: it decodes the name at
 * `off` without allocating and returns the offset just after its own octets
 * (as skipName does), or -1 when the name cannot be decoded. Its own octets
 * must lie before `end`; a pointer may reach back anywhere from the header's
 * end on. Each pointer must point strictly before where the run of labels
 * it ends began — RFC 1035 §4.1.4: a pointer replaces the name's end by "a
 * prior occurrence of the same name" — so the runs walk backwards and every
 * loop (a pointer to itself, two pointers to each other, a pointer into its
 * own labels) ends as a forward pointer, refused. Also refused: a pointer
 * past the message, reserved label types (01, 10), and a name of more than
 * 255 octets once decompressed (RFC 1035 §2.3.4).
 */
export function checkName(buf: Buffer, off: number, end: number): number {
  let next = -1;
  let runStart = off;
  let size = 1; // the root octet
  let hops = 0;
  for (;;) {
    if (off >= end) return -1;
    const len = buf[off]!;
    if (len === 0) return next < 0 ? off + 1 : next;
    if (len < 0x40) {
      size += len + 1;
      if (size > MAX_NAME) return -1;
      off += len + 1;
      continue;
    }
    if (len < 0xc0 || off + 1 >= end) return -1;
    const target = ((len & 0x3f) << 8) | buf[off + 1]!;
    if (target >= runStart || target < FIRST_NAME_OFFSET || ++hops > MAX_CHECKED_HOPS) return -1;
    if (next < 0) {
      next = off + 2;
      end = buf.length; // what a pointer reaches back to may lie outside the record
    }
    off = runStart = target;
  }
}

/**
 * lowerWire returns the octets [start, end) as a latin1 string with ASCII
 * letters folded to lower case. Only the name's own octets are passed in, so
 * length octets (≤ 63) are never mistaken for letters.
 */
export function lowerWire(buf: Buffer, start: number, end: number): string {
  let needs = false;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) {
      needs = true;
      break;
    }
  }
  if (!needs) return buf.toString('latin1', start, end);
  const tmp = Buffer.allocUnsafe(end - start);
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    tmp[i - start] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return tmp.toString('latin1');
}

/**
 * equalsWireKey compares the octets [start, start + key.length) of `buf`
 * with a wire key, folding ASCII case (RFC 4343 §3), without building a
 * string.
 */
export function equalsWireKey(buf: Buffer, start: number, end: number, key: string): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) {
    const c = buf[start + i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== key.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * readName decodes the (possibly compressed) name at `off` into presentation
 * form without a trailing dot ("" for the root), escaping octets that are not
 * printable as RFC 1035 §5.1 does. Returns null on a malformed name.
 */
export function readName(buf: Buffer, off: number, end = buf.length): string | null {
  const labels: string[] = [];
  let hops = 0;
  let total = 1; // the root octet
  for (;;) {
    if (off >= end) return null;
    const len = buf[off]!;
    if (len === 0) break;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (off + 1 >= end || ++hops > MAX_POINTER_HOPS) return null;
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
      continue;
    }
    if (kind !== 0 || off + 1 + len > end) return null;
    total += len + 1;
    if (total > MAX_NAME) return null;
    labels.push(escapeLabel(buf, off + 1, off + 1 + len));
    off += len + 1;
  }
  return labels.join('.');
}

function escapeLabel(buf: Buffer, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x2e || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += '\\' + String(c).padStart(3, '0');
  }
  return out;
}

/**
 * encodeName turns a presentation-form name ("corp.example.com", with or
 * without the trailing dot; "" or "." for the root) into uncompressed wire
 * form. Throws on empty labels, labels over 63 octets or names over 255.
 */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed === '') return Buffer.from([0]);
  const parts: Buffer[] = [];
  let total = 1;
  for (const label of splitLabels(trimmed)) {
    if (label.length === 0) throw new Error(`empty label in "${name}"`);
    if (label.length > 63) throw new Error(`label longer than 63 octets in "${name}"`);
    parts.push(Buffer.from([label.length]), label);
    total += label.length + 1;
  }
  if (total > MAX_NAME) throw new Error(`name longer than 255 octets: "${name}"`);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function splitLabels(name: string): Buffer[] {
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    if (ch === '.') {
      labels.push(Buffer.from(cur));
      cur = [];
    } else if (ch === '\\') {
      const digits = /^\d{3}/.exec(name.slice(i + 1));
      if (digits) {
        cur.push(Number(digits[0]) & 0xff);
        i += 3;
      } else if (i + 1 < name.length) {
        cur.push(name.charCodeAt(++i) & 0xff);
      }
    } else {
      const code = name.charCodeAt(i);
      if (code > 0xff) throw new Error(`non-ASCII character in "${name}" (use the A-label form)`);
      cur.push(code);
    }
  }
  labels.push(Buffer.from(cur));
  return labels;
}

/** wireKey is the lower-cased wire form of a presentation name, as lowerWire returns it. */
export function wireKey(name: string): string {
  const wire = encodeName(name);
  return lowerWire(wire, 0, wire.length);
}

/** keyToName renders a wire key back to presentation form (for logs and the API). */
export function keyToName(key: string): string {
  const buf = Buffer.from(key, 'latin1');
  return readName(buf, 0) ?? '';
}
