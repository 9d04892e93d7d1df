import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConflictError, IoError, NotFoundError, UsageError, errnoCode } from '../errors.js';
import { isDirectAligned, reopenDirect } from '../sys/direct-io.js';
import { dropCache, zeroRange } from '../sys/native.js';
import { alignedBuffer } from '../pipeline/buffer-pool.js';
import { formatBytes } from '../support/units.js';
import { blockDeviceSize } from './file-source.js';

/** Where a restore writes. */
export interface RestoreTarget {
  readonly location: string;
  /** True when every byte of the target reads as zero before the restore writes. */
  readonly zeroed: boolean;
  /** True when the restore created the target (a failed restore removes it again). */
  readonly created: boolean;
  /**
   * Writes `data` at `offset`.
   * @throws {IoError} when the target cannot be written
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Makes a range read as zeros, without allocating it where the target allows (a hole in a
   * file, BLKZEROOUT on a block device), else by writing zeros.
   */
  zero(offset: number, length: number): Promise<void>;
  /** Makes the written data durable and closes the target. */
  finish(): Promise<void>;
  /** Closes the target after a failure; removes a file that the restore created. */
  abort(): Promise<void>;
}

/** Options of {@link openFileTarget}. */
export interface TargetOptions {
  /** Bytes the restore writes. */
  readonly size: number;
  /** Overwrite an existing target. @default false */
  readonly force?: boolean;
  /** Leave all-zero blocks unwritten (holes in a file). @default false */
  readonly sparse?: boolean;
}

/**
 * Whether a new file at `file` would land in the file system of /dev (devtmpfs): /dev/sdx,
 * /dev/mapper/vg-lv. A file system mounted below /dev (/dev/shm) holds ordinary files.
 */
async function inDeviceDirectory(file: string): Promise<boolean> {
  const resolved = path.resolve(file);
  if (!resolved.startsWith('/dev/')) return false;
  const [dir, dev] = await Promise.all([fsp.stat(path.dirname(resolved)).catch(() => undefined), fsp.stat('/dev').catch(() => undefined)]);
  return dir === undefined || dev === undefined || dir.dev === dev.dev;
}

/**
 * Opens a regular file (created when missing) or a block device as a restore target.
 * @throws {ConflictError} when the target exists and `force` is not set, or is smaller than `size`
 * @throws {UsageError} when the target is neither a file nor a block device, or cannot be opened
 */
export async function openFileTarget(file: string, options: TargetOptions): Promise<RestoreTarget> {
  const st = await fsp.stat(file).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new UsageError(`Cannot access target "${file}": ${errnoCode(err) ?? String(err)}`, { cause: err });
  });
  if (!st) {
    // A device that is not there (unplugged, a typo) must not become a file in /dev's tmpfs.
    if (await inDeviceDirectory(file)) {
      throw new NotFoundError(`Target "${file}" does not exist: no such device`, { hint: 'check the device name (lsblk lists them)' });
    }
    const handle = await open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL);
    try {
      await truncate(handle, file, options.size);
      return new FileTarget(file, handle, await reopenDirect(handle, fsc.O_WRONLY), true, true);
    } catch (err) {
      // Created here: a failure leaves nothing behind (a retry would find it "exists").
      await fsp.unlink(file).catch(() => undefined);
      throw err;
    }
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new UsageError(`Target "${file}" is neither a regular file nor a block device`);
  // A target too small is said first: --force would not help.
  const existing = st.isFile() ? st.size : await blockDeviceSize(st.rdev, `"${file}"`);
  if (existing < options.size) {
    throw new ConflictError(`Target "${file}" is too small: ${formatBytes(existing)}, the version has ${formatBytes(options.size)}`, {
      hint: st.isFile() ? 'restore to a new file' : 'use a device of at least the version\'s size',
    });
  }
  if (!options.force) {
    throw new ConflictError(`Target "${file}" exists`, { hint: 'use --force to overwrite it' });
  }
  if (st.isBlockDevice()) {
    // O_EXCL on a block device fails while it is mounted or otherwise claimed.
    const handle = await open(file, fsc.O_WRONLY | fsc.O_EXCL);
    return new FileTarget(file, handle, await reopenDirect(handle, fsc.O_WRONLY), false, false);
  }
  const handle = await open(file, fsc.O_WRONLY);
  if (options.sparse) await truncate(handle, file, 0);
  await truncate(handle, file, options.size);
  return new FileTarget(file, handle, await reopenDirect(handle, fsc.O_WRONLY), options.sparse === true, false);
}


async function open(file: string, flags: number): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(file, flags, 0o600);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') throw new ConflictError(`Target "${file}" exists`, { hint: 'use --force to overwrite it' });
    if (code === 'EBUSY') throw new ConflictError(`Target "${file}" is in use (mounted?)`, { cause: err });
    if (code === 'ENOENT') throw new UsageError(`Cannot create target "${file}": its directory does not exist`, { cause: err });
    throw new UsageError(`Cannot open target "${file}": ${code ?? String(err)}`, { cause: err });
  }
}

async function truncate(handle: fsp.FileHandle, file: string, size: number): Promise<void> {
  try {
    await handle.truncate(size);
  } catch (err) {
    await handle.close();
    const code = errnoCode(err);
    const why = code === 'EFBIG' ? 'the file system cannot hold a file that large' : code === 'ENOSPC' ? 'no space left on device' : (code ?? String(err));
    throw new IoError(`Cannot resize target "${file}" to ${formatBytes(size)}: ${why}`, { cause: err });
  }
}

class FileTarget implements RestoreTarget {
  readonly location: string;
  readonly zeroed: boolean;
  readonly created: boolean;
  readonly #handle: fsp.FileHandle;
  /**
   * A second, O_DIRECT handle for the aligned bulk of the writes: data goes to the disk while the
   * restore runs instead of piling up as dirty pages for the final fsync, and the page cache
   * stays clean. Undefined where O_DIRECT is refused; then buffered writes are used.
   */
  readonly #direct: fsp.FileHandle | undefined;

  constructor(file: string, handle: fsp.FileHandle, direct: fsp.FileHandle | undefined, zeroed: boolean, created: boolean) {
    this.location = file;
    this.#handle = handle;
    this.#direct = direct;
    this.zeroed = zeroed;
    this.created = created;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const handle = this.#direct && isDirectAligned(offset, data) ? this.#direct : this.#handle;
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      const code = errnoCode(err);
      const why = code === 'ENOSPC' ? 'no space left on device' : (code ?? String(err));
      throw new IoError(`Cannot write target "${this.location}" at offset ${offset + done}: ${why}`, { cause: err });
    }
  }

  async zero(offset: number, length: number): Promise<void> {
    if (zeroRange(this.#handle.fd, offset, length)) return;
    const zeros = alignedBuffer(Math.min(length, 4 << 20));
    for (let at = 0; at < length; at += zeros.length) await this.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)));
  }

  async finish(): Promise<void> {
    try {
      await this.#handle.sync();
      await dropCache(this.#handle.fd, 0, 0);
    } catch (err) {
      throw new IoError(`Cannot flush target "${this.location}": ${errnoCode(err) ?? String(err)}`, { cause: err });
    } finally {
      await this.#direct?.close().catch(() => undefined);
      await this.#handle.close().catch(() => undefined);
    }
  }

  async abort(): Promise<void> {
    await this.#direct?.close().catch(() => undefined);
    await this.#handle.close().catch(() => undefined);
    if (this.created) await fsp.unlink(this.location).catch(() => undefined);
  }
}
