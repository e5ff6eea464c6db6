// How a link backend reads a service's state again when it signals a change
// (resolved.ts, networkmanager.ts): the signals of one turn of the event
// loop make one read; a signal during a read makes one more after it, never
// a second beside it; and the routing holds taken for the signals are
// released once a read that began after them is done (reported, found
// nothing new, or failed).

export class CoalescedRead {
  private scheduled = false;
  private running = false;
  private again = false;
  private releases: Array<() => void> = [];

  /** `read` reads and reports what changed; it deals with its own errors. */
  constructor(private readonly read: () => Promise<void>) {}

  /** busy is true while a read runs. */
  get busy(): boolean {
    return this.running;
  }

  /** request asks for a read soon; `release` is called once a read that begins after this call is done. */
  request(release?: () => void): void {
    if (release) this.releases.push(release);
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run(this.read);
    });
  }

  /** first runs a backend's first read as one of these: a request made during it brings one more read after it. */
  async first<T>(read: () => Promise<T>): Promise<T> {
    this.running = true;
    try {
      return await read();
    } finally {
      this.finish();
    }
  }

  /** releaseAll releases every hold now: the reads they wait for will not happen (the backend stopped or lost its bus). */
  releaseAll(): void {
    const r = this.releases;
    this.releases = [];
    for (const f of r) f();
  }

  private async run(read: () => Promise<void>): Promise<void> {
    if (this.running) {
      this.again = true; // a first read began between the request and this turn
      return;
    }
    this.running = true;
    try {
      await read();
    } catch {
      // the backend's read says what went wrong itself; a failed read still ends its holds
    } finally {
      this.finish();
    }
  }

  private finish(): void {
    this.running = false;
    if (this.again) {
      this.again = false;
      this.request();
    } else {
      this.releaseAll();
    }
  }
}
