import { createHash, randomBytes } from 'node:crypto';
import { openSync, closeSync, writeSync, ftruncateSync, readFileSync, createReadStream } from 'node:fs';

/** One region of a test image. */
export type Region =
  | { readonly kind: 'zero'; readonly length: number }
  | { readonly kind: 'random'; readonly length: number }
  | { readonly kind: 'fill'; readonly length: number; readonly byte: number }
  | { readonly kind: 'bytes'; readonly data: Buffer };

/**
 * Writes an image made of regions (zero regions stay holes) and returns its size.
 * @example makeImage(file, [{ kind: 'random', length: 1 << 20 }, { kind: 'zero', length: 1 << 20 }])
 */
export function makeImage(file: string, regions: readonly Region[]): number {
  const fd = openSync(file, 'w');
  let at = 0;
  try {
    for (const r of regions) {
      if (r.kind === 'zero') {
        at += r.length;
        continue;
      }
      const data = r.kind === 'bytes' ? r.data : r.kind === 'random' ? randomBytes(r.length) : Buffer.alloc(r.length, r.byte);
      writeSync(fd, data, 0, data.length, at);
      at += data.length;
    }
    ftruncateSync(fd, at);
  } finally {
    closeSync(fd);
  }
  return at;
}

/** SHA-256 of a whole file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** SHA-256 of a small file read at once. */
export function sha256Small(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
