/**
 * O_DIRECT: reads and writes around the page cache. It needs offsets, lengths and memory aligned
 * to the device's logical block size; a page covers every device's.
 */
import { constants as fsc, promises as fsp } from 'node:fs';

export const DIRECT_ALIGNMENT = 4096;

/** Whether a transfer of `data` at `offset` may go through an O_DIRECT descriptor. */
export function isDirectAligned(offset: number, data: Uint8Array): boolean {
  return offset % DIRECT_ALIGNMENT === 0 && data.length % DIRECT_ALIGNMENT === 0 && data.byteOffset % DIRECT_ALIGNMENT === 0;
}

/**
 * The file `handle` has open, opened a second time with O_DIRECT, or undefined where that cannot
 * be (the file system refuses it, or no descriptor is left): it only saves work, never an error.
 * Through /proc/self/fd, so that it is the very file, even if its path was renamed over or a
 * symlink re-pointed since the first open.
 * @param access `fsc.O_RDONLY` or `fsc.O_WRONLY`
 */
export async function reopenDirect(handle: fsp.FileHandle, access: number): Promise<fsp.FileHandle | undefined> {
  try {
    return await fsp.open(`/proc/self/fd/${handle.fd}`, access | fsc.O_DIRECT);
  } catch {
    return undefined;
  }
}
