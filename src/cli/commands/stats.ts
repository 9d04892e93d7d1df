import type { Command } from 'commander';
import { storeSpace, versionSpace } from '../../engine/operations/stats.js';
import { formatBytes, formatDuration } from '../../engine/support/units.js';
import { formatDate, renderTable } from '../ui/table.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 stats` into the program. */
export function registerStats(program: Command, ctx: CommandContext): void {
  program
    .command('stats')
    .description('space used by a version (referenced, unique, shared), or by the whole store with the newest backup of each image')
    .argument('[version]', 'version (uid, uid prefix, IMAGE or IMAGE@latest); without it, figures of the whole store')
    .option('--json', 'print the figures as JSON')
    .addHelpText(
      'after',
      helpAfter(['backy2 stats', 'backy2 stats v1kx3f9qm7wz --json'], 'Unique bytes are what removing the version (and a cleanup) would free.'),
    )
    .action(async (uid: string | undefined, _opts: unknown, command: Command) => {
      ctx.exitCode = await runStats({ uid }, globalsOf(command), ctx.io);
    });
}

/**
 * Prints space figures.
 * @returns the exit status
 */
export async function runStats(options: { uid?: string | undefined }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    if (options.uid === undefined) {
      const s = await storeSpace(store);
      if (globals.json) printJson(io, s);
      else {
        io.stdout(
          `images:          ${s.images}\nversions:        ${s.versions}\nblocks stored:   ${s.blocks}` +
            `${s.invalidBlocks ? ` (${s.invalidBlocks} invalid)` : ''}\nbytes stored:    ${formatBytes(s.bytesStored)}\n` +
            `logical bytes:   ${formatBytes(s.bytesLogical)}\nreduction:       ${s.reduction.toFixed(2)}x\n`,
        );
        if (s.perImage.length > 0) {
          io.stdout(
            `\n${renderTable(
              ['IMAGE', 'VERSIONS', 'INVALID', 'NEWEST BACKUP', 'AGE'],
              s.perImage.map((i) => [
                i.image,
                String(i.versions),
                String(i.invalidVersions || ''),
                i.newestBackup ? `${i.newestBackup.uid} ${formatDate(i.newestBackup.createdAt)}` : 'none',
                i.newestBackup ? formatDuration(i.newestBackup.ageSeconds * 1000) : '',
              ]),
              [1, 2],
            )}`,
          );
        }
      }
      return 0;
    }
    const v = await versionSpace(store, options.uid);
    if (globals.json) printJson(io, v);
    else {
      io.stdout(
        `version:         ${v.uid} (${v.image})\nsize:            ${formatBytes(v.size)} in ${v.blocks} blocks of ${formatBytes(v.blockSize)}, ${v.sparseBlocks} sparse\n` +
          `referenced:      ${formatBytes(v.bytesReferenced)}\nunique:          ${formatBytes(v.bytesUnique)}\nshared:          ${formatBytes(v.bytesShared)}\n`,
      );
    }
    return 0;
  });
}
