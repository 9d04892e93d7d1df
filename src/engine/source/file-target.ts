import { constants as fsc, promises as fsp } from 'node:fs';
import { ConflictError, IoError, UsageError, errnoCode } from '../errors.js';
import { blockDeviceSize } from './file-source.js';

/** Where a restore writes. */
export interface RestoreTarget {
  readonly location: string;
  /** True when every byte of the target reads as zero before the restore writes. */
  readonly zeroed: boolean;
  /**
   * Writes `data` at `offset`.
   * @throws {IoError} when the target cannot be written
   */
  write(offset: number, data: Uint8Array): Promise<void>;
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
    const handle = await open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL);
    await truncate(handle, file, options.size);
    return new FileTarget(file, handle, true, true);
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new UsageError(`Target "${file}" is neither a regular file nor a block device`);
  if (!options.force) {
    throw new ConflictError(`Target "${file}" exists`, { hint: 'use --force to overwrite it' });
  }
  const existing = st.isFile() ? st.size : await blockDeviceSize(st.rdev, `"${file}"`);
  if (existing < options.size) {
    throw new ConflictError(`Target "${file}" is too small: ${existing} bytes, the version has ${options.size}`);
  }
  if (st.isBlockDevice()) {
    // O_EXCL on a block device fails while it is mounted or otherwise claimed.
    const handle = await open(file, fsc.O_WRONLY | fsc.O_EXCL);
    return new FileTarget(file, handle, false, false);
  }
  const handle = await open(file, fsc.O_WRONLY);
  if (options.sparse) await truncate(handle, file, 0);
  await truncate(handle, file, options.size);
  return new FileTarget(file, handle, options.sparse === true, false);
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
    throw new IoError(`Cannot resize target "${file}" to ${size} bytes: ${errnoCode(err) ?? String(err)}`, { cause: err });
  }
}

class FileTarget implements RestoreTarget {
  readonly location: string;
  readonly zeroed: boolean;
  readonly #handle: fsp.FileHandle;
  readonly #created: boolean;

  constructor(file: string, handle: fsp.FileHandle, zeroed: boolean, created: boolean) {
    this.location = file;
    this.#handle = handle;
    this.zeroed = zeroed;
    this.#created = created;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.#handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      const code = errnoCode(err);
      const why = code === 'ENOSPC' ? 'no space left on device' : (code ?? String(err));
      throw new IoError(`Cannot write target "${this.location}" at offset ${offset + done}: ${why}`, { cause: err });
    }
  }

  async finish(): Promise<void> {
    try {
      await this.#handle.sync();
    } catch (err) {
      throw new IoError(`Cannot flush target "${this.location}": ${errnoCode(err) ?? String(err)}`, { cause: err });
    } finally {
      await this.#handle.close().catch(() => undefined);
    }
  }

  async abort(): Promise<void> {
    await this.#handle.close().catch(() => undefined);
    if (this.#created) await fsp.unlink(this.location).catch(() => undefined);
  }
}
