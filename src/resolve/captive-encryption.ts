// Back to encryption after a captive portal: when a PvD whose queries go
// encrypted leaves captivity, its encrypted resolver is tried again at once
// — servers that failed behind the portal lose their backoff, opportunistic
// ones forget they fell back to the clear (RFC 7858 §4.1's fallback is for a
// network that cannot do TLS, not for one that could not until the user
// logged in: systemd-resolved #36708), DDR asks again — and one question is
// asked through it, so the PvD is known to be encrypted again, and said to
// be, within one probe round of the login. The cache of the captive period
// is flushed by the caller (App.captiveChanged), as on every change of
// captive state.

import { RCODE, TYPE } from '../dns/constants.js';
import { encodeName } from '../dns/name.js';
import { questionMessage } from '../dns/query.js';
import type { Answer } from '../dns/answer.js';
import type { Pvd } from '../pvd/model.js';
import type { Forwarder } from './forward.js';

/** What re-validating a PvD's encrypted resolver found. */
export interface Revalidation {
  ok: boolean;
  /** The server that answered (its label), null when none did. */
  server: string | null;
  /** Milliseconds from the portal opening to the answer. */
  ms: number;
  /** One line for logs and the event. */
  why: string;
}

/** Asks one question in exactly this PvD, past routing and the cache: the answer and the server that gave it. */
export type AskIn = (pvd: Pvd, msg: Buffer) => Promise<{ answer: Answer; server: string | null }>;

/** Why a PvD's queries left encryption (pvdns_encryption_downgrades_total's reason). */
export type DowngradeReason = 'designated-down' | 'captive';

export class CaptiveEncryption {
  /** Downgrades per PvD id and reason (the opportunistic servers' own fallbacks are counted in their ServerStats). */
  readonly downgrades = new Map<string, Map<DowngradeReason, number>>();

  constructor(
    private readonly forwarder: Forwarder,
    private readonly ask: AskIn,
    /** Asks DDR to look again now (a network just opened may designate another resolver). */
    private readonly rediscover: (pvd: Pvd, why: string) => void,
    /** The name asked to prove the resolver works (captive.canary.name). */
    private readonly name: () => string,
  ) {}

  /** downgraded counts a PvD's queries leaving encryption. */
  downgraded(pvd: Pvd, reason: DowngradeReason): void {
    let m = this.downgrades.get(pvd.id);
    if (m === undefined) this.downgrades.set(pvd.id, (m = new Map()));
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }

  /**
   * opened re-validates a PvD's encrypted resolver after its portal opened;
   * it never rejects. `since` is performance.now() when the opening was seen.
   */
  async opened(pvd: Pvd, since: number): Promise<Revalidation> {
    this.forwarder.revalidate(pvd);
    this.rediscover(pvd, 'captive portal opened');
    const { answer, server } = await this.ask(pvd, questionMessage(encodeName(this.name()), TYPE.A));
    const ms = Math.round(performance.now() - since);
    const answered = answer.rcode === RCODE.NOERROR || answer.rcode === RCODE.NXDOMAIN;
    // An opportunistic server that answered through its cleartext fallback is named by its encrypted form:
    // the network still blocks encryption, which is not "restored".
    const clear = answered && server !== null ? this.inTheClear(pvd, server) : null;
    const ok = answered && clear === null;
    const why = ok
      ? `captive portal opened: encrypted resolver ${server} answered again after ${ms} ms`
      : clear !== null
        ? `captive portal opened, but ${server} answered in the clear (${clear})`
        : `captive portal opened, but the encrypted resolver did not answer yet (${answer.ede?.text ?? `rcode ${answer.rcode}`})`;
    return { ok, server: ok ? server : null, ms, why };
  }

  /** inTheClear says why the PvD's server `label` last answered in the clear (its fallback), or null when it answered encrypted. */
  private inTheClear(pvd: Pvd, label: string): string | null {
    const pool = this.forwarder.poolIfAny(pvd);
    const at = pool?.servers.findIndex((s) => s.label === label) ?? -1;
    if (pool === undefined || at < 0) return null;
    if (pool.servers[at]!.transport === 'udp') return 'a cleartext server';
    const st = pool.statsOf[at]!;
    return st.via === 'cleartext' ? `encryption failed: ${st.encryptionError ?? 'unknown error'}` : null;
  }
}
