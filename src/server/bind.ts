// Binding a listener, and what a failure says: one line naming the
// configuration key and its line, the address, the errno and what to do.

import { ConfigError } from '../config/load.js';

/**
 * ListenError is a listener that could not be bound: a ConfigError (it names
 * the `listen` or `http.listen` key and its line) about the host, not about
 * the file's validity, so the command line does not call it a config error.
 */
export class ListenError extends ConfigError {
  constructor(at: ConfigError) {
    super(at.file, at.line, at.key, at.problem);
    this.name = 'ListenError';
  }
}

/** Why a bind may fail, for the ones a person can act on. */
const BIND_HINTS: Record<string, string> = {
  EACCES: ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRINUSE: ' (another program listens there)',
  EADDRNOTAVAIL: ' (no interface of this host has that address)',
};

/**
 * bind starts a listener, turning a failure into one line a user can act
 * on: "FILE:LINE: listen[1]: cannot listen on 127.0.0.1:53 (UDP): EACCES (…)".
 */
export async function bind(error: (problem: string) => ConfigError, label: string, start: () => Promise<void>): Promise<void> {
  try {
    await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ListenError(error(`cannot listen on ${label}: ${code}${BIND_HINTS[code] ?? ''}`));
  }
}
