import type { Command } from 'commander';
import { cleanup } from '../../engine/operations/cleanup.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { cleanupSummary } from '../ui/cleanup-summary.js';
import { progressView } from '../ui/progress.js';

/** Wires `backy2 cleanup` into the program. */
export function registerCleanup(program: Command, ctx: CommandContext): void {
  program
    .command('cleanup')
    .description('delete blocks no version refers to any more (after rm), safely while backups run')
    .option('--dry-run', 'only report what would be deleted')
    .option('--json', 'print the figures as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 rm v1kx3f9qm7wz && backy2 cleanup', 'backy2 cleanup --dry-run --json'],
        'Mark and sweep: a block is deleted only when no version refers to it and nothing touched\n' +
          'it since the oldest backup (or copy-on-write commit) still running started. It is safe to\n' +
          'run at any time, to kill at any moment and to run again. Objects the catalog does not\n' +
          'know (left by killed backups) and stale temp files are removed too. A store whose catalog\n' +
          'lacks versions found in the block store is refused: rebuild the catalog first.',
      ),
    )
    .action(async (opts: { dryRun?: boolean }, command: Command) => {
      ctx.exitCode = await runCleanup({ dryRun: opts.dryRun }, globalsOf(command), ctx.io);
    });
}

/**
 * Runs a cleanup and reports the figures.
 * @returns the exit status
 */
export async function runCleanup(options: { dryRun?: boolean | undefined }, globals: Globals, io: CliIo): Promise<number> {
  return withStore(globals, io, async (store) => {
    const progress = await progressView(io, globals, 'cleanup');
    let result;
    try {
      result = await cleanup(store, { dryRun: options.dryRun, progress, signal: io.signal });
    } finally {
      progress.stop();
    }
    if (globals.json) printJson(io, result);
    else io.stderr(`${cleanupSummary(result)}\n`);
    return 0;
  });
}
