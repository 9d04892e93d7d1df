/**
 * The NBD error a failed request gets. Backends throw {@link NbdError} to choose one; the engine
 * throws BackyErrors, matched on their string `code` (they may cross worker threads as plain
 * objects), and Node system errors, matched on their errno code, also when wrapped as a `cause`.
 */
import { NbdError } from './backend.js';
import { Errno } from './protocol.js';

/** Engine error codes (src/engine/errors.ts) and what a client is told. */
const ENGINE_ERRNO: ReadonlyMap<string, number> = new Map(Object.entries({
  // The store or the spill file is full: the write may succeed after cleanup.
  E_NO_SPACE: Errno.NBD_ENOSPC,
  // A stored block is missing or damaged: the data cannot be read.
  E_CORRUPT: Errno.NBD_EIO,
  E_OBJECT_MISSING: Errno.NBD_EIO,
  E_STORE: Errno.NBD_EIO,
  // The engine refused the request itself (a range past the end, a closed session).
  E_USAGE: Errno.NBD_EINVAL,
  // The server is stopping.
  E_INTERRUPTED: Errno.NBD_ESHUTDOWN,
}));

/** Node errno codes; the spec asks EDQUOT and EFBIG to be reported as ENOSPC. */
const SYSTEM_ERRNO: ReadonlyMap<string, number> = new Map(Object.entries({
  ENOSPC: Errno.NBD_ENOSPC,
  EDQUOT: Errno.NBD_ENOSPC,
  EFBIG: Errno.NBD_ENOSPC,
  EROFS: Errno.NBD_EPERM,
  EPERM: Errno.NBD_EPERM,
  EACCES: Errno.NBD_EPERM,
  ENOMEM: Errno.NBD_ENOMEM,
}));

/** How deep to follow `cause` chains (an IoError wrapping a spill-file ENOSPC is one level). */
const MAX_CAUSES = 4;

/**
 * Maps a failure to an NBD error number; anything unknown is an I/O error.
 * @param err what a backend or the engine threw
 * @returns one of the `Errno` values
 */
export function nbdErrno(err: unknown): number {
  if (err instanceof NbdError) return err.errno;
  const engine = ENGINE_ERRNO.get(codeOf(err) ?? '');
  if (engine !== undefined) return engine;
  let e: unknown = err;
  for (let depth = 0; depth <= MAX_CAUSES && e !== undefined; depth++) {
    const system = SYSTEM_ERRNO.get(codeOf(e) ?? '');
    if (system !== undefined) return system;
    e = typeof e === 'object' && e !== null && 'cause' in e ? e.cause : undefined;
  }
  return Errno.NBD_EIO;
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
