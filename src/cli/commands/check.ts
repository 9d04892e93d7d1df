import type { Command } from 'commander';
import { checkImages, type CheckResult } from '../../engine/operations/monitor.js';
import { formatLocalIso } from '../../engine/support/calendar.js';
import { formatDuration } from '../../engine/support/units.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { describeError, emitError } from '../report-error.js';
import { formatDate, renderTable } from '../ui/table.js';

/** Exit statuses of `backy2 check`: the Nagios plugin convention, not the table of the other commands. */
export const CheckExit = { ok: 0, warning: 1, critical: 2, unknown: 3 } as const;

const WORDS = ['OK', 'WARNING', 'CRITICAL'] as const;

/** Wires `backy2 check` into the program. */
export function registerCheck(program: Command, ctx: CommandContext): void {
  program
    .command('check')
    .description('check that every image has a fresh valid backup (schedules and SLA of the config) and what scrubs found; Nagios exit status')
    .argument('[image...]', 'only these images (names or shell patterns)')
    .option('--json', 'print the result per image as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 check', 'backy2 check "vm-*" --json', 'backy2 check vm1      # as a Nagios/Icinga command, one service per image'],
        'Per image, the newest valid backup is "ok" (younger than the schedule\'s interval plus its\n' +
          'tolerance), "late" (older), or "breached" (older than the SLA, or no valid backup at all; an\n' +
          'image a schedule names without wildcards is expected even before its first backup). Invalid\n' +
          'versions (a scrub found bad blocks) and bad blocks not healed yet are warnings. The first\n' +
          'line is the Nagios summary with performance data; then one line per image.\n' +
          'Exit status (the Nagios plugin convention, unlike the other commands): 0 OK, 1 WARNING\n' +
          '(late, invalid versions, bad blocks), 2 CRITICAL (breached), 3 UNKNOWN (the check itself\n' +
          'failed: no store, bad config, store unavailable; the usual message says why). A mistyped\n' +
          'command line is exit status 2 as for every command.',
      ),
    )
    .action(async (images: string[], _opts: unknown, command: Command) => {
      ctx.exitCode = await runCheck({ images }, globalsOf(command), ctx.io);
    });
}

/**
 * Checks freshness and integrity; any failure of the check itself is UNKNOWN (3).
 * @returns 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
 */
export async function runCheck(options: { images: readonly string[] }, globals: Globals, io: CliIo): Promise<number> {
  let result: CheckResult;
  try {
    result = await withCatalog(globals, io, (store) => checkImages(store, { images: options.images }));
  } catch (err) {
    const e = describeError(err, io, globals.debug);
    emitError(io, globals.json, { ...e, message: `UNKNOWN: ${e.message}`, exitCode: CheckExit.unknown });
    return CheckExit.unknown;
  }
  if (globals.json) {
    printJson(io, {
      status: WORDS[result.level].toLowerCase(),
      ...result,
      images: result.images.map((h) => ({
        ...h,
        newestValid: h.newestValid && { uid: h.newestValid.uid, date: formatLocalIso(h.newestValid.createdAt), ageSeconds: Math.round(h.newestValid.ageMs / 1000) },
        dueAt: h.dueAt === null ? null : formatLocalIso(h.dueAt),
      })),
    });
    return result.level;
  }
  const { ok, late, breached } = result.counts;
  const worst = [...result.images.filter((h) => h.level > 0).map((h) => `${h.image} ${h.freshness}`), ...result.storeProblems.map(() => 'bad blocks')].slice(0, 3);
  io.stdout(
    `BACKY2 ${WORDS[result.level]}: ${result.images.length} image(s), ${breached} breached, ${late} late, ${ok} ok` +
      `${worst.length ? ` (${worst.join(', ')}${result.images.filter((h) => h.level > 0).length > 3 ? ', …' : ''})` : ''}` +
      ` | breached=${breached} late=${late} ok=${ok} invalid_blocks=${result.invalidBlocks}\n`,
  );
  if (result.images.length > 0) {
    const order = [...result.images].sort((a, b) => b.level - a.level || (a.image < b.image ? -1 : 1));
    io.stdout(
      renderTable(
        ['IMAGE', 'STATUS', 'NEWEST VALID BACKUP', 'AGE', 'PROBLEMS'],
        order.map((h) => [
          h.image,
          h.freshness,
          h.newestValid ? `${h.newestValid.uid} ${formatDate(h.newestValid.createdAt)}` : 'none',
          h.newestValid ? formatDuration(h.newestValid.ageMs) : '',
          h.problems.join('; '),
        ]),
      ),
    );
  }
  for (const p of result.storeProblems) io.stdout(`store: ${p}\n`);
  return result.level;
}
