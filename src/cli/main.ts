import { CommanderError } from 'commander';
import { ExitCode } from '../engine/errors.js';
import type { CommandContext } from './command-context.js';
import type { CliIo } from './io.js';
import { writeMetricsAfter } from './metrics-file.js';
import { buildProgram } from './program.js';
import { describeError, emitError } from './report-error.js';

/**
 * Runs the backy2 command line and returns the exit status; never exits the process itself.
 * Expected errors print one line on stderr (or a JSON object with --json); anything else is an
 * internal error, with its stack only under --debug.
 * @param argv arguments after the program name
 * @example
 * process.exitCode = await main(process.argv.slice(2), processIo());
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const ctx: CommandContext = { io, exitCode: 0 };
  const json = argv.includes('--json');
  const debug = argv.includes('--debug');
  let code: number;
  let failedWith: string | undefined;
  try {
    await buildProgram(ctx).parseAsync([...argv], { from: 'user' });
    code = ctx.exitCode;
  } catch (err) {
    code = reportError(err, io, json, debug);
    failedWith = describeError(err, { ...io, stderr: () => undefined }, false).code;
  }
  // The metrics file follows every command that ran (not --help or --version).
  if (ctx.ran) await writeMetricsAfter(ctx.ran, io, failedWith);
  return code;
}

function reportError(err: unknown, io: CliIo, json: boolean, debug: boolean): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    const message = err.message.replace(/^error: /, '');
    return emitError(io, json, { code: 'E_USAGE', message: `Invalid command line: ${message}`, exitCode: ExitCode.usage, hint: 'see backy2 --help' });
  }
  return emitError(io, json, describeError(err, io, debug));
}
