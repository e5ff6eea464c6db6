// pvdns command line: `serve` runs the resolver, `check-config` validates a
// configuration and prints the PvDs it would start with; the others talk to
// a running pvdns over its API (src/http/client.ts), as resolvectl does to
// resolved, `monitor` following its queries as `resolvectl monitor` does.
// Each command takes only its own options. Run through cli.ts.

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { App } from './app.js';
import { parseSocketAddress } from './config/address.js';
import { ListenError } from './server/bind.js';
import { IdleReclaimer } from './server/reclaim.js';
import { reclaimMemory } from './native/memory.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { announce, ClientError, DEFAULT_API, DEFAULT_TOKEN_FILE, flush, monitor, query, readToken, reload, status, withdraw, type Credentials, type MonitorRequest, type Outcome } from './http/client.js';
import { createLogger } from './log.js';
import { wireKey } from './dns/name.js';
import { PVD_KEYS } from './pvd/input.js';
import { effectiveEncryption, pvdFromSpec, type Pvd } from './pvd/model.js';
import { expiredProblem, formatProblem, readPvdFile, type DirectoryReport } from './pvd/sources/directory.js';

const DEFAULT_CONFIG = fileURLToPath(new URL('../config/default.yaml', import.meta.url));

/** One command of the command line: how it is called, what it does, its options, and how it runs. */
interface Command {
  /** The synopsis after "pvdns ". */
  synopsis: string;
  /** What it does, for the overview (lines, aligned under the synopsis). */
  summary: string[];
  /** Lines of the overview after the summary (another form of the command). */
  also?: string[];
  /** Its options: each one's spelling and meaning, for `pvdns help COMMAND`. */
  help: Array<[option: string, meaning: string]>;
  options: ParseArgsOptionsConfig;
  run(values: Values, args: string[]): Promise<void>;
}

type Values = Record<string, string | boolean | undefined>;

/** The options of every command that talks to a running pvdns. */
const API_OPTIONS: ParseArgsOptionsConfig = {
  server: { type: 'string' },
  json: { type: 'boolean', default: false },
};
const API_HELP: Array<[string, string]> = [
  ['--server URL', `the pvdns HTTP API (default $PVDNS_API, else ${DEFAULT_API})`],
  ['--json', "print the API's JSON"],
];
/** The options of the commands that change a running pvdns: they need its API token. */
const CHANGE_OPTIONS: ParseArgsOptionsConfig = {
  ...API_OPTIONS,
  'token-file': { type: 'string' },
  config: { type: 'string', short: 'c' },
};
const CHANGE_HELP: Array<[string, string]> = [
  ['--server URL', `the pvdns HTTP API (default $PVDNS_API, else --config's http.listen, else ${DEFAULT_API})`],
  API_HELP[1]!,
  ['--token-file FILE', `the API token, from this file (else $PVDNS_TOKEN, $PVDNS_TOKEN_FILE, --config's, or ${DEFAULT_TOKEN_FILE})`],
  ['--config FILE', "pvdns's configuration: its http.token or http.tokenFile, and http.listen unless --server"],
];

const COMMANDS: Record<string, Command> = {
  serve: {
    synopsis: 'serve [--config FILE]',
    summary: ['run the resolver (default: the embedded config/default.yaml)'],
    help: [['--config FILE, -c FILE', 'the configuration (YAML or JSON); SIGHUP or pvdns reload reads it again']],
    options: { config: { type: 'string', short: 'c' } },
    run: async (v, args) => {
      if (args.length) usageOf('serve', `serve takes no arguments besides --config (got ${args.join(' ')})`);
      return serve(str(v.config) ?? DEFAULT_CONFIG);
    },
  },
  'check-config': {
    synopsis: 'check-config [--strict] FILE',
    summary: [
      'validate FILE and the PvD files of its pvdSources.directory, and',
      'print the PvDs and routes they give (exit 1 on an error in FILE;',
      'a bad PvD file is a warning, as serve ignores it; --strict: exit 1',
      'on warnings too)',
    ],
    also: ['  pvdns check-config --pvd FILE   validate one PvD file as pvdSources.directory would read it'],
    help: [
      ['--strict', 'exit 1 on warnings too'],
      ['--pvd FILE', 'validate one PvD file as pvdSources.directory would read it (pvdns check-config --pvd FILE)'],
      ['--config FILE, -c FILE', 'the same as FILE'],
    ],
    options: { strict: { type: 'boolean', default: false }, pvd: { type: 'string' }, config: { type: 'string', short: 'c' } },
    run: async (v, args) => {
      if (v.pvd !== undefined) {
        if (args.length || v.config || v.strict) usageOf('check-config', 'usage: pvdns check-config --pvd FILE (one PvD file, without a configuration)');
        return checkPvdFile(str(v.pvd)!);
      }
      if (args.length > 1 || (args.length === 1 && v.config !== undefined)) usageOf('check-config', `check-config takes one FILE (got ${[...args, ...(v.config ? [str(v.config)] : [])].join(' ')})`);
      const file = args[0] ?? str(v.config);
      if (!file) usageOf('check-config', 'check-config needs a FILE');
      return checkConfig(file, v.strict === true);
    },
  },
  status: {
    synopsis: 'status',
    summary: ["the running pvdns's PvDs, servers and their state, and where", 'names no PvD claims go'],
    help: API_HELP,
    options: API_OPTIONS,
    run: async (v, args) => {
      if (args.length) usageOf('status', `status takes no arguments (got ${args.join(' ')})`);
      return api(() => status(server(v), v.json === true));
    },
  },
  query: {
    synopsis: 'query NAME [TYPE] [--pvd ID]',
    summary: [
      'resolve NAME (in exactly PvD ID if given) and say which PvD',
      'answered; an address with no TYPE or PTR is looked up by its',
      'reverse name (in-addr.arpa, ip6.arpa); exit 3 on NXDOMAIN, 4 on',
      'no record of TYPE, 5 on SERVFAIL or another error code',
    ],
    help: [['--pvd ID', 'resolve in this PvD only (no routing, no fallback)'], ...API_HELP],
    options: { ...API_OPTIONS, pvd: { type: 'string' } },
    run: async (v, args) => {
      const [name, type = null, ...extra] = args;
      if (!name || extra.length) usageOf('query', 'usage: pvdns query NAME [TYPE] [--pvd ID] [--json] [--server URL]');
      return api(() => query(server(v), name, type, str(v.pvd) ?? null, v.json === true));
    },
  },
  monitor: {
    synopsis: 'monitor [--sample R] [--rate N]',
    summary: [
      'every query as pvdns answers it, one line each until Ctrl-C',
      '(exit 0): time, client, name, type, → PvD (zone, or default',
      'order and who was passed over: down, captive, servfail), cache,',
      'server, rcode, ms. --sample R: see that share of queries',
      '(0 < R ≤ 1); --rate N: N lines/s at most (default 1000), beyond',
      'which pvdns drops them and says how many',
    ],
    help: [
      ['--sample R', 'see this share of the queries (0 < R ≤ 1; default all)'],
      ['--rate N', 'N lines a second at most (default 1000): pvdns drops the rest and says how many'],
      ...CHANGE_HELP.map(([o, m]): [string, string] => (o === '--json' ? [o, "print the API's JSON, one object per line"] : [o, m])),
    ],
    options: { ...CHANGE_OPTIONS, sample: { type: 'string' }, rate: { type: 'string' } },
    run: async (v, args) => {
      if (args.length) usageOf('monitor', `monitor takes no arguments (got ${args.join(' ')})`);
      const given = { sample: str(v.sample), rate: str(v.rate) };
      const sample = given.sample === undefined ? null : Number(given.sample);
      if (sample !== null && (given.sample!.trim() === '' || !(sample > 0 && sample <= 1))) usageOf('monitor', `--sample must be a number above 0 and at most 1 (got "${given.sample}")`);
      const rate = given.rate === undefined ? null : Number(given.rate);
      if (rate !== null && !(Number.isInteger(rate) && rate >= 1)) usageOf('monitor', `--rate must be a whole number of lines per second, at least 1 (got "${given.rate}")`);
      return watch(v, { json: v.json === true, sample, rate });
    },
  },
  flush: {
    synopsis: 'flush [--pvd ID]',
    summary: ['empty the cache of every PvD, or of PvD ID'],
    help: [['--pvd ID', 'only this PvD\'s cached answers'], ...CHANGE_HELP],
    options: { ...CHANGE_OPTIONS, pvd: { type: 'string' } },
    run: async (v, args) => {
      if (args.length) usageOf('flush', `flush takes no arguments besides --pvd ID (got ${args.join(' ')})`);
      return change(v, (url, creds) => flush(url, creds, str(v.pvd) ?? null, v.json === true));
    },
  },
  reload: {
    synopsis: 'reload',
    summary: ['read the configuration file again, as SIGHUP does, and say', 'what changed (a bad file changes nothing: exit 1 with its first', 'problem)'],
    help: CHANGE_HELP,
    options: CHANGE_OPTIONS,
    run: async (v, args) => {
      if (args.length) usageOf('reload', `reload takes no arguments (got ${args.join(' ')}): pvdns reads the file it was started with`);
      return change(v, (url, creds) => reload(url, creds, v.json === true));
    },
  },
  announce: {
    synopsis: 'announce FILE',
    summary: ['announce (or update) the PvD of a PvD file (JSON, read as', 'pvdSources.directory reads one) through the API'],
    help: CHANGE_HELP,
    options: CHANGE_OPTIONS,
    run: async (v, args) => {
      if (args.length !== 1) usageOf('announce', 'usage: pvdns announce FILE (one PvD file, JSON as in pvdSources.directory)');
      const pvd = readAnnounced(args[0]!);
      return change(v, (url, creds) => announce(url, creds, pvd, v.json === true));
    },
  },
  withdraw: {
    synopsis: 'withdraw ID',
    summary: ['withdraw PvD ID, one announced through the API (pvdns announce,', 'a VPN hook)'],
    help: CHANGE_HELP,
    options: CHANGE_OPTIONS,
    run: async (v, args) => {
      if (args.length !== 1) usageOf('withdraw', 'usage: pvdns withdraw ID');
      return change(v, (url, creds) => withdraw(url, creds, args[0]!, v.json === true));
    },
  },
  help: {
    synopsis: 'help [COMMAND]',
    summary: ['this text, or what COMMAND does and its options'],
    help: [],
    options: {},
    run: async (_v, args) => {
      if (args.length > 1) usageOf('help', 'usage: pvdns help [COMMAND]');
      if (args[0] === undefined) return void process.stdout.write(HELP + '\n');
      if (!Object.hasOwn(COMMANDS, args[0])) usage(`unknown command "${args[0]}"`);
      process.stdout.write(commandHelp(args[0]) + '\n');
    },
  },
};

/** The overview: every command, aligned as the README's "Commands" shows it. */
const HELP = `pvdns — a DNS resolver that keeps DNS per provisioning domain (PvD)

Usage:
${Object.values(COMMANDS)
  .flatMap((c) => {
    const head = `  pvdns ${c.synopsis}`;
    const [first, ...more] = c.summary;
    const pad = ' '.repeat(34);
    const lines = head.length < 33 ? [`${head.padEnd(34)}${first}`, ...more.map((l) => pad + l)] : [head, ...c.summary.map((l) => pad + l)];
    return [...lines, ...(c.also ?? [])];
  })
  .join('\n')}
  pvdns --help | --version

Commands that talk to a running pvdns (status, query, monitor, flush, reload, announce,
withdraw):
  --server URL                    the pvdns HTTP API (default: $PVDNS_API or ${DEFAULT_API})
  --json                          print the API's JSON (monitor: one object per line)
Those that change it (flush, reload, announce, withdraw) and monitor send its API token:
from --token-file FILE, $PVDNS_TOKEN, $PVDNS_TOKEN_FILE, --config FILE (its http.token or
http.tokenFile), else ${DEFAULT_TOKEN_FILE}. pvdns help COMMAND says more.

Exit codes: 0 done, 1 failed (one line on stderr says why), 2 usage error; query also
3 NXDOMAIN, 4 no record of the type asked, 5 SERVFAIL or another error code.
Signals (serve): SIGHUP reloads FILE, SIGTERM and SIGINT drain queries in flight and exit 0.
Configuration keys: see config/example.yaml and the README.
Errors are one line each; PVDNS_DEBUG=1 adds the stack trace of an unexpected one.`;

/** commandHelp is `pvdns help COMMAND`: its synopsis, what it does, its options. */
function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const opts = c.help.map(([o, m]) => `  ${o.padEnd(24)} ${m}`);
  return [`Usage: pvdns ${c.synopsis}`, '', ...c.summary.map((l) => `  ${l}`), ...(opts.length ? ['', 'Options:', ...opts] : [])].join('\n');
}

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
  const app = new App(config, { configFile: file, reclaimer: new IdleReclaimer({ reclaim: reclaimMemory, rss: () => process.memoryUsage.rss() }) });
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

/** api runs an API client command: its output on stdout (and its exit code), or one line on stderr and exit 1. */
async function api(run: () => Promise<string | Outcome>): Promise<void> {
  try {
    const out = await run();
    const { text, exit } = typeof out === 'string' ? { text: out, exit: 0 } : out;
    process.stdout.write(`${text}\n`);
    process.exitCode = exit;
  } catch (err) {
    if (err instanceof ClientError) fail(err.message);
    throw err;
  }
}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** server is the API's URL: --server, else $PVDNS_API (as the VPN hooks read it), else the default. */
function server(v: Values): string {
  return str(v.server) ?? (process.env.PVDNS_API || DEFAULT_API);
}

/**
 * change runs a command that changes pvdns, with the API token and server
 * that target() finds.
 */
async function change(v: Values, run: (server: string, creds: Credentials) => Promise<string>): Promise<void> {
  await api(async () => {
    const { url, creds } = await target(v);
    return run(url, creds);
  });
}

/**
 * target is the one lookup of the API and its token for the commands that
 * send it (change, monitor): the token found (in this order) in
 * --token-file, $PVDNS_TOKEN, $PVDNS_TOKEN_FILE, the configuration of
 * --config (whose http.listen is also the server unless --server or
 * $PVDNS_API says otherwise), or DEFAULT_TOKEN_FILE when it exists; none is
 * no token (the API says whether one was needed). A token file named but
 * unreadable is a ClientError. No --token TOKEN: a command line is readable
 * by every local user in /proc.
 */
async function target(v: Values): Promise<{ url: string; creds: Credentials }> {
  let url = str(v.server) ?? (process.env.PVDNS_API || null);
  const configFile = str(v.config);
  const config = configFile !== undefined ? await load(configFile) : null;
  if (config !== null && url === null) {
    if (config.http.listen === null) fail(`${configFile} has http.listen: null: that pvdns has no API to talk to`);
    url = apiOf(config.http.listen);
  }
  let creds: Credentials = { token: null, from: '' };
  const tokenFile = str(v['token-file']);
  if (tokenFile !== undefined) creds = { token: await readToken(tokenFile), from: `--token-file ${tokenFile}` };
  else if (process.env.PVDNS_TOKEN) creds = { token: process.env.PVDNS_TOKEN, from: 'PVDNS_TOKEN' };
  else if (process.env.PVDNS_TOKEN_FILE) creds = { token: await readToken(process.env.PVDNS_TOKEN_FILE), from: `PVDNS_TOKEN_FILE ${process.env.PVDNS_TOKEN_FILE}` };
  else if (config?.http.token) creds = { token: config.http.token, from: `http.token of ${configFile}` };
  else if (config?.http.tokenFile) creds = { token: await readToken(config.http.tokenFile), from: `http.tokenFile ${config.http.tokenFile} of ${configFile}` };
  else if (existsSync(DEFAULT_TOKEN_FILE)) creds = { token: await readToken(DEFAULT_TOKEN_FILE), from: DEFAULT_TOKEN_FILE };
  return { url: url || DEFAULT_API, creds };
}

/**
 * watch runs `pvdns monitor` until Ctrl-C (or SIGTERM, or a closed pipe)
 * ends it with exit 0; a refusal (401, 403) or a lost stream is one line
 * and exit 1.
 */
async function watch(v: Values, r: Omit<MonitorRequest, 'creds'>): Promise<void> {
  let session;
  try {
    const { url, creds } = await target(v);
    session = monitor(url, { ...r, creds }, (line) => void process.stdout.write(`${line}\n`));
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

/** apiOf is the URL of an http.listen address: a wildcard one is reached on loopback. */
function apiOf(listen: string): string {
  const a = parseSocketAddress(listen, 8053);
  if (typeof a === 'string') fail(`http.listen: ${a}`);
  const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
}

/**
 * readAnnounced reads the PvD file `pvdns announce` sends, as
 * pvdSources.directory reads one (readPvdFile: strict JSON, the PvD checked,
 * each problem FILE:LINE: key: problem), and returns its object as written:
 * pvdns then says which keys it ignored, as it does for a hook's PUT.
 */
function readAnnounced(file: string): Record<string, unknown> & { identifier: string } {
  const r = readPvdFile(file);
  if (!r.ok) {
    process.stderr.write(r.problems.map((p) => `pvdns: ${formatProblem(p)}\n`).join(''));
    process.exit(1);
  }
  // readPvdFile read and judged this text a moment ago; the object as written is what is sent.
  const obj = JSON.parse(readFileSync(file, 'utf8').replace(/^\uFEFF/, '')) as Record<string, unknown>;
  return { ...obj, identifier: typeof obj.identifier === 'string' ? obj.identifier : r.spec.identifier };
}

/** usageOf prints a mistake on a command's line, then that command's usage, and exits 2. */
function usageOf(command: string, message: string): never {
  process.stderr.write(`pvdns: ${oneLine(message)}\n\n${commandHelp(command)}\n`);
  process.exit(2);
}

/**
 * parse reads a command's options: each command takes only its own, and an
 * unknown one is a usage error naming it.
 */
function parse(command: string, args: string[]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...COMMANDS[command]!.options, help: { type: 'boolean', short: 'h' } } });
    if (values.help) {
      process.stdout.write(commandHelp(command) + '\n');
      process.exit(0);
    }
    return { values: values as Values, positionals };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const unknown = /Unknown option '([^']+)'/.exec(e.message);
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) usageOf(command, `${command}: unknown option ${unknown[1]}`);
    usageOf(command, `${command}: ${e.message.replace(/\. To specify .*$/s, '')}`);
  }
}

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  // Bare pvdns says how to use it rather than start a resolver nobody asked for: serve is explicit.
  if (first === undefined) usage('a command is needed (pvdns serve runs the resolver)');
  if (first === '--help' || first === '-h') return void process.stdout.write(HELP + '\n');
  if (first === '--version' || first === '-V') {
    if (rest.length) usage(`${first} takes no arguments`);
    return void process.stdout.write(`pvdns ${version()}\n`);
  }
  if (first.startsWith('-')) usage(`the command comes first: pvdns COMMAND [OPTIONS] (got ${first}${Object.hasOwn(COMMANDS, rest[0] ?? '') ? ` before ${rest[0]}` : ''})`);
  if (!Object.hasOwn(COMMANDS, first)) usage(`unknown command "${first}"`);
  const { values, positionals } = parse(first, rest);
  return COMMANDS[first]!.run(values, positionals);
}

main().catch(unexpected);
