// Loading a configuration file (YAML, or JSON — a YAML subset) into a frozen
// Config. Every error names the file, the line, the key and what is wrong,
// in one line, so `pvdns check-config` and a failed start say the same thing.

import { readFile } from 'node:fs/promises';
import { isMap, isNode, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { describeIssue } from './issue.js';
import { configSchema, type Config } from './schema.js';

/** ConfigError is a configuration problem with its location. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${key ? `${key}: ` : ''}${problem}`);
    this.name = 'ConfigError';
  }
}

/** loadConfig reads and validates a configuration file. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, null, '', `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseConfig(text, file);
}

/** parseConfig validates configuration text; `file` is only used in messages. */
export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
    throw new ConfigError(file, line, '', `not valid YAML or JSON: ${e.message.split('\n')[0]}`);
  }
  const data: unknown = doc.toJS();
  // An empty file, one of comments only, or a bare null is refused like any bad file: taken as
  // "every default", a reload with a file cut short would move the listeners and switch the
  // host's PvDs on. `{}` says "every default" on purpose.
  if (data === null || data === undefined) throw new ConfigError(file, null, '', 'the file has no settings (write {} to use every default)');
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, 1, '', 'must be a mapping of keys (listen, pvds, ...)');
  }
  const result = configSchema.safeParse(data, { reportInput: true }); // see describeIssue
  if (!result.success) throw toConfigError(result.error.issues[0]!, doc, lines, file);
  return deepFreeze(result.data);
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
