import type { Command } from 'commander';
import type { VersionRecord } from '../../engine/catalog/catalog.js';
import { formatBytes } from '../../engine/support/units.js';
import { listVersions } from '../../engine/operations/versions.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { formatDate, renderTable } from '../ui/table.js';

/** Parsed arguments of `backy2 ls`. */
export interface LsCommandOptions {
  readonly image?: string | undefined;
  readonly tag?: string | undefined;
}

/** Wires `backy2 ls` into the program. */
export function registerLs(program: Command, ctx: CommandContext): void {
  program
    .command('ls')
    .description('list versions, oldest first')
    .argument('[image]', 'only versions of this image')
    .option('--tag <tag>', 'only versions with this tag')
    .option('--json', 'print a JSON array of versions')
    .addHelpText('after', helpAfter(['backy2 ls', 'backy2 ls vm1 --tag b_weekly', 'backy2 ls --json | jq -r \'.[] | select(.status=="valid") | .uid\'']))
    .action(async (image: string | undefined, opts: { tag?: string }, command: Command) => {
      ctx.exitCode = await runLs({ image, tag: opts.tag }, globalsOf(command), ctx.io);
    });
}

/**
 * Lists versions as a table or JSON.
 * @returns the exit status
 */
export async function runLs(options: LsCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  return withStore(globals, io, async (store) => {
    const versions = await listVersions(store, options);
    if (globals.json) {
      printJson(io, versions.map(toJson));
      return 0;
    }
    io.stdout(
      renderTable(
        ['DATE', 'UID', 'IMAGE', 'SIZE', 'STATUS', 'PROTECTED', 'TAGS', 'SNAPSHOT'],
        versions.map((v) => [
          formatDate(v.createdAt),
          v.uid,
          v.image,
          formatBytes(v.size),
          v.status,
          v.protected ? 'yes' : '',
          v.tags.join(','),
          v.snapshot ?? '',
        ]),
        [3],
      ),
    );
    return 0;
  });
}

function toJson(v: VersionRecord): Record<string, unknown> {
  return { ...v, date: new Date(v.createdAt).toISOString() };
}
