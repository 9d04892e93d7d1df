import { describe, expect, it } from 'vitest';
import { validateRequest, type RequestLimits } from '../../../src/nbd/validate-request.js';

// Numbers as in proto.md, independent of src/nbd/protocol.ts.
const READ = 0, WRITE = 1, FLUSH = 3, TRIM = 4, CACHE = 5, WRITE_ZEROES = 6, BLOCK_STATUS = 7;
const FUA = 1, NO_HOLE = 2, DF = 4, REQ_ONE = 8, FAST_ZERO = 16;
const EPERM = 1, EINVAL = 22, ENOSPC = 28;
// HAS_FLAGS FLUSH FUA TRIM WRITE_ZEROES DF MULTI_CONN FAST_ZERO
const ALL = 1 | 4 | 8 | 32 | 64 | 128 | 256 | 2048;
const READ_ONLY = 1 | 2 | 128 | 256;
const SIZE = 1 << 20;

const writable: RequestLimits = { size: SIZE, readOnly: false, flags: ALL, blockStatus: true, maxRequest: 65536 };
const readOnly: RequestLimits = { ...writable, readOnly: true, flags: READ_ONLY };
const simple: RequestLimits = { ...writable, flags: ALL & ~128, blockStatus: false };

describe('validateRequest()', () => {
  it.each<[string, number, number, number, number, RequestLimits, number | undefined]>([
    // name, type, flags, offset, length, limits, errno (undefined: valid)
    ['READ inside the export', READ, 0, 0, 4096, writable, undefined],
    ['READ up to the last byte', READ, 0, SIZE - 512, 512, writable, undefined],
    ['READ past the end', READ, 0, SIZE - 512, 1024, writable, EINVAL],
    ['READ at an offset past 2^53', READ, 0, Number.MAX_SAFE_INTEGER, 512, writable, EINVAL],
    ['READ longer than the maximum', READ, 0, 0, 65537, writable, EINVAL],
    ['READ with DF and structured replies', READ, DF, 0, 512, writable, undefined],
    ['READ with DF without structured replies', READ, DF, 0, 512, simple, EINVAL],
    ['READ with FUA (valid on every command once advertised)', READ, FUA, 0, 512, writable, undefined],
    ['READ with NO_HOLE', READ, NO_HOLE, 0, 512, writable, EINVAL],
    ['READ with an unknown flag', READ, 1 << 9, 0, 512, writable, EINVAL],
    ['READ on a read-only export', READ, 0, 0, 512, readOnly, undefined],
    ['WRITE inside the export', WRITE, FUA, 0, 4096, writable, undefined],
    ['WRITE past the end', WRITE, 0, SIZE, 512, writable, ENOSPC],
    ['WRITE with DF', WRITE, DF, 0, 512, writable, EINVAL],
    ['WRITE on a read-only export', WRITE, 0, 0, 512, readOnly, EPERM],
    ['WRITE past the end of a read-only export', WRITE, 0, SIZE, 512, readOnly, EPERM],
    ['WRITE with FUA on a read-only export', WRITE, FUA, 0, 512, readOnly, EPERM],
    ['FLUSH', FLUSH, 0, 0, 0, writable, undefined],
    ['FLUSH with a nonzero range (tolerated)', FLUSH, 0, 4096, 4096, writable, undefined],
    ['FLUSH on a read-only export', FLUSH, 0, 0, 0, readOnly, EPERM],
    ['TRIM', TRIM, FUA, 0, SIZE, writable, undefined],
    ['TRIM longer than the maximum block size (no payload)', TRIM, 0, 0, SIZE, writable, undefined],
    ['TRIM past the end', TRIM, 0, 4096, SIZE, writable, EINVAL],
    ['TRIM with REQ_ONE', TRIM, REQ_ONE, 0, 512, writable, EINVAL],
    ['TRIM on a read-only export', TRIM, 0, 0, 512, readOnly, EPERM],
    ['WRITE_ZEROES with NO_HOLE and FAST_ZERO', WRITE_ZEROES, NO_HOLE | FAST_ZERO | FUA, 0, SIZE, writable, undefined],
    ['WRITE_ZEROES past the end', WRITE_ZEROES, 0, 512, SIZE, writable, ENOSPC],
    ['WRITE_ZEROES with DF', WRITE_ZEROES, DF, 0, 512, writable, EINVAL],
    ['WRITE_ZEROES on a read-only export', WRITE_ZEROES, 0, 0, 512, readOnly, EPERM],
    ['BLOCK_STATUS with REQ_ONE', BLOCK_STATUS, REQ_ONE, 0, SIZE, writable, undefined],
    ['BLOCK_STATUS longer than the maximum block size (no payload)', BLOCK_STATUS, 0, 0, SIZE, writable, undefined],
    ['BLOCK_STATUS of 0 bytes', BLOCK_STATUS, 0, 0, 0, writable, EINVAL],
    ['BLOCK_STATUS past the end', BLOCK_STATUS, 0, 512, SIZE, writable, EINVAL],
    ['BLOCK_STATUS without a meta context', BLOCK_STATUS, 0, 0, 512, simple, EINVAL],
    ['BLOCK_STATUS with FAST_ZERO', BLOCK_STATUS, FAST_ZERO, 0, 512, writable, EINVAL],
    ['BLOCK_STATUS on a read-only export', BLOCK_STATUS, 0, 0, 512, readOnly, undefined],
    ['CACHE (not served)', CACHE, 0, 0, 512, writable, EINVAL],
    ['an unknown command', 99, 0, 0, 0, writable, EINVAL],
  ])('%s', (_name, type, flags, offset, length, limits, errno) => {
    const refusal = validateRequest({ type, flags, offset, length }, limits);
    expect(refusal?.errno).toBe(errno);
    if (refusal) expect(refusal.message).toMatch(/^[A-Za-z_]/);
  });

  it('refuses FUA, DF and FAST_ZERO when they were not advertised', () => {
    const bare: RequestLimits = { ...writable, flags: 1 | 4 | 64 };
    expect(validateRequest({ type: WRITE, flags: FUA, offset: 0, length: 512 }, bare)?.message).toBe('FUA was not offered for this export');
    expect(validateRequest({ type: READ, flags: DF, offset: 0, length: 512 }, bare)?.errno).toBe(EINVAL);
    expect(validateRequest({ type: WRITE_ZEROES, flags: FAST_ZERO, offset: 0, length: 512 }, bare)?.errno).toBe(EINVAL);
    expect(validateRequest({ type: TRIM, flags: 0, offset: 0, length: 512 }, bare)).toEqual({ errno: EINVAL, message: 'TRIM was not offered for this export' });
  });
});
