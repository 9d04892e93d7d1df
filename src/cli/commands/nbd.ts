import { InvalidArgumentError, type Command } from 'commander';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { helpAfter } from '../help.js';
import type { CliIo, Globals } from '../io.js';

/** Parsed arguments of `backy2 nbd`. */
export interface NbdCommandOptions {
  readonly uid?: string | undefined;
  readonly address?: string | undefined;
  readonly port?: number | undefined;
  readonly readOnly?: boolean | undefined;
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
    .argument('[uid]', 'serve only this version (also as the default export)')
    .option('-a, --address <address>', 'address to bind', '127.0.0.1')
    .option('-p, --port <port>', 'TCP port', port, 10809)
    .option('-r, --read-only', 'refuse all writes')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 nbd -r                               # every version, read-only, on 127.0.0.1:10809',
          'nbdinfo --list nbd://127.0.0.1',
          'qemu-img convert -O raw nbd://127.0.0.1/v1kx3f9qm7wz /tmp/vm1.raw',
          'nbd-client -N v1kx3f9qm7wz 127.0.0.1 /dev/nbd0',
        ],
        'Without -r, writes go to a copy-on-write session shared by all connections to an export.\n' +
          'FLUSH and FUA commit them as a new version tagged "cow" (base = the served version; a later\n' +
          'commit of the session replaces it), and so does the disconnect of the last writing client.\n' +
          'The served version never changes. SIGINT or SIGTERM stop the server after committing.',
      ),
    )
    .action(async (uid: string | undefined, opts: { address?: string; port?: number; readOnly?: boolean }, command: Command) => {
      ctx.exitCode = await runNbd({ uid, ...opts }, globalsOf(command), ctx.io);
    });
}

/**
 * Serves until a signal.
 * @returns the exit status
 */
export async function runNbd(options: NbdCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  return withStore(globals, io, async (store) => {
    const { serveNbd } = await import('../../nbd/server.js');
    await serveNbd(store, {
      address: options.address ?? '127.0.0.1',
      port: options.port ?? 10809,
      readOnly: options.readOnly === true,
      uid: options.uid,
      signal: io.signal ?? new AbortController().signal,
      log: (line) => io.stderr(`${new Date().toISOString()} ${line}\n`),
    });
    return 0;
  });
}
