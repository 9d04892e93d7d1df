import { existsSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

describe('restore() targets', () => {
  // ext4 holds files of at most 16 TiB: resizing the new target fails early (EFBIG).
  it.skipIf(!existsSync('/dev/shm'))('a restore that fails early removes the target it created, so a retry does not find it "exists"', async () => {
    const s = (store = makeMemoryStore({ blockSize: 64 << 20 }));
    const image = path.join('/dev/shm', `backy2-huge-${process.pid}.img`);
    writeFileSync(image, 'data at the start');
    truncateSync(image, 17 * 2 ** 40); // sparse: tmpfs files may be that large
    try {
      const v = await backup(s, { source: image, image: 'huge' });
      const target = path.join(makeTempDir(), 'restored.img');
      await expect(restore(s, { uid: v.uid, target })).rejects.toMatchObject({
        code: 'E_IO',
        message: expect.stringMatching(/^Cannot resize target ".*" to 17\.0 TiB: the file system cannot hold a file that large$/),
      });
      expect(existsSync(target)).toBe(false);
    } finally {
      rmSync(image, { force: true });
    }
  });

  it('a missing device is not created as a file in /dev, also below it (/dev/mapper/…)', async () => {
    const s = (store = makeMemoryStore());
    const v = await backup(s, { source: writeImage(), image: 'vm1' });
    for (const target of [`/dev/backy2-no-such-device-${process.pid}`, `/dev/mapper/backy2-no-such-${process.pid}`, `/dev/no-such-dir-${process.pid}/disk`]) {
      await expect(restore(s, { uid: v.uid, target })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: `Target "${target}" does not exist: no such device` });
      expect(existsSync(target)).toBe(false);
    }
  });

  // /dev/shm is a tmpfs of its own: restoring a version into RAM for a quick look is fair.
  it.skipIf(!existsSync('/dev/shm') || statSync('/dev/shm').dev === statSync('/dev').dev)('a new file on a file system mounted below /dev (/dev/shm) is an ordinary target', async () => {
    const s = (store = makeMemoryStore());
    const source = writeImage();
    const v = await backup(s, { source, image: 'vm1' });
    const target = path.join('/dev/shm', `backy2-restored-${process.pid}.img`);
    try {
      await restore(s, { uid: v.uid, target });
      expect(readFileSync(target).equals(readFileSync(source))).toBe(true);
    } finally {
      rmSync(target, { force: true });
    }
  });
});

/** A 1 MiB image of a repeated pattern, in a temporary directory. */
function writeImage(): string {
  const image = path.join(makeTempDir(), 'disk.img');
  writeFileSync(image, Buffer.alloc(1 << 20, 'restore target '));
  return image;
}
