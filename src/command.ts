// pvdns command line: `serve` runs the resolver, `check-config` validates a
// configuration and prints the PvDs it would start with. Run through cli.ts.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { App } from './app.js';
import { ListenError } from './server/bind.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { apiToken, ClientError, DEFAULT_API, monitor, query, status, type MonitorRequest } from './http/client.js';
import { createLogger } from './log.js';
import { wireKey } from './dns/name.js';
import { PVD_KEYS } from './pvd/input.js';
import { effectiveEncryption, pvdFromSpec, type Pvd } from './pvd/model.js';
import { expiredProblem, formatProblem, readPvdFile, type DirectoryReport } from './pvd/sources/directory.js';

const DEFAULT_CONFIG = fileURLToPath(new URL('../config/default.yaml', import.meta.url));

const HELP = `pvdns — a DNS resolver that keeps DNS per provisioning domain (PvD)

Usage:
  pvdns serve [--config FILE]     run the resolver (default: the embedded config/default.yaml)
  pvdns check-config [--strict] FILE
                                  validate FILE and the PvD files of its pvdSources.directory, and
                                  print the PvDs and routes they give (exit 1 on an error in FILE;
                                  a bad PvD file is a warning, as serve ignores it; --strict: exit 1
                                  on warnings too)
  pvdns check-config --pvd FILE   validate one PvD file as pvdSources.directory would read it
  pvdns status                    the running pvdns's PvDs, servers and their state
  pvdns query NAME [TYPE] [--pvd ID]
                                  resolve NAME (in exactly PvD ID if given) and say which PvD answered
  pvdns monitor [--sample R] [--rate N]
                                  every query as pvdns answers it, one line each until Ctrl-C: time,
                                  client, name, type, → PvD (zone, or default order and who was passed
                                  over: down, captive, servfail), cache, server, rcode, ms. --sample R:
                                  see that share of queries (0 < R ≤ 1); --rate N: N lines/s at most
                                  (default 1000), beyond which pvdns drops them and says how many
  pvdns --help | --version

Options of status, query and monitor:
  --server URL                    the pvdns HTTP API (default ${DEFAULT_API})
  --json                          print the API's JSON (monitor: one object per line)
The monitor needs the API's token when pvdns has one: $PVDNS_TOKEN, else the file $PVDNS_TOKEN_FILE
(default /run/pvdns/token).

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
    // A PvD file given where a configuration is expected fails on its keys: say what to run instead.
    if (err instanceof ConfigError && pvdFileHint(err)) fail(`config error: ${err.message}${pvdFileHint(err)}`);
    failOn(err);
  }
}

/** A PvD file given where a configuration is expected fails on its first key: say what to run instead. */
function pvdFileHint(err: ConfigError): string {
  return PVD_KEYS.includes(err.key) && err.problem.startsWith('unknown key') ? ' (a PvD file? use pvdns check-config --pvd FILE)' : '';
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

/**
 * checkConfig validates a configuration as serve would start with it: the
 * file, its listeners and PvDs, the host's PvDs, and every file of
 * pvdSources.directory. A bad, conflicting or expired PvD file is a warning
 * line on stderr (FILE:LINE: key: problem, the `error` serve logs), and the
 * exit is 0 as serve would run and ignore that file: a VPN hook's stale file
 * must not fail the unit's ExecStartPre and keep the host without DNS.
 * `strict` makes any warning exit 1 (for checking files before they ship).
 */
async function checkConfig(file: string, strict: boolean): Promise<void> {
  const config = await load(file);
  const app = new App(config, { configFile: file, log: createLogger('silent') });
  let warnings: string[] = [];
  let report: DirectoryReport | null = null;
  try {
    warnings = await app.preview();
    report = await app.previewFiles();
  } catch (err) {
    failOn(err);
  }
  // Warnings leave pvdns able to serve (serve logs the same lines): on stderr, and still exit 0.
  process.stderr.write(warnings.map((w) => `pvdns: warning: ${oneLine(w)}\n`).join(''));
  const problems = report?.problems ?? [];
  const fileOf = new Map(report?.files.map((f) => [f.id, f.file]));
  const head = problems.length === 0 ? `${file}: OK` : `${file}: OK, with ${problems.length} problem${problems.length > 1 ? 's' : ''} in the PvD files of pvdSources.directory (serve ignores those files)`;
  const out: string[] = [head, `listen: ${config.listen.join(', ')}`, `http: ${httpLine(config)}`, 'pvds:'];
  for (const p of app.pvds.list()) out.push(...pvdLines(p, p.source === 'file' ? `file ${fileOf.get(p.id)}` : p.source));
  const defaults = app.routeTable().defaultRoute.pvds.map((p) => p.id);
  out.push(`names nobody claims go to: ${defaults.join(' → ') || '(no default PvD: SERVFAIL)'}`);
  // Special-use names whose route depends on the PvDs and the configuration (README "Local and special-use names").
  const home = app.routeTable().match(wireKey('home.arpa')).pvds.map((p) => p.id);
  out.push(`home.arpa goes to: ${home.join(' → ') || '(no PvD of a local network: NXDOMAIN)'}`);
  out.push(`test. goes to: ${config.forwardTestNames ? 'the PvDs that claim it, else the default PvDs' : 'the PvDs that claim it, else NXDOMAIN (forwardTestNames: false)'}`);
  process.stdout.write(out.join('\n') + '\n');
  process.stderr.write(problems.map((p) => `pvdns: warning: ${oneLine(formatProblem(p))}\n`).join(''));
  if (strict && (problems.length > 0 || warnings.length > 0)) process.exitCode = 1;
}

/** httpLine is the HTTP listener and who may change things through it. */
function httpLine(config: Config): string {
  if (config.http.listen === null) return 'off';
  const changes = config.http.tokenFile !== null ? `changes need the token in ${config.http.tokenFile}` : config.http.token !== null ? 'changes need http.token' : 'takes no changes (no http.token or http.tokenFile)';
  return `${config.http.listen}, ${changes}`;
}

/** pvdLines is one PvD as check-config prints it. */
function pvdLines(p: Pvd, source: string): string[] {
  const out = [`  ${p.identifier} (${source})`];
  if (p.designated.length) out.push(`    designated resolvers (DNR): ${p.designated.map((s) => s.label).join(', ')}`);
  out.push(`    servers:  ${p.servers.map((s) => s.label).join(', ') || '(none)'}`);
  const mode = effectiveEncryption(p, false);
  if (mode !== 'off') {
    const clear = p.designated.length ? p.servers.filter((s) => s.transport === 'udp').map((s) => s.label) : p.servers.filter((s) => s.fallback !== null).map((s) => s.fallback!.label);
    out.push(`    encryption: ${mode}${mode === 'strict' ? ' (never in the clear)' : clear.length ? ` (falls back to ${clear.join(', ')})` : ''}`);
  }
  if (p.ddr) out.push(`    ddr:      on (RFC 9462: asks ${p.ddrServers.map((s) => s.label).join(', ')} for _dns.resolver.arpa once running; verified designations only${p.encryptionConfigured === 'opportunistic' ? ', or opportunistic at the same private address' : ''})`);
  if (p.dnsZones.length) out.push(`    zones:    ${p.dnsZones.join(', ')}`);
  if (p.prefixes.length) out.push(`    prefixes: ${p.prefixes.join(', ')} (${p.reverseZones.length} reverse zones)`);
  if (p.listen.length) out.push(`    listen:   ${p.listen.map((a) => a.label).join(', ')} (every query there is resolved in this PvD only)`);
  out.push(`    default: ${p.isDefault}, priority: ${p.priority}, noInternet: ${p.noInternet}${p.expiresAt ? `, expires: ${new Date(p.expiresAt).toISOString()}` : ''}`);
  out.push(`    dns64:    ${p.dns64 === 'auto' ? 'auto (RFC 7050 discovery once running)' : p.dns64}${p.dns64Synthesize ? ', synthesized by pvdns' : ''}`);
  return out;
}

/**
 * checkPvdFile validates one PvD file as pvdSources.directory reads it:
 * the PvD printed and exit 0, or one line per problem and exit 1. (Whether
 * a server is pvdns's own listener, or another source holds the PvD, needs
 * the configuration: check-config CONFIG checks those.)
 */
async function checkPvdFile(path: string): Promise<void> {
  const r = readPvdFile(path);
  const problems = r.ok ? (r.spec.expires !== null && Date.parse(r.spec.expires) <= Date.now() ? [expiredProblem(r)] : []) : r.problems;
  if (!r.ok || problems.length > 0) {
    process.stderr.write(problems.map((p) => formatProblem(p) + '\n').join(''));
    process.exit(1);
  }
  const out = [`${path}: OK`, ...pvdLines(pvdFromSpec(r.spec, 'file', 0), `file ${path}`)];
  if (r.ignoredKeys.length > 0) out.push(`    ignored:  ${r.ignoredKeys.join(', ')} (keys pvdns does not know in an RFC 8801 object, RFC 8801 §4.3)`);
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

/**
 * watch runs `pvdns monitor` until Ctrl-C (or SIGTERM, or a closed pipe)
 * ends it with exit 0; a refusal or a lost stream is one line and exit 1.
 */
async function watch(server: string, r: MonitorRequest): Promise<void> {
  let session;
  try {
    session = monitor(server, r, (line) => void process.stdout.write(`${line}\n`));
  } catch (err) {
    if (err instanceof ClientError) fail(err.message);
    throw err;
  }
  const stop = session.stop;
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `pvdns monitor | head`: the reader went away, which ends the monitor as Ctrl-C does.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? stop() : unexpected(err)));
  try {
    await session.done;
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
        strict: { type: 'boolean', default: false },
        sample: { type: 'string' },
        rate: { type: 'string' },
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
      if (values.pvd !== undefined) {
        if (rest.length || values.config) fail('usage: pvdns check-config --pvd FILE (one PvD file, without a configuration)', 2);
        return checkPvdFile(values.pvd);
      }
      const file = rest[0] ?? values.config;
      if (!file) fail('check-config needs a FILE', 2);
      return checkConfig(file, values.strict);
    }
    case 'status':
      if (rest.length) fail(`status takes no arguments (got ${rest.join(' ')})`, 2);
      return api(() => status(values.server, values.json));
    case 'query': {
      const [name, type = 'A', ...extra] = rest;
      if (!name || extra.length) fail('usage: pvdns query NAME [TYPE] [--pvd ID] [--json] [--server URL]', 2);
      return api(() => query(values.server, name, type, values.pvd ?? null, values.json));
    }
    case 'monitor': {
      if (rest.length) fail(`monitor takes no arguments (got ${rest.join(' ')})`, 2);
      const sample = values.sample === undefined ? null : Number(values.sample);
      if (sample !== null && (values.sample!.trim() === '' || !(sample > 0 && sample <= 1))) fail(`--sample must be a number above 0 and at most 1 (got "${values.sample}")`, 2);
      const rate = values.rate === undefined ? null : Number(values.rate);
      if (rate !== null && !(Number.isInteger(rate) && rate >= 1)) fail(`--rate must be a whole number of lines per second, at least 1 (got "${values.rate}")`, 2);
      return watch(values.server, { json: values.json, sample, rate, token: apiToken() });
    }
    default:
      usage(`unknown command "${command}"`);
  }
}

main().catch(unexpected);
