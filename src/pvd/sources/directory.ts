// PvD files (pvdSources.directory): each *.json file in the folder is one
// PvD, as an RFC 8801 PvD Additional Information object or DESIGN's PvD
// object (input.ts says how each is read). A file added, changed or removed
// announces, updates or withdraws its PvD, so a VPN's up/down script can just
// write or delete a file. A bad file is logged with its path, line and key
// and changes nothing: its PvD, if it had a good version before, stays as it
// was. `pvdns check-config` reads the folder with this same code, and
// `check-config --pvd FILE` reads one file with readPvdFile, so what they
// print is what serve logs.

import { closeSync, fstatSync, openSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MAX_PVD_FILE_BYTES, PvdInputError, readPvdInput, type PvdIssue } from '../input.js';
import type { PvdRegistry } from '../registry.js';
import { normalizeDomain, type PvdSpec } from '../schema.js';
import { sourceLabel, syncSource } from './sync.js';

/** Writers rarely write a file in one go: wait this long after the last change. */
const SETTLE_MS = 100;
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

/** formatProblem is the one line check-config prints and serve logs for a problem. */
export function formatProblem(p: PvdProblem): string {
  return `${p.file}${p.line !== null ? `:${p.line}` : ''}: ${p.key ? `${p.key}: ` : ''}${p.problem}`;
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
  /** mtime and size as the open file had them (how a rescan tells a change). */
  stamp?: string;
}

/** A PvD file that does not, with every problem found. */
export interface BadPvdFile {
  ok: false;
  file: string;
  problems: PvdProblem[];
  stamp?: string;
}

/** A further check of a file's PvD (pvdns refuses to be its own server). */
export type PvdCheck = (spec: PvdSpec) => PvdInputError | null;

/**
 * readPvdFile reads one PvD file: at most MAX_PVD_FILE_BYTES (a larger file
 * is refused before it is read), not empty, strict JSON (RFC 8801 §4: I-JSON,
 * so a key twice is refused too), a PvD by readPvdInput, and `check`.
 * It reads synchronously (a small local file; see PvdDirectory.scan for why).
 */
export function readPvdFile(file: string, check: PvdCheck = () => null): PvdFile | BadPvdFile {
  const bad = (line: number | null, key: string, problem: string): BadPvdFile => ({ ok: false, file, problems: [{ file, line, key, problem }] });
  let text: string;
  let stamp: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const st = fstatSync(fd);
      stamp = `${st.mtimeMs}:${st.size}`;
      if (!st.isFile()) return bad(null, '', 'not a regular file');
      if (st.size > MAX_PVD_FILE_BYTES) return bad(null, '', `the file is ${st.size} bytes, over the ${MAX_PVD_FILE_BYTES / 1024 / 1024} MiB a PvD file may hold`);
      // One byte more than stat() said: a file that grew past the limit since is refused too.
      const buf = Buffer.allocUnsafe(Math.min(st.size, MAX_PVD_FILE_BYTES) + 1); // only the bytes read are used
      let n = 0;
      for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0; ) n += r;
      if (n > MAX_PVD_FILE_BYTES) return bad(null, '', `the file is over the ${MAX_PVD_FILE_BYTES / 1024 / 1024} MiB a PvD file may hold`);
      text = buf.toString('utf8', 0, n);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    return bad(null, '', `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const result = judge(file, text, check);
  result.stamp = stamp;
  return result;
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
  const problems: PvdProblem[] = twice.map(([key, line, first]) => ({
    file,
    line,
    key,
    problem: `the key appears twice (first on line ${first}); JSON leaves which one counts to the reader (RFC 7493 §2.3)`,
  }));
  const at = (i: PvdIssue): PvdProblem => ({ file, line: lineOf(lines, i.field), key: i.field, problem: i.problem });
  try {
    const { spec, ignoredKeys } = readPvdInput(value);
    const problem = check(spec);
    if (problem) problems.push(...problem.issues.map(at));
    if (problems.length === 0) return { ok: true, file, spec, ignoredKeys, lines };
  } catch (err) {
    if (!(err instanceof PvdInputError)) throw err;
    problems.push(...err.issues.map(at));
  }
  return { ok: false, file, problems: problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) };
}

/** stampOf is a file's mtime and size, or null when it is gone. */
function stampOf(path: string): string | null {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}`;
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
  /** mtime and size when last read: a change of either means read again. */
  stamp: string;
  /** The last good version of the file, or null if it never had one. */
  good: PvdFile | null;
  /** The problems of the version read last (none when it was good). */
  problems: PvdProblem[];
}

export class PvdDirectory {
  private readonly files = new Map<string, FileState>();
  /** What was logged after the last scan: a problem is logged when it appears, not at every rescan. */
  private reported = new Set<string>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private rescan: NodeJS.Timeout | null = null;
  private scanning: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly registry: PvdRegistry,
    private readonly log: Logger,
    private readonly check: PvdCheck = () => null,
    private readonly rescanMs = RESCAN_MS,
  ) {}

  /** start reads the folder once and then follows it. A missing folder is an error. */
  async start(): Promise<void> {
    await readdir(this.dir); // fails early, with the path, if the folder is not there
    await this.scan();
    this.watcher = watch(this.dir, () => this.schedule());
    this.watcher.on('error', (err) => this.log.error({ err, dir: this.dir }, 'cannot watch the PvD directory'));
    this.rescan = setInterval(() => this.schedule(), this.rescanMs);
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

  /**
   * scan reads new and changed files, forgets removed ones, brings the
   * registry in line, logs what is newly wrong, and reports all of it
   * (check-config prints the report).
   */
  async scan(): Promise<DirectoryReport> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      const problem = { file: this.dir, line: null, key: '', problem: `cannot read the PvD directory: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
      this.report([[formatProblem(problem), () => this.log.error({ dir: this.dir, error: formatProblem(problem) }, 'cannot read the PvD directory')]]);
      return { files: [], problems: [problem] };
    }
    const present = new Set(names);
    for (const name of [...this.files.keys()]) if (!present.has(name)) this.files.delete(name);
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
    for (const { name, stamp, read: r } of changed) {
      const path = join(this.dir, name);
      const known = this.files.get(name);
      if (r.ok) {
        this.files.set(name, { stamp, good: r, problems: [] });
        if (r.ignoredKeys.length > 0) {
          this.log.info({ file: path, pvd: r.spec.identifier, ignoredKeys: r.ignoredKeys }, 'a PvD file has keys pvdns does not know; ignored as RFC 8801 §4.3 says');
        }
      } else {
        this.files.set(name, { stamp, good: known?.good ?? null, problems: r.problems });
      }
    }
    return this.apply();
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
        logs.push([`${state.stamp} ${line}`, () => this.log.error({ file: p.file, line: p.line, key: p.key, error: line }, 'ignoring a bad PvD file; its PvD, if any, is unchanged')]);
      }
      const good = state.good;
      if (good === null) continue;
      const id = normalizeDomain(good.spec.identifier);
      const first = chosen.get(id);
      if (first !== undefined) {
        const p = { file: good.file, line: good.lines.get('identifier') ?? 1, key: 'identifier', problem: `"${good.spec.identifier}" is also the PvD of ${first.file}; the first file by name is used` };
        problems.push(p);
        logs.push([formatProblem(p), () => this.log.error({ file: good.file, other: first.file, pvd: id, error: formatProblem(p) }, 'two PvD files name the same PvD; using the first')]);
        continue;
      }
      chosen.set(id, good);
      specs.push(good.spec);
    }
    const r = syncSource(this.registry, 'file', specs);
    const gone = new Set([...r.conflicts, ...r.expired]);
    for (const id of r.conflicts) {
      const f = chosen.get(id)!;
      const holder = this.registry.get(id);
      const p = { file: f.file, line: f.lines.get('identifier') ?? 1, key: 'identifier', problem: `"${f.spec.identifier}" is already ${holder ? sourceLabel(holder) : 'held by another source'}; this file is ignored` };
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
    return { files, problems };
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
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
    if (this.rescan) clearInterval(this.rescan);
    this.watcher = null;
  }
}
