import { InvalidArgumentError, type Command } from 'commander';
import { UsageError } from '../../engine/errors.js';
import type { NbdListening } from '../../nbd/server.js';
import type { NbdTlsCredentials } from '../../nbd/tls.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { resolveVersion } from '../../engine/operations/versions.js';
import { helpAfter } from '../help.js';
import type { CliIo, Globals } from '../io.js';
import { startMetricsServer } from '../metrics-server.js';

/** Parsed arguments of `backy2 nbd`. */
export interface NbdCommandOptions {
  readonly uid?: string | undefined;
  readonly address?: string | undefined;
  readonly port?: number | undefined;
  readonly readOnly?: boolean | undefined;
  /** `--metrics-address`: serve the store's metrics over HTTP while serving. */
  readonly metricsAddress?: string | undefined;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly tlsVerifyClients?: string | undefined;
  readonly tlsPsk?: string | undefined;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a TCP port number (0-65535)');
  return n;
}

/** Wires `backy2 nbd` into the program. */
export function registerNbd(program: Command, ctx: CommandContext): void {
  program
    .command('nbd')
    .description('serve versions as Network Block Devices (export name = version uid)')
    .argument('[version]', 'serve only this version (uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup)), also as the default export (the empty name)')
    .option('-a, --address <address>', 'address to bind', '127.0.0.1')
    .option('-p, --port <port>', 'TCP port', port, 10809)
    .option('-r, --read-only', 'refuse all writes')
    .option('--tls-cert <file>', 'require TLS with this x509 certificate (PEM; with --tls-key)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM; mode 600 or stricter)')
    .option('--tls-verify-clients <ca-file>', 'with --tls-cert: accept only clients with a certificate signed by this CA (PEM)')
    .option('--tls-psk <file>', 'require TLS with pre-shared keys: identity:hexkey lines as psktool writes them (mode 600 or stricter)')
    .option('--json', 'print the start-up as one JSON line on stdout (address, port, exports, default export, URIs, TLS)')
    .option('--metrics-address <address>', 'also serve the store\'s metrics (Prometheus) at http://ADDRESS/metrics: PORT (on 127.0.0.1) or HOST:PORT')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 nbd -r                               # every version, read-only, on 127.0.0.1:10809',
          'nbdinfo --list nbd://127.0.0.1:10809',
          'qemu-img convert -O raw nbd://127.0.0.1:10809/v1kx3f9qm7wz /tmp/vm1.raw',
          'backy2 nbd v1kx3f9qm7wz -r -p 10810          # one version, also as the default export',
          'qemu-img info nbd://127.0.0.1:10810          # no export name: the default export',
          'nbd-client -N v1kx3f9qm7wz 127.0.0.1 /dev/nbd0',
          'psktool -u alice -p /etc/backy2/nbd.psk     # TLS with a pre-shared key:',
          'backy2 nbd -r -a 0.0.0.0 --tls-psk /etc/backy2/nbd.psk',
          "nbdcopy 'nbds://alice@HOST:10809/v1kx3f9qm7wz?tls-psk-file=/etc/backy2/nbd.psk' /tmp/vm1.raw",
          'backy2 nbd -r -a 0.0.0.0 --tls-cert server-cert.pem --tls-key server-key.pem --tls-verify-clients ca-cert.pem',
          "qemu-img info --object tls-creds-x509,id=t0,endpoint=client,dir=DIR --image-opts driver=nbd,host=HOST,export=v1kx3f9qm7wz,tls-creds=t0",
        ],
        'The start-up line names the URIs to use (with --json: one JSON line on stdout). Without a\n' +
          'uid there is no default export: a client that names none is refused with a hint.\n' +
          'Without -r, writes go to a copy-on-write session shared by all connections to an export.\n' +
          'FLUSH and FUA commit them as a new version tagged "cow" (base = the served version; a later\n' +
          'commit of the session replaces it), and so does the disconnect of the last writing client.\n' +
          'The served version never changes. With -r exports offer no FLUSH, FUA, TRIM or WRITE_ZEROES.\n' +
          'With --tls-cert/--tls-key or --tls-psk TLS is required (NBD_OPT_STARTTLS, nbds:// URIs): before\n' +
          'it every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD. PSK and client\n' +
          'certificates (--tls-verify-clients) authenticate clients; a certificate alone only encrypts.\n' +
          'Key and PSK files that group or others can access are refused. Without TLS, or without client\n' +
          'authentication, anyone who can reach the port on an address other than loopback can read\n' +
          'the versions (a warning says so). SIGINT or SIGTERM stop the server after committing.\n' +
          'A port in use, an address not of this machine or unusable TLS files end with status 2\n' +
          '(4 for a TLS file that does not exist).',
      ),
    )
    .action(async (uid: string | undefined, opts: Omit<NbdCommandOptions, 'uid'>, command: Command) => {
      ctx.exitCode = await runNbd({ uid, ...opts }, globalsOf(command), ctx.io);
    });
}

/**
 * Serves until a signal.
 * @returns the exit status
 */
export async function runNbd(options: NbdCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const credentials = tlsCredentials(options);
  const tls = credentials ? await (await import('../../nbd/tls.js')).loadNbdTls(credentials) : undefined;
  return withStore(globals, io, async (store) => {
    const uid = options.uid === undefined ? undefined : (await resolveVersion(store, options.uid)).uid;
    const { serveNbd } = await import('../../nbd/server.js');
    const log = (line: string) => io.stderr(`${new Date().toISOString()} ${line}\n`);
    const metrics = options.metricsAddress === undefined ? undefined : await startMetricsServer(store, options.metricsAddress, log);
    try {
      await serveNbd(store, {
        address: options.address ?? '127.0.0.1',
        port: options.port ?? 10809,
        readOnly: options.readOnly === true,
        uid,
        tls,
        signal: io.signal ?? new AbortController().signal,
        log,
        onListening: (info) => {
          log(startupLine(options.address ?? '127.0.0.1', info));
          if (!info.loopback) log(exposure(info));
          if (globals.json) io.stdout(`${JSON.stringify(startupJson(info))}\n`);
        },
      });
    } finally {
      await metrics?.close();
    }
    return 0;
  });
}

/**
 * Which TLS credentials the options name, if any.
 * @throws {UsageError} when they are incomplete or mix x509 and PSK
 */
function tlsCredentials(options: NbdCommandOptions): NbdTlsCredentials | undefined {
  const { tlsCert: cert, tlsKey: key, tlsVerifyClients: verifyClients, tlsPsk: pskFile } = options;
  if (pskFile !== undefined) {
    if (cert !== undefined || key !== undefined || verifyClients !== undefined) {
      throw new UsageError('Choose --tls-psk or --tls-cert/--tls-key, not both', { hint: 'a server uses one kind of TLS credentials' });
    }
    return { kind: 'psk', pskFile };
  }
  if (cert === undefined && key === undefined) {
    if (verifyClients !== undefined) throw new UsageError('--tls-verify-clients needs --tls-cert and --tls-key', { hint: 'the server needs its own certificate too' });
    return undefined;
  }
  if (cert === undefined || key === undefined) {
    throw new UsageError(cert === undefined ? '--tls-key needs --tls-cert' : '--tls-cert needs --tls-key', { hint: 'give both: the certificate and its private key' });
  }
  return { kind: 'x509', cert, key, verifyClients };
}

/** The start-up line: what is served where, the URIs to use and how to list them. */
function startupLine(address: string, info: NbdListening): string {
  const where = `${address.includes(':') ? `[${address}]` : address}:${info.port}${info.tls ? ` with TLS (${info.tls.description})` : ''}`;
  const mode = info.readOnly ? 'read-only' : 'with copy-on-write';
  const list = `\`nbdinfo --list ${info.uri}\``;
  if (info.defaultExport !== null) {
    return `serving version ${info.defaultExport} ${mode} on ${where} as ${info.uris[0] ?? ''} (also the default export: ${info.uri}); ${list} shows it`;
  }
  const examples = info.uris.length > 0 ? `, e.g. ${info.uris.join(' ')}` : '';
  return `serving every version (${info.exports} now) ${mode} on ${where}${examples}; ${list} lists them`;
}

/** The warning (or note) for an address other machines can reach. */
function exposure(info: NbdListening): string {
  const what = info.defaultExport !== null ? `version ${info.defaultExport}` : 'every version';
  const writes = info.readOnly ? '' : ' and write new versions';
  if (info.tls?.clientsAuthenticated) {
    const who = info.tls.credentials === 'psk' ? 'a key of the PSK file' : 'a certificate signed by the --tls-verify-clients CA';
    return `${info.address} is not a loopback address: only clients with ${who} can read ${what}${writes}; connections are encrypted`;
  }
  if (info.tls) {
    return (
      `warning: ${info.address} is not a loopback address and clients are not authenticated: anyone who can reach port ${info.port} ` +
      `can read ${what}${writes} (encrypted in transit); add --tls-verify-clients CA-FILE or use --tls-psk`
    );
  }
  return (
    `warning: ${info.address} is not a loopback address and there is no TLS: anyone who can reach port ${info.port} ` +
    `can read ${what}${writes}; use --tls-psk or --tls-cert/--tls-key with --tls-verify-clients, bind 127.0.0.1 and use an SSH tunnel, or serve on a trusted network only`
  );
}

function startupJson(info: NbdListening): Record<string, unknown> {
  return {
    type: 'listening',
    address: info.address,
    port: info.port,
    uri: info.uri,
    exports: info.exports,
    defaultExport: info.defaultExport,
    uris: info.uris,
    list: `nbdinfo --list ${info.uri}`,
    readOnly: info.readOnly,
    loopback: info.loopback,
    tls: info.tls ? { credentials: info.tls.credentials, clientsAuthenticated: info.tls.clientsAuthenticated } : null,
  };
}
