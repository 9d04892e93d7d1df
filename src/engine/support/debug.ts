import { debuglog } from 'node:util';

/** Debug output of the engine: `NODE_DEBUG=backy2 backy2 ...` prints it on stderr with timings. */
const log = debuglog('backy2');

/** Logs a message prefixed with the ms since the process started. */
export function debug(message: string): void {
  if (log.enabled) log(`${performance.now().toFixed(1)}ms ${message}`);
}
