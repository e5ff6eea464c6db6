// CNAME chains in an Answer, for the stage that finishes a chain in the PvD
// that owns its target (resolve/cname-stage.ts): finding where a chain must
// be cut, in place and without decoding the records, and joining the start of
// one answer to the answer for its target — records from two messages, each
// compressed against its own question — with every name written out
// uncompressed (owners, and the RDATA names of the types that may compress
// them, RFC 3597 §4), so the joined body follows any question.

import { RR_STRIDE, type Answer } from './answer.js';
import { HEADER_SIZE, TYPE } from './constants.js';
import { lowerWire, skipName } from './name.js';
import { answerSections, buildAnswer, type Rec } from './records.js';

const DNAME = 39;
const MAX_HOPS = 128;

/** ChainCut is where an answer's CNAME chain leaves for a name that must be answered elsewhere. */
export interface ChainCut {
  /** Wire keys of the chain's names kept: the question name, then each CNAME target before the cut. */
  owners: string[];
  /** Wire key (lower-cased) of the CNAME target the chain is cut at. */
  target: string;
}

/**
 * findChainCut walks the CNAME chain of `a`'s answer section from the
 * question name `nameKey` (RFC 1034 §3.6.2), asking `cut` about each target
 * in turn, and returns the first target it accepts with the names before it;
 * null when the chain ends (or loops) first. `question` is the header and
 * question `a`'s body follows, which its compression pointers may reach.
 */
export function findChainCut(question: Buffer, nameKey: string, a: Answer, cut: (targetKey: string) => boolean): ChainCut | null {
  const { body, rr } = a;
  const qlen = question.length;
  const owners: string[] = [];
  const targets: string[] = [];
  for (let i = 0, start = 0; i < a.an; start = rr[i * RR_STRIDE]!, i++) {
    const nameEnd = skipName(body, start, body.length);
    if (nameEnd < 0 || nameEnd + 10 > body.length || body.readUInt16BE(nameEnd) !== TYPE.CNAME) continue;
    const owner = keyAt(question, body, qlen + start);
    const target = keyAt(question, body, qlen + nameEnd + 10);
    if (owner === null || target === null) return null;
    owners.push(owner);
    targets.push(target);
  }
  const kept = [nameKey];
  // Each CNAME is followed at most once: a chain that loops inside one answer ends there.
  for (let cur = nameKey, hops = 0; hops < owners.length; hops++) {
    const i = owners.indexOf(cur);
    if (i < 0) return null;
    const target = targets[i]!;
    if (cut(target)) return { owners: kept, target };
    kept.push(target);
    cur = target;
  }
  return null;
}

/**
 * keyAt reads the name at offset `off` of the message `question` + `body`
 * (without joining them) as a lower-cased wire key; null when it is
 * malformed. parseResponse has refused bad pointers already; the hop limit
 * guards answers made elsewhere.
 */
function keyAt(question: Buffer, body: Buffer, off: number): string | null {
  const qlen = question.length;
  let key = '';
  for (let hops = 0; ; ) {
    const buf = off < qlen ? question : body;
    const o = off < qlen ? off : off - qlen;
    if (o >= buf.length) return null;
    const len = buf[o]!;
    if (len === 0) return key + '\0';
    if (len >= 0xc0) {
      if (o + 1 >= buf.length || ++hops > MAX_HOPS) return null;
      off = ((len & 0x3f) << 8) | buf[o + 1]!;
      if (off < HEADER_SIZE) return null;
      continue;
    }
    if (len >= 0x40 || o + 1 + len > buf.length) return null;
    key += lowerWire(buf, o, o + 1 + len);
    off += len + 1;
  }
}

/**
 * joinChain answers a question whose CNAME chain was cut (findChainCut) with
 * the chain's start from `first` and the rest from `target`, the answer to
 * the cut target's question: `first`'s answer records whose owner is one of
 * `owners` (the CNAMEs and their signatures) and DNAME records above them,
 * in chain order, then `target`'s answer and authority records; `first`'s authority and
 * additional records and `target`'s additional records are left out. RCODE,
 * EDE and negative-caching TTL are the target's (RFC 6604 §2, §3: they
 * describe the last name of the chain). Every name is written uncompressed.
 * `firstQuestion` and `targetQuestion` are the header and question each body
 * follows. Null when either answer cannot be taken apart.
 */
export function joinChain(firstQuestion: Buffer, first: Answer, owners: readonly string[], targetQuestion: Buffer, target: Answer, flags: number): Answer | null {
  const s = answerSections(firstQuestion, first);
  const t = answerSections(targetQuestion, target);
  if (s === null || t === null) return null;
  const keys = s.answer.map((r) => lowerWire(r.name, 0, r.name.length));
  // In chain order, as stubs that read a chain top-down need it: the DNAMEs that made a kept
  // CNAME (RFC 6672 §2.3; owned by an ancestor of it), then each kept name's records.
  const kept: Rec[] = s.answer.filter((r, i) => r.type === DNAME && !owners.includes(keys[i]!) && owners.some((o) => isBelow(o, keys[i]!)));
  for (const owner of owners) for (let i = 0; i < keys.length; i++) if (keys[i] === owner) kept.push(s.answer[i]!);
  const joined = buildAnswer(target.rcode, flags, { answer: [...kept, ...t.answer], authority: t.authority, additional: [] }, target.soaTtl);
  joined.ede = target.ede;
  return joined;
}

/** isBelow says whether the wire key `name` is `zone` or under it, at a label boundary. */
function isBelow(name: string, zone: string): boolean {
  if (!name.endsWith(zone)) return false;
  const at = name.length - zone.length;
  for (let off = 0; off < at; off += name.charCodeAt(off) + 1) if (off + name.charCodeAt(off) + 1 === at) return true;
  return at === 0;
}
