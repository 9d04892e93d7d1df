import { ExitCode, isBackyError } from '../engine/errors.js';
import type { CliIo } from './io.js';

/** An error as the CLI reports it: one line, a code, a hint, an exit status. */
export interface ReportedError {
  readonly code: string;
  readonly message: string;
  readonly hint: string | undefined;
  readonly exitCode: number;
}

/**
 * What an error means for the user: a BackyError keeps its code, message, hint and exit status;
 * anything else is an internal error (exit status 1).
 * @param debug print stack traces (and causes) on stderr
 */
export function describeError(err: unknown, io: CliIo, debug: boolean): ReportedError {
  if (isBackyError(err)) {
    if (debug && err.cause !== undefined) io.stderr(`${String((err.cause as Error).stack ?? err.cause)}\n`);
    return { code: err.code, message: err.message, hint: err.hint, exitCode: err.exitCode };
  }
  const message = err instanceof Error ? err.message : String(err);
  if (debug && err instanceof Error) io.stderr(`${err.stack ?? ''}\n`);
  return { code: 'E_INTERNAL', message: `internal error: ${message}`, hint: debug ? undefined : 'rerun with --debug for details', exitCode: ExitCode.internal };
}

/**
 * Prints an error in one line on stderr (and as a JSON object on stdout with --json).
 * @returns its exit status
 */
export function emitError(io: CliIo, json: boolean, e: ReportedError): number {
  if (json) io.stdout(`${JSON.stringify({ type: 'error', code: e.code, message: e.message, exitCode: e.exitCode, ...(e.hint ? { hint: e.hint } : {}) })}\n`);
  io.stderr(`backy2: ${e.message}${e.hint ? ` (${e.hint})` : ''}\n`);
  return e.exitCode;
}
