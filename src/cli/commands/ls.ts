import { InvalidArgumentError, type Command } from 'commander';
import { formatBytes } from '../../engine/support/units.js';
import { listVersions, versionAllocated, type ListOptions } from '../../engine/operations/versions.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { formatDate, renderTable } from '../ui/table.js';

/** Parsed arguments of `backy2 ls`: the engine's options, with `--expired` as a flag. */
export type LsCommandOptions = Omit<ListOptions, 'expiredAt'> & {
  /** Only versions whose expiry date has passed. */
  readonly expired?: boolean | undefined;
};

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

/** Wires `backy2 ls` into the program. */
export function registerLs(program: Command, ctx: CommandContext): void {
  program
    .command('ls')
    .description('list versions, oldest first')
    .argument('[image]', 'only versions of this image')
    .option('--tag <tag>', 'only versions with this tag')
    .option('--last <n>', 'only the newest N versions of each image', count)
    .option('--expired', 'only versions whose expiry date has passed (forget removes them)')
    .option('--json', 'print a JSON array of versions')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 ls', 'backy2 ls vm1 --last 3', 'backy2 ls vm1 --tag b_weekly', 'backy2 ls --expired', 'backy2 ls --json | jq -r \'.[] | select(.status=="valid") | .uid\''],
        'KIND is "backup" (read from a source) or "cow" (writes through a mount or NBD, committed as a\n' +
          'new version of BASE). STORED is the data the version refers to (what du shows of its\n' +
          'file); NEW is what its backup added to the store. EXPIRES (shown when any version has an\n' +
          'expiry date) is when forget removes it (backup -e, backy2 expire). HOST (shown when other\n' +
          'backup hosts made some of them) is the host that made each version.',
      ),
    )
    .action(async (image: string | undefined, opts: { tag?: string; last?: number; expired?: boolean }, command: Command) => {
      ctx.exitCode = await runLs({ image, tag: opts.tag, last: opts.last, expired: opts.expired }, globalsOf(command), ctx.io);
    });
}

/**
 * Lists versions as a table or JSON.
 * @returns the exit status
 */
export async function runLs(options: LsCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const versions = await listVersions(store, { ...options, expiredAt: options.expired ? Date.now() : undefined });
    const stored = new Map<string, number>();
    for (const v of versions) stored.set(v.uid, await versionAllocated(store, v));
    if (globals.json) {
      printJson(
        io,
        versions.map((v) => ({
          ...v,
          allocated: stored.get(v.uid) ?? null,
          date: new Date(v.createdAt).toISOString(),
          expires: v.expiresAt === null ? null : new Date(v.expiresAt).toISOString(),
        })),
      );
      return 0;
    }
    const expiries = versions.some((v) => v.expiresAt !== null);
    // Shown when other backup hosts made some of them (a catalog shared by many hosts).
    const hosts = versions.some((v) => v.host !== null && v.host !== store.config.host);
    io.stdout(
      renderTable(
        ['DATE', 'UID', 'IMAGE', 'KIND', 'SIZE', 'STORED', 'NEW', 'STATUS', 'PROTECTED', 'BASE', 'TAGS', 'SNAPSHOT', ...(expiries ? ['EXPIRES'] : []), ...(hosts ? ['HOST'] : [])],
        versions.map((v) => [
          formatDate(v.createdAt),
          v.uid,
          v.image,
          v.kind,
          formatBytes(v.size),
          formatBytes(stored.get(v.uid) ?? 0),
          v.stats ? formatBytes(v.stats.bytesWritten) : '',
          v.status,
          v.protected ? 'yes' : '',
          v.baseUid ?? '',
          v.tags.join(','),
          v.snapshot ?? '',
          ...(expiries ? [v.expiresAt === null ? '' : formatDate(v.expiresAt)] : []),
          ...(hosts ? [v.host ?? ''] : []),
        ]),
        [4, 5, 6],
      ),
    );
    return 0;
  });
}
