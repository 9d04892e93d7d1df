import { describe, expect, it } from 'vitest';
import {
  CorruptBlockError,
  InterruptedError,
  IoError,
  LockedError,
  ObjectMissingError,
  StoreFullError,
  StoreUnavailableError,
  UsageError,
} from '../../../src/engine/errors.js';
import { NbdError } from '../../../src/nbd/backend.js';
import { nbdErrno } from '../../../src/nbd/nbd-errno.js';

// Numbers as in proto.md.
const EPERM = 1, EIO = 5, ENOMEM = 12, EINVAL = 22, ENOSPC = 28, ENOTSUP = 95, ESHUTDOWN = 108;

function systemError(code: string): Error {
  return Object.assign(new Error(`${code}: failed`), { code });
}

describe('nbdErrno()', () => {
  it.each<[string, unknown, number]>([
    ['an NbdError keeps its number', new NbdError(ENOTSUP, 'not fast'), ENOTSUP],
    ['a full store is ENOSPC', new StoreFullError('Cannot write object: no space left on device'), ENOSPC],
    ['a full store from a worker (a plain object) is ENOSPC', { code: 'E_NO_SPACE', message: 'full' }, ENOSPC],
    ['a corrupt block is EIO', new CorruptBlockError('Block "ab12" does not match its digest'), EIO],
    ['a missing object is EIO', new ObjectMissingError('Object "ab12" is missing'), EIO],
    ['an unavailable store is EIO', new StoreUnavailableError('Cannot read the store'), EIO],
    ['a request the engine refuses is EINVAL', new UsageError('Write past the end'), EINVAL],
    ['an interruption is ESHUTDOWN', new InterruptedError('Operation interrupted'), ESHUTDOWN],
    ['a spill-file write out of space is ENOSPC', new IoError('Cannot write the spill file: ENOSPC', { cause: systemError('ENOSPC') }), ENOSPC],
    ['a spill-file write over quota is ENOSPC', new IoError('Cannot write the spill file', { cause: systemError('EDQUOT') }), ENOSPC],
    ['a file too large is ENOSPC', systemError('EFBIG'), ENOSPC],
    ['a read-only file system is EPERM', systemError('EROFS'), EPERM],
    ['out of memory is ENOMEM', systemError('ENOMEM'), ENOMEM],
    ['another spill-file failure is EIO', new IoError('Cannot write the spill file', { cause: systemError('EBADF') }), EIO],
    ['a lock conflict is EIO', new LockedError('Version is locked'), EIO],
    ['an unknown Error is EIO', new Error('boom'), EIO],
    ['a code named like an Object property is EIO', { code: 'constructor' }, EIO],
    ['a thrown string is EIO', 'boom', EIO],
    ['undefined is EIO', undefined, EIO],
  ])('%s', (_name, err, errno) => {
    expect(nbdErrno(err)).toBe(errno);
  });

  it('follows a cause chain only so far (no endless loop on a cycle)', () => {
    const a: { code: string; cause?: unknown } = { code: 'E_IO' };
    a.cause = a;
    expect(nbdErrno(a)).toBe(EIO);
  });
});
