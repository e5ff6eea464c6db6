// The DNS64 stage: keeps synthesized AAAA answers where they were made. It
// runs after coalescing, so it sees each upstream answer once, before the
// cache keeps it. An AAAA answer with an address inside the PvD's Pref64 is
// marked synthesized (ANSWER_SYNTHESIZED): the cache keeps it only under its
// PvD and drops it when the prefix changes, and the API reports it. For a PvD
// with dns64Synthesize, pvdns is the DNS64 (RFC 6147): it makes AAAA records
// from A records when the AAAA answer is empty, and answers PTR queries for
// addresses inside the Pref64.

import { AnswerBuilder, ANSWER_SYNTHESIZED, errorAnswer, LOCAL_TTL, type Answer } from '../dns/answer.js';
import { EDE, FLAG_CD, FLAG_RD, RCODE, TYPE } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { parseQuery, PARSE_OK, questionMessage } from '../dns/query.js';
import { WELL_KNOWN_NAME } from '../dns64/discover.js';
import { copyAnswer, insidePref64, inAddrName, judgeAaaa, ptrTarget, ptrViaCname, synthesizeAaaa } from '../dns64/synthesize.js';
import type { Dns64Info } from '../dns64/tracker.js';
import type { Pvd } from '../pvd/model.js';
import { Query } from './query.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

const WELL_KNOWN_WIRE = encodeName(WELL_KNOWN_NAME);
const UNDECODABLE = errorAnswer(RCODE.SERVFAIL, { code: EDE.OTHER, text: 'DNS64: an upstream answer could not be taken apart to synthesize from' });
/** The PvD lost its prefixes while an A query was out: no AAAA to give. */
const NODATA = errorAnswer(RCODE.NOERROR);

export class Dns64Stage implements Stage {
  readonly name = 'dns64';

  constructor(
    /** The PvD's prefixes and whether pvdns synthesizes for it. */
    private readonly dns64: (pvd: Pvd) => Dns64Info,
    /**
     * The pipeline from the cache stage on, in the query's PvD: where the A
     * query behind a synthesis and the in-addr.arpa query behind a PTR go, so
     * they are cached and coalesced like any other.
     */
    private readonly inPvd: () => Next,
  ) {}

  handle(q: Query, next: Next): Result {
    if (q.qtype !== TYPE.AAAA && q.qtype !== TYPE.PTR) return next(q);
    const pvd = q.pvd!;
    const info = this.dns64(pvd);
    if (info.prefixes.length === 0) return next(q);
    // RFC 6147 §5.5: a client that set DO and CD validates itself; it gets the records as they are.
    const validating = q.dnssecOk && (q.flags & FLAG_CD) !== 0;
    if (q.qtype === TYPE.PTR) return info.synthesize && !validating ? this.ptr(q, info, next) : next(q);
    const r = next(q);
    // The prefixes as they are when the answer arrives: a change meanwhile has already emptied the cache.
    const inspect = (a: Answer): Result => {
      const now = this.dns64(pvd);
      return now.synthesize && !validating ? this.synthesize(q, a) : mark(a, now);
    };
    return isPromise(r) ? r.then(inspect) : inspect(r);
  }

  /** synthesize answers a AAAA query as a DNS64 does (RFC 6147 §5.1). */
  private synthesize(q: Query, aaaa: Answer): Result {
    const pvd = q.pvd!;
    const question = q.msg.subarray(0, q.qEnd);
    const verdict = judgeAaaa(question, aaaa);
    if (verdict.kind === 'nxdomain') return aaaa;
    if (verdict.kind === 'real') return mark(aaaa, this.dns64(pvd));
    if (verdict.kind === 'filtered') return mark(verdict.answer, this.dns64(pvd));
    if (verdict.kind === 'undecodable') return UNDECODABLE;
    const sub = this.subquery(q, q.msg.subarray(12, q.qEnd - 4), TYPE.A);
    const r = this.inPvd()(sub);
    const done = (a: Answer): Answer => {
      q.server = sub.server ?? q.server;
      // §5.1.6: an empty A answer or an error is the basis of the reply (a copy: it may be cached under A too).
      if (a.rcode !== RCODE.NOERROR || a.an === 0) return copyAnswer(a);
      const prefixes = this.dns64(pvd).prefixes;
      if (prefixes.length === 0) return copyAnswer(a.rcode === RCODE.NOERROR ? NODATA : a);
      return synthesizeAaaa(question, aaaa, a, prefixes) ?? UNDECODABLE;
    };
    return isPromise(r) ? r.then(done) : done(r);
  }

  /**
   * ptr answers a PTR query for an address inside the Pref64 (RFC 6147
   * §5.3.1): a CNAME to the embedded IPv4 address's in-addr.arpa name with
   * what that name holds; the well-known addresses are ipv4only.arpa (RFC
   * 8880 §7.2.1). When the in-addr.arpa name has no PTR, the query goes on
   * as any other (§5.3.1: a CNAME should point at data).
   */
  private ptr(q: Query, info: Dns64Info, next: Next): Result {
    const target = ptrTarget(q.nameKey, info.prefixes);
    if (target === null) return next(q);
    const [a, b, c, d] = target.v4;
    if (a === 192 && b === 0 && c === 0 && (d === 170 || d === 171)) {
      return { ...new AnswerBuilder().add(0, 0, TYPE.PTR, LOCAL_TTL, WELL_KNOWN_WIRE).build(RCODE.NOERROR), flags: ANSWER_SYNTHESIZED };
    }
    const sub = this.subquery(q, inAddrName(target.v4), TYPE.PTR);
    const r = this.inPvd()(sub);
    const done = (t: Answer): Result => {
      if (t.rcode !== RCODE.NOERROR || t.an === 0) return next(q);
      q.server = sub.server ?? q.server;
      return ptrViaCname(q.msg.subarray(12, q.qEnd - 4), sub.msg.subarray(0, sub.qEnd), t) ?? next(q);
    };
    return isPromise(r) ? r.then(done) : done(r);
  }

  /** subquery is a query pvdns asks in the same PvD on behalf of `q`, with its CD and DO bits. */
  private subquery(q: Query, name: Buffer, qtype: number): Query {
    const msg = questionMessage(name, qtype);
    msg.writeUInt16BE(FLAG_RD | (q.flags & FLAG_CD), 2);
    const sub = new Query(q.transport, q.client, q.startedAt);
    if (parseQuery(msg, sub) !== PARSE_OK) throw new Error('dns64: cannot build a subquery');
    sub.dnssecOk = q.dnssecOk;
    sub.pvd = q.pvd;
    return sub;
  }
}

/** mark flags an answer holding an address inside the PvD's Pref64 as synthesized. */
function mark(a: Answer, info: Dns64Info): Answer {
  if (!(a.flags & ANSWER_SYNTHESIZED) && a.rcode === RCODE.NOERROR && insidePref64(a, info.prefixes)) a.flags |= ANSWER_SYNTHESIZED;
  return a;
}
