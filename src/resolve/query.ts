// Query: one client query on its way through the pipeline. Every stage reads
// and records facts here (route, PvD, cache verdict, server), so logs,
// metrics and the API all tell the same story about a query.

import type { WireQuery } from '../dns/query.js';
import type { Pvd } from '../pvd/model.js';
import type { Route } from './routes.js';

/** How the query came in: a DNS listener, or the HTTP API's Translate Name. */
export type Transport = 'udp' | 'tcp' | 'api';

/** What the cache stage concluded: answered from cache, asked upstream, or not consulted. */
export type CacheVerdict = 'hit' | 'miss' | 'none';

export class Query implements WireQuery {
  msg: Buffer = EMPTY;
  id = 0;
  flags = 0;
  qEnd = 0;
  qtype = 0;
  qclass = 0;
  nameKey = '';
  edns = false;
  udpSize = 0;
  dnssecOk = false;

  route: Route | null = null;
  /** The PvD the query is being answered in (the router sets it). */
  pvd: Pvd | null = null;
  /** Set when the query must be answered in exactly this PvD: no routing, no fallback (MIF Translate Name). */
  forced: Pvd | null = null;
  cache: CacheVerdict = 'none';
  /** The answer-cache key in the current PvD; the coalescing stage shares it. */
  cacheKey = '';
  /** The upstream server that answered, as "address:port". */
  server: string | null = null;
  /** The RCODE of the last upstream that answered but could not resolve, -1 when none did (see UpstreamQuery). */
  failedRcode = -1;
  /**
   * Set when the query is to go to its PvD's cleartext servers (Pvd.clearServers)
   * rather than its encrypted ones: a captive portal's names and probes
   * (the captive stage decides), DDR's own questions.
   */
  clear = false;
  /** How many times the CNAME stage restarted this lookup at a target another PvD claims (0 for a client's query). */
  cnameDepth = 0;
  /**
   * Set on a question pvdns asks for itself in the background (captive-portal
   * probes, Pref64 discovery): the pool counts its failures in no server's
   * errors (see UpstreamQuery.background); pvdns_probes_total counts them.
   */
  background = false;

  constructor(
    readonly transport: Transport,
    readonly client: string,
    /** performance.now() when the query arrived. */
    readonly startedAt: number,
  ) {}
}

const EMPTY = Buffer.alloc(0);
