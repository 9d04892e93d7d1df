import { CommanderError } from 'commander';
import { ExitCode, isBackyError } from '../engine/errors.js';
import type { CommandContext } from './command-context.js';
import type { CliIo } from './io.js';
import { buildProgram } from './program.js';

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
  try {
    await buildProgram(ctx).parseAsync([...argv], { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    return reportError(err, io, json, debug);
  }
}

function reportError(err: unknown, io: CliIo, json: boolean, debug: boolean): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    const message = err.message.replace(/^error: /, '');
    return emit(io, json, 'E_USAGE', `Invalid command line: ${message}`, ExitCode.usage, 'see backy2 --help');
  }
  if (isBackyError(err)) {
    if (debug && err.cause !== undefined) io.stderr(`${String((err.cause as Error).stack ?? err.cause)}\n`);
    return emit(io, json, err.code, err.message, err.exitCode, err.hint);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (debug && err instanceof Error) io.stderr(`${err.stack ?? ''}\n`);
  return emit(io, json, 'E_INTERNAL', `internal error: ${message}`, ExitCode.internal, debug ? undefined : 'rerun with --debug for details');
}

function emit(io: CliIo, json: boolean, code: string, message: string, exitCode: number, hint: string | undefined): number {
  if (json) io.stdout(`${JSON.stringify({ type: 'error', code, message, exitCode, ...(hint ? { hint } : {}) })}\n`);
  io.stderr(`backy2: ${message}${hint ? ` (${hint})` : ''}\n`);
  return exitCode;
}
