import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { NotFoundError, StoreUnavailableError, UsageError, errnoCode, type BackyError } from '../engine/errors.js';
import type { Store } from '../engine/store.js';
import { VersionExports } from './exports.js';
import { NbdSession } from './session.js';

/** Options of {@link serveNbd}. */
export interface NbdServerOptions {
  /** Address to bind. @default 127.0.0.1 */
  readonly address: string;
  /** TCP port. @default 10809 */
  readonly port: number;
  /** Export versions read-only. */
  readonly readOnly: boolean;
  /** Serve only this version. */
  readonly uid?: string | undefined;
  readonly log: (line: string) => void;
  /** Aborting it stops the server: in-flight requests finish, sessions commit, connections close. */
  readonly signal: AbortSignal;
}

/**
 * Serves versions over the NBD protocol until `signal` fires.
 * @throws {UsageError} when the address cannot be bound (port in use, address not of this machine)
 * @throws {NotFoundError} when `uid` is given but does not exist
 * @throws {StoreUnavailableError} when writes could not be committed at the stop
 */
export async function serveNbd(store: Store, options: NbdServerOptions): Promise<void> {
  const origin = `nbd ${options.address}:${options.port}`;
  const backend = new VersionExports(store, { readOnly: options.readOnly, uid: options.uid, origin, log: options.log });
  if (options.uid !== undefined && (await backend.list()).length === 0) {
    throw new NotFoundError(`Version "${options.uid}" not found or not complete`, { hint: 'run `backy2 ls` to see versions' });
  }
  const sessions = new Set<NbdSession>();
  // Set once listening, before any connection arrives.
  let uri = '';
  const server: Server = createServer((socket: Socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const session = new NbdSession(socket, backend, { log: (line) => options.log(`${peer}: ${line}`), uri });
    sessions.add(session);
    void session.closed.then(() => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(err, options.address, options.port)));
    server.listen(options.port, options.address, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  uri = serverUri(options.address, port);
  options.log(`serving ${options.uid ? `version ${options.uid}` : 'every version'} ${options.readOnly ? 'read-only' : 'with copy-on-write'} on ${options.address}:${port}`);
  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    else options.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  options.log('stopping');
  server.close();
  for (const session of sessions) session.shutdown();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all([...sessions].map((s) => s.closed)), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  const lost = await backend.shutdown();
  if (lost.length > 0) throw new StoreUnavailableError(`Stopped, but could not commit ${lost.join(', ')}: those writes are lost (see the log above)`);
}

/**
 * The server as an NBD URI (exports are paths below it). IPv6 addresses go in brackets; a
 * wildcard address is shown as this machine's name, which remote clients can use.
 */
export function serverUri(address: string, port: number): string {
  const host = address === '0.0.0.0' || address === '::' || address === '' ? hostname() : address;
  return `nbd://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Why the server cannot listen, in one line with a remedy: the usual causes are a port in use
 * and an address that is not this machine's; both are fixed on the command line.
 */
function listenError(err: Error, address: string, port: number): BackyError {
  const where = `Cannot listen on ${address.includes(':') ? `[${address}]` : address}:${port}`;
  const cause = { cause: err };
  switch (errnoCode(err)) {
    case 'EADDRINUSE':
      return new UsageError(`${where}: the port is in use, perhaps by another backy2 nbd or qemu-nbd`, { ...cause, hint: 'choose another port with -p' });
    case 'EADDRNOTAVAIL':
      return new UsageError(`${where}: no network interface of this machine has the address "${address}"`, {
        ...cause,
        hint: 'choose one of its addresses with -a, or 0.0.0.0 for all of them',
      });
    case 'EACCES':
      return new UsageError(`${where}: permission denied (ports below 1024 need root)`, { ...cause, hint: 'choose another port with -p' });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UsageError(`${where}: "${address}" is neither an IP address nor a known host name`, { ...cause, hint: 'give -a an address such as 127.0.0.1' });
    default:
      return new UsageError(`${where}: ${errnoCode(err) ?? err.message}`, cause);
  }
}
