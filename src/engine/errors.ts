/**
 * The one error hierarchy of backy2.
 *
 * Every expected failure is a {@link BackyError} with a stable string `code` and the process exit
 * status the CLI uses for it. Callers test with {@link isBackyError} (or {@link isBadBlock}) and
 * then match on `code`, never on a subclass: the subclasses only exist to build errors.
 *
 * Exit status table (documented in the README and in `backy2 --help`; never renumber):
 *
 * | status | meaning |
 * | --- | --- |
 * | 0 | success |
 * | 1 | internal error (a bug) |
 * | 2 | usage: bad arguments, malformed input file, bad configuration |
 * | 3 | finished with problems (bad blocks found or restored, metadata repaired or lost) |
 * | 4 | not found: unknown version, image or source; no store at the path |
 * | 5 | conflict: target exists or is too small, version protected or too young, hints wrong |
 * | 6 | key: wrong or missing passphrase or key file for an encrypted store |
 * | 10 | store unavailable: cannot open, read or write the store (includes disk full) |
 * | 11 | locked: another operation holds the image or version |
 * | 12 | I/O error on the source or the restore target |
 * | 130 | interrupted (SIGINT, SIGTERM, SIGHUP, SIGQUIT) |
 *
 * One command maps its outcome differently: `backy2 check` is a monitoring plugin and follows
 * the Nagios convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); any error of the check itself,
 * whatever its code here, makes it exit 3 (src/cli/commands/check.ts).
 */

/** Exit statuses, the contract with scripts. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  problems: 3,
  notFound: 4,
  conflict: 5,
  key: 6,
  storeUnavailable: 10,
  locked: 11,
  io: 12,
  interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Options accepted by every BackyError constructor. */
export interface BackyErrorOptions {
  /** The underlying error, kept for `--debug` output. */
  cause?: unknown;
  /** A one-line remedy shown after the message, e.g. "run `backy2 ls` to see versions". */
  hint?: string;
}

/** Base class of all expected errors. */
export class BackyError extends Error {
  /** Stable identifier such as `E_LOCKED`, safe to match on. */
  readonly code: string;
  /** Process exit status for this error. */
  readonly exitCode: ExitCodeValue;
  /** Optional remedy. */
  readonly hint: string | undefined;

  constructor(code: string, exitCode: ExitCodeValue, message: string, options: BackyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

function defineError(name: string, code: string, exitCode: ExitCodeValue) {
  const cls = class extends BackyError {
    constructor(message: string, options: BackyErrorOptions = {}) {
      super(code, exitCode, message, options);
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

/** Bad arguments, malformed input files or configuration. */
export const UsageError = defineError('UsageError', 'E_USAGE', ExitCode.usage);
export type UsageError = InstanceType<typeof UsageError>;
/** Unknown version, image or missing source. */
export const NotFoundError = defineError('NotFoundError', 'E_NOT_FOUND', ExitCode.notFound);
export type NotFoundError = InstanceType<typeof NotFoundError>;
/** The request conflicts with the state: existing target, protected version, wrong hints. */
export const ConflictError = defineError('ConflictError', 'E_CONFLICT', ExitCode.conflict);
export type ConflictError = InstanceType<typeof ConflictError>;
/** The passphrase or key file does not open an encrypted store (or is missing, or not private). */
export const KeyError = defineError('KeyError', 'E_KEY', ExitCode.key);
export type KeyError = InstanceType<typeof KeyError>;
/** Another operation holds a lock we need. */
export const LockedError = defineError('LockedError', 'E_LOCKED', ExitCode.locked);
export type LockedError = InstanceType<typeof LockedError>;
/** The block store or catalog cannot be opened, read or written. */
export const StoreUnavailableError = defineError('StoreUnavailableError', 'E_STORE', ExitCode.storeUnavailable);
export type StoreUnavailableError = InstanceType<typeof StoreUnavailableError>;
/** The store ran out of space. */
export const StoreFullError = defineError('StoreFullError', 'E_NO_SPACE', ExitCode.storeUnavailable);
export type StoreFullError = InstanceType<typeof StoreFullError>;
/** A stored object is missing, truncated or does not match its digest. */
export const CorruptBlockError = defineError('CorruptBlockError', 'E_CORRUPT', ExitCode.problems);
export type CorruptBlockError = InstanceType<typeof CorruptBlockError>;
/** An object the catalog refers to is not in the block store. */
export const ObjectMissingError = defineError('ObjectMissingError', 'E_OBJECT_MISSING', ExitCode.problems);
export type ObjectMissingError = InstanceType<typeof ObjectMissingError>;
/** Reading the source or writing the restore target failed. */
export const IoError = defineError('IoError', 'E_IO', ExitCode.io);
export type IoError = InstanceType<typeof IoError>;
/** The operation was cancelled by a signal. */
export const InterruptedError = defineError('InterruptedError', 'E_INTERRUPTED', ExitCode.interrupted);
export type InterruptedError = InstanceType<typeof InterruptedError>;

/** True when `err` is a BackyError (errors never cross worker threads: workers only hash). */
export function isBackyError(err: unknown): err is BackyError {
  return err instanceof BackyError;
}

/** True for a stored object that is missing or damaged (the rest of a version stays readable). */
export function isBadBlock(err: unknown): err is BackyError {
  return isBackyError(err) && (err.code === 'E_CORRUPT' || err.code === 'E_OBJECT_MISSING');
}

/** The errno code (`ENOENT`, ...) of a Node system error, if any. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return undefined;
}

/** Throws when `signal` has been aborted: its reason when that is a BackyError, else an InterruptedError. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  // A lost lock lease aborts with the reason to report; a signal (Ctrl-C) with anything else.
  if (isBackyError(signal.reason)) throw signal.reason;
  throw new InterruptedError('Operation interrupted', { cause: signal.reason });
}
