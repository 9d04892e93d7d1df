import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFileSource } from '../../../../src/engine/endpoints/file-source.js';
import { alignedBuffer } from '../../../../src/engine/pipeline/buffer-pool.js';
import { dropCache } from '../../../../src/engine/sys/native.js';
import { makeTempDir } from '../../../helpers/temp.js';

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;

/** Bytes of the file in the page cache now (util-linux fincore). */
function resident(file: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
}

/** A file of random data on the test's disk (not tmpfs: the page cache is what is tested), written out and dropped from the cache. */
async function coldFile(bytes: number): Promise<{ file: string; data: Buffer }> {
  const file = path.join(makeTempDir(), 'image');
  const data = randomBytes(bytes);
  writeFileSync(file, data);
  const fd = openSync(file, 'r');
  fsyncSync(fd);
  await dropCache(fd, 0, 0);
  closeSync(fd);
  return { file, data };
}

/** Reads every block of the source the way a backup does: four reads in flight, into page-aligned buffers. */
async function readAll(file: string, size: number): Promise<Buffer> {
  const source = await openFileSource(file);
  const out = Buffer.alloc(size);
  try {
    const offsets = Array.from({ length: Math.ceil(size / BLOCK) }, (_, i) => i * BLOCK);
    const reader = async () => {
      const buf = alignedBuffer(BLOCK);
      for (let at = offsets.shift(); at !== undefined; at = offsets.shift()) {
        const view = buf.subarray(0, Math.min(BLOCK, size - at));
        await source.read(at, view);
        view.copy(out, at);
      }
    };
    await Promise.all([reader(), reader(), reader(), reader()]);
  } finally {
    await source.close();
  }
  return out;
}

describe('a file source leaves the page cache as it found it', () => {
  const onTmpfs = execFileSync('stat', ['-f', '-c', '%T', makeTempDir()], { encoding: 'utf8' }).trim() === 'tmpfs';

  it.skipIf(onTmpfs)('a cold source is read without filling the cache (readahead of one block used to keep the next cached), and every byte is right', async () => {
    const size = 48 * MiB + 12345; // an unaligned tail too
    const { file, data } = await coldFile(size);
    expect(resident(file)).toBe(0);
    expect((await readAll(file, size)).equals(data)).toBe(true);
    // The page holding the unaligned tail is read through the cache and dropped again.
    expect(resident(file)).toBe(0);
  });

  it.skipIf(onTmpfs)('a source the machine has cached stays cached', async () => {
    const size = 24 * MiB;
    const { file, data } = await coldFile(size);
    readFileSync(file);
    expect(resident(file)).toBe(size);
    expect((await readAll(file, size)).equals(data)).toBe(true);
    expect(resident(file)).toBe(size);
  });
});
