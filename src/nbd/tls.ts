/**
 * TLS credentials of the NBD server and the server side of the handshake that follows
 * NBD_OPT_STARTTLS. Two kinds of credentials: an x509 certificate and key (optionally requiring
 * client certificates signed by a CA), or pre-shared keys in the file format of GnuTLS's psktool
 * as nbdkit `--tls-psk` and qemu's `tls-creds-psk` read it: one `identity:hexkey` per line.
 */
import { X509Certificate } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { createSecureContext, createServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { NotFoundError, UsageError, errnoCode } from '../engine/errors.js';
import { printable } from '../engine/support/names.js';

/** Where the credentials are: x509 files, or a PSK file. */
export type NbdTlsCredentials =
  | {
      readonly kind: 'x509';
      /** PEM certificate (chain) of the server. */
      readonly cert: string;
      /** PEM private key of the server; readable by its owner only. */
      readonly key: string;
      /** PEM CA certificates: clients must present a certificate signed by one of them. */
      readonly verifyClients?: string | undefined;
    }
  | {
      readonly kind: 'psk';
      /** `identity:hexkey` lines; readable by its owner only. */
      readonly pskFile: string;
    };

/** A finished server-side handshake. */
export interface TlsConnection {
  /** The encrypted connection: the session goes on over it. */
  readonly socket: TLSSocket;
  /** Protocol, cipher and who the client is, for the log. */
  readonly description: string;
}

/** Loaded credentials and the handshake that uses them. */
export interface NbdTls {
  readonly credentials: 'x509' | 'psk';
  /** Clients prove who they are (PSK, or client certificates): not just encryption. */
  readonly clientsAuthenticated: boolean;
  /** What clients need, for the start-up line (`x509, client certificates verified`). */
  readonly description: string;
  /**
   * Runs the server side of the handshake on `socket` (which must not be read by anyone else
   * from now on).
   * @returns the encrypted connection once the client is authenticated
   * @throws {Error} when the handshake fails (message says why, for the log)
   */
  accept(socket: Duplex): Promise<TlsConnection>;
}

/** Shortest pre-shared key accepted (bytes): shorter ones can be guessed from a recorded handshake. */
export const MIN_PSK_BYTES = 16;
/** Longest pre-shared key OpenSSL accepts in every version. */
const MAX_PSK_BYTES = 256;
/** Longest PSK identity OpenSSL accepts in every version. */
const MAX_IDENTITY_BYTES = 128;

/**
 * Cipher preference, the server's: AES-GCM first (fast with AES-NI), ChaCha20 after. TLS 1.3
 * PSK handshakes of OpenSSL use SHA-256 suites only. TLS 1.2 PSK is offered with ECDHE only, so
 * a leaked key does not decrypt recorded sessions.
 */
const TLS13 = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
const X509_TLS12 =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';
const PSK_TLS12 = 'ECDHE-PSK-CHACHA20-POLY1305';

/**
 * Reads and checks the credentials once, at start-up.
 * @param credentials which files to use
 * @returns the credentials, ready for handshakes
 * @throws {NotFoundError} when a file does not exist
 * @throws {UsageError} when a key file is readable by other users, a file cannot be read or is
 *   malformed, or certificate and key do not belong together
 * @example
 * const tls = await loadNbdTls({ kind: 'psk', pskFile: '/etc/backy2/nbd.psk' });
 * const { socket } = await tls.accept(rawSocket); // after NBD_REP_ACK to NBD_OPT_STARTTLS
 */
export async function loadNbdTls(credentials: NbdTlsCredentials): Promise<NbdTls> {
  const common: TlsOptions = { minVersion: 'TLSv1.2', honorCipherOrder: true };
  if (credentials.kind === 'psk') {
    const keys = parsePskFile(await readPrivate(credentials.pskFile, 'PSK file'), credentials.pskFile);
    return tlsWith({ ...common, ciphers: `${TLS13}:${PSK_TLS12}` }, keys, {
      credentials: 'psk',
      clientsAuthenticated: true,
      description: `PSK, ${keys.size} ${keys.size === 1 ? 'identity' : 'identities'}`,
    });
  }
  const cert = await readPublic(credentials.cert, 'certificate file');
  const key = await readPrivate(credentials.key, 'key file');
  const ca = credentials.verifyClients === undefined ? undefined : await readPublic(credentials.verifyClients, 'CA file');
  const options: TlsOptions = { ...common, ciphers: `${TLS13}:${X509_TLS12}`, cert, key };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new UsageError(`TLS certificate "${credentials.cert}" and key "${credentials.key}" cannot be used together: ${messageOf(err)}`, { cause: err });
  }
  if (ca === undefined) return tlsWith(options, undefined, { credentials: 'x509', clientsAuthenticated: false, description: 'x509, clients not verified' });
  try {
    new X509Certificate(ca);
    createSecureContext({ ca });
  } catch (err) {
    throw new UsageError(`TLS CA file "${credentials.verifyClients}" holds no usable certificate: ${messageOf(err)}`, { cause: err });
  }
  return tlsWith({ ...options, ca, requestCert: true, rejectUnauthorized: true }, undefined, {
    credentials: 'x509',
    clientsAuthenticated: true,
    description: 'x509, client certificates verified',
  });
}

/**
 * Parses a PSK file: `identity:hexkey` per line (GnuTLS psktool), blank lines ignored.
 * @returns the key of each identity
 * @throws {UsageError} naming the first bad line (never its key)
 */
export function parsePskFile(text: string, file: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const bad = (why: string) => new UsageError(`PSK file "${file}" line ${i + 1}: ${why}`, { hint: 'each line is identity:hexkey, as `psktool -u NAME -p FILE` writes it' });
    const colon = line.indexOf(':');
    if (colon <= 0) throw bad('no "identity:" before the key');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (Buffer.byteLength(identity) > MAX_IDENTITY_BYTES) throw bad(`the identity is longer than ${MAX_IDENTITY_BYTES} bytes`);
    if (hex === '') throw bad(`no key after ${printable(identity)}`);
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw bad(`the key of ${printable(identity)} is not an even number of hex digits`);
    const key = Buffer.from(hex, 'hex');
    if (key.length < MIN_PSK_BYTES) throw bad(`the key of ${printable(identity)} is ${key.length} bytes; use at least ${MIN_PSK_BYTES}`);
    if (key.length > MAX_PSK_BYTES) throw bad(`the key of ${printable(identity)} is ${key.length} bytes; at most ${MAX_PSK_BYTES} work`);
    if (keys.has(identity)) throw bad(`${printable(identity)} appears twice`);
    keys.set(identity, key);
  });
  if (keys.size === 0) throw new UsageError(`PSK file "${file}" holds no keys`, { hint: 'create one with `psktool -u NAME -p FILE`' });
  return keys;
}

function tlsWith(options: TlsOptions, keys: Map<string, Buffer> | undefined, about: Omit<NbdTls, 'accept'>): NbdTls {
  return {
    ...about,
    accept: (socket) =>
      new Promise<TlsConnection>((resolve, reject) => {
        let identity: string | undefined;
        // A server per handshake, never listening: the documented way to take over a connected
        // socket, and the one that checks client certificates (rejectUnauthorized).
        const server = createServer({
          ...options,
          ...(keys
            ? {
                pskCallback: (_socket: TLSSocket, id: string) => {
                  identity = id;
                  return keys.get(id) ?? null;
                },
              }
            : {}),
        });
        server.once('secureConnection', (tls: TLSSocket) => {
          // Renegotiation (TLS 1.2) is a way to make the server work, never needed here.
          tls.disableRenegotiation();
          resolve({ socket: tls, description: describe(tls, identity) });
        });
        server.once('tlsClientError', (err: Error, tls: TLSSocket) => {
          tls.destroy();
          reject(new Error(failure(err, tls, identity, keys)));
        });
        server.emit('connection', socket);
      }),
  };
}

function describe(tls: TLSSocket, identity: string | undefined): string {
  const who = identity !== undefined ? `, PSK identity ${printable(identity)}` : clientCertificate(tls);
  return `${tls.getProtocol() ?? 'TLS'} ${tls.getCipher().name}${who}`;
}

function clientCertificate(tls: TLSSocket): string {
  const subject = tls.getPeerCertificate().subject as Record<string, unknown> | undefined;
  const cn = subject?.CN;
  return typeof cn === 'string' ? `, client certificate ${printable(cn)}` : '';
}

/** Why a handshake failed, in words for the log. */
function failure(err: Error, tls: TLSSocket, identity: string | undefined, keys: Map<string, Buffer> | undefined): string {
  if (keys && identity !== undefined && !keys.has(identity)) return `unknown PSK identity ${printable(identity)}`;
  if (tls.authorizationError) return `client certificate refused: ${String(tls.authorizationError)}`;
  if (errnoCode(err) === 'ECONNRESET') return 'the client closed the connection during the TLS handshake';
  // OpenSSL errors carry a short reason; their message is a multi-line dump.
  const reason = (err as { reason?: unknown }).reason;
  if (reason === 'peer did not return a certificate') return 'the client sent no certificate';
  return typeof reason === 'string' ? reason : (err.message.split('\n')[0] ?? '');
}

/** A key file: refused when other users may read it (as ssh refuses private keys). */
async function readPrivate(file: string, what: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw unreadable(file, what, err);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new UsageError(`TLS ${what} "${file}" is not a regular file`);
    const mode = stat.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new UsageError(`Permissions 0${mode.toString(8)} of TLS ${what} "${file}" are too open: only its owner may read it`, { hint: `chmod 600 ${file}` });
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

async function readPublic(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw unreadable(file, what, err);
  }
}

function unreadable(file: string, what: string, err: unknown): Error {
  if (errnoCode(err) === 'ENOENT') return new NotFoundError(`TLS ${what} "${file}" does not exist`, { cause: err });
  return new UsageError(`Cannot read TLS ${what} "${file}": ${errnoCode(err) ?? messageOf(err)}`, { cause: err });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
