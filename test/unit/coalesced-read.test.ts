// CoalescedRead: the re-read both D-Bus link backends run on a service's
// signals — one read per burst, one more after a read a signal interrupted,
// and each hold released only after a read that began after it.

import { describe, expect, it } from 'vitest';
import { CoalescedRead } from '../../src/pvd/sources/coalesced-read.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A read the test finishes by hand, logging when each begins and ends. */
function gated(log: string[]): { read: () => Promise<void>; finish: () => void } {
  let finish: () => void = () => undefined;
  let n = 0;
  return {
    read: () =>
      new Promise<void>((resolve) => {
        const i = ++n;
        log.push(`read ${i}`);
        finish = () => {
          log.push(`done ${i}`);
          resolve();
        };
      }),
    finish: () => finish(),
  };
}

describe('CoalescedRead', () => {
  it('makes one read of the requests of one turn, and releases their holds after it', async () => {
    const log: string[] = [];
    const g = gated(log);
    const reads = new CoalescedRead(g.read);
    reads.request(() => log.push('release a'));
    reads.request(() => log.push('release b'));
    reads.request();
    await turn();
    expect(log).toEqual(['read 1']);
    g.finish();
    await turn();
    expect(log).toEqual(['read 1', 'done 1', 'release a', 'release b']);
  });

  it('reads once more after a read that a request interrupted, and releases that hold only after the second read', async () => {
    const log: string[] = [];
    const g = gated(log);
    const reads = new CoalescedRead(g.read);
    reads.request(() => log.push('release a'));
    await turn();
    reads.request(() => log.push('release b')); // during read 1
    reads.request(() => log.push('release c'));
    expect(reads.busy).toBe(true);
    g.finish();
    await turn();
    await turn();
    expect(log).toEqual(['read 1', 'done 1', 'read 2']);
    g.finish();
    await turn();
    expect(log).toEqual(['read 1', 'done 1', 'read 2', 'done 2', 'release a', 'release b', 'release c']);
  });

  it("counts a backend's first read as one: a request during it brings one read after it, never one beside it", async () => {
    const log: string[] = [];
    const g = gated(log);
    const reads = new CoalescedRead(g.read);
    let first!: () => void;
    const started = reads.first(() => new Promise<string>((r) => (first = () => r('links'))));
    reads.request(() => log.push('release'));
    await turn();
    expect(log).toEqual([]); // no read beside the first
    first();
    await expect(started).resolves.toBe('links');
    await turn();
    expect(log).toEqual(['read 1']);
    g.finish();
    await turn();
    expect(log).toEqual(['read 1', 'done 1', 'release']);
  });

  it('releases a failed read\'s holds too, and every hold at once on releaseAll', async () => {
    const log: string[] = [];
    const reads = new CoalescedRead(() => Promise.reject(new Error('gone')));
    reads.request(() => log.push('release a'));
    await turn();
    await turn();
    expect(log).toEqual(['release a']);
    const idle = new CoalescedRead(() => new Promise<void>(() => undefined));
    idle.request(() => log.push('release b'));
    idle.releaseAll();
    expect(log).toEqual(['release a', 'release b']);
  });
});
