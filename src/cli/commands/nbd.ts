import { InvalidArgumentError, type Command } from 'commander';
import type { NbdListening } from '../../nbd/server.js';
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
    .option('--json', 'print the start-up as one JSON line on stdout (address, port, exports, default export, URIs)')
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
        ],
        'The start-up line names the URIs to use (with --json: one JSON line on stdout). Without a\n' +
          'uid there is no default export: a client that names none is refused with a hint.\n' +
          'Without -r, writes go to a copy-on-write session shared by all connections to an export.\n' +
          'FLUSH and FUA commit them as a new version tagged "cow" (base = the served version; a later\n' +
          'commit of the session replaces it), and so does the disconnect of the last writing client.\n' +
          'The served version never changes. With -r exports offer no FLUSH, FUA, TRIM or WRITE_ZEROES.\n' +
          'There is no TLS yet: on an address other than loopback anyone who can reach the port can\n' +
          'read the versions (a warning says so). SIGINT or SIGTERM stop the server after committing.\n' +
          'A port in use or an address not of this machine ends with status 2.',
      ),
    )
    .action(async (uid: string | undefined, opts: { address?: string; port?: number; readOnly?: boolean; metricsAddress?: string }, command: Command) => {
      ctx.exitCode = await runNbd({ uid, address: opts.address, port: opts.port, readOnly: opts.readOnly, metricsAddress: opts.metricsAddress }, globalsOf(command), ctx.io);
    });
}

/**
 * Serves until a signal.
 * @returns the exit status
 */
export async function runNbd(options: NbdCommandOptions, globals: Globals, io: CliIo): Promise<number> {
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

/** The start-up line: what is served where, the URIs to use and how to list them. */
function startupLine(address: string, info: NbdListening): string {
  const where = `${address.includes(':') ? `[${address}]` : address}:${info.port}`;
  const mode = info.readOnly ? 'read-only' : 'with copy-on-write';
  const list = `\`nbdinfo --list ${info.uri}\``;
  if (info.defaultExport !== null) {
    return `serving version ${info.defaultExport} ${mode} on ${where} as ${info.uris[0] ?? ''} (also the default export: ${info.uri}); ${list} shows it`;
  }
  const examples = info.uris.length > 0 ? `, e.g. ${info.uris.join(' ')}` : '';
  return `serving every version (${info.exports} now) ${mode} on ${where}${examples}; ${list} lists them`;
}

/** The warning for an address other machines can reach. */
function exposure(info: NbdListening): string {
  const what = info.defaultExport !== null ? `version ${info.defaultExport}` : 'every version';
  const writes = info.readOnly ? '' : ' and write new versions';
  return (
    `warning: ${info.address} is not a loopback address and there is no TLS yet: anyone who can reach port ${info.port} ` +
    `can read ${what}${writes}; bind 127.0.0.1 and use an SSH tunnel, or serve on a trusted network only`
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
  };
}
