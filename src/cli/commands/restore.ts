import type { Command } from 'commander';
import { ExitCode } from '../../engine/errors.js';
import { restore, type RestoreOptions, type RestoreResult } from '../../engine/operations/restore.js';
import { formatBytes } from '../../engine/support/units.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore, withoutCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { progressView } from '../ui/progress.js';

/** Parsed arguments of `backy2 restore`. */
export type RestoreCommandOptions = Omit<RestoreOptions, 'progress' | 'signal'> & {
  /** Read the version straight from the block store (lost or damaged catalog). */
  readonly noCatalog?: boolean | undefined;
};

/** Wires `backy2 restore` into the program. */
export function registerRestore(program: Command, ctx: CommandContext): void {
  program
    .command('restore')
    .description('restore a version to a file or block device')
    .argument('<version>', 'version to restore: uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup); with --no-catalog its full uid')
    .argument('<target>', 'file to create, or (with --force) an existing file or block device')
    .option('--sparse', 'skip all-zero blocks instead of writing zeros (holes in a file)')
    .option('--force', 'overwrite an existing target')
    .option('--no-catalog', 'read the version straight from the block store (when the catalog is lost or damaged)')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 restore v1kx3f9qm7wz /tmp/vm1.img --sparse', 'backy2 restore v1kx3f9qm7wz /dev/vg0/vm1 --force'],
        'Every block is checked against its digest. A bad block is reported, its range is left\nzero, the restore goes on, and the exit status is 3. A target smaller than the version is\nalways refused. Versions marked invalid can be restored.',
      ),
    )
    .action(async (uid: string, target: string, opts: { sparse?: boolean; force?: boolean; catalog?: boolean }, command: Command) => {
      ctx.exitCode = await runRestore({ uid, target, sparse: opts.sparse, force: opts.force, noCatalog: opts.catalog === false }, globalsOf(command), ctx.io);
    });
}

/**
 * Runs a restore and prints its result.
 * @returns 0, or 3 when bad blocks were found
 */
export async function runRestore(options: RestoreCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const open = options.noCatalog ? withoutCatalog(options.uid) : withStore;
  return open(globals, io, async (store) => {
    const progress = await progressView(io, globals, `restore ${options.uid}`);
    let result: RestoreResult;
    try {
      result = await restore(store, { uid: options.uid, target: options.target, sparse: options.sparse, force: options.force, progress, signal: io.signal });
    } finally {
      progress.stop();
    }
    if (globals.json) {
      printJson(io, result);
    } else {
      for (const bad of result.badBlocks) {
        io.stderr(`warning: bad block ${bad.index} at offset ${bad.offset} (${bad.digest.slice(0, 16)}…): ${bad.message}\n`);
      }
      if (result.badBlockCount > result.badBlocks.length) {
        io.stderr(`warning: ${result.badBlockCount - result.badBlocks.length} more bad blocks not shown\n`);
      }
      io.stderr(
        `Restored ${result.uid} (${result.image}, ${formatBytes(result.size)}) to ${result.target} in ${result.durationSeconds.toFixed(1)}s` +
          (result.badBlockCount > 0 ? ` with ${result.badBlockCount} bad blocks left zero\n` : '\n'),
      );
    }
    return result.badBlockCount > 0 ? ExitCode.problems : ExitCode.ok;
  });
}
