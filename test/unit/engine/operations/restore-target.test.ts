import { existsSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
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
});
