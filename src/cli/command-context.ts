import type { Command } from 'commander';
import type { CliIo, Globals } from './io.js';

/** Shared by every command's action: the IO and the exit status it sets. */
export interface CommandContext {
  readonly io: CliIo;
  exitCode: number;
  /** The global options of the command that ran (set just before its action), if any did. */
  ran?: Globals | undefined;
}

/** The global options as seen from a subcommand. */
export function globalsOf(command: Command): Globals {
  const all = command.optsWithGlobals<{ store?: string; config?: string; json?: boolean; debug?: boolean; passwordFile?: string; keyFile?: string; metricsFile?: string }>();
  return {
    store: all.store,
    config: all.config,
    json: all.json === true,
    debug: all.debug === true,
    passwordFile: all.passwordFile,
    keyFile: all.keyFile,
    metricsFile: all.metricsFile,
  };
}

/** Splits a comma-separated option value (`-t a,b`) into trimmed, non-empty parts. */
export function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
