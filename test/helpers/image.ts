import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, closeSync, writeSync, writeFileSync, ftruncateSync, readFileSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { makeExt4 } from './system.js';

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

/**
 * A disk image: an ext4 file system with real files, then zeros, then random data (and optional
 * trailing zeros), in MiB. Returns the image and the directory of the files in it.
 */
export function makeDiskImage(dir: string, mib: { fs: number; zeros: number; random: number; tail?: number }): { image: string; files: string } {
  const MiB = 1024 * 1024;
  const files = path.join(dir, 'files');
  mkdirSync(files);
  cpSync('/usr/share/common-licenses', path.join(files, 'licenses'), { recursive: true });
  makeImage(path.join(files, 'random.bin'), [{ kind: 'random', length: 2 * MiB + 17 }]);
  writeFileSync(path.join(files, 'hello.txt'), 'hello\n');
  const fs = path.join(dir, 'fs.img');
  makeExt4(fs, mib.fs, files);
  const image = path.join(dir, 'disk.img');
  makeImage(image, [
    { kind: 'bytes', data: readFileSync(fs) },
    { kind: 'zero', length: mib.zeros * MiB },
    { kind: 'random', length: mib.random * MiB },
    { kind: 'zero', length: (mib.tail ?? 0) * MiB },
  ]);
  return { image, files };
}
