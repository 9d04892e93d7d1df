import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fsyncSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFileSource } from '../../../../src/engine/endpoints/file-source.js';
import { alignedBuffer } from '../../../../src/engine/pipeline/buffer-pool.js';
import { dropCache, native } from '../../../../src/engine/sys/native.js';
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

/**
 * Whether this test can see the page cache: the native helper drops pages (without it nothing
 * is dropped), and the temporary directory is on a file system with a page cache of its own and
 * O_DIRECT (not tmpfs, ramfs or a FUSE file system without it).
 */
function pageCacheVisible(): boolean {
  const dir = makeTempDir();
  if (!native || execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim() === 'tmpfs') return false;
  const file = path.join(dir, 'probe');
  writeFileSync(file, Buffer.alloc(4096));
  try {
    closeSync(openSync(file, fsc.O_RDONLY | fsc.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

describe('a file source leaves the page cache as it found it', () => {
  const visible = pageCacheVisible();

  it.runIf(visible)('a cold source is read without filling the cache (readahead of one block used to keep the next cached), and every byte is right', async () => {
    const size = 48 * MiB + 12345; // an unaligned tail too
    const { file, data } = await coldFile(size);
    expect(resident(file)).toBe(0);
    expect((await readAll(file, size)).equals(data)).toBe(true);
    // The page holding the unaligned tail is read through the cache and dropped again.
    expect(resident(file)).toBe(0);
  });

  it.runIf(visible)('a source the machine has cached stays cached', async () => {
    const size = 24 * MiB;
    const { file, data } = await coldFile(size);
    readFileSync(file);
    expect(resident(file)).toBe(size);
    expect((await readAll(file, size)).equals(data)).toBe(true);
    expect(resident(file)).toBe(size);
  });

  it('memory that is not page-aligned (a malloc\'d Buffer) reads right too, through the cache, and leaves nothing cached', async () => {
    const size = 32 * MiB + 4096;
    const { file, data } = await coldFile(size);
    const source = await openFileSource(file);
    try {
      for (let at = 0; at < size; at += BLOCK) {
        const view = Buffer.alloc(Math.min(BLOCK, size - at));
        await source.read(at, view);
        expect(view.equals(data.subarray(at, at + view.length)), `at ${at}`).toBe(true);
      }
    } finally {
      await source.close();
    }
    if (visible) expect(resident(file)).toBe(0);
  });
});
