import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { acquireLocks, imageResource, lockNewVersion, versionResource } from '../../../../src/engine/catalog/locking.js';
import { backup } from '../../../../src/engine/operations/backup.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';
import type * as UidModule from '../../../../src/engine/support/uid.js';

// Version uids have 20 random bits per second: make every draw the same, as a collision would be.
const drawn = vi.hoisted(() => ({ uids: [] as string[] }));
vi.mock('../../../../src/engine/support/uid.js', async (original) => {
  const real = await original<typeof UidModule>();
  return { ...real, newVersionUid: (now?: number) => drawn.uids.shift() ?? real.newVersionUid(now) };
});

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

describe('new version uids', () => {
  it('a backup that draws the uid of an existing version draws again', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 2 * B }]);
    drawn.uids.push('v1aaaaaabbbb', 'v1aaaaaabbbb', 'v1aaaaaacccc');
    expect((await backup(s, { source: image, image: 'vm1' })).uid).toBe('v1aaaaaabbbb');
    // Before, this failed with "UNIQUE constraint failed: versions.uid".
    expect((await backup(s, { source: image, image: 'vm2' })).uid).toBe('v1aaaaaacccc');
    expect((await s.catalog.listVersions()).map((v) => v.status)).toEqual(['valid', 'valid']);
  });

  it('lockNewVersion() passes over a uid another process is making, and keeps other conflicts the caller\'s', async () => {
    const s = (store = makeMemoryStore());
    const other = await acquireLocks(s.catalog, [{ resource: versionResource('v1aaaaaadddd'), mode: 'exclusive', operation: 'backup' }]);
    const draws = ['v1aaaaaadddd', 'v1aaaaaaeeee'];
    const got = await lockNewVersion(s.catalog, Date.now(), [], { operation: 'backup' }, () => draws.shift() ?? 'v1aaaaaazzzz');
    expect(got.uid).toBe('v1aaaaaaeeee');
    expect((await s.catalog.listLocks(versionResource('v1aaaaaaeeee'))).map((l) => l.mode)).toEqual(['exclusive']);
    await got.locks.release();
    const image = await acquireLocks(s.catalog, [{ resource: imageResource('vm1'), mode: 'exclusive', operation: 'backup', writer: true }]);
    await expect(lockNewVersion(s.catalog, Date.now(), [{ resource: imageResource('vm1'), mode: 'exclusive', operation: 'backup' }], { operation: 'backup' })).rejects.toMatchObject({ code: 'E_LOCKED' });
    await image.release();
    await other.release();
  });
});
