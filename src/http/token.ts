// The API's bearer token: `http.token` as written, or `http.tokenFile`, a
// file only pvdns's user (and root) can read. A missing file is made at start
// with a fresh random token, as Tor's control-port cookie is: the CLI, the VPN
// hooks and an admin read it there, and nobody else on the host can, so no
// local process or web page can change where the host's names go.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, link, mkdir, open, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** TokenError is a token file that cannot be used; `problem` is one line. */
export class TokenError extends Error {
  constructor(readonly problem: string) {
    super(problem);
    this.name = 'TokenError';
  }
}

/** What the token may look like (RFC 6750 §2.1 b64token), the same rule as http.token's. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** A token file is a line; anything bigger is not one. */
const MAX_TOKEN_FILE = 4096;

/** newToken is 32 random octets, base64url: 256 bits nobody guesses. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * loadTokenFile reads the token from `path`, or makes the file (and its
 * folder, mode 0700) holding a new token when it does not exist. A file
 * others could read or write, or owned by another user, is refused: its
 * token proves nothing.
 */
export async function loadTokenFile(path: string): Promise<string> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new TokenError(`cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  await checkFolder(dir);
  const existing = await readTokenFile(path);
  if (existing !== null) return existing;
  const token = newToken();
  // Written whole under a name of its own, then linked into place: a crash never leaves an empty
  // token file behind, and link() fails rather than replace a file someone put there meanwhile.
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(`${token}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(temp, path);
    return token;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Another pvdns made it between our read and our link: use theirs (checked as any other).
    if (code === 'EEXIST') {
      const theirs = await readTokenFile(path);
      if (theirs !== null) return theirs;
    }
    throw new TokenError(`cannot create ${path}: ${code ?? (err as Error).message}`);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * checkFolder refuses a token file's folder that someone else could write
 * in: they could replace the file between pvdns's check and its read, or
 * plant one before pvdns makes it.
 */
async function checkFolder(dir: string, owners = true): Promise<void> {
  const st = await stat(dir);
  const uid = process.getuid?.() ?? 0;
  const sticky = (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky) {
    throw new TokenError(`${dir}, the folder of http.tokenFile, is writable by others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): use a folder only pvdns's user can write, e.g. /run/pvdns`);
  }
  if (owners && st.uid !== uid && st.uid !== 0) throw new TokenError(`${dir}, the folder of http.tokenFile, belongs to uid ${st.uid}, neither pvdns's user (uid ${uid}) nor root`);
}

/**
 * checkTokenFile is loadTokenFile without writing: what check-config says. A
 * missing file is fine when it could be made (its nearest existing folder is
 * writable), since serve makes it.
 */
export async function checkTokenFile(path: string): Promise<void> {
  // check-config may run as another user than serve (root checking a running service's file, owned
  // by its user): the modes are checked, not who owns the file and folder, and a file this user may
  // not open is taken on trust.
  if (await exists(dirname(path))) await checkFolder(dirname(path), false);
  try {
    if ((await readTokenFile(path, false)) !== null) return;
  } catch (err) {
    if (err instanceof TokenError && err.problem.startsWith('cannot read') && err.problem.endsWith('EACCES')) return;
    throw err;
  }
  let dir = dirname(path);
  for (;;) {
    try {
      await stat(dir);
      break;
    } catch {
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  try {
    await access(dir, constants.W_OK);
  } catch (err) {
    throw new TokenError(`${path} does not exist and cannot be made: ${dir} is not writable (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * readTokenFile reads and checks an existing token file; null when there is
 * none. The checks and the read are of one open file, not of a path twice,
 * and never through a symbolic link: nothing can be swapped in between.
 */
async function readTokenFile(path: string, owners = true): Promise<string | null> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new TokenError(`${path} is a symbolic link: give the token file's own path`);
    throw new TokenError(`cannot read ${path}: ${code ?? (err as Error).message}`);
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new TokenError(`${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new TokenError(`${path} is readable or writable by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it`);
    }
    const uid = process.getuid?.() ?? 0;
    if (owners && st.uid !== uid && st.uid !== 0) throw new TokenError(`${path} belongs to uid ${st.uid}, neither pvdns's user (uid ${uid}) nor root`);
    if (st.size > MAX_TOKEN_FILE) throw new TokenError(`${path} is ${st.size} octets: a token file holds one token`);
    text = await fh.readFile('utf8');
  } catch (err) {
    if (err instanceof TokenError) throw err;
    throw new TokenError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await fh.close();
  }
  const token = text.trim();
  if (token.length < 16) throw new TokenError(`${path} holds no token of at least 16 characters`);
  if (!B64TOKEN.test(token)) throw new TokenError(`${path}: the token may only contain letters, digits and -._~+/ (then = padding)`);
  return token;
}
