import type { Command } from 'commander';
import { removeVersions } from '../../engine/operations/versions.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 rm` into the program. */
export function registerRm(program: Command, ctx: CommandContext): void {
  program
    .command('rm')
    .description('remove versions (their blocks are freed by cleanup)')
    .argument('<version...>', 'versions to remove (uid, unique uid prefix, or IMAGE@latest for its newest valid backup)')
    .option('--force', 'also remove versions younger than the minimum age (retention.minAge, default 6d)')
    .option('--json', 'print the removed versions as JSON')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 rm v1kx3f9qm7wz', 'backy2 rm --force v1kx3f9qm7wz v1kx3fa01b2c'],
        'Protected versions are never removed. Either all named versions pass the checks and\nare removed, or none is. Incomplete versions left by killed backups are removed at any age.',
      ),
    )
    .action(async (uids: string[], opts: { force?: boolean }, command: Command) => {
      ctx.exitCode = await runRm({ uids, force: opts.force }, globalsOf(command), ctx.io);
    });
}

/**
 * Removes versions.
 * @returns the exit status
 */
export async function runRm(options: { uids: readonly string[]; force?: boolean | undefined }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const removed = await removeVersions(store, options.uids, { force: options.force });
    if (globals.json) printJson(io, removed.map((v) => ({ uid: v.uid, image: v.image })));
    else for (const v of removed) io.stderr(`Removed ${v.uid} (${v.image})\n`);
    return 0;
  });
}
