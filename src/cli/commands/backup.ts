import type { Command } from 'commander';
import { backup, type BackupOptions, type BackupResult } from '../../engine/operations/backup.js';
import { UsageError } from '../../engine/errors.js';
import { formatBytes } from '../../engine/support/units.js';
import { globalsOf, splitList, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { parseWhen } from '../dates.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { progressView } from '../ui/progress.js';

/** Parsed arguments of `backy2 backup`: the engine's options, with `-t` as typed (comma-separated) and `-e` as a date or span. */
export type BackupCommandOptions = Omit<BackupOptions, 'progress' | 'signal' | 'tags' | 'expiresAt'> & {
  readonly tags?: string | undefined;
  /** `-e`: a date or a span from now. */
  readonly expire?: string | undefined;
};

/** Wires `backy2 backup` into the program. */
export function registerBackup(program: Command, ctx: CommandContext): void {
  program
    .command('backup')
    .description('back up a disk image or block device as a new version of IMAGE')
    .argument('<source>', 'image file or block device (PATH, file:PATH) or RBD snapshot (rbd:POOL/IMAGE@SNAPSHOT)')
    .argument('<image>', 'name of the image the version belongs to, e.g. vm1')
    .option('-r, --hints <file>', 'read only the blocks named in this `rbd diff --format=json` file (plus a verification sample)')
    .option('--hints-from <snapshot>', 'the snapshot the hints start from (rbd diff --from-snap): the base is the backup made from it')
    .option('-f, --from <version>', 'base version (default: the newest valid backup of IMAGE; a copy-on-write version only when named, never with hints)')
    .option('-s, --snapshot <name>', 'snapshot name to record with the version; "auto" with rbd:POOL/IMAGE creates backy2-<uid> and removes those of earlier versions')
    .option('-t, --tags <tags>', 'comma-separated tags (default: b_daily/b_weekly/b_monthly for the first version of a day/week/month)')
    .option('-e, --expire <when>', 'expiry date: a date (2025-01-31; local time) or a span from now (30d, 6mo); forget removes the version after it')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 backup /dev/vg0/vm1 vm1',
          'backy2 backup vm1.img vm1 -t before-upgrade -e 30d   # forget removes it in 30 days',
          'backy2 backup rbd:rbd/vm1 vm1 --snapshot auto       # incremental from the previous backy2 snapshot',
          'rbd diff --from-snap s1 pool/vm1@s2 --format=json > hints.json',
          'backy2 backup /dev/rbd1 vm1 -r hints.json --hints-from s1 -s s2   # /dev/rbd1: pool/vm1@s2 mapped',
        ],
        'Prints the uid of the new version on stdout and a summary on stderr. All-zero blocks are\n' +
          'not stored; blocks already in the store (in any image) are stored once. For rbd: sources,\n' +
          'only the objects changed since the base version\'s snapshot are read (rbd diff), or only\n' +
          'allocated objects when that snapshot is gone. Ceph options: ceph.conf/id/keyring in the\n' +
          'config, or rbd:POOL/IMAGE@SNAP?conf=FILE&id=NAME&keyring=FILE.\n' +
          'Hints (-r) need the version they start from: --hints-from names the snapshot that rbd diff\n' +
          'started from (backups record theirs with -s), or -f names the base; a base that cannot be\n' +
          'proven is refused rather than guessed. Copy-on-write versions are never a default base.',
      ),
    )
    .action(async (source: string, image: string, opts: { hints?: string; hintsFrom?: string; from?: string; snapshot?: string; tags?: string; expire?: string }, command: Command) => {
      const options = { source, image, hintsFile: opts.hints, hintsFrom: opts.hintsFrom, baseUid: opts.from, snapshot: opts.snapshot, tags: opts.tags, expire: opts.expire };
      ctx.exitCode = await runBackup(options, globalsOf(command), ctx.io);
    });
}

/** `-t` as given: an empty list would silently drop the automatic tags, so it is refused. */
function tagsOf(value: string | undefined): string[] | undefined {
  const tags = splitList(value);
  if (tags?.length === 0) throw new UsageError('Option -t names no tag', { hint: 'give at least one tag, or leave -t out for the automatic b_daily/b_weekly/b_monthly' });
  return tags;
}

/**
 * Runs a backup and prints its result.
 * @returns the exit status
 */
export async function runBackup(options: BackupCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const expiresAt = options.expire === undefined ? undefined : parseWhen(options.expire, Date.now(), '--expire');
  return withStore(globals, io, async (store) => {
    const progress = await progressView(io, globals, `backup ${options.image}`);
    let result: BackupResult;
    try {
      const { expire: _expire, ...engineOptions } = options;
      result = await backup(store, { ...engineOptions, tags: tagsOf(options.tags), expiresAt, progress, signal: io.signal });
    } finally {
      progress.stop();
    }
    if (globals.json) {
      printJson(io, result);
    } else {
      io.stdout(`${result.uid}\n`);
      io.stderr(
        `Backed up ${result.image} (${formatBytes(result.size)}) as ${result.uid} in ${result.durationSeconds.toFixed(1)}s: ` +
          `read ${formatBytes(result.bytesRead)}, wrote ${formatBytes(result.bytesWritten)}${storedNote(result)}, ` +
          `deduplicated ${formatBytes(result.bytesDeduplicated)}, sparse ${formatBytes(result.bytesSparse)}, ` +
          `unchanged by hints ${formatBytes(result.bytesSkipped)}\n`,
      );
    }
    return 0;
  });
}

/** What the new blocks take in the store, when compression or encryption changed that. */
function storedNote(stats: { bytesWritten: number; bytesStored?: number }): string {
  return stats.bytesStored === undefined || stats.bytesStored === stats.bytesWritten ? '' : ` (${formatBytes(stats.bytesStored)} stored)`;
}
