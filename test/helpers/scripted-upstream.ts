// What the unit tests' scripted upstreams (transports and carriers that
// answer without a network) share: a question as the pool or the Forwarder
// takes it, and the answer a server would give to a request.

import { parseResponse } from '../../src/dns/answer.js';
import { CLASS_IN, RCODE, TYPE } from '../../src/dns/constants.js';
import { encodeName, lowerWire } from '../../src/dns/name.js';
import { encodeQuery, parseQuery, questionMessage } from '../../src/dns/query.js';
import type { Pvd } from '../../src/pvd/model.js';
import { Query } from '../../src/resolve/query.js';
import type { Exchange, ExchangeRequest } from '../../src/upstream/exchange.js';
import type { UpstreamQuery } from '../../src/upstream/pool.js';

/** The address of the record answerTo gives by default. */
export const ANSWER_ADDRESS: readonly number[] = Object.freeze([192, 0, 2, 7]);

/** upstreamQuestion is `name` `qtype` as the pool takes it; `background` for one pvdns asks itself. */
export function upstreamQuestion(name: string, qtype: number, background = false): UpstreamQuery {
  const wire = encodeName(name);
  const qs = Buffer.concat([wire, Buffer.from([qtype >> 8, qtype & 0xff, 0, CLASS_IN])]);
  const msg = encodeQuery(1, qs, false, false);
  return { msg, qEnd: 12 + qs.length, nameKey: lowerWire(wire, 0, wire.length), qtype, qclass: CLASS_IN, flags: 0, dnssecOk: false, server: null, failedRcode: 0, background };
}

/** queryIn is a query for `name` A already routed to `pvd` (`clear`: for its cleartext servers), as the Forwarder takes it. */
export function queryIn(pvd: Pvd, name: string, clear = false): Query {
  const q = new Query('api', '127.0.0.1', performance.now());
  parseQuery(questionMessage(encodeName(name), TYPE.A), q);
  q.pvd = pvd;
  q.clear = clear;
  return q;
}

/**
 * answerTo answers `req` as a server would: its question with `rcode`, and
 * for NOERROR one record of the asked type with `address` as its data (TTL
 * 300), or none when `address` is null. The query's OPT is dropped: an
 * answer needs none.
 */
export function answerTo(req: ExchangeRequest, rcode: number = RCODE.NOERROR, address: readonly number[] | null = ANSWER_ADDRESS): Exchange {
  const withRecord = rcode === RCODE.NOERROR && address !== null;
  const m = Buffer.from(req.message);
  m.writeUInt16BE(0x8180 | rcode, 2);
  m.writeUInt16BE(withRecord ? 1 : 0, 6);
  m.writeUInt16BE(0, 10);
  const qEnd = 12 + req.message.subarray(12).indexOf(0) + 5;
  const t = req.expect.qtype;
  const rr = withRecord ? Buffer.from([0xc0, 0x0c, t >> 8, t & 0xff, 0, 1, 0, 0, 1, 44, 0, address.length, ...address]) : Buffer.alloc(0);
  const r = parseResponse(Buffer.concat([m.subarray(0, qEnd), rr]), req.expect);
  if (!r.ok) throw new Error(r.reason);
  return { ok: true, answer: r.answer, truncated: false };
}

/**
 * answerAsServer answers `req` with `rcode` as a server would: an A question
 * with one record (ANSWER_ADDRESS), any other with none (a probe's ". NS").
 */
export function answerAsServer(req: ExchangeRequest, rcode: number = RCODE.NOERROR): Exchange {
  return answerTo(req, rcode, req.expect.qtype === TYPE.A ? ANSWER_ADDRESS : null);
}
