// The checks of a configuration that the schema cannot make: the ones that
// look at the host (the PvD directory, the resolv.conf file), at pvdns's own
// listeners, or at the clock. `check-config`, `serve` and a SIGHUP reload all
// go through checkAgainstHost (App.preview and App.reload), so they give the
// same verdict with the same FILE:LINE: key: line.

import { X509Certificate } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { serverLoops } from './own-listener.js';
import { defaultEncryption, parseServer, type UpstreamServer } from '../upstream/server.js';
import type { SocketAddress } from './address.js';
import { ConfigError, configErrorAt, configErrors, MAX_PROBLEMS } from './load.js';
import type { Config } from './schema.js';

/**
 * checkAgainstHost throws a ConfigError carrying every problem found (one
 * line each) and returns the warnings: problems that leave pvdns able to
 * serve, which serve logs and check-config prints.
 *
 * Errors:
 * - a configured DNS server that is one of `listen` (queries would loop);
 * - pvdSources.directory that cannot be listed (serve would fail to watch it);
 * - pvdSources.resolvConf that cannot be read while pvdSources.host is true:
 *   the `system` PvD would have no servers, and the host's links may fall
 *   back to it at any poll, so it is checked whether or not a link tool
 *   (resolvectl, nmcli) answers today.
 *
 * Warnings:
 * - a PvD whose `expires` has passed: it is not announced (RFC 8801 §4.3).
 *   Not an error: a file that was right when written must not stop the
 *   host's resolver from starting once a date passes.
 */
export async function checkAgainstHost(config: Config, listen: readonly SocketAddress[], file: string | null, now = Date.now()): Promise<ConfigError[]> {
  const errors: ConfigError[] = [];
  const at = (path: (string | number)[], problem: string): ConfigError => configErrorAt(config, path, problem, file);
  config.pvds.forEach((p, i) => {
    p.dnsServers.forEach((s, j) => {
      const server = parseServer(s, p.encryption ?? defaultEncryption(p.dnsServers)) as UpstreamServer;
      if (serverLoops(server, listen)) errors.push(at(['pvds', i, 'dnsServers', j], `${server.fallback?.label ?? server.label} is pvdns's own listener: queries would loop`));
    });
    p.designatedResolvers.forEach((s, j) => {
      const server = parseServer(s, 'strict') as UpstreamServer;
      if (serverLoops(server, listen)) errors.push(at(['pvds', i, 'designatedResolvers', j], `${server.label} is pvdns's own listener: queries would loop`));
    });
  });
  const { directory, host, resolvConf } = config.pvdSources;
  if (directory !== null) {
    const problem = await directoryProblem(directory);
    if (problem) errors.push(at(['pvdSources', 'directory'], problem));
  }
  if (host) {
    const problem = await fileProblem(resolvConf);
    if (problem) errors.push(at(['pvdSources', 'resolvConf'], `${problem} (pvdSources.host is true: its "system" PvD takes the nameservers there)`));
  }
  if (config.tls.caFile !== null) {
    const problem = await caFileProblem(config.tls.caFile);
    if (problem) errors.push(at(['tls', 'caFile'], problem));
  }
  if (errors.length > 0) throw configErrors(errors);
  const warnings: ConfigError[] = [];
  config.pvds.forEach((p, i) => {
    if (p.expires !== null && Date.parse(p.expires) <= now) warnings.push(at(['pvds', i, 'expires'], `${p.expires} has passed: PvD "${p.identifier}" is not announced`));
  });
  // As many lines as errors get at most: 16,000 expired PvDs are one problem, not 16,000 lines.
  if (warnings.length > MAX_PROBLEMS) {
    const more = warnings.length - (MAX_PROBLEMS - 1);
    return [...warnings.slice(0, MAX_PROBLEMS - 1), new ConfigError(warnings[0]!.file, null, '', `${more} more warnings not shown`)];
  }
  return warnings;
}

/** The largest CA file read: a bundle of every public CA is ~200 KiB. */
const MAX_CA_FILE_BYTES = 4 << 20;

/**
 * caFileProblem says why tls.caFile cannot serve as trust anchors: it
 * cannot be read, is too large, holds no PEM certificate, or one of its
 * certificates does not parse. null when it can.
 */
export async function caFileProblem(path: string): Promise<string | null> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile()) return `${path} is not a regular file`;
    if (st.size > MAX_CA_FILE_BYTES) return `${path} is larger than ${MAX_CA_FILE_BYTES >> 20} MiB`;
    text = await readFile(path, 'utf8');
  } catch (err) {
    return `cannot read ${path}: ${code(err)}`;
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return `${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`;
  for (const [i, pem] of blocks.entries()) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      return `${path}: certificate ${i + 1} of ${blocks.length} does not parse (${(err as Error).message})`;
    }
  }
  return null;
}

/** directoryProblem says why a folder of PvD files cannot be listed, or null. */
export async function directoryProblem(dir: string): Promise<string | null> {
  try {
    await readdir(dir);
    return null;
  } catch (err) {
    return `cannot read ${dir}: ${code(err)}`;
  }
}

/** fileProblem says why a file cannot be read (tried on its first byte), or null. */
async function fileProblem(path: string): Promise<string | null> {
  let fh;
  try {
    fh = await open(path, 'r');
    await fh.read(Buffer.alloc(1), 0, 1, null); // a directory opens, and fails here (EISDIR)
    return null;
  } catch (err) {
    return `cannot read ${path}: ${code(err)}`;
  } finally {
    await fh?.close();
  }
}

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
