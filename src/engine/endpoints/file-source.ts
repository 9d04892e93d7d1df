import { constants as fsc, promises as fsp } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { NotFoundError, IoError, UsageError, errnoCode } from '../errors.js';
import { debug } from '../support/debug.js';
import { isDirectAligned, reopenDirect } from '../sys/direct-io.js';
import { dropCache, isCached, nextData, noReadahead } from '../sys/native.js';
import type { BlockSource } from './endpoints.js';

/**
 * Size of a block device in bytes, from sysfs (Node has no BLKGETSIZE64).
 * @param rdev the device number from stat
 */
export async function blockDeviceSize(rdev: number, what: string): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 2 ** 20) & 0xfff) << 8);
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    return sectors * 512;
  } catch (err) {
    throw new UsageError(`Cannot determine the size of block device ${what}`, { cause: err });
  }
}

/**
 * A regular file or block device as a backup source.
 * @param file path of the image or device
 * @throws {NotFoundError} when it does not exist
 * @throws {UsageError} when it is neither a regular file nor a block device
 */
export async function openFileSource(file: string): Promise<BlockSource> {
  // Before opening: opening a FIFO blocks until a writer comes (signals would wait too).
  const kind = await fsp.stat(file).then(
    (st) => (st.isFile() || st.isBlockDevice() ? undefined : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() ? 'a character device' : st.isDirectory() ? 'a directory' : 'not a file'),
    () => undefined, // the open below says why
  );
  if (kind) throw new UsageError(`Source "${file}" is ${kind}: backy2 reads a regular file or block device by offset`, { hint: 'save a stream to a file first' });
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fsc.O_RDONLY);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') throw new NotFoundError(`Source "${file}" does not exist`, { cause: err });
    if (code === 'EACCES' || code === 'EPERM') throw new UsageError(`Cannot read source "${file}": permission denied`, { cause: err });
    throw new UsageError(`Cannot open source "${file}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    const st = await handle.stat();
    let size: number;
    if (st.isFile()) size = st.size;
    else if (st.isBlockDevice()) size = await blockDeviceSize(st.rdev, `"${file}"`);
    else throw new UsageError(`Source "${file}" is neither a regular file nor a block device`);
    // Buffered reads of what was not cached are dropped again: without readahead, they bring in only that.
    await noReadahead(handle.fd);
    // Holes are only worth looking for in files that have some (fewer blocks than bytes).
    return new FileSource(file, handle, await reopenDirect(handle, fsc.O_RDONLY), size, st.isFile() && st.blocks * 512 < st.size);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

class FileSource implements BlockSource {
  readonly location: string;
  readonly size: number;
  readonly #handle: fsp.FileHandle;
  /** The same file with O_DIRECT, for ranges not in the page cache. */
  readonly #direct: fsp.FileHandle | undefined;
  /** Set when the file system opened with O_DIRECT but refused a read so. */
  #directRefused = false;
  readonly #sparse: boolean;
  /** Where the last extent lookup started. */
  #probe = 0;
  /** The data extent found from #probe on, [start, end); [size, size] when only holes follow. */
  #extent: [number, number] = [0, 0];

  constructor(file: string, handle: fsp.FileHandle, direct: fsp.FileHandle | undefined, size: number, sparse: boolean) {
    this.location = file;
    this.#handle = handle;
    this.#direct = direct;
    this.size = size;
    this.#sparse = sparse;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    const fd = this.#handle.fd;
    // Leave the page cache as we found it: what was not cached is read around it (O_DIRECT: no
    // copy, nothing to drop), or where that cannot be, read and dropped again.
    const wasCached = isCached(fd, offset, into.length);
    const direct = !wasCached && this.#direct !== undefined && !this.#directRefused && isDirectAligned(offset, into);
    let handle = direct ? this.#direct! : this.#handle;
    let done = 0;
    while (done < into.length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(into, done, into.length - done, offset + done));
      } catch (err) {
        // A file system that opens with O_DIRECT but refuses its reads: buffered from now on.
        if (handle === this.#direct && errnoCode(err) === 'EINVAL') {
          debug(`source ${this.location}: an O_DIRECT read was refused (EINVAL); reading through the page cache from now on`);
          this.#directRefused = true;
          handle = this.#handle;
          continue;
        }
        throw new IoError(`Cannot read source "${this.location}" at offset ${offset + done}: ${errnoCode(err) ?? String(err)}`, { cause: err });
      }
      if (bytesRead === 0) {
        throw new IoError(`Source "${this.location}" ended at offset ${offset + done}, before its size ${this.size}: it shrank during the backup`);
      }
      done += bytesRead;
      // A short read leaves an unaligned offset, which O_DIRECT refuses: the rest goes buffered.
      if (done < into.length && handle !== this.#handle) handle = this.#handle;
    }
    if (!wasCached && handle === this.#handle) await dropCache(fd, offset, into.length);
  }

  mayHaveData(offset: number, length: number): boolean {
    if (!this.#sparse) return true;
    // Known: [probe, start) is a hole and [start, stop) is data. Blocks come in ascending
    // order, so this costs one SEEK_DATA/SEEK_HOLE pair per extent, not per block.
    if (offset < this.#probe || offset >= this.#extent[1]) {
      this.#probe = offset;
      this.#extent = nextData(this.#handle.fd, offset, this.size) ?? [this.size, this.size];
    }
    return offset + length > this.#extent[0];
  }

  async close(): Promise<void> {
    await this.#handle.close().catch(() => undefined);
    await this.#direct?.close().catch(() => undefined);
  }
}
