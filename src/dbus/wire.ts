// The D-Bus wire format: values to and from bytes, directed by a type
// signature (D-Bus Specification, "Type System" and "Marshaling (Wire
// Format)"). pvdns reads what systemd-resolved and NetworkManager send it, so
// everything read here is untrusted: every length is checked against the
// bytes there are, padding must be zero, strings must be NUL-terminated UTF-8,
// and arrays and nesting have the spec's bounds. A refusal is a
// DBusWireError whose message is one line.

/** DBusWireError is bytes or values that are not valid D-Bus. */
export class DBusWireError extends Error {
  override readonly name = 'DBusWireError';
}

/**
 * Variant is a value with its own signature: what a "v" is written from.
 * (Read, a "v" is the unwrapped value; header fields are read as Variants.)
 */
export class Variant {
  constructor(
    readonly signature: string,
    readonly value: unknown,
  ) {}
}

/** The longest array body the spec allows: 2^26 bytes (64 MiB). */
export const MAX_ARRAY_LENGTH = 64 * 1024 * 1024;
/** How deep values may nest, variants included (the spec's 32 arrays plus 32 structs). */
export const MAX_DEPTH = 64;
/** The longest signature the spec allows. */
const MAX_SIGNATURE_LENGTH = 255;

/** A parsed single complete type. */
export type DBusType =
  | { code: 'y' | 'b' | 'n' | 'q' | 'i' | 'u' | 'x' | 't' | 'd' | 's' | 'o' | 'g' | 'v' }
  | { code: 'a'; elem: DBusType }
  | { code: '{'; key: DBusType; value: DBusType }
  | { code: '('; fields: DBusType[] };

const BASIC = new Set(['y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g']);

const ALIGN: Record<string, number> = {
  y: 1, g: 1, v: 1,
  n: 2, q: 2,
  b: 4, i: 4, u: 4, s: 4, o: 4, a: 4,
  x: 8, t: 8, d: 8, '(': 8, '{': 8,
};

// Peers name signatures in every variant they send: parsed ones are kept,
// but only so many, so a peer cannot grow the cache without bound.
const cache = new Map<string, DBusType[]>();
const CACHE_MAX = 512;

/**
 * parseSignature reads a signature into its complete types, checking it as
 * the spec's "Valid Signatures" says: at most 255 bytes, dict entries only
 * as an array's element with a basic key, no empty structs, arrays and
 * structs each nested at most 32 deep. "h" (unix fd) is refused: pvdns never
 * negotiates fd passing.
 */
export function parseSignature(sig: string): DBusType[] {
  const hit = cache.get(sig);
  if (hit) return hit;
  if (sig.length > MAX_SIGNATURE_LENGTH) throw new DBusWireError(`signature longer than ${MAX_SIGNATURE_LENGTH} bytes`);
  let pos = 0;
  const one = (arrays: number, structs: number): DBusType => {
    const c = sig[pos++];
    if (c === undefined) throw new DBusWireError(`signature "${sig}" ends inside a type`);
    if (BASIC.has(c) || c === 'v') return { code: c } as DBusType;
    if (c === 'h') throw new DBusWireError('unix fds (signature "h") are not supported');
    if (c === 'a') {
      if (arrays >= 32) throw new DBusWireError(`signature "${sig}" nests arrays more than 32 deep`);
      if (sig[pos] === '{') {
        pos++;
        if (structs >= 32) throw new DBusWireError(`signature "${sig}" nests structs more than 32 deep`);
        const key = one(arrays + 1, structs + 1);
        if (!BASIC.has(key.code)) throw new DBusWireError(`signature "${sig}" has a dict key that is not a basic type`);
        const value = one(arrays + 1, structs + 1);
        if (sig[pos++] !== '}') throw new DBusWireError(`signature "${sig}" has a dict entry without exactly two types`);
        return { code: 'a', elem: { code: '{', key, value } };
      }
      return { code: 'a', elem: one(arrays + 1, structs) };
    }
    if (c === '(') {
      if (structs >= 32) throw new DBusWireError(`signature "${sig}" nests structs more than 32 deep`);
      const fields: DBusType[] = [];
      while (sig[pos] !== ')') {
        if (pos >= sig.length) throw new DBusWireError(`signature "${sig}" has an unclosed struct`);
        fields.push(one(arrays, structs + 1));
      }
      pos++;
      if (fields.length === 0) throw new DBusWireError(`signature "${sig}" has an empty struct`);
      return { code: '(', fields };
    }
    throw new DBusWireError(`signature "${sig}" has "${c}" where a type belongs`);
  };
  const types: DBusType[] = [];
  while (pos < sig.length) types.push(one(0, 0));
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(sig, types);
  return types;
}

/** typeString writes a parsed type back as its signature. */
export function typeString(t: DBusType): string {
  switch (t.code) {
    case 'a':
      return t.elem.code === '{' ? `a{${typeString(t.elem.key)}${typeString(t.elem.value)}}` : `a${typeString(t.elem)}`;
    case '(':
      return `(${t.fields.map(typeString).join('')})`;
    case '{':
      return `{${typeString(t.key)}${typeString(t.value)}}`;
    default:
      return t.code;
  }
}

/** splitSignature is a signature's complete types, each as a string ("sa{sv}as" → ["s", "a{sv}", "as"]). */
export function splitSignature(sig: string): string[] {
  return parseSignature(sig).map(typeString);
}

function singleType(sig: string): DBusType {
  const types = parseSignature(sig);
  if (types.length !== 1) throw new DBusWireError(`variant signature "${sig}" is not one complete type`);
  return types[0]!;
}

const OBJECT_PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------
// Writing

class Writer {
  buf = Buffer.alloc(256);
  len = 0;
  constructor(readonly le: boolean) {}

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  align(n: number): void {
    const pad = (n - (this.len % n)) % n;
    this.ensure(pad);
    this.buf.fill(0, this.len, this.len + pad);
    this.len += pad;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }

  /** fixed writes a fixed-width number after aligning to its width. */
  fixed(width: 2 | 4 | 8, fn: (b: Buffer, at: number) => void): void {
    this.align(width);
    this.ensure(width);
    fn(this.buf, this.len);
    this.len += width;
  }

  u32(v: number): void {
    this.fixed(4, (b, at) => (this.le ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at)));
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

function bad(t: DBusType, v: unknown, why = ''): DBusWireError {
  const shown = typeof v === 'bigint' ? `${v}n` : typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : typeof v === 'object' ? (v === null ? 'null' : (v.constructor?.name ?? 'object')) : String(v);
  return new DBusWireError(`cannot write ${shown} as D-Bus "${typeString(t)}"${why ? `: ${why}` : ''}`);
}

function int(t: DBusType, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(t, v, `not an integer in ${min}..${max}`);
  return v;
}

function int64(t: DBusType, v: unknown, signed: boolean): bigint {
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else throw bad(t, v, 'not a bigint');
  if ((signed ? BigInt.asIntN(64, b) : BigInt.asUintN(64, b)) !== b) throw bad(t, v, 'out of range');
  return b;
}

function writeString(w: Writer, t: DBusType, v: unknown): void {
  if (typeof v !== 'string') throw bad(t, v);
  if (v.includes('\0')) throw bad(t, v, 'contains NUL');
  if (t.code === 'o' && !OBJECT_PATH.test(v)) throw bad(t, v, 'not an object path');
  const b = Buffer.from(v, 'utf8');
  if (t.code === 'g') {
    parseSignature(v);
    w.u8(b.length);
  } else {
    w.u32(b.length);
  }
  w.bytes(b);
  w.u8(0);
}

function write(w: Writer, t: DBusType, v: unknown, depth: number): void {
  switch (t.code) {
    case 'y':
      w.u8(int(t, v, 0, 0xff));
      return;
    case 'b':
      if (typeof v !== 'boolean') throw bad(t, v);
      w.u32(v ? 1 : 0);
      return;
    case 'n': {
      const n = int(t, v, -0x8000, 0x7fff);
      w.fixed(2, (b, at) => (w.le ? b.writeInt16LE(n, at) : b.writeInt16BE(n, at)));
      return;
    }
    case 'q': {
      const n = int(t, v, 0, 0xffff);
      w.fixed(2, (b, at) => (w.le ? b.writeUInt16LE(n, at) : b.writeUInt16BE(n, at)));
      return;
    }
    case 'i': {
      const n = int(t, v, -0x80000000, 0x7fffffff);
      w.fixed(4, (b, at) => (w.le ? b.writeInt32LE(n, at) : b.writeInt32BE(n, at)));
      return;
    }
    case 'u':
      w.u32(int(t, v, 0, 0xffffffff));
      return;
    case 'x': {
      const n = int64(t, v, true);
      w.fixed(8, (b, at) => (w.le ? b.writeBigInt64LE(n, at) : b.writeBigInt64BE(n, at)));
      return;
    }
    case 't': {
      const n = int64(t, v, false);
      w.fixed(8, (b, at) => (w.le ? b.writeBigUInt64LE(n, at) : b.writeBigUInt64BE(n, at)));
      return;
    }
    case 'd': {
      if (typeof v !== 'number') throw bad(t, v);
      w.fixed(8, (b, at) => (w.le ? b.writeDoubleLE(v, at) : b.writeDoubleBE(v, at)));
      return;
    }
    case 's':
    case 'o':
    case 'g':
      writeString(w, t, v);
      return;
    case 'v': {
      if (!(v instanceof Variant)) throw bad(t, v, 'a "v" is written from a Variant');
      if (depth >= MAX_DEPTH) throw bad(t, v, `nested more than ${MAX_DEPTH} deep`);
      const inner = singleType(v.signature);
      writeString(w, { code: 'g' }, v.signature);
      write(w, inner, v.value, depth + 1);
      return;
    }
    case '(': {
      if (!Array.isArray(v) || v.length !== t.fields.length) throw bad(t, v, `a struct is an array of ${t.fields.length} values`);
      if (depth >= MAX_DEPTH) throw bad(t, v, `nested more than ${MAX_DEPTH} deep`);
      w.align(8);
      t.fields.forEach((f, i) => write(w, f, v[i], depth + 1));
      return;
    }
    case '{':
      throw bad(t, v, 'a dict entry outside an array');
    case 'a': {
      if (depth >= MAX_DEPTH) throw bad(t, v, `nested more than ${MAX_DEPTH} deep`);
      w.align(4);
      const at = w.len;
      w.u32(0);
      w.align(ALIGN[t.elem.code]!);
      const start = w.len;
      const e = t.elem;
      if (e.code === 'y' && v instanceof Uint8Array) {
        w.bytes(v);
      } else if (e.code === '{') {
        const entries =
          v instanceof Map
            ? [...v.entries()]
            : v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && (e.key.code === 's' || e.key.code === 'o' || e.key.code === 'g')
              ? Object.entries(v)
              : null;
        if (!entries) throw bad(t, v, e.key.code === 's' || e.key.code === 'o' ? 'a dict is a Map or a plain object' : 'a dict is a Map');
        for (const [k, val] of entries) {
          w.align(8);
          write(w, e.key, k, depth + 1);
          write(w, e.value, val, depth + 1);
        }
      } else {
        if (!Array.isArray(v)) throw bad(t, v, 'an array is an Array');
        for (const item of v) write(w, e, item, depth + 1);
      }
      const length = w.len - start;
      if (length > MAX_ARRAY_LENGTH) throw bad(t, v, 'array longer than 64 MiB');
      if (w.le) w.buf.writeUInt32LE(length, at);
      else w.buf.writeUInt32BE(length, at);
      return;
    }
  }
}

/**
 * marshal writes values as a message body: `values[i]` as the signature's
 * i-th complete type, aligned from offset 0 (a body always starts on an
 * 8-byte boundary of its message). Little-endian unless told otherwise.
 */
export function marshal(signature: string, values: unknown[], littleEndian = true): Buffer {
  const types = parseSignature(signature);
  if (values.length !== types.length) throw new DBusWireError(`signature "${signature}" has ${types.length} values, got ${values.length}`);
  const w = new Writer(littleEndian);
  types.forEach((t, i) => write(w, t, values[i], 0));
  return w.buf.subarray(0, w.len);
}

// ---------------------------------------------------------------------------
// Reading

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    public end: number,
    readonly le: boolean,
    readonly keepVariants: boolean,
  ) {}

  need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new DBusWireError(`truncated: ${what} needs ${n} bytes at offset ${this.pos}, ${Math.max(0, this.end - this.pos)} left`);
  }

  align(n: number): void {
    const pad = (n - (this.pos % n)) % n;
    if (pad === 0) return;
    this.need(pad, 'padding');
    for (let i = 0; i < pad; i++) {
      if (this.buf[this.pos + i] !== 0) throw new DBusWireError(`padding byte at offset ${this.pos + i} is not zero`);
    }
    this.pos += pad;
  }

  u8(): number {
    this.need(1, 'a byte');
    return this.buf[this.pos++]!;
  }

  u32(): number {
    this.align(4);
    this.need(4, 'a uint32');
    const v = this.le ? this.buf.readUInt32LE(this.pos) : this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** text reads n bytes and the NUL after them as UTF-8. */
  text(n: number, what: string): string {
    this.need(n + 1, what);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    if (this.buf[this.pos + n] !== 0) throw new DBusWireError(`${what} at offset ${this.pos} is not NUL-terminated`);
    if (bytes.includes(0)) throw new DBusWireError(`${what} at offset ${this.pos} contains NUL`);
    let s: string;
    try {
      s = utf8.decode(bytes);
    } catch {
      throw new DBusWireError(`${what} at offset ${this.pos} is not valid UTF-8`);
    }
    this.pos += n + 1;
    return s;
  }

  signature(): string {
    const n = this.u8();
    const s = this.text(n, 'a signature');
    parseSignature(s);
    return s;
  }
}

function read(r: Reader, t: DBusType, depth: number): unknown {
  const fixed = <T>(width: 2 | 4 | 8, what: string, fn: (b: Buffer, at: number) => T): T => {
    r.align(width);
    r.need(width, what);
    const v = fn(r.buf, r.pos);
    r.pos += width;
    return v;
  };
  switch (t.code) {
    case 'y':
      return r.u8();
    case 'b': {
      const v = r.u32();
      if (v > 1) throw new DBusWireError(`boolean at offset ${r.pos - 4} is ${v}, not 0 or 1`);
      return v === 1;
    }
    case 'n':
      return fixed(2, 'an int16', (b, at) => (r.le ? b.readInt16LE(at) : b.readInt16BE(at)));
    case 'q':
      return fixed(2, 'a uint16', (b, at) => (r.le ? b.readUInt16LE(at) : b.readUInt16BE(at)));
    case 'i':
      return fixed(4, 'an int32', (b, at) => (r.le ? b.readInt32LE(at) : b.readInt32BE(at)));
    case 'u':
      return r.u32();
    case 'x':
      return fixed(8, 'an int64', (b, at) => (r.le ? b.readBigInt64LE(at) : b.readBigInt64BE(at)));
    case 't':
      return fixed(8, 'a uint64', (b, at) => (r.le ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)));
    case 'd':
      return fixed(8, 'a double', (b, at) => (r.le ? b.readDoubleLE(at) : b.readDoubleBE(at)));
    case 's':
      return r.text(r.u32(), 'a string');
    case 'o': {
      const s = r.text(r.u32(), 'an object path');
      if (!OBJECT_PATH.test(s)) throw new DBusWireError(`object path ${JSON.stringify(s.slice(0, 60))} is not valid`);
      return s;
    }
    case 'g':
      return r.signature();
    case 'v': {
      if (depth >= MAX_DEPTH) throw new DBusWireError(`values nested more than ${MAX_DEPTH} deep`);
      const sig = r.signature();
      const value = read(r, singleType(sig), depth + 1);
      return r.keepVariants ? new Variant(sig, value) : value;
    }
    case '(': {
      if (depth >= MAX_DEPTH) throw new DBusWireError(`values nested more than ${MAX_DEPTH} deep`);
      r.align(8);
      return t.fields.map((f) => read(r, f, depth + 1));
    }
    case '{':
      throw new DBusWireError('dict entry outside an array');
    case 'a': {
      if (depth >= MAX_DEPTH) throw new DBusWireError(`values nested more than ${MAX_DEPTH} deep`);
      const length = r.u32();
      if (length > MAX_ARRAY_LENGTH) throw new DBusWireError(`array at offset ${r.pos - 4} is ${length} bytes, over 64 MiB`);
      const e = t.elem;
      r.align(ALIGN[e.code]!);
      r.need(length, 'an array');
      const outerEnd = r.end;
      const end = r.pos + length;
      r.end = end; // an element running past the array's length is truncated input
      try {
        if (e.code === 'y') {
          const b = Buffer.from(r.buf.subarray(r.pos, end)); // a copy: the message buffer is not kept
          r.pos = end;
          return b;
        }
        if (e.code === '{') {
          const record = e.key.code === 's' || e.key.code === 'o';
          const out: Record<string, unknown> | Map<unknown, unknown> = record ? (Object.create(null) as Record<string, unknown>) : new Map();
          while (r.pos < end) {
            r.align(8);
            const k = read(r, e.key, depth + 1);
            const v = read(r, e.value, depth + 1);
            if (out instanceof Map) out.set(k, v);
            else out[k as string] = v;
          }
          return out;
        }
        const out: unknown[] = [];
        while (r.pos < end) out.push(read(r, e, depth + 1));
        return out;
      } finally {
        r.end = outerEnd;
      }
    }
  }
}

/**
 * unmarshalFrom reads the signature's values from buf[offset..end) and says
 * where they ended. Alignment counts from buf[0], so buf is a whole message
 * (or a body alone, at offset 0). keepVariants returns a "v" as a Variant
 * instead of its value (the header fields need their types).
 */
export function unmarshalFrom(
  signature: string,
  buf: Buffer,
  offset: number,
  end: number,
  littleEndian: boolean,
  keepVariants = false,
): { values: unknown[]; next: number } {
  const types = parseSignature(signature);
  const r = new Reader(buf, offset, Math.min(end, buf.length), littleEndian, keepVariants);
  const values = types.map((t) => read(r, t, 0));
  return { values, next: r.pos };
}

/**
 * unmarshal reads a body: the signature's values from buf at offset (0 by
 * default; alignment counts from buf[0]). A "v" reads as its value, a{sv}
 * as a null-prototype object. Little-endian unless told otherwise.
 */
export function unmarshal(signature: string, buf: Buffer, offset = 0, littleEndian = true): unknown[] {
  return unmarshalFrom(signature, buf, offset, buf.length, littleEndian).values;
}

// ---------------------------------------------------------------------------
// Messages (spec: "Message Format")

/** One message, as received or as sent. */
export interface DBusMessage {
  type: 'method_call' | 'method_return' | 'error' | 'signal';
  serial: number;
  replySerial?: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  destination?: string;
  sender?: string;
  signature: string;
  body: unknown[];
}

/** The largest message the spec allows (2^27 bytes, 128 MiB). */
export const MAX_MESSAGE = 128 * 1024 * 1024;

const TYPES = ['method_call', 'method_return', 'error', 'signal'] as const;

// The header fields (spec: "Header Fields") and the type each must have.
const FIELD = { path: 1, interface: 2, member: 3, errorName: 4, replySerial: 5, destination: 6, sender: 7, signature: 8, unixFds: 9 } as const;
const FIELD_TYPE: Record<number, string> = { 1: 'o', 2: 's', 3: 's', 4: 's', 5: 'u', 6: 's', 7: 's', 8: 'g', 9: 'u' };

const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/**
 * frameLength reads a message's fixed 16 bytes (byte order, type, flags,
 * version, body length, serial, header fields' length) and says how long
 * the whole message is; one over 128 MiB, or not version 1, is refused.
 */
export function frameLength(head: Buffer): number {
  if (head.length < 16) throw new DBusWireError(`truncated: a message header needs 16 bytes, got ${head.length}`);
  const order = head[0]!;
  if (order !== 0x6c && order !== 0x42) throw new DBusWireError(`byte order 0x${order.toString(16)} is neither 'l' nor 'B'`);
  if (head[3] !== 1) throw new DBusWireError(`protocol version ${head[3]} is not 1`);
  const le = order === 0x6c;
  const bodyLength = le ? head.readUInt32LE(4) : head.readUInt32BE(4);
  const fieldsLength = le ? head.readUInt32LE(12) : head.readUInt32BE(12);
  const headerEnd = 16 + fieldsLength;
  const total = headerEnd + pad8(headerEnd) + bodyLength;
  if (total > MAX_MESSAGE) throw new DBusWireError(`message of ${total} bytes is over the 128 MiB limit`);
  return total;
}

/**
 * decodeMessage reads one whole message (exactly frameLength bytes) in
 * either byte order. It refuses a message without the header fields its
 * type requires, with a field of the wrong type, carrying unix fds, or
 * whose body is not exactly its signature's values; it returns null for a
 * message type it does not know (the spec says to ignore those).
 */
export function decodeMessage(buf: Buffer): { message: DBusMessage; flags: number } | null {
  const total = frameLength(buf);
  if (buf.length !== total) throw new DBusWireError(`message is ${buf.length} bytes, its header says ${total}`);
  const le = buf[0] === 0x6c;
  const { values, next: headerEnd } = unmarshalFrom('yyyyuua(yv)', buf, 0, buf.length, le, true);
  const [, typeCode, flags, , bodyLength, serial, fields] = values as [number, number, number, number, number, number, [number, Variant][]];
  if (serial === 0) throw new DBusWireError('message serial is 0');
  const type = TYPES[typeCode - 1];
  const m: DBusMessage = { type: type ?? 'signal', serial, signature: '', body: [] };
  for (const [code, v] of fields) {
    const want = FIELD_TYPE[code];
    if (want === undefined) continue; // unknown fields are ignored (spec)
    if (v.signature !== want) throw new DBusWireError(`header field ${code} is "${v.signature}", not "${want}"`);
    switch (code) {
      case FIELD.path: m.path = v.value as string; break;
      case FIELD.interface: m.interface = v.value as string; break;
      case FIELD.member: m.member = v.value as string; break;
      case FIELD.errorName: m.errorName = v.value as string; break;
      case FIELD.replySerial: m.replySerial = v.value as number; break;
      case FIELD.destination: m.destination = v.value as string; break;
      case FIELD.sender: m.sender = v.value as string; break;
      case FIELD.signature: m.signature = v.value as string; break;
      case FIELD.unixFds: throw new DBusWireError('message carries unix fds, which are not supported');
    }
  }
  const bodyStart = headerEnd + pad8(headerEnd);
  for (let i = headerEnd; i < bodyStart; i++) if (buf[i] !== 0) throw new DBusWireError(`padding byte at offset ${i} is not zero`);
  const { values: body, next } = unmarshalFrom(m.signature, buf, bodyStart, bodyStart + bodyLength, le);
  if (next !== total) throw new DBusWireError(`body of ${bodyLength} bytes holds ${next - bodyStart} bytes of "${m.signature}"`);
  m.body = body;
  if (!type) return null;
  // spec: "Message Types": the fields each type requires.
  const missing =
    type === 'method_call' ? !m.path || !m.member
    : type === 'signal' ? !m.path || !m.interface || !m.member
    : type === 'error' ? !m.errorName || m.replySerial === undefined
    : m.replySerial === undefined;
  if (missing) throw new DBusWireError(`${type} without the header fields it requires`);
  return { message: m, flags };
}

/** encodeMessage writes a message, little-endian; one over 128 MiB is refused. */
export function encodeMessage(m: DBusMessage, flags = 0): Buffer {
  const body = marshal(m.signature, m.body);
  const fields: [number, Variant][] = [];
  if (m.path !== undefined) fields.push([FIELD.path, new Variant('o', m.path)]);
  if (m.interface !== undefined) fields.push([FIELD.interface, new Variant('s', m.interface)]);
  if (m.member !== undefined) fields.push([FIELD.member, new Variant('s', m.member)]);
  if (m.errorName !== undefined) fields.push([FIELD.errorName, new Variant('s', m.errorName)]);
  if (m.replySerial !== undefined) fields.push([FIELD.replySerial, new Variant('u', m.replySerial)]);
  if (m.destination !== undefined) fields.push([FIELD.destination, new Variant('s', m.destination)]);
  if (m.sender !== undefined) fields.push([FIELD.sender, new Variant('s', m.sender)]);
  if (m.signature !== '') fields.push([FIELD.signature, new Variant('g', m.signature)]);
  const header = marshal('yyyyuua(yv)', [0x6c, TYPES.indexOf(m.type) + 1, flags, 1, body.length, m.serial, fields]);
  const total = header.length + pad8(header.length) + body.length;
  if (total > MAX_MESSAGE) throw new DBusWireError(`message of ${total} bytes is over the 128 MiB limit`);
  return Buffer.concat([header, Buffer.alloc(pad8(header.length)), body], total);
}
