// Logs: pino JSON lines on stdout. Per-query lines exist only at debug.

import { pino, type Logger } from 'pino';

export type { Logger };

/** createLogger makes the process logger at a level from the configuration. */
export function createLogger(level: string): Logger {
  return pino({ name: 'pvdns', level, timestamp: pino.stdTimeFunctions.isoTime });
}
