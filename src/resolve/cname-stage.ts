// The CNAME stage: a CNAME chain that leaves one PvD's answer for a name
// another PvD claims is finished in the PvD that claims it.
//
// A PvD's server resolves a whole chain itself, so its answer to
// www.public.example may hold "CNAME host.corp.example" and an address for
// host.corp.example — an address the Wi-Fi's resolver made up, or learned
// from the public view, for a name the VPN's PvD owns (dnsZones: its names
// go only to it). Passed on, the client would connect wherever that network
// says. Two ways out: cut the answer at that CNAME, or finish the chain
// where the target belongs. pvdns finishes it, as systemd-resolved does (it
// restarts the lookup at a CNAME target and routes it again): a cut answer
// gives the stub nothing to connect to (glibc does not chase a dangling
// CNAME), while the owner's answer is the one a client asking the target
// itself would get. So at the first CNAME whose target is claimed by a zone
// route that does not include the answering PvD, the stage keeps the records
// up to and including that CNAME, drops what the first PvD said about the
// target and beyond, resolves the target through the whole pipeline again
// (local names, router, the owner's cache and servers: same type, class, DO
// and CD) and appends that answer; the RCODE is the target's (RFC 6604 §2,
// §3). A target nobody claims stays with the PvD that answered, which has
// resolved it already: a public name is never sent elsewhere, as RFC 6731
// §4.7 asks of follow-up queries. Where the two rules meet — a target that
// another PvD claims — the claim wins, as RFC 6731 §4.1 ranks a server
// "explicitly known to serve a matching domain" first.
//
// It sits right after the router, before the cache: each PvD's cache keeps
// its own answers as they came, and the joined answer is made afresh from
// two cached ones on a hit. Only answers parseResponse marked ANSWER_CNAME
// are looked at, so a cache hit without a CNAME costs a flag test. A query
// forced into one PvD (Translate Name with a PvD) is never chased into
// another. A chain that keeps leaving PvDs (a loop across them) ends after
// MAX_CHASES restarts with SERVFAIL.

import { ANSWER_CAPTIVE, ANSWER_CNAME, ANSWER_SYNTHESIZED, errorAnswer, type Answer } from '../dns/answer.js';
import { findChainCut, joinChain, type ChainCut } from '../dns/chain.js';
import { EDE, FLAG_AD, FLAG_CD, FLAG_RD, RCODE, TYPE } from '../dns/constants.js';
import { keyToName } from '../dns/name.js';
import { parseQuery, PARSE_OK, questionMessage } from '../dns/query.js';
import { Query } from './query.js';
import type { RouteTable } from './routes.js';
import { isPromise, type Next, type Result, type Stage } from './stage.js';

/** Restarts of one lookup at a target another PvD claims; a longer chain is a loop across PvDs. */
export const MAX_CHASES = 8;

const UNDECODABLE = errorAnswer(RCODE.SERVFAIL, { code: EDE.OTHER, text: 'CNAME chain across PvDs: an answer could not be taken apart to join it' });

export class CnameStage implements Stage {
  readonly name = 'cname';

  constructor(
    private readonly routes: () => RouteTable,
    /** The whole pipeline, local names on: where a cut chain's target is resolved, as a client's query for it would be. */
    private readonly restart: () => Next,
  ) {}

  handle(q: Query, next: Next): Result {
    const r = next(q);
    // A CNAME query's answer is the CNAME itself (RFC 1034 §3.6.2); a forced query stays in its PvD.
    if (q.qtype === TYPE.CNAME || q.forced !== null) return r;
    if (!isPromise(r)) return r.flags & ANSWER_CNAME ? this.follow(q, r) : r;
    return r.then((a) => (a.flags & ANSWER_CNAME ? this.follow(q, a) : a));
  }

  /** follow finishes `a`'s chain in the PvD that claims its target, when another PvD claims it. */
  private follow(q: Query, a: Answer): Result {
    if (a.rcode !== RCODE.NOERROR && a.rcode !== RCODE.NXDOMAIN) return a;
    const pvd = q.pvd!;
    const routes = this.routes();
    const question = q.msg.subarray(0, q.qEnd);
    const cut = findChainCut(question, q.nameKey, a, (target) => {
      const route = routes.match(target);
      // A zone route: claimed by PvDs (or answered by pvdns itself, RFC 6761/6303) — but not by this PvD.
      return route.zone !== null && !route.pvds.includes(pvd);
    });
    if (cut === null) return a;
    if (q.cnameDepth >= MAX_CHASES) {
      return errorAnswer(RCODE.SERVFAIL, { code: EDE.OTHER, text: `CNAME chain leaves a PvD more than ${MAX_CHASES} times (at ${keyToName(cut.target)}): a loop across PvDs` });
    }
    const sub = this.subquery(q, cut.target);
    const r = this.restart()(sub);
    const join = (t: Answer): Answer => joined(q, a, cut, sub, t);
    return isPromise(r) ? r.then(join) : join(r);
  }

  /** subquery is the lookup of `target` on behalf of `q`: same type, DO and CD, one restart deeper. */
  private subquery(q: Query, target: string): Query {
    const msg = questionMessage(Buffer.from(target, 'latin1'), q.qtype);
    msg.writeUInt16BE(FLAG_RD | (q.flags & FLAG_CD), 2);
    const sub = new Query(q.transport, q.client, q.startedAt);
    if (parseQuery(msg, sub) !== PARSE_OK) throw new Error('cname: cannot build a subquery');
    sub.dnssecOk = q.dnssecOk;
    sub.cnameDepth = q.cnameDepth + 1;
    return sub;
  }
}

/**
 * joined is the client's answer: the chain's start from `a`, then the
 * target's answer `t`. A failure to resolve the target (SERVFAIL, REFUSED…)
 * is the answer, with the target PvD's reason.
 */
function joined(q: Query, a: Answer, cut: ChainCut, sub: Query, t: Answer): Answer {
  if (t.rcode !== RCODE.NOERROR && t.rcode !== RCODE.NXDOMAIN) return t;
  // AD only when both parts were authenticated (RFC 6604 §3); pvdns's own marks of either part carry over.
  const flags = (a.flags & t.flags & FLAG_AD) | ((a.flags | t.flags) & (ANSWER_SYNTHESIZED | ANSWER_CAPTIVE)) | ANSWER_CNAME;
  return joinChain(q.msg.subarray(0, q.qEnd), a, cut.owners, sub.msg.subarray(0, sub.qEnd), t, flags) ?? UNDECODABLE;
}
