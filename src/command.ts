// pvdns command line: `serve` runs the resolver, `check-config` validates a
// configuration and prints the PvDs it would start with. Run through cli.ts.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { App, ListenError } from './app.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { ClientError, DEFAULT_API, query, status } from './http/client.js';
import { createLogger } from './log.js';

const DEFAULT_CONFIG = fileURLToPath(new URL('../config/default.yaml', import.meta.url));

const HELP = `pvdns — a DNS resolver that keeps DNS per provisioning domain (PvD)

Usage:
  pvdns serve [--config FILE]     run the resolver (default: the embedded config/default.yaml)
  pvdns check-config FILE         validate FILE and print the PvDs and routes it gives
  pvdns status                    the running pvdns's PvDs, servers and their state
  pvdns query NAME [TYPE] [--pvd ID]
                                  resolve NAME (in exactly PvD ID if given) and say which PvD answered
  pvdns --help | --version

Options of status and query:
  --server URL                    the pvdns HTTP API (default ${DEFAULT_API})
  --json                          print the API's JSON

Signals (serve): SIGHUP reloads FILE, SIGTERM and SIGINT drain queries in flight and exit 0.
Configuration keys: see config/example.yaml and the README.
Errors are one line each; PVDNS_DEBUG=1 adds the stack trace of an unexpected one.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** fail prints one line (a message's line breaks become spaces) and exits. */
function fail(message: string, code = 1): never {
  process.stderr.write(`pvdns: ${oneLine(message)}\n`);
  process.exit(code);
}

/** usage prints a mistake on the command line, then the usage, and exits 2. */
function usage(message: string): never {
  process.stderr.write(`pvdns: ${oneLine(message)}\n\n${HELP}\n`);
  process.exit(2);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * failOn exits 1 on an error from loading, checking or starting: every
 * problem of a ConfigError on its own line ("config error: FILE:LINE: key:
 * problem"; a listener that could not be bound is not the file's fault and
 * says only where), anything else in one line.
 */
function failOn(err: unknown): never {
  if (err instanceof ConfigError) {
    const prefix = err instanceof ListenError ? '' : 'config error: ';
    process.stderr.write(err.lines.map((l) => `pvdns: ${prefix}${oneLine(l)}\n`).join(''));
    process.exit(1);
  }
  unexpected(err);
}

/** unexpected exits 1 on an error nobody foresaw: its message in one line, its stack only with PVDNS_DEBUG=1. */
function unexpected(err: unknown): never {
  if (process.env.PVDNS_DEBUG === '1' && err instanceof Error && err.stack) {
    process.stderr.write(`pvdns: ${err.stack}\n`);
    process.exit(1);
  }
  fail(describe(err));
}

/** describe is an error's message in one line. */
function describe(err: unknown): string {
  return oneLine(err instanceof Error ? err.message || err.name : String(err));
}

async function load(file: string): Promise<Config> {
  try {
    return await loadConfig(file);
  } catch (err) {
    failOn(err);
  }
}

async function serve(file: string): Promise<void> {
  const config = await load(file);
  const app = new App(config, { configFile: file });
  try {
    await app.start();
  } catch (err) {
    failOn(err);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'stopping: draining queries in flight');
    app.stop().then(
      () => {
        app.log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ error: describe(err) }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    loadConfig(file)
      .then((next) => app.reload(next))
      .catch((err: unknown) => app.log.error(reloadFailure(err), 'reload failed; keeping the running configuration'));
  });
}

/**
 * reloadFailure is the log fields of a failed reload: `error`, one line
 * (FILE:LINE: key: problem for a configuration problem), and `errors`, every
 * line, when there were several. Never a stack: the log is read by people.
 */
function reloadFailure(err: unknown): { error: string; errors?: string[] } {
  if (err instanceof ConfigError) return err.more.length > 0 ? { error: err.message, errors: err.lines } : { error: err.message };
  return { error: describe(err) };
}

async function checkConfig(file: string): Promise<void> {
  const config = await load(file);
  const app = new App(config, { configFile: file, log: createLogger('silent') });
  let warnings: string[] = [];
  try {
    warnings = await app.preview();
  } catch (err) {
    failOn(err);
  }
  // Warnings leave pvdns able to serve (serve logs the same lines): on stderr, and still exit 0.
  process.stderr.write(warnings.map((w) => `pvdns: warning: ${oneLine(w)}\n`).join(''));
  const out: string[] = [`${file}: OK`, `listen: ${config.listen.join(', ')}`, `http: ${config.http.listen ?? 'off'}`, 'pvds:'];
  for (const p of app.pvds.list()) {
    out.push(`  ${p.identifier} (${p.source})`);
    out.push(`    servers:  ${p.servers.map((s) => s.label).join(', ') || '(none)'}`);
    if (p.dnsZones.length) out.push(`    zones:    ${p.dnsZones.join(', ')}`);
    if (p.prefixes.length) out.push(`    prefixes: ${p.prefixes.join(', ')} (${p.reverseZones.length} reverse zones)`);
    out.push(`    default: ${p.isDefault}, priority: ${p.priority}, noInternet: ${p.noInternet}${p.expiresAt ? `, expires: ${new Date(p.expiresAt).toISOString()}` : ''}`);
    out.push(`    dns64:    ${p.dns64 === 'auto' ? 'auto (RFC 7050 discovery once running)' : p.dns64}${p.dns64Synthesize ? ', synthesized by pvdns' : ''}`);
  }
  const defaults = app.routeTable().defaultRoute.pvds.map((p) => p.id);
  out.push(`names nobody claims go to: ${defaults.join(' → ') || '(no default PvD: SERVFAIL)'}`);
  process.stdout.write(out.join('\n') + '\n');
}

/** api runs an API client command: its output on stdout, or one line on stderr and exit 1. */
async function api(run: () => Promise<string>): Promise<void> {
  try {
    process.stdout.write(`${await run()}\n`);
  } catch (err) {
    if (err instanceof ClientError) fail(err.message);
    throw err;
  }
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        server: { type: 'string', default: DEFAULT_API },
        json: { type: 'boolean', default: false },
        pvd: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return void process.stdout.write(HELP + '\n');
  if (values.version) return void process.stdout.write(`pvdns ${version()}\n`);
  const [command = 'serve', ...rest] = positionals;
  switch (command) {
    case 'serve':
      if (rest.length) fail(`serve takes no arguments besides --config (got ${rest.join(' ')})`, 2);
      return serve(values.config ?? DEFAULT_CONFIG);
    case 'check-config': {
      const file = rest[0] ?? values.config;
      if (!file) fail('check-config needs a FILE', 2);
      return checkConfig(file);
    }
    case 'status':
      if (rest.length) fail(`status takes no arguments (got ${rest.join(' ')})`, 2);
      return api(() => status(values.server, values.json));
    case 'query': {
      const [name, type = 'A', ...extra] = rest;
      if (!name || extra.length) fail('usage: pvdns query NAME [TYPE] [--pvd ID] [--json] [--server URL]', 2);
      return api(() => query(values.server, name, type, values.pvd ?? null, values.json));
    }
    default:
      usage(`unknown command "${command}"`);
  }
}

main().catch(unexpected);
