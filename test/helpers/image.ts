import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, closeSync, writeSync, writeFileSync, ftruncateSync, readFileSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { makeExt4, run } from './system.js';

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

/** A directory of real files (licence texts, random bytes, a small text) to make file systems from. */
function makeFiles(dir: string): string {
  const files = path.join(dir, 'files');
  mkdirSync(files, { recursive: true });
  cpSync('/usr/share/common-licenses', path.join(files, 'licenses'), { recursive: true });
  makeImage(path.join(files, 'random.bin'), [{ kind: 'random', length: 2 * 1024 * 1024 + 17 }]);
  writeFileSync(path.join(files, 'hello.txt'), 'hello\n');
  return files;
}

/**
 * A disk image: an ext4 file system with real files, then zeros, then random data (and optional
 * trailing zeros), in MiB. Returns the image and the directory of the files in it.
 */
export function makeDiskImage(dir: string, mib: { fs: number; zeros: number; random: number; tail?: number }): { image: string; files: string } {
  const MiB = 1024 * 1024;
  const files = makeFiles(dir);
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

/** sfdisk scripts of {@link makePartitionedImage}; `@` stands for the image. */
const PARTITIONED = {
  gpt: { script: 'label: gpt\nstart=2048, size=32M, name=data\nsize=8M, type=S\n', partition: 1 },
  dos: { script: 'label: dos\n@1 : start=2048, size=4M, type=83\n@2 : size=48M, type=5\n@5 : size=32M, type=83\n@6 : size=8M, type=82\n', partition: 5 },
} as const;

/**
 * A 64 MiB disk image with a partition table made by sfdisk: a GPT whose partition 1, or an MBR
 * whose logical partition 5 (in an extended partition), holds an ext4 file system of real files
 * (written at the partition's offset with dd conv=notrunc); the other partitions stay empty.
 * Returns the image, the directory of the files and where that partition lies (as sfdisk says).
 */
export function makePartitionedImage(dir: string, label: 'gpt' | 'dos'): { image: string; files: string; partition: number; offset: number; length: number } {
  mkdirSync(dir, { recursive: true });
  const files = makeFiles(dir);
  const image = path.join(dir, `${label}-disk.img`);
  makeImage(image, [{ kind: 'zero', length: 64 * 1024 * 1024 }]);
  const { script, partition } = PARTITIONED[label];
  run('sfdisk', ['-q', image], { input: script.replaceAll('@', image) });
  const table = JSON.parse(run('sfdisk', ['--json', image])) as { partitiontable: { sectorsize: number; partitions: { node: string; start: number; size: number }[] } };
  const entry = table.partitiontable.partitions.find((p) => p.node === `${image}${partition}`);
  if (!entry) throw new Error(`sfdisk made no partition ${partition} in ${image}`);
  const [offset, length] = [entry.start * table.partitiontable.sectorsize, entry.size * table.partitiontable.sectorsize];
  const fs = path.join(dir, 'fs.img');
  makeExt4(fs, length / (1024 * 1024), files);
  run('dd', [`if=${fs}`, `of=${image}`, 'bs=1M', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
  return { image, files, partition, offset, length };
}
