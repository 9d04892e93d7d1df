import type { Command } from 'commander';
import { dueImages } from '../../engine/operations/monitor.js';
import { formatLocalIso } from '../../engine/support/calendar.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 due` into the program. */
export function registerDue(program: Command, ctx: CommandContext): void {
  program
    .command('due')
    .description('list the images whose next backup is due now (per the schedules of the config)')
    .argument('[image...]', 'only these images (names or shell patterns)')
    .option('--json', 'print the due images with their source, newest valid backup and whether a backup runs')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 due',
          'for image in $(backy2 due); do backy2 backup "rbd:rbd/$image" "$image" --snapshot auto; done',
          "backy2 due --json | jq -r '.[] | select(.running | not) | \"\\(.source) \\(.image)\"'",
        ],
        'A schedule (config key "schedules") gives images an interval: a backup is due once the newest\n' +
          'valid backup is older than the interval minus its tolerance (default a tenth of it), or when\n' +
          'there is none; an image a schedule names without wildcards is due before its first backup.\n' +
          'Prints one image per line on stdout; images whose backup is running now are left out (said\n' +
          'on stderr). Exit status 0 whether or not anything is due.',
      ),
    )
    .action(async (images: string[], _opts: unknown, command: Command) => {
      ctx.exitCode = await runDue({ images }, globalsOf(command), ctx.io);
    });
}

/**
 * Lists the images whose backup is due.
 * @returns the exit status
 */
export async function runDue(options: { images: readonly string[] }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const due = await dueImages(store, { images: options.images });
    if (globals.json) {
      printJson(
        io,
        due.map((d) => ({
          ...d,
          dueSince: formatLocalIso(d.dueSince),
          newestValid: d.newestValid && { uid: d.newestValid.uid, date: formatLocalIso(d.newestValid.createdAt), ageSeconds: Math.round(d.newestValid.ageMs / 1000) },
        })),
      );
      return 0;
    }
    for (const d of due) {
      if (d.running) io.stderr(`${d.image}: due, but a backup of it is running now\n`);
      else io.stdout(`${d.image}\n`);
    }
    return 0;
  });
}
