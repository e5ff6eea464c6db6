// The API's bearer token: `http.token` as written, or `http.tokenFile`, a
// file only pvdns's user (and root) can read. A missing file is made at start
// with a fresh random token, as Tor's control-port cookie is: the CLI, the VPN
// hooks and an admin read it there, and nobody else on the host can, so no
// local process or web page can change where the host's names go.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, stat } from 'node:fs/promises';
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
  const existing = await readTokenFile(path);
  if (existing !== null) return existing;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const token = newToken();
    // O_EXCL: never write through a file (or symlink) someone put there meanwhile.
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(`${token}\n`);
    } finally {
      await fh.close();
    }
    return token;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Another pvdns made it between our read and our create: use theirs.
    if (code === 'EEXIST') {
      const theirs = await readTokenFile(path);
      if (theirs !== null) return theirs;
    }
    throw new TokenError(`cannot create ${path}: ${code ?? (err as Error).message}`);
  }
}

/**
 * checkTokenFile is loadTokenFile without writing: what check-config says. A
 * missing file is fine when it could be made (its nearest existing folder is
 * writable), since serve makes it.
 */
export async function checkTokenFile(path: string): Promise<void> {
  if ((await readTokenFile(path)) !== null) return;
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

/** readTokenFile reads and checks an existing token file; null when there is none. */
async function readTokenFile(path: string): Promise<string | null> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new TokenError(`cannot read ${path}: ${code ?? (err as Error).message}`);
  }
  if (!st.isFile()) throw new TokenError(`${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new TokenError(`${path} is readable or writable by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it`);
  }
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid && st.uid !== 0) throw new TokenError(`${path} belongs to uid ${st.uid}, neither pvdns's user (uid ${uid}) nor root`);
  if (st.size > MAX_TOKEN_FILE) throw new TokenError(`${path} is ${st.size} octets: a token file holds one token`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TokenError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.trim();
  if (token.length < 16) throw new TokenError(`${path} holds no token of at least 16 characters`);
  if (!B64TOKEN.test(token)) throw new TokenError(`${path}: the token may only contain letters, digits and -._~+/ (then = padding)`);
  return token;
}
