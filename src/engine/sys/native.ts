import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';

/** System calls from the project's own native helper (native/backy2_native.c). */
interface NativeHelpers {
  fadvise(fd: number, offset: number, length: number, advice: number): void;
  fadviseAsync(fd: number, offset: number, length: number, advice: number): Promise<void>;
  seek(fd: number, offset: number, whence: number): number;
  zeroRange(fd: number, offset: number, length: number): void;
  resident(fd: number, offset: number, length: number): boolean;
  /**
   * AES-256-GCM from input to output (same length; the same memory or apart, never partly
   * overlapping) without allocating. Encrypting fills tag; decrypting checks it.
   * @returns false when decryption does not authenticate (output is then zeroed)
   */
  aesGcm(encrypt: boolean, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array, tag: Uint8Array): boolean;
  /** zlib's CRC-32 of data, continuing from value; folded with PCLMULQDQ when crc32Folds. */
  crc32(data: Uint8Array, value?: number): number;
  /** Whether this CPU folds; otherwise the helper's crc32 goes byte by byte. */
  readonly crc32Folds: boolean;
}

const POSIX_FADV_RANDOM = 1;
const POSIX_FADV_DONTNEED = 4;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/**
 * Loads the helper once, when this module is first imported (each worker thread loads its own).
 * `BACKY2_NATIVE=0` leaves it unloaded, as if it were not built, so that tests can run the
 * fallbacks (node:crypto's AES-256-GCM, no page-cache advice, holes read as data, zeros
 * written rather than ranges zeroed).
 */
function load(): NativeHelpers | undefined {
  if (process.env.BACKY2_NATIVE === '0') return undefined;
  try {
    return createRequire(import.meta.url)('../../../build/Release/backy2_native.node') as NativeHelpers;
  } catch {
    return undefined;
  }
}

/** The helper, or undefined when it was not built (then every function here degrades safely). */
export const native: NativeHelpers | undefined = load();

/**
 * CRC-32 as zlib computes it (`crc32(data, value)` continues from the CRC of what came before):
 * the helper's where the CPU folds with PCLMULQDQ (17.6 against 7.5 GB/s for 4 MiB here),
 * zlib's otherwise. Every read of a block from a store made since the `checksum` setting checks
 * one.
 */
export const crc32: (data: Uint8Array, value?: number) => number = native?.crc32Folds ? native.crc32 : zlibCrc32;

/**
 * Drops a file range from the page cache (clean pages only; length 0 means to the end), so
 * backups do not evict what the machine's real work keeps cached. Runs in the libuv thread pool;
 * best effort. Await it before closing the file descriptor.
 */
export async function dropCache(fd: number, offset: number, length: number): Promise<void> {
  try {
    await native?.fadviseAsync(fd, offset, length, POSIX_FADV_DONTNEED);
  } catch {
    // advice only
  }
}

/**
 * Turns the kernel's readahead off for one open file: a read brings into the page cache only
 * what it asked for. A reader that drops what it read needs this, or the readahead of one block
 * makes the next one look cached before. Best effort.
 */
export async function noReadahead(fd: number): Promise<void> {
  try {
    await native?.fadviseAsync(fd, 0, 0, POSIX_FADV_RANDOM);
  } catch {
    // advice only
  }
}

/** Whether every page of the range is cached now; false when unknown. */
export function isCached(fd: number, offset: number, length: number): boolean {
  try {
    return native?.resident(fd, offset, length) ?? false;
  } catch {
    return false;
  }
}

/**
 * The data extents of a file from `offset` on, by SEEK_DATA/SEEK_HOLE.
 * @returns the next [start, end) of data at or after `offset`, or undefined when only holes
 *   follow; [offset, size) when the file system cannot tell (everything counts as data)
 */
export function nextData(fd: number, offset: number, size: number): [number, number] | undefined {
  if (!native) return offset < size ? [offset, size] : undefined;
  try {
    const start = native.seek(fd, offset, SEEK_DATA);
    if (start < 0 || start >= size) return undefined;
    const end = native.seek(fd, start, SEEK_HOLE);
    return [start, end < 0 ? size : Math.min(end, size)];
  } catch {
    return offset < size ? [offset, size] : undefined;
  }
}

/**
 * Makes a range of a file or block device read as zeros without writing them (punched hole,
 * BLKZEROOUT).
 * @returns false when not possible here; the caller then writes zeros
 */
export function zeroRange(fd: number, offset: number, length: number): boolean {
  if (!native) return false;
  try {
    native.zeroRange(fd, offset, length);
    return true;
  } catch {
    return false;
  }
}
