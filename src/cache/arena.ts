// Arena: where cached answers keep their octets. A cached answer's body and
// record table are copied into 8 KiB slabs that hold nothing else, so a slab
// is freed as soon as the answers in it are gone. Copied into Node's shared
// Buffer pool instead, each answer kept alive an 8 KiB slab that was mostly
// the garbage of the queries around it (measured: ~250 bytes per answer,
// against the ~40 its octets need).

import type { Answer } from '../dns/answer.js';

/** Slab size: the same as Node's Buffer pool, so no answer pins more than the pool would. */
const SLAB = 8192;
/** Larger answers get a slab of their own. */
const OWN_SLAB = SLAB / 4;

export class Arena {
  private slab = new ArrayBuffer(SLAB);
  private used = 0;

  /**
   * adopt moves an answer's body and record table into the arena, in place:
   * the answer object itself is what the cache keeps, so it costs no second
   * object. The octets are equal, so a reply being written from it is not
   * disturbed.
   */
  adopt(a: Answer): void {
    const rrBytes = a.rr.length * 4;
    const need = rrBytes + a.body.length;
    let slab: ArrayBuffer;
    let at: number;
    if (need > OWN_SLAB) {
      slab = new ArrayBuffer(need);
      at = 0;
    } else {
      if (this.used + need > SLAB) {
        this.slab = new ArrayBuffer(SLAB);
        this.used = 0;
      }
      slab = this.slab;
      at = this.used;
      this.used = (at + need + 3) & ~3; // the next record table starts 4-aligned
    }
    const rr = new Uint32Array(slab, at, a.rr.length);
    rr.set(a.rr);
    const body = Buffer.from(slab, at + rrBytes, a.body.length);
    a.body.copy(body);
    a.rr = rr;
    a.body = body;
  }
}
