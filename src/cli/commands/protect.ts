import type { Command } from 'commander';
import { setProtected } from '../../engine/operations/versions.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 protect` and `backy2 unprotect` into the program. */
export function registerProtect(program: Command, ctx: CommandContext): void {
  for (const value of [true, false]) {
    const verb = value ? 'protect' : 'unprotect';
    program
      .command(verb)
      .description(value ? 'protect versions from removal' : 'allow removing versions again')
      .argument('<version...>', 'versions (uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup))')
      .option('--json', 'print the versions changed as a JSON array')
      .addHelpText('after', helpAfter([`backy2 ${verb} v1kx3f9qm7wz`]))
      .action(async (uids: string[], _opts: unknown, command: Command) => {
        ctx.exitCode = await runProtect({ uids, value }, globalsOf(command), ctx.io);
      });
  }
}

/**
 * Protects or unprotects versions.
 * @returns the exit status
 */
export async function runProtect(options: { uids: readonly string[]; value: boolean }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const changed = await setProtected(store, options.uids, options.value);
    if (globals.json) printJson(io, changed.map((v) => ({ uid: v.uid, image: v.image, protected: v.protected })));
    else for (const v of changed) io.stderr(`${options.value ? 'Protected' : 'Unprotected'} ${v.uid} (${v.image})\n`);
    return 0;
  });
}
