import { InvalidArgumentError, type Command } from 'commander';
import { UsageError } from '../../engine/errors.js';
import { forget, type ForgetResult } from '../../engine/operations/forget.js';
import { formatLocalIso, parseSpan } from '../../engine/support/calendar.js';
import { checkTag } from '../../engine/support/names.js';
import { parseKeepCount, type RetentionRules } from '../../engine/support/retention-rules.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { parseWhen } from '../dates.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { cleanupSummary } from '../ui/cleanup-summary.js';
import { progressView } from '../ui/progress.js';
import { formatDate, renderTable } from '../ui/table.js';

/** Parsed arguments of `backy2 forget`: the engine's counts, the span and tags as typed. */
export interface ForgetCommandOptions extends Omit<RetentionRules, 'keepWithin' | 'keepTags'> {
  /** Image names or shell patterns; all images when empty. */
  readonly images: readonly string[];
  readonly keepWithin?: string | undefined;
  /** Each entry: a tag, or comma-separated tags that must all be present. */
  readonly keepTag?: readonly string[] | undefined;
  readonly dryRun?: boolean | undefined;
  /** A date (or a span from now) to apply the policy at. */
  readonly at?: string | undefined;
  readonly prune?: boolean | undefined;
}

function keepCount(value: string): number {
  const n = parseKeepCount(value);
  if (n === undefined) throw new InvalidArgumentError('must be a whole number, or "unlimited"');
  return n;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Wires `backy2 forget` into the program. */
export function registerForget(program: Command, ctx: CommandContext): void {
  program
    .command('forget')
    .description('remove the versions that retention rules do not keep (--prune then frees their blocks)')
    .argument('[image...]', 'images (names or shell patterns such as "vm-*"); default: every image')
    .option('--keep-last <n>', 'keep the newest N versions', keepCount)
    .option('--keep-hourly <n>', 'keep the newest version of each of the newest N hours that have versions', keepCount)
    .option('--keep-daily <n>', 'keep the newest version of each of the newest N days that have versions', keepCount)
    .option('--keep-weekly <n>', 'keep the newest version of each of the newest N ISO weeks (Monday to Sunday)', keepCount)
    .option('--keep-monthly <n>', 'keep the newest version of each of the newest N months', keepCount)
    .option('--keep-yearly <n>', 'keep the newest version of each of the newest N years', keepCount)
    .option('--keep-within <span>', 'keep every version newer than the newest backup minus SPAN (y, mo, w, d, h: 7d, 1y6mo)')
    .option('--keep-tag <tags>', 'keep every version with this tag (TAG1,TAG2: with all of them); repeat for more', collect)
    .option('--dry-run', 'list every version with keep or remove and the reason; remove nothing')
    .option('--at <date>', 'decide as if run at DATE (2024-12-31, 2024-12-31 18:00; or a span from now: 30d): a simulator; implies --dry-run')
    .option('--prune', 'then run a cleanup, which frees the blocks only the removed versions used')
    .option('--json', 'print every decision and the counts as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run',
          'backy2 forget --prune                               # the policies of retention.policies in the config',
          'backy2 forget "vm-*" --keep-last 3 --keep-within 2d --keep-tag keep',
          'backy2 forget --at "2025-06-30" --json              # what the policies would keep on June 30',
        ],
        'Rules as in restic: times are local, weeks are ISO weeks (Monday to Sunday); each period\n' +
          'rule keeps the newest version of each of the newest N periods that have versions (empty\n' +
          'ones do not count) and, while counts are left, also the oldest version; --keep-within counts\n' +
          'back from the newest backup, not from now; a version is kept when any rule keeps it. N may\n' +
          'be "unlimited". Without --keep-* options the first retention.policies entry of the config\n' +
          'whose pattern matches an image applies; images without one are left alone.\n' +
          'Always kept: protected versions and the newest valid backup of each image. Versions with an\n' +
          'expiry date (backup -e, backy2 expire) live by it: kept until then, removed after. Copy-on-\n' +
          'write versions (writes through mount or nbd) are not counted in the periods: they stay while\n' +
          'their base version stays (or a --keep-within or --keep-tag rule keeps them). Incomplete\n' +
          'versions of killed backups are removed. Versions in use (restored, mounted, served, scrubbed,\n' +
          'the base of a running backup) are skipped and reported. retention.minAge (which rm honours)\n' +
          'does not apply: the policy is the guard; try it with --dry-run or --at first.',
      ),
    )
    .action(async (images: string[], opts: Omit<ForgetCommandOptions, 'images'>, command: Command) => {
      ctx.exitCode = await runForget({ images, ...opts }, globalsOf(command), ctx.io);
    });
}

function rulesOf(options: ForgetCommandOptions): RetentionRules | undefined {
  let keepWithin;
  if (options.keepWithin !== undefined) {
    keepWithin = parseSpan(options.keepWithin);
    if (!keepWithin) {
      throw new UsageError(`Invalid --keep-within "${options.keepWithin}": use y, mo, w, d, h (7d, 36h, 1y6mo; months are mo)`);
    }
  }
  const keepTags = options.keepTag?.map((value) => value.split(',').map((t) => checkTag(t.trim())));
  const rules: RetentionRules = {
    keepLast: options.keepLast,
    keepHourly: options.keepHourly,
    keepDaily: options.keepDaily,
    keepWeekly: options.keepWeekly,
    keepMonthly: options.keepMonthly,
    keepYearly: options.keepYearly,
    keepWithin,
    keepTags,
  };
  return Object.values(rules).some((v) => v !== undefined) ? rules : undefined;
}

/**
 * Applies retention rules and reports every decision.
 * @returns the exit status
 */
export async function runForget(options: ForgetCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const rules = rulesOf(options);
  const at = options.at === undefined ? undefined : parseWhen(options.at, Date.now(), '--at');
  return withStore(globals, io, async (store) => {
    const progress = options.prune ? await progressView(io, globals, 'cleanup') : undefined;
    let result: ForgetResult;
    try {
      result = await forget(store, { images: options.images, rules, dryRun: options.dryRun, at, prune: options.prune, progress, signal: io.signal });
    } finally {
      progress?.stop();
    }
    if (globals.json) {
      printJson(io, {
        ...result,
        at: formatLocalIso(result.at),
        versions: result.versions.map((v) => ({ ...v, date: formatLocalIso(v.createdAt), expires: v.expiresAt === null ? null : formatLocalIso(v.expiresAt) })),
      });
      return 0;
    }
    report(result, io);
    return 0;
  });
}

function report(result: ForgetResult, io: CliIo): void {
  if (result.dryRun) {
    for (const image of result.images) {
      if (image.policy === null) {
        io.stdout(`${image.image}: no retention policy matches; its versions are kept\n\n`);
        continue;
      }
      io.stdout(`${image.image}: ${image.policy} (${image.from ?? ''})\n`);
      const rows = result.versions.filter((v) => v.image === image.image);
      io.stdout(
        renderTable(
          ['DATE', 'UID', 'KIND', 'STATUS', 'ACTION', 'REASONS'],
          rows.map((v) => [formatDate(v.createdAt), v.uid, v.kind, v.status, v.action, v.reasons.join('; ')]),
        ),
      );
      io.stdout('\n');
    }
  } else {
    for (const v of result.versions) {
      if (v.action === 'remove') io.stderr(`Removed ${v.uid} (${v.image}, ${formatDate(v.createdAt)}): ${v.reasons.join('; ')}\n`);
      if (v.action === 'skip') io.stderr(`Skipped ${v.uid} (${v.image}, ${formatDate(v.createdAt)}): ${v.reasons.join('; ')}\n`);
    }
  }
  const images = new Set(result.versions.map((v) => v.image)).size;
  const unmatched = result.images.filter((i) => i.policy === null).length;
  io.stderr(
    `${result.dryRun ? 'Would remove' : 'Removed'} ${result.removed} version(s) of ${images} image(s), kept ${result.kept}` +
      `${result.skipped ? `, skipped ${result.skipped} in use` : ''}` +
      `${unmatched ? `; ${unmatched} image(s) without a policy left alone` : ''}` +
      `${result.dryRun && Math.abs(result.at - Date.now()) > 60_000 ? ` (as if run at ${formatDate(result.at)})` : ''}\n`,
  );
  if (result.cleanup) io.stderr(`${cleanupSummary(result.cleanup)}\n`);
}
