// Translate Name (the MIF API): a name and type from the HTTP API become a
// query for the pipeline, and the answer becomes JSON saying which PvD
// answered, from where, and what.

import { ANSWER_CAPTIVE, ANSWER_SYNTHESIZED, type Answer } from '../dns/answer.js';
import { rcodeName, typeCode, typeName } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { questionMessage } from '../dns/query.js';
import { answerRecords, type RecordText } from '../dns/render.js';
import type { Query } from './query.js';

/** TranslateResult is the JSON of GET /v1/resolve. */
export interface TranslateResult {
  /** The PvD that answered; null when pvdns answered itself (local names) or nobody could. */
  pvd: string | null;
  name: string;
  type: string;
  rcode: string;
  answers: RecordText[];
  cached: boolean;
  /** The answer holds DNS64-synthesized records: valid only in the PvD that answered. */
  synthesized: boolean;
  /** Answered by a PvD behind a captive portal (or with its portal's address): not cached, maybe rewritten. */
  captive: boolean;
  server: string | null;
  ede: { code: number; text: string } | null;
}

/** TranslateInputError is a name or type that cannot be asked. */
export class TranslateInputError extends Error {}

/** translateQuery builds the query message for a name and a type mnemonic or number. */
export function translateQuery(name: string, type: string): Buffer {
  const qtype = /^\d+$/.test(type) ? Number(type) : typeCode(type);
  if (qtype === undefined || qtype < 1 || qtype > 0xffff) throw new TranslateInputError(`type: "${type}" is not a record type`);
  let wire: Buffer;
  try {
    wire = encodeName(name);
  } catch (err) {
    throw new TranslateInputError(`name: ${(err as Error).message}`);
  }
  return questionMessage(wire, qtype);
}

/** translateResult describes an answered query. */
export function translateResult(name: string, q: Query, a: Answer, reply: Buffer): TranslateResult {
  return {
    pvd: q.pvd?.id ?? null,
    name,
    type: typeName(q.qtype),
    rcode: rcodeName(a.rcode),
    answers: answerRecords(reply),
    cached: q.cache === 'hit',
    synthesized: (a.flags & ANSWER_SYNTHESIZED) !== 0,
    captive: (a.flags & ANSWER_CAPTIVE) !== 0,
    server: q.server,
    ede: a.ede,
  };
}
