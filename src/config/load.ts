// Loading a configuration file (YAML, or JSON — a YAML subset) into a frozen
// Config. Every error names the file, the line, the key and what is wrong,
// in one line, so `pvdns check-config` and a failed start say the same thing.
// The input is bounded: a file over 4 MiB is refused before it is read,
// nesting deeper than MAX_DEPTH stops the parse at once, and aliases that
// would expand without bound ("billion laughs") are refused. JSON is read
// by JSON.parse, the YAML parser being ~200 times slower.

import { open } from 'node:fs/promises';
import { Composer, isMap, isNode, isScalar, isSeq, Lexer, LineCounter, Parser, visit, YAMLParseError, type Document } from 'yaml';
import type { CST } from 'yaml';
import type { z } from 'zod';
import { describeIssue, keyPath } from './issue.js';
import { configSchema, type Config } from './schema.js';

/** The largest configuration file pvdns reads (documented in the README). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Nesting of collections beyond this is refused while parsing (a configuration needs about 5). */
const MAX_DEPTH = 64;

/** Problems one check reports at most, one line each. */
export const MAX_PROBLEMS = 20;

/** ConfigError is a configuration problem with its location. */
export class ConfigError extends Error {
  /** Further problems found in the same check, after this one (see configErrors). */
  more: readonly ConfigError[] = [];

  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${key ? `${key}: ` : ''}${problem}`);
    this.name = 'ConfigError';
  }

  /** lines is every problem found, this one first, one line each. */
  get lines(): string[] {
    return [this.message, ...this.more.map((e) => e.message)];
  }
}

/**
 * configErrors makes one error of several found together: the first, with
 * the others in `more`, at most MAX_PROBLEMS lines in all; when there were
 * more (`total`, of which `errors` may be the first few), the last line
 * says how many more.
 */
export function configErrors(errors: readonly ConfigError[], total = errors.length): ConfigError {
  const [first, ...rest] = errors;
  if (first === undefined) throw new Error('configErrors needs an error');
  if (total <= MAX_PROBLEMS) first.more = rest;
  else first.more = [...rest.slice(0, MAX_PROBLEMS - 2), new ConfigError(first.file, null, '', `${total - (MAX_PROBLEMS - 1)} more problems not shown`)];
  return first;
}

/** loadConfig reads and validates a configuration file. */
export async function loadConfig(file: string): Promise<Config> {
  return parseConfig(await readConfigFile(file), file);
}

/**
 * readConfigFile reads a file of at most MAX_CONFIG_BYTES. A regular file
 * over it is refused by its size, before a byte is read; anything else (a
 * pipe, a device) is read only up to the limit.
 */
async function readConfigFile(file: string): Promise<string> {
  const cannot = (err: unknown): ConfigError => new ConfigError(file, null, '', `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  const tooBig = (size: string): ConfigError =>
    new ConfigError(file, null, '', `the file is ${size}: configuration files over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB (${MAX_CONFIG_BYTES} bytes) are refused`);
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw cannot(err);
  }
  try {
    const st = await fh.stat();
    if (st.isFile() && st.size > MAX_CONFIG_BYTES) throw tooBig(`${st.size} bytes`);
    // Room for the size stat gave (a byte more, to see the end), grown while more comes, up to the limit.
    let buf = Buffer.alloc(st.isFile() ? st.size + 1 : 64 * 1024);
    let n = 0;
    for (;;) {
      if (n === buf.length) buf = Buffer.concat([buf, Buffer.alloc(Math.min(buf.length, MAX_CONFIG_BYTES + 1 - buf.length))]);
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > MAX_CONFIG_BYTES) throw tooBig(`over ${MAX_CONFIG_BYTES} bytes`);
    }
    return buf.toString('utf8', 0, n);
  } catch (err) {
    throw err instanceof ConfigError ? err : cannot(err);
  } finally {
    await fh.close();
  }
}

/** parseConfig validates configuration text; `file` is only used in messages. */
export function parseConfig(text: string, file: string): Config {
  // The syntax tree, made when needed: for YAML at once, for JSON only to place an error.
  let tree: { doc: Document.Parsed; lines: LineCounter } | null = null;
  const yamlTree = (): { doc: Document.Parsed; lines: LineCounter } => (tree ??= parseYaml(text, file));
  let data = plainJson(text);
  if (data === undefined) data = yamlData(yamlTree(), file);
  // An empty file, one of comments only, or a bare null is refused like any bad file: taken as
  // "every default", a reload with a file cut short would move the listeners and switch the
  // host's PvDs on. `{}` says "every default" on purpose.
  if (data === null || data === undefined) throw new ConfigError(file, null, '', 'the file has no settings (write {} to use every default)');
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, 1, '', 'must be a mapping of keys (listen, pvds, ...)');
  }
  const result = configSchema.safeParse(data, { reportInput: true }); // see describeIssue
  if (!result.success) {
    const { doc, lines } = yamlTree();
    // Every problem, one line each; several unknown keys in one object are one issue to zod.
    const issues = result.error.issues.flatMap((i): z.core.$ZodIssue[] => (i.code === 'unrecognized_keys' ? i.keys.map((k) => ({ ...i, keys: [k] })) : [i]));
    // Shown in the order of the file (zod finds them in the schema's order).
    const shown = issues.slice(0, MAX_PROBLEMS).map((issue) => toConfigError(issue, doc, lines, file));
    throw configErrors(shown.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)), issues.length);
  }
  const config = deepFreeze(result.data);
  origins.set(config, { file, text, parsed: null });
  return config;
}

/** yamlData is a parsed document's data, or the ConfigError of its first problem. */
function yamlData({ doc, lines }: { doc: Document.Parsed; lines: LineCounter }, file: string): unknown {
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(file, lines.linePos(e.pos[0]).line, '', `not valid YAML or JSON: ${e.message.split('\n')[0]}`);
  }
  checkUniqueKeys(doc, lines, file);
  try {
    return doc.toJS(); // maxAliasCount: 100, the yaml package's guard against alias bombs
  } catch (err) {
    // An alias expanding past that limit is the only way toJS throws on a document without errors.
    const line = firstAliasLine(doc, lines);
    throw new ConfigError(file, line, '', `not valid YAML or JSON: too many aliases (*name) expand the document (${(err as Error).message})`);
  }
}

/**
 * plainJson reads a JSON object with JSON.parse — about 200 times faster
 * than the YAML parser (16,000 PvDs: 6 ms against 1.5 s) — or returns
 * undefined when the text is not one, or names a key twice in an object
 * (JSON.parse would keep the last in silence): the YAML parser then reads
 * it, and says where it is wrong.
 */
function plainJson(text: string): unknown {
  if (!/^\s*\{/.test(text)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  return hasDuplicateKey(text) ? undefined : data;
}

/** hasDuplicateKey says whether an object of a valid JSON text names a key twice. */
function hasDuplicateKey(json: string): boolean {
  // One set of keys per open object (null for an array); a string is a key right after "{" or
  // after a "," in an object.
  const open: (Set<string> | null)[] = [];
  let atKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; json.charCodeAt(i) !== 0x22; i++) {
        if (json.charCodeAt(i) === 0x5c /* \ */) {
          escaped = true;
          i++;
        }
      }
      const keys = open.at(-1);
      if (atKey && keys) {
        const key = escaped ? (JSON.parse(json.slice(start, i + 1)) as string) : json.slice(start + 1, i);
        if (keys.has(key)) return true;
        keys.add(key);
        atKey = false;
      }
    } else if (c === 0x7b /* { */) {
      open.push(new Set());
      atKey = true;
    } else if (c === 0x5b /* [ */) {
      open.push(null);
      atKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      open.pop();
      atKey = false;
    } else if (c === 0x2c /* , */) {
      atKey = open.at(-1) != null;
    }
  }
  return false;
}

/**
 * Where each configuration parseConfig returned came from, so a check made
 * later (one that needs the file system or the clock, a failed bind) can
 * name the line of the key it is about. Only the text is kept (at most
 * MAX_CONFIG_BYTES): the syntax tree, ten times larger, is made again at
 * the first lookup, and a configuration with a problem is about to be
 * refused or replaced.
 */
const origins = new WeakMap<Config, { file: string; text: string; parsed: { doc: Document.Parsed; lines: LineCounter } | null }>();

/**
 * configErrorAt is a ConfigError about `path` in `config`, with the file and
 * line it came from when parseConfig made it; `file` is for a configuration
 * made otherwise (tests), which has no lines.
 */
export function configErrorAt(config: Config, path: (string | number)[], problem: string, file: string | null = null): ConfigError {
  const origin = origins.get(config);
  const where = file ?? origin?.file ?? '(config)';
  if (!origin) return new ConfigError(where, null, keyPath(path), problem);
  origin.parsed ??= parseYaml(origin.text, origin.file);
  return new ConfigError(where, lineOf(origin.parsed.doc, origin.parsed.lines, path), keyPath(path), problem);
}

/**
 * parseYaml is the yaml package's parseDocument with a bound on nesting:
 * every lexical token goes through the parser here, and a document whose
 * collections nest deeper than MAX_DEPTH stops at once with an error (the
 * package would go on, and a 4 MiB file of "[" took 20 s to refuse).
 * Duplicate keys are found by checkUniqueKeys, in linear time (the
 * package's own check compares each key with every earlier one).
 */
function parseYaml(text: string, file: string): { doc: Document.Parsed; lines: LineCounter } {
  const lines = new LineCounter();
  const parser = new Parser(lines.addNewLine);
  lines.addNewLine(0); // as Parser.parse does before the first token
  const composer = new Composer({ uniqueKeys: false });
  let offset = 0;
  function* tokens(): Generator<CST.Token> {
    for (const lexeme of new Lexer().lex(text)) {
      yield* parser.next(lexeme);
      if (parser.stack.length > MAX_DEPTH) {
        throw new ConfigError(file, lines.linePos(offset).line, '', `not valid YAML or JSON: collections nested more than ${MAX_DEPTH} deep`);
      }
      offset += lexeme.length;
    }
    yield* parser.end();
  }
  let doc: Document.Parsed | null = null;
  for (const d of composer.compose(tokens(), true, text.length)) {
    if (doc === null) doc = d;
    else {
      doc.errors.push(new YAMLParseError([d.range[0], d.range[1]], 'MULTIPLE_DOCS', 'more than one document (--- starts another)'));
      break;
    }
  }
  return { doc: doc!, lines };
}

/** checkUniqueKeys refuses a mapping that names a key twice, at the second one's line. */
function checkUniqueKeys(doc: Document.Parsed, lines: LineCounter, file: string): void {
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const key = pair.key.value;
        if (seen.has(key)) {
          const line = pair.key.range ? lines.linePos(pair.key.range[0]).line : null;
          throw new ConfigError(file, line, '', `not valid YAML or JSON: the key "${String(key)}" appears twice in one mapping`);
        }
        seen.add(key);
      }
    },
  });
}

/** firstAliasLine is the line of the document's first alias (*name). */
function firstAliasLine(doc: Document.Parsed, lines: LineCounter): number | null {
  let line: number | null = null;
  visit(doc, {
    Alias(_, node) {
      if (node.range) line = lines.linePos(node.range[0]).line;
      return visit.BREAK;
    },
  });
  return line;
}

function toConfigError(issue: z.core.$ZodIssue, doc: Document, lines: LineCounter, file: string): ConfigError {
  const { path, field, problem } = describeIssue(issue);
  const unknownKey = issue.code === 'unrecognized_keys';
  // An unknown key's line is the key's own; otherwise the value's.
  const line = unknownKey ? lineOf(doc, lines, path.slice(0, -1), String(path.at(-1))) : lineOf(doc, lines, path);
  return new ConfigError(file, line, field, problem);
}

/** lineOf finds the line of the deepest node on `path` that exists (or of `key` in it). */
function lineOf(doc: Document, lines: LineCounter, path: (string | number)[], key?: string): number | null {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (!isNode(node) || !node.range) continue;
    if (key !== undefined && n === path.length && isMap(node)) {
      const pair = node.items.find((p) => isNode(p.key) && (p.key as { value?: unknown }).value === key);
      if (pair && isNode(pair.key) && pair.key.range) return lines.linePos(pair.key.range[0]).line;
    }
    if (isSeq(node) || isMap(node) || n === path.length) return lines.linePos(node.range[0]).line;
  }
  return null;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
