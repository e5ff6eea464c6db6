// PvD files (pvdSources.directory): each *.json file in the folder is one
// PvD, as an RFC 8801 PvD Additional Information object or DESIGN's PvD
// object. A file added, changed or removed announces, updates or withdraws
// its PvD, so a VPN's up/down script can just write or delete a file. A bad
// file is logged with its path and changes nothing: its PvD, if it had a
// good version before, stays as it was.

import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parsePvdInput } from '../input.js';
import type { PvdRegistry } from '../registry.js';
import { normalizeDomain, type PvdSpec } from '../schema.js';
import { syncSource } from './sync.js';

/** Writers rarely write a file in one go: wait this long after the last change. */
const SETTLE_MS = 100;
/** A rescan this often catches what a missed inotify event would lose. */
const RESCAN_MS = 10_000;

interface FileState {
  /** mtime and size when last read: a change of either means read again. */
  stamp: string;
  /** The last good PvD of the file, or null if it never had one. */
  spec: PvdSpec | null;
}

export class PvdDirectory {
  private readonly files = new Map<string, FileState>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private rescan: NodeJS.Timeout | null = null;
  private scanning: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly registry: PvdRegistry,
    private readonly log: Logger,
    /** A further check of a file's PvD (pvdns refuses to be its own server). */
    private readonly check: (spec: PvdSpec) => Error | null = () => null,
  ) {}

  /** start reads the folder once and then follows it. A missing folder is an error. */
  async start(): Promise<void> {
    await readdir(this.dir); // fails early, with the path, if the folder is not there
    await this.scan();
    this.watcher = watch(this.dir, () => this.schedule());
    this.watcher.on('error', (err) => this.log.error({ err, dir: this.dir }, 'cannot watch the PvD directory'));
    this.rescan = setInterval(() => this.schedule(), RESCAN_MS);
    this.rescan.unref();
  }

  private schedule(): void {
    if (this.timer) this.timer.refresh();
    else {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.scanning = this.scanning.then(() => this.scan());
      }, SETTLE_MS);
    }
  }

  /** settled resolves after pending changes have been read (for tests and reloads). */
  async settled(): Promise<void> {
    await this.scanning;
  }

  /** scan reads new and changed files, forgets removed ones, and brings the registry in line. */
  private async scan(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      this.log.error({ err, dir: this.dir }, 'cannot read the PvD directory');
      return;
    }
    const present = new Set(names);
    for (const name of [...this.files.keys()]) if (!present.has(name)) this.files.delete(name);
    for (const name of names) {
      const path = join(this.dir, name);
      let stamp: string;
      try {
        const st = await stat(path);
        stamp = `${st.mtimeMs}:${st.size}`;
      } catch {
        continue; // removed while scanning
      }
      const known = this.files.get(name);
      if (known?.stamp === stamp) continue;
      const state: FileState = { stamp, spec: known?.spec ?? null };
      this.files.set(name, state);
      try {
        const spec = parsePvdInput(JSON.parse(await readFile(path, 'utf8')));
        const problem = this.check(spec);
        if (problem) throw problem;
        state.spec = spec;
      } catch (err) {
        this.log.error({ file: path, error: (err as Error).message }, 'ignoring a bad PvD file; its PvD, if any, is unchanged');
      }
    }
    this.apply();
  }

  private apply(): void {
    const specs: PvdSpec[] = [];
    const owner = new Map<string, string>();
    // By file name, so which of two files naming one PvD wins does not depend on when each was written.
    for (const [name, { spec }] of [...this.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (spec === null) continue;
      const id = normalizeDomain(spec.identifier);
      const first = owner.get(id);
      if (first !== undefined) {
        this.log.error({ file: join(this.dir, name), other: join(this.dir, first), pvd: id }, 'two PvD files name the same PvD; using the first');
        continue;
      }
      owner.set(id, name);
      specs.push(spec);
    }
    const r = syncSource(this.registry, 'file', specs);
    for (const id of r.conflicts) this.log.error({ pvd: id, dir: this.dir }, 'a PvD file names a PvD another source holds; ignored');
    for (const id of r.expired) this.log.warn({ pvd: id, dir: this.dir }, 'a PvD file names a PvD whose expires time has passed');
  }

  stop(): void {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
    if (this.rescan) clearInterval(this.rescan);
    this.watcher = null;
  }
}
