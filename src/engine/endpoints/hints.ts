import { readFile } from 'node:fs/promises';
import { NotFoundError, UsageError, errnoCode } from '../errors.js';

/** One changed extent, as `rbd diff --format=json` prints it. */
export interface Extent {
  readonly offset: number;
  readonly length: number;
  /** False when the extent was discarded (now reads as zeros). */
  readonly exists: boolean;
}

/**
 * Reads a hints file: the JSON array that `rbd diff --format=json` prints, with `exists` as a
 * boolean or as the strings "true"/"false".
 * @param file path of the hints file
 * @throws {NotFoundError} when the file does not exist
 * @throws {UsageError} when it is not such an array (naming the first bad entry)
 */
export async function readHintsFile(file: string): Promise<Extent[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new NotFoundError(`Hints file "${file}" does not exist`, { cause: err });
    throw new UsageError(`Cannot read hints file "${file}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`Bad hints file "${file}": not valid JSON`, { cause: err });
  }
  return parseHints(data, `"${file}"`);
}

/**
 * Validates parsed hints.
 * @param data the parsed JSON
 * @param what names the hints in error messages
 */
export function parseHints(data: unknown, what: string): Extent[] {
  if (!Array.isArray(data)) throw new UsageError(`Bad hints file ${what}: expected a JSON array of extents`);
  return data.map((item: unknown, i) => {
    const bad = (why: string) => new UsageError(`Bad hints file ${what}: entry ${i}: ${why}`);
    if (typeof item !== 'object' || item === null) throw bad('expected an object');
    const { offset, length, exists } = item as Record<string, unknown>;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw bad('"offset" must be a non-negative integer');
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw bad('"length" must be a non-negative integer');
    let present: boolean;
    if (exists === true || exists === 'true') present = true;
    else if (exists === false || exists === 'false') present = false;
    else throw bad('"exists" must be true or false');
    return { offset, length, exists: present };
  });
}

/**
 * The set of blocks that hints touch, as a bitmap (bit i = block i).
 * @param extents the hints
 * @param options image size and block size
 * @throws {UsageError} when an extent reaches past the end of the source
 */
export function hintedBlocks(extents: readonly Extent[], options: { size: number; blockSize: number; what: string }): Uint8Array {
  const blocks = Math.ceil(options.size / options.blockSize);
  const bitmap = new Uint8Array(Math.ceil(blocks / 8));
  for (const e of extents) {
    if (e.offset + e.length > options.size) {
      throw new UsageError(
        `Hints ${options.what} reach past the end of the source: extent at offset ${e.offset} with length ${e.length}, source size ${options.size}`,
      );
    }
    if (e.length === 0) continue;
    const first = Math.floor(e.offset / options.blockSize);
    const last = Math.floor((e.offset + e.length - 1) / options.blockSize);
    for (let b = first; b <= last; b++) bitmap[b >> 3]! |= 1 << (b & 7);
  }
  return bitmap;
}

/** Whether bit `i` of a bitmap is set. */
export function bitIsSet(bitmap: Uint8Array, i: number): boolean {
  return ((bitmap[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
}
