// PvD files (pvdSources.directory): each *.json file in the folder is one
// PvD, as an RFC 8801 PvD Additional Information object or DESIGN's PvD
// object (input.ts says how each is read). A file added, changed or removed
// announces, updates or withdraws its PvD, so a VPN's up/down script can just
// write or delete a file. A change is applied within COALESCE_MS of the
// event that tells of it, even while the file keeps being rewritten. A bad
// file is logged with its path, line and key and changes nothing: its PvD,
// if it had a good version before, stays as it was; one that changed a
// moment ago may be half-written (a writer writing in place is seen
// between its chunks), so it is read again when still before it is said.
// A file is opened without blocking and read only if it is a regular file
// (a FIFO named x.json would otherwise stop the event loop until someone
// wrote to it); a symbolic link to a file is followed, and one to nothing
// is a problem of its own and withdraws the PvD its file gave, as the file
// it named is gone. Each file's problems are at most
// MAX_PVD_PROBLEMS lines, each one line whatever the file holds.
// `pvdns check-config` reads the folder with this same code, and
// `check-config --pvd FILE` reads one file with readPvdFile, so what they
// print is what serve logs.

import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MAX_PVD_FILE_BYTES, MAX_PVD_PROBLEMS, PvdInputError, readPvdInput, type PvdIssue } from '../input.js';
import type { PvdRegistry } from '../registry.js';
import { normalizeDomain, type PvdSpec } from '../schema.js';
import type { PvdFeed, SourceSink } from './source.js';
import { announceFrom, sourceLabel, syncSource } from './sync.js';

/**
 * A change is read this long after the first event that told of it. Later
 * events do not push the read back (a throttle, not a debounce: a file
 * rewritten every 30 ms is still read every COALESCE_MS), and the writes a
 * writer makes in one go land in one read.
 */
const COALESCE_MS = 20;
/**
 * A file that does not read as a PvD and changed less than this long ago
 * may be one a writer is still writing in place (truncated, then written in
 * several chunks): it is read again when it has been still this long, not
 * reported, and its PvD stays as it was meanwhile.
 */
const FRESH_MS = 50;
/**
 * While a file waits, half-written, the next change is read this soon: the
 * write that completes it comes with an event, and a writer rewriting in
 * place leaves the file whole only between its writes.
 */
const QUICK_MS = 5;
/** A file that has read bad and fresh for this long (a writer rewriting a bad file without a pause) is reported all the same. */
const UNSETTLED_LIMIT_MS = 1000;
/** A rescan this often catches what a missed inotify event would lose. */
const RESCAN_MS = 10_000;
/** Files stat()ed (and read, when changed) in one run of a scan before the event loop gets a turn. */
const IO_RUN = 64;

/** One thing wrong with a PvD file, printed as FILE:LINE: key: problem. */
export interface PvdProblem {
  file: string;
  /** 1-based, or null where no line says it (a file too large, a JSON error without a position). */
  line: number | null;
  /** The key, as dnsServers[1]; '' for the file as a whole. */
  key: string;
  problem: string;
}

/**
 * formatProblem is the one line check-config prints and serve logs for a
 * problem. A line break (or any other control character) in it, from a
 * file name, a key or a value the problem quotes, is written as an escape:
 * a key "a\nfake.json:1: …" must not forge a second problem.
 */
export function formatProblem(p: PvdProblem): string {
  return oneLine(`${p.file}${p.line !== null ? `:${p.line}` : ''}: ${p.key ? `${p.key}: ` : ''}${p.problem}`);
}

/** C0 and C1 controls, DEL, and Unicode's line and paragraph separators: what may break or rewrite a terminal's line. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** oneLine writes control characters as JavaScript escapes (\n, \u001b). */
function oneLine(text: string): string {
  return text.replace(CONTROL, (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A PvD file that reads as a PvD. */
export interface PvdFile {
  ok: true;
  file: string;
  spec: PvdSpec;
  /** Keys pvdns ignored (an RFC 8801 object's unknown keys, RFC 8801 §4.3). */
  ignoredKeys: string[];
  /** The line of each top-level key and of each item of a top-level array ("dnsServers[1]"). */
  lines: ReadonlyMap<string, number>;
  /** The file's change stamp (stampOf) as the open file had it: how a rescan tells a new version. */
  stamp?: string;
}

/** A PvD file that does not, with every problem found. */
export interface BadPvdFile {
  ok: false;
  file: string;
  problems: PvdProblem[];
  /** The change stamp of what was found; none when nothing is there. */
  stamp?: string;
  /** A symbolic link to nothing: the file it named is gone, and with it the PvD this file gave. */
  dangling?: true;
}

/** A further check of a file's PvD (pvdns refuses to be its own server). */
export type PvdCheck = (spec: PvdSpec) => PvdInputError | null;

/**
 * readPvdFile reads one PvD file: a regular file (or a link to one) of at
 * most MAX_PVD_FILE_BYTES (a larger file is refused before it is read), not
 * empty, strict JSON (RFC 8801 §4: I-JSON, so a key twice is refused too), a
 * PvD by readPvdInput, and `check`. It reads synchronously (a small local
 * file; see PvdDirectory.scan for why), and never throws: whatever goes
 * wrong is the file's problem, in one line.
 */
export function readPvdFile(file: string, check: PvdCheck = () => null): PvdFile | BadPvdFile {
  const bad = (line: number | null, key: string, problem: string, stamp?: string): BadPvdFile => ({ ok: false, file, problems: [{ file, line, key, problem }], stamp });
  let text: string;
  let stamp: string;
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading waits for a writer, and this is the event loop's thread.
    // It changes nothing for a regular file, the only kind read.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return unopened(file, err as NodeJS.ErrnoException);
  }
  try {
    const st = fstatSync(fd);
    stamp = stampOfStats(st);
    if (!st.isFile()) return bad(null, '', 'not a regular file', stamp);
    if (st.size > MAX_PVD_FILE_BYTES) return bad(null, '', `the file is ${st.size} bytes, over the ${MAX_PVD_FILE_BYTES / 1024 / 1024} MiB a PvD file may hold`, stamp);
    // One byte more than stat() said: a file that grew past the limit since is refused too.
    const buf = Buffer.allocUnsafe(Math.min(st.size, MAX_PVD_FILE_BYTES) + 1); // only the bytes read are used
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0; ) n += r;
    if (n > MAX_PVD_FILE_BYTES) return bad(null, '', `the file is over the ${MAX_PVD_FILE_BYTES / 1024 / 1024} MiB a PvD file may hold`, stamp);
    text = buf.toString('utf8', 0, n);
  } catch (err) {
    return bad(null, '', `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  } finally {
    closeSync(fd);
  }
  let result: PvdFile | BadPvdFile;
  try {
    result = judge(file, text, check);
  } catch (err) {
    // A fault in pvdns (or in `check`) while judging one file is that file's problem, not the end of serve.
    result = bad(null, '', `cannot be read as a PvD: ${err instanceof Error ? err.message : String(err)}`);
  }
  result.stamp = stamp;
  return result;
}

/**
 * unopened says why a file could not be opened, with the stamp of what is
 * there (none when nothing is): a symbolic link to nothing or looping, not
 * a regular file (a socket), or the system's error code (EACCES).
 */
function unopened(file: string, err: NodeJS.ErrnoException): BadPvdFile {
  const bad = (problem: string, stamp: string | undefined): BadPvdFile => ({ ok: false, file, problems: [{ file, line: null, key: '', problem }], stamp });
  let st: Stats;
  try {
    st = statSync(file);
  } catch (statErr) {
    const link = danglingStamp(file, statErr);
    if (link === null) return bad(`cannot read: ${err.code ?? String(err)}`, undefined);
    const loops = (statErr as NodeJS.ErrnoException).code === 'ELOOP';
    return { ...bad(loops ? 'a symbolic link that loops (ELOOP): no PvD' : 'a symbolic link to nothing: no PvD', link), dangling: true };
  }
  return bad(st.isFile() ? `cannot read: ${err.code ?? String(err)}` : 'not a regular file', stampOfStats(st));
}

/** judge reads a PvD file's text (readPvdFile after the read). */
function judge(file: string, text: string, check: PvdCheck): PvdFile | BadPvdFile {
  const bad = (line: number | null, key: string, problem: string): BadPvdFile => ({ ok: false, file, problems: [{ file, line, key, problem }] });
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 byte order mark some editors write
  if (text.trim() === '') return bad(null, '', 'the file is empty (a PvD file holds one JSON object)');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return bad(jsonErrorLine(text, (err as Error).message), '', `not valid JSON: ${jsonErrorText((err as Error).message)}`);
  }
  const { lines, twice } = keyLines(text);
  // Loops, not push(...many): a spread of 130,000 problems overflows the call stack. At most
  // MAX_PVD_PROBLEMS of each kind are kept (enough to fill the lines shown), the others counted.
  const problems: PvdProblem[] = [];
  let total = twice.length;
  for (const [key, line, first] of twice.slice(0, MAX_PVD_PROBLEMS)) {
    problems.push({ file, line, key, problem: `the key appears twice (first on line ${first}); JSON leaves which one counts to the reader (RFC 7493 §2.3)` });
  }
  const add = (err: PvdInputError): void => {
    total += err.total;
    for (const i of err.issues) problems.push({ file, line: lineOf(lines, i.field), key: i.field, problem: i.problem });
  };
  try {
    const { spec, ignoredKeys } = readPvdInput(value);
    const problem = check(spec);
    if (problem) add(problem);
    if (total === 0) return { ok: true, file, spec, ignoredKeys, lines };
  } catch (err) {
    if (!(err instanceof PvdInputError)) throw err;
    add(err);
  }
  return { ok: false, file, problems: capped(file, problems, total) };
}

/**
 * capped puts a file's problems in line order and keeps MAX_PVD_PROBLEMS
 * lines: when there were more (`total`), the first ones and a last line
 * saying how many more, as the configuration's errors do.
 */
function capped(file: string, problems: PvdProblem[], total: number): PvdProblem[] {
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  if (total <= MAX_PVD_PROBLEMS) return problems;
  const shown = problems.slice(0, MAX_PVD_PROBLEMS - 1);
  shown.push({ file, line: null, key: '', problem: `${total - shown.length} more problems not shown` });
  return shown;
}

/**
 * stampOfStats is a file's change stamp: mtime, ctime, inode and size. A
 * rescan reads a file again when it changes. ctime and inode catch what
 * mtime and size miss: a chmod or chown (an unreadable file made readable),
 * a file renamed into place with an older mtime (mv keeps it), a rewrite of
 * the same size within the clock's resolution.
 */
function stampOfStats(st: Stats): string {
  return `${st.mtimeMs}:${st.ctimeMs}:${st.dev}:${st.ino}:${st.size}`;
}

/** changedAt is when a file last changed, by its stamp: the later of its mtime and ctime. */
function changedAt(stamp: string): number {
  const [mtime, ctime] = stamp.split(':', 2).map(Number);
  return Math.max(mtime ?? 0, ctime ?? 0);
}

/** stampOf is a file's change stamp (a dangling link's, see danglingStamp), or null when it is gone. */
function stampOf(path: string): string | null {
  try {
    return stampOfStats(statSync(path));
  } catch (err) {
    return danglingStamp(path, err);
  }
}

/**
 * danglingStamp is the stamp of a symbolic link that stat() could not
 * follow (`err`: to nothing, or looping), or null when `path` is not one
 * (it is gone). Marked apart from any file's stamp, so the link's target
 * appearing is a change even though the link itself did not change.
 */
function danglingStamp(path: string, err: unknown): string | null {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR') return null;
  try {
    const st = lstatSync(path);
    return st.isSymbolicLink() ? `link:${stampOfStats(st)}` : null;
  } catch {
    return null;
  }
}

/** expiredProblem is what is said of a file whose PvD's `expires` has passed (the registry refuses it). */
export function expiredProblem(f: PvdFile): PvdProblem {
  return { file: f.file, line: f.lines.get('expires') ?? 1, key: 'expires', problem: `${f.spec.expires} has passed: the PvD is not used (RFC 8801 §4.3)` };
}

/** lineOf finds a field's line: its own ("dnsServers[1]"), else its key's ("dnsServers"), else the first line. */
function lineOf(lines: ReadonlyMap<string, number>, field: string): number | null {
  return lines.get(field) ?? lines.get(field.replace(/\[.*$/, '')) ?? (field === '' ? null : 1);
}

/** V8's "Unexpected token" error quotes the text around the token instead of a position. */
const TOKEN_CONTEXT = /^Unexpected token '[\s\S]', (\.\.\.)?"([\s\S]*)"(\.\.\.)? is not valid JSON$/;
/** V8 quotes this many characters each side of the token (its kMaxContextCharacters). */
const CONTEXT_CHARS = 10;

/**
 * jsonErrorLine finds the line of a JSON.parse error: V8 says "(line L
 * column C)" or "at position P", or quotes the text around an unexpected
 * token (found again in the file); the end of input is the last line.
 */
function jsonErrorLine(text: string, message: string): number | null {
  const lineOfPos = (pos: number): number => text.slice(0, pos).split('\n').length;
  const lc = /\(line (\d+) column \d+\)/.exec(message);
  if (lc) return Number(lc[1]);
  const pos = / at position (\d+)/.exec(message);
  if (pos) return lineOfPos(Number(pos[1]));
  if (/end of JSON input/.test(message)) return text.trimEnd().split('\n').length;
  const ctx = TOKEN_CONTEXT.exec(message);
  if (ctx) {
    const [, before, quoted, after] = ctx as unknown as [string, string | undefined, string, string | undefined];
    if (!before && !after) return null; // a short text quoted whole: the token could be anywhere in it
    const start = before ? text.indexOf(quoted) : 0;
    if (start >= 0) return lineOfPos(start + (before ? CONTEXT_CHARS : Math.max(0, quoted.length - CONTEXT_CHARS)));
  }
  return null;
}

/** jsonErrorText keeps V8's reason and drops where it was and the quoted text (which may span lines). */
function jsonErrorText(message: string): string {
  return message
    .replace(/, (\.\.\.)?"[\s\S]*"(\.\.\.)? is not valid JSON$/, '')
    .replace(/ in JSON at position \d+[\s\S]*$/, '')
    .replace(/\s+/g, ' ');
}

/**
 * keyLines walks valid JSON text once and notes the line of each key of the
 * top-level object and of each item of its arrays, and which top-level keys
 * appear twice (JSON.parse keeps the last in silence). Linear, no parser:
 * it runs on every file, 16,000 of them in a large folder.
 */
function keyLines(text: string): { lines: Map<string, number>; twice: Array<[key: string, line: number, first: number]> } {
  const lines = new Map<string, number>();
  const twice: Array<[string, number, number]> = [];
  const stack: Array<{ object: boolean; index: number; expectKey: boolean }> = [];
  let line = 1;
  let topKey = '';
  const valueStarts = (): void => {
    if (stack.length === 2 && stack[0]!.object && !stack[1]!.object) lines.set(`${topKey}[${stack[1]!.index}]`, line);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) line++;
    else if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x3a /* : */) continue;
    else if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack.at(-1);
      if (top?.object && top.expectKey) {
        top.expectKey = false;
        if (stack.length === 1) {
          topKey = JSON.parse(text.slice(i, j + 1)) as string;
          const first = lines.get(topKey);
          if (first !== undefined) twice.push([topKey, line, first]);
          else lines.set(topKey, line);
        }
      } else valueStarts();
      i = j; // a JSON string holds no raw line break
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      valueStarts();
      stack.push({ object: c === 0x7b, index: 0, expectKey: c === 0x7b });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const top = stack.at(-1);
      if (top?.object) top.expectKey = true;
      else if (top) top.index++;
    } else {
      valueStarts(); // a number, true, false or null: skip to its end
      while (i + 1 < text.length && !/[\s,\]}]/.test(text[i + 1]!)) i++;
    }
  }
  return { lines, twice };
}

/** What a scan of the folder found: the PvDs in force from it, and every problem (not only new ones). */
export interface DirectoryReport {
  /** The file of each PvD the folder gives (by PvD id), in file-name order. */
  files: Array<{ file: string; id: string }>;
  problems: PvdProblem[];
}

interface FileState {
  /** The change stamp when last read (stampOfStats): a change means read again. */
  stamp: string;
  /** The last good version of the file, or null if it never had one (or is now a link to nothing). */
  good: PvdFile | null;
  /** The problems of the version read last (none when it was good). */
  problems: PvdProblem[];
  /** The file is a symbolic link to nothing (its problems say so, and it gives no PvD). */
  dangling: boolean;
}

/**
 * PvdDirectory is the source of pvdSources.directory (a PvdFeed): it reads
 * the folder at start, then again at each change inotify reports, at most
 * COALESCE_MS after it, and every rescanMs in case an event was lost. It
 * changes the registry through the sink it is started with; without one
 * (check-config's scan(), or start() with no sink), straight through
 * syncSource. It reads the registry either way, to say which file's PvD
 * another source holds or has expired, and to skip a rescan that finds
 * nothing new.
 */
export class PvdDirectory implements PvdFeed {
  private readonly files = new Map<string, FileState>();
  /** What was logged after the last scan: a problem is logged when it appears, not at every rescan. */
  private reported = new Set<string>();
  private watcher: FSWatcher | null = null;
  private rescan: NodeJS.Timeout | null = null;
  private sink: SourceSink;
  /** The next read of the folder, armed by a change or a retry; null while none is due (no timer while idle). */
  private timer: { handle: NodeJS.Timeout; due: number } | null = null;
  /** The read under way, if any: changes heard meanwhile are read after it (`dirty`). */
  private running: Promise<void> | null = null;
  private dirty = false;
  /** The routing barrier (SourceSink.hold) opened by a change heard and not yet read. */
  private release: (() => void) | null = null;
  /** Files that read bad while a writer may still have been writing them, and since when. */
  private readonly unsettled = new Map<string, number>();
  private stopped = false;
  /**
   * The last apply's report and the registry's generation after it: a scan
   * that finds no file added, changed or removed, and the registry as it
   * left it, returns this report instead of syncing every PvD again (for
   * 16,000 files, a block of the event loop at every 10 s rescan). A change by any
   * other source (a PvD this folder lost to the configuration, withdrawn),
   * or an expiry, changes the generation, so the next scan applies again.
   */
  private applied: { generation: number; report: DirectoryReport } | null = null;

  constructor(
    readonly dir: string,
    private readonly registry: PvdRegistry,
    private readonly log: Logger,
    private readonly check: PvdCheck = () => null,
    private readonly rescanMs = RESCAN_MS,
  ) {
    this.sink = registrySink(registry);
  }

  describe(): string {
    return `directory ${this.dir}`;
  }

  /**
   * start reads the folder once and then follows it, changing the registry
   * through `sink` (which must apply a sync before it returns, as the
   * registry's own does; without one, syncSource directly). A missing
   * folder is an error.
   */
  async start(sink?: SourceSink): Promise<void> {
    if (sink) this.sink = sink;
    this.stopped = false;
    await readdir(this.dir); // fails early, with the path, if the folder is not there
    await this.scan();
    this.watcher = watch(this.dir, (_event, name) => this.changed(name));
    this.watcher.on('error', (err) => this.log.error({ err, dir: this.dir }, 'cannot watch the PvD directory'));
    this.rescan = setInterval(() => this.schedule(0), this.rescanMs);
    this.rescan.unref();
  }

  /**
   * changed is inotify telling of a change in the folder. A change to a PvD
   * file (or one it cannot name) holds routing until it is read, so no query
   * is routed by the version the folder no longer has; any other name (a
   * temporary file, the target of a link) is read without holding.
   */
  private changed(name: string | Buffer | null): void {
    if (this.stopped) return;
    if (this.release === null && (name === null || String(name).endsWith('.json'))) this.release = this.sink.hold();
    this.schedule(this.unsettled.size > 0 ? QUICK_MS : COALESCE_MS);
  }

  /**
   * schedule arms a read of the folder in `delayMs`, unless one is armed
   * sooner (a later change never postpones it) or under way (then it reads
   * again when done).
   */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    const due = Date.now() + delayMs;
    if (this.timer !== null) {
      if (this.timer.due <= due) return;
      clearTimeout(this.timer.handle);
    }
    const handle = setTimeout(() => {
      this.timer = null;
      this.running = this.follow().then((retryMs) => {
        this.running = null;
        if (this.dirty) {
          this.dirty = false;
          this.schedule(this.unsettled.size > 0 ? QUICK_MS : COALESCE_MS);
        }
        if (retryMs !== null) this.schedule(retryMs);
      });
    }, delayMs);
    handle.unref();
    this.timer = { handle, due };
  }

  /**
   * follow is one read of the folder while following it: bad files that
   * may be half-written are put off, and it says when to read them again
   * (null: no file waits). The barrier opened for the change is released
   * once the change is applied.
   */
  private async follow(): Promise<number | null> {
    const release = this.release;
    this.release = null;
    try {
      return (await this.read(true)).retryMs;
    } catch (err) {
      // A scan that fails (it should not: files' problems are reported, not thrown) is said in
      // one line; the next change or rescan reads again, and no rejection is left unhandled.
      this.applied = null;
      const error = err instanceof Error ? err.message : String(err);
      this.log.error({ dir: this.dir, error: error.replace(/\s+/g, ' ') }, 'cannot scan the PvD directory; retrying at the next change or rescan');
      return null;
    } finally {
      release?.();
    }
  }

  /** settled resolves once the changes heard so far have been read (for tests and reloads). */
  async settled(): Promise<void> {
    while (this.timer !== null || this.running !== null) {
      await (this.running ?? new Promise((r) => setTimeout(r, Math.max(0, this.timer!.due - Date.now()) + 1)));
    }
  }

  /**
   * scan reads new and changed files, forgets removed ones, brings the
   * registry in line, logs what is newly wrong, and reports all of it
   * (check-config prints the report). It reads each file as it is now,
   * half-written or not: check-config's one look, and a test's.
   */
  async scan(): Promise<DirectoryReport> {
    return (await this.read(false)).report;
  }

  /**
   * read is scan; with `settle` (following the folder), a file that reads
   * bad and changed less than FRESH_MS ago is left as it was, neither
   * applied nor reported, and `retryMs` says when to read it again.
   */
  private async read(settle: boolean): Promise<{ report: DirectoryReport; retryMs: number | null }> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      const problem = { file: this.dir, line: null, key: '', problem: `cannot read the PvD directory: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
      this.report([[formatProblem(problem), () => this.log.error({ dir: this.dir, error: formatProblem(problem) }, 'cannot read the PvD directory')]]);
      this.applied = null; // what was reported is forgotten: the next scan says it all again
      return { report: { files: [], problems: [problem] }, retryMs: null };
    }
    const present = new Set(names);
    let removed = 0;
    for (const name of [...this.files.keys()]) {
      if (!present.has(name)) {
        this.files.delete(name);
        removed++;
      }
    }
    for (const name of [...this.unsettled.keys()]) if (!present.has(name)) this.unsettled.delete(name);
    // stat() and read in synchronous runs of IO_RUN files, giving the event loop a turn between runs: a
    // promise per call costs four times the system calls' own time (a folder of 16,000 files took
    // seconds), while a run of small local files blocks queries for a millisecond or two at most.
    const changed: Array<{ name: string; stamp: string; read: PvdFile | BadPvdFile }> = [];
    for (let at = 0; at < names.length; at += IO_RUN) {
      if (at > 0) await nextTurn();
      for (const name of names.slice(at, at + IO_RUN)) {
        const path = join(this.dir, name);
        const known = this.files.get(name);
        if (known === undefined) {
          // A file not seen before is read at once; its stamp comes from the open file (one stat fewer).
          const read = readPvdFile(path, this.check);
          const stamp = read.stamp ?? stampOf(path); // a file that could not be opened: said, unless it is gone
          if (stamp !== null) changed.push({ name, stamp, read });
          continue;
        }
        const stamp = stampOf(path);
        if (stamp === null) continue; // removed while scanning
        if (known.stamp !== stamp) changed.push({ name, stamp, read: readPvdFile(path, this.check) });
      }
    }
    const now = Date.now();
    let retryMs: number | null = null;
    let kept = 0;
    for (const { name, stamp, read: r } of changed) {
      if (settle && !r.ok && !r.dangling) {
        // Bad, and written a moment ago: maybe a writer's first chunk (a file written in place is
        // truncated, then written), so read it again when it has been still for FRESH_MS. The
        // clock and the file's times are both the wall clock; a time in the future is no writer's.
        const age = now - changedAt(stamp);
        const since = this.unsettled.get(name) ?? now;
        if (age > -FRESH_MS && age < FRESH_MS && now - since < UNSETTLED_LIMIT_MS) {
          this.unsettled.set(name, since);
          const due = Math.max(1, Math.ceil(FRESH_MS - age));
          retryMs = retryMs === null ? due : Math.min(retryMs, due);
          kept++;
          continue;
        }
      }
      this.unsettled.delete(name);
      const path = join(this.dir, name);
      const known = this.files.get(name);
      if (r.ok) {
        this.files.set(name, { stamp, good: r, problems: [], dangling: false });
        if (r.ignoredKeys.length > 0) {
          // The first few by name, and how many more: a file of 100,000 unknown keys is one short line.
          const more = r.ignoredKeys.length - MAX_PVD_PROBLEMS;
          const keys = more > 0 ? { ignoredKeys: r.ignoredKeys.slice(0, MAX_PVD_PROBLEMS), moreIgnoredKeys: more } : { ignoredKeys: r.ignoredKeys };
          this.log.info({ file: path, pvd: r.spec.identifier, ...keys }, 'a PvD file has keys pvdns does not know; ignored as RFC 8801 §4.3 says');
        }
      } else if (r.dangling) {
        this.files.set(name, { stamp, good: null, problems: r.problems, dangling: true });
      } else {
        this.files.set(name, { stamp, good: known?.good ?? null, problems: r.problems, dangling: false });
      }
    }
    if (settle && this.stopped) return { report: this.applied?.report ?? { files: [], problems: [] }, retryMs: null }; // stopped while reading
    if (changed.length === kept && removed === 0 && this.applied?.generation === this.registry.generation) return { report: this.applied.report, retryMs };
    return { report: this.apply(), retryMs };
  }

  private apply(): DirectoryReport {
    const problems: PvdProblem[] = [];
    const logs: Array<[string, () => void]> = [];
    const specs: PvdSpec[] = [];
    const chosen = new Map<string, PvdFile>();
    // By file name, so which of two files naming one PvD wins does not depend on when each was written.
    for (const [, state] of [...this.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const p of state.problems) {
        problems.push(p);
        const line = formatProblem(p);
        const msg = state.dangling ? 'a PvD file is a symbolic link to nothing; its PvD, if any, is withdrawn' : 'ignoring a bad PvD file; its PvD, if any, is unchanged';
        logs.push([`${state.stamp} ${line}`, () => this.log.error({ file: p.file, line: p.line, key: p.key, error: line }, msg)]);
      }
      const good = state.good;
      if (good === null) continue;
      const id = normalizeDomain(good.spec.identifier);
      const first = chosen.get(id);
      if (first !== undefined) {
        const p = { file: good.file, line: good.lines.get('identifier') ?? 1, key: 'identifier', problem: `${JSON.stringify(good.spec.identifier)} is also the PvD of ${first.file}; the first file by name is used` };
        problems.push(p);
        logs.push([formatProblem(p), () => this.log.error({ file: good.file, other: first.file, pvd: id, error: formatProblem(p) }, 'two PvD files name the same PvD; using the first')]);
        continue;
      }
      chosen.set(id, good);
      specs.push(good.spec);
    }
    this.sink.sync(specs);
    // The registry now says what the sync did (a sink applies it before it returns): a chosen PvD
    // another source holds was not taken, and one not there at all had expired (RFC 8801 §4.3).
    const r: { conflicts: string[]; expired: string[] } = { conflicts: [], expired: [] };
    for (const id of chosen.keys()) {
      const holder = this.registry.get(id);
      if (holder === undefined) r.expired.push(id);
      else if (holder.source !== 'file') r.conflicts.push(id);
    }
    const gone = new Set([...r.conflicts, ...r.expired]);
    for (const id of r.conflicts) {
      const f = chosen.get(id)!;
      const holder = this.registry.get(id);
      const p = { file: f.file, line: f.lines.get('identifier') ?? 1, key: 'identifier', problem: `${JSON.stringify(f.spec.identifier)} is already ${holder ? sourceLabel(holder) : 'held by another source'}; this file is ignored` };
      problems.push(p);
      logs.push([formatProblem(p), () => this.log.error({ file: f.file, pvd: id, source: holder?.source, error: formatProblem(p) }, 'a PvD file names a PvD another source holds; ignored')]);
    }
    for (const id of r.expired) {
      const f = chosen.get(id)!;
      const p = expiredProblem(f);
      problems.push(p);
      logs.push([formatProblem(p), () => this.log.warn({ file: f.file, pvd: id, error: formatProblem(p) }, 'a PvD file names a PvD whose expires time has passed')]);
    }
    this.report(logs);
    problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0)); // stable: a file's own order stays
    const files = [...chosen].filter(([id]) => !gone.has(id)).map(([id, f]) => ({ file: f.file, id }));
    const report = { files, problems };
    this.applied = { generation: this.registry.generation, report };
    return report;
  }

  /** report logs each problem not logged after the last scan, and forgets the ones gone (so they log again if they come back). */
  private report(logs: Array<[key: string, log: () => void]>): void {
    const now = new Set<string>();
    for (const [key, log] of logs) {
      now.add(key);
      if (!this.reported.has(key)) log();
    }
    this.reported = now;
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearTimeout(this.timer.handle);
    this.timer = null;
    if (this.rescan) clearInterval(this.rescan);
    this.rescan = null;
    this.release?.();
    this.release = null;
    this.unsettled.clear();
  }
}

/** registrySink changes the registry straight away: the sink of a directory started without one. */
function registrySink(registry: PvdRegistry): SourceSink {
  return {
    sync: (specs) => void syncSource(registry, 'file', specs),
    announce: (spec) => void announceFrom(registry, 'file', spec, null),
    withdraw: (id) => {
      if (registry.get(id)?.source === 'file') registry.withdraw(id);
    },
    hold: () => () => {},
  };
}
