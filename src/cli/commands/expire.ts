import type { Command } from 'commander';
import { setExpiry } from '../../engine/operations/versions.js';
import { formatLocalIso } from '../../engine/support/calendar.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { parseWhen } from '../dates.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { formatDate } from '../ui/table.js';

/** Parsed arguments of `backy2 expire`. */
export interface ExpireCommandOptions {
  readonly version: string;
  /** A date, a span from now, or `never`. */
  readonly when: string;
}

/** Wires `backy2 expire` into the program. */
export function registerExpire(program: Command, ctx: CommandContext): void {
  program
    .command('expire')
    .description('set or clear the expiry date of a version (forget removes it after that date)')
    .argument('<version>', 'version: uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup)')
    .argument('<when>', 'a date (2025-01-31, 2025-01-31 18:00; local time), a span from now (30d, 6mo, 1y) or "never"')
    .option('--json', 'print the version and its expiry as JSON')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 expire v1kx3f9qm7wz 2025-01-31', 'backy2 expire vm1@latest 90d', 'backy2 expire v1kx3f9qm7wz never', 'backy2 ls --expired'],
        'A version with an expiry date lives by it: forget keeps it until then and removes it after,\n' +
          'whatever the keep rules say (protected versions and the newest valid backup of an image\n' +
          'are never removed). "never" clears the date: the rules decide again.',
      ),
    )
    .action(async (version: string, when: string, _opts: unknown, command: Command) => {
      ctx.exitCode = await runExpire({ version, when }, globalsOf(command), ctx.io);
    });
}

/**
 * Sets or clears a version's expiry date.
 * @returns the exit status
 */
export async function runExpire(options: ExpireCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const expiresAt = options.when.trim().toLowerCase() === 'never' ? null : parseWhen(options.when, Date.now(), 'expiry date');
  return withStore(globals, io, async (store) => {
    const [version] = await setExpiry(store, [options.version], expiresAt);
    if (!version) return 0;
    if (globals.json) printJson(io, { uid: version.uid, image: version.image, expiresAt: version.expiresAt, expires: version.expiresAt === null ? null : formatLocalIso(version.expiresAt) });
    else io.stderr(`${version.expiresAt === null ? `Version ${version.uid} (${version.image}) never expires` : `Version ${version.uid} (${version.image}) expires ${formatDate(version.expiresAt)}`}\n`);
    return 0;
  });
}
