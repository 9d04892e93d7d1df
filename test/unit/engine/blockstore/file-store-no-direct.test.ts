import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { FileStore } from '../../../../src/engine/blockstore/file-store.js';
import { openFileSource } from '../../../../src/engine/endpoints/file-source.js';
import { alignedBuffer } from '../../../../src/engine/pipeline/buffer-pool.js';
import { deferCleanup } from '../../../helpers/cleanup.js';
import { run } from '../../../helpers/system.js';
import { makeTempDir } from '../../../helpers/temp.js';

const OBJECT = 4 * 1024 * 1024 + 64;

/** Whether this process may mount (root with CAP_SYS_ADMIN; not in every container). */
function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const dir = makeTempDir('backy2-ramfs-probe-');
  try {
    run('mount', ['-t', 'ramfs', 'none', dir]);
  } catch {
    return false;
  }
  run('umount', [dir]);
  return true;
}

/** A ramfs mounted for the test: a file system that refuses O_DIRECT opens (EINVAL). */
function ramfs(): string {
  const dir = makeTempDir('backy2-ramfs-');
  run('mount', ['-t', 'ramfs', 'none', dir]);
  deferCleanup(() => {
    run('umount', [dir]);
  });
  return dir;
}

describe.runIf(canMount())('on a file system without O_DIRECT (ramfs)', () => {
  it('a file store reads its objects through the page cache, and asks for O_DIRECT once, not per object', async () => {
    const store = await FileStore.open(ramfs());
    const objects = [0, 1, 2, 3].map(() => randomBytes(OBJECT));
    for (const [i, data] of objects.entries()) await store.put(`blocks/0${i}/obj${i}`, [data]);
    const open = vi.spyOn(fsp, 'open');
    try {
      const into = alignedBuffer(OBJECT + 4096);
      for (const [i, data] of objects.entries()) {
        const got = await store.get(`blocks/0${i}/obj${i}`, { into, length: OBJECT, direct: true });
        expect(Buffer.from(got).equals(data), `object ${i}`).toBe(true);
      }
      const directOpens = open.mock.calls.filter(([, flags]) => typeof flags === 'number' && (flags & fsc.O_DIRECT) !== 0);
      expect(directOpens).toHaveLength(1);
    } finally {
      open.mockRestore();
      await store.close();
    }
  });

  it('a file source is read through the page cache, every byte right', async () => {
    const file = path.join(ramfs(), 'image');
    const data = randomBytes(9 * 1024 * 1024 + 512);
    writeFileSync(file, data);
    const source = await openFileSource(file);
    try {
      const buf = alignedBuffer(4 * 1024 * 1024);
      for (let at = 0; at < data.length; at += buf.length) {
        const view = buf.subarray(0, Math.min(buf.length, data.length - at));
        await source.read(at, view);
        expect(view.equals(data.subarray(at, at + view.length)), `at ${at}`).toBe(true);
      }
    } finally {
      await source.close();
    }
  });
});
