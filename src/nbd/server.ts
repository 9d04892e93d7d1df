import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { NotFoundError, StoreUnavailableError, UsageError, errnoCode, type BackyError } from '../engine/errors.js';
import type { Store } from '../engine/store.js';
import { VersionExports } from './exports.js';
import { NbdSession } from './session.js';
import type { NbdTls } from './tls.js';

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
  /** Require TLS with these credentials (NBD_OPT_STARTTLS). @default no TLS */
  readonly tls?: NbdTls | undefined;
  readonly log: (line: string) => void;
  /** Called once the server listens (the CLI prints the start-up line or JSON from it). */
  readonly onListening: (info: NbdListening) => void;
  /** Aborting it stops the server: in-flight requests finish, sessions commit, connections close. */
  readonly signal: AbortSignal;
}

/** Where the server listens and what it serves, reported once at start-up. */
export interface NbdListening {
  /** The bound address (a host name given to -a resolved). */
  readonly address: string;
  readonly port: number;
  /** The server as an NBD URI; exports are paths below it. */
  readonly uri: string;
  /** Exports at start-up (without a uid, versions backed up later are served too). */
  readonly exports: number;
  /** What an empty export name gets, if anything. */
  readonly defaultExport: string | null;
  /** URIs of the default export, else of the newest two exports. */
  readonly uris: readonly string[];
  readonly readOnly: boolean;
  /** Only this machine can connect. */
  readonly loopback: boolean;
  /** TLS is required with these credentials; null without TLS. */
  readonly tls: Pick<NbdTls, 'credentials' | 'clientsAuthenticated' | 'description'> | null;
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
  const initial = (await backend.list()).map((e) => e.name);
  if (options.uid !== undefined && initial.length === 0) {
    throw new NotFoundError(`Version "${options.uid}" not found or not complete`, { hint: 'run `backy2 ls` to see versions' });
  }
  const sessions = new Set<NbdSession>();
  const { tls } = options;
  const startTls = tls ? (socket: Duplex) => tls.accept(socket) : undefined;
  // Set once listening, before any connection arrives.
  let uri = '';
  const server: Server = createServer((socket: Socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const session = new NbdSession(socket, backend, { log: (line) => options.log(`${peer}: ${line}`), uri, startTls });
    sessions.add(session);
    void session.closed.then(() => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(err, options.address, options.port)));
    server.listen(options.port, options.address, () => resolve());
  });
  const bound = server.address();
  const address = typeof bound === 'object' && bound ? bound.address : options.address;
  const port = typeof bound === 'object' && bound ? bound.port : options.port;
  uri = serverUri(options.address, port, { tls: tls !== undefined });
  options.onListening({
    address,
    port,
    uri,
    exports: initial.length,
    defaultExport: options.uid ?? null,
    uris: (options.uid !== undefined ? [options.uid] : initial.slice(-2)).map((name) => `${uri}/${encodeURIComponent(name)}`),
    readOnly: options.readOnly,
    loopback: isLoopback(address),
    tls: tls ? { credentials: tls.credentials, clientsAuthenticated: tls.clientsAuthenticated, description: tls.description } : null,
  });
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
 * The server as an NBD URI (exports are paths below it): `nbds://` with TLS. IPv6 addresses go in
 * brackets; a wildcard address is shown as this machine's name, which remote clients can use.
 */
export function serverUri(address: string, port: number, options: { /** TLS is required. @default false */ readonly tls?: boolean } = {}): string {
  const host = address === '0.0.0.0' || address === '::' || address === '' ? hostname() : address;
  return `${options.tls === true ? 'nbds' : 'nbd'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** True for addresses only this machine can reach (127.0.0.0/8, ::1, IPv4-mapped 127.x). */
export function isLoopback(address: string): boolean {
  return /^(::ffff:)?127\./i.test(address) || address === '::1';
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
