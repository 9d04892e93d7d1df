import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { acquireLocks, versionResource } from '../../../../src/engine/catalog/locking.js';
import { loadManifest } from '../../../../src/engine/objects/manifest.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import { storeSpace, versionSpace } from '../../../../src/engine/operations/stats.js';
import type { Store } from '../../../../src/engine/store.js';
import { changeTags, listVersions, removeVersions, setExpiry, setProtected } from '../../../../src/engine/operations/versions.js';
import { makeImage } from '../../../helpers/image.js';
import { runScrub } from '../../../helpers/scrub.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

async function withVersions(count: number): Promise<{ s: Store; uids: string[]; image: string }> {
  const s = (store = makeMemoryStore());
  const image = path.join(makeTempDir(), 'img');
  makeImage(image, [{ kind: 'random', length: 4 * B }]);
  const uids: string[] = [];
  for (let i = 0; i < count; i++) uids.push((await backup(s, { source: image, image: 'vm1', tags: [`t${i}`] })).uid);
  return { s, uids, image };
}

describe('removeVersions()', () => {
  it('refuses versions younger than the minimum age unless forced', async () => {
    const { s, uids } = await withVersions(1);
    await expect(removeVersions(s, uids)).rejects.toMatchObject({ code: 'E_CONFLICT', message: expect.stringContaining('minimum age') });
    expect(await removeVersions(s, uids, { now: Date.now() + 7 * 86_400_000 })).toHaveLength(1);
    expect(await s.catalog.listVersions()).toEqual([]);
  });

  it('refuses protected versions even when forced, and removes none of a batch', async () => {
    const { s, uids } = await withVersions(2);
    await setProtected(s, [uids[1]!], true);
    await expect(removeVersions(s, uids, { force: true })).rejects.toMatchObject({ code: 'E_CONFLICT', message: expect.stringContaining('protected') });
    expect(await s.catalog.listVersions()).toHaveLength(2);
    await setProtected(s, [uids[1]!], false);
    await removeVersions(s, uids, { force: true });
    expect(await s.catalog.listVersions()).toHaveLength(0);
  });

  it('refuses a version that is being restored', async () => {
    const { s, uids } = await withVersions(1);
    const held = await acquireLocks(s.catalog, [{ resource: versionResource(uids[0]!), mode: 'shared', operation: 'restore' }]);
    await expect(removeVersions(s, uids, { force: true })).rejects.toMatchObject({ code: 'E_LOCKED', message: expect.stringContaining('restore') });
    await held.release();
    await removeVersions(s, uids, { force: true });
  });

  it('removes none of a batch when one of them is in use', async () => {
    const { s, uids } = await withVersions(2);
    const held = await acquireLocks(s.catalog, [{ resource: versionResource(uids[1]!), mode: 'shared', operation: 'restore' }]);
    await expect(removeVersions(s, uids, { force: true })).rejects.toMatchObject({ code: 'E_LOCKED' });
    expect(await s.catalog.listVersions()).toHaveLength(2);
    await loadManifest(s, uids[0]!);
    await held.release();
    expect(await removeVersions(s, [...uids, uids[0]!], { force: true })).toHaveLength(2);
  });

  it('removes incomplete versions at any age, and the manifest with a version', async () => {
    const { s, uids } = await withVersions(1);
    await s.catalog.createVersion({ uid: 'vincomplete01', image: 'vm1', createdAt: Date.now(), size: 10, blockSize: B, snapshot: null, baseUid: null, source: null, kind: 'backup' });
    await removeVersions(s, ['vincomplete01']);
    await loadManifest(s, uids[0]!);
    await removeVersions(s, uids, { force: true });
    await expect(loadManifest(s, uids[0]!)).rejects.toMatchObject({ code: 'E_OBJECT_MISSING' });
  });

  it('a removal killed after its manifest went leaves an incomplete version: scrub finds nothing to repair, rm removes it', async () => {
    const { s, uids } = await withVersions(2);
    // The kill: the process stops where the row would be deleted.
    const deleteVersion = s.catalog.deleteVersion.bind(s.catalog);
    s.catalog.deleteVersion = () => Promise.reject(new Error('killed'));
    await expect(removeVersions(s, [uids[0]!], { force: true })).rejects.toThrow('killed');
    s.catalog.deleteVersion = deleteVersion;
    await expect(loadManifest(s, uids[0]!)).rejects.toMatchObject({ code: 'E_OBJECT_MISSING' });
    expect((await s.catalog.getVersion(uids[0]!))?.status).toBe('incomplete');
    const { findings, result } = await runScrub(s, { all: true, percent: 100 });
    expect(findings).toEqual([]);
    expect(result).toMatchObject({ versions: 1, metadataRepaired: 0 });
    await removeVersions(s, [uids[0]!]);
    expect((await s.catalog.listVersions()).map((v) => v.uid)).toEqual([uids[1]]);
  });

  it('rejects unknown uids', async () => {
    const { s } = await withVersions(1);
    await expect(removeVersions(s, ['vnope'])).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });
});

describe('tags and protection', () => {
  it('changeTags() adds and removes tags and keeps the manifest up to date', async () => {
    const { s, uids } = await withVersions(1);
    const uid = uids[0]!;
    expect((await changeTags(s, uid, { add: ['keep', 'x'] })).tags).toEqual(['keep', 't0', 'x']);
    expect((await changeTags(s, uid, { remove: ['x', 't0'] })).tags).toEqual(['keep']);
    expect((await loadManifest(s, uid)).tags).toEqual(['keep']);
    await expect(changeTags(s, uid, { add: ['bad tag'] })).rejects.toMatchObject({ code: 'E_USAGE' });
    expect((await listVersions(s, { tag: 'keep' })).map((v) => v.uid)).toEqual([uid]);
  });

  it('setExpiry() sets and clears expiry dates in the catalog and the manifest; listVersions() finds expired ones', async () => {
    const { s, uids } = await withVersions(2);
    const [a, b] = uids as [string, string];
    const at = Date.now() + 86_400_000;
    expect((await setExpiry(s, [a, b], at)).map((v) => v.expiresAt)).toEqual([at, at]);
    expect((await loadManifest(s, a)).expiresAt).toBe(at);
    expect(await listVersions(s, { expiredAt: Date.now() })).toEqual([]);
    expect((await listVersions(s, { expiredAt: at })).map((v) => v.uid)).toEqual([a, b]);
    await setExpiry(s, [b], null);
    expect((await loadManifest(s, b)).expiresAt).toBeNull();
    expect((await listVersions(s, { expiredAt: at + 1 })).map((v) => v.uid)).toEqual([a]);
  });

  it('backup() records an expiry date given with expiresAt', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: B }]);
    const result = await backup(s, { source: image, image: 'vm1', expiresAt: 12345 });
    expect(result.expiresAt).toBe(12345);
    expect((await s.catalog.getVersion(result.uid))?.expiresAt).toBe(12345);
    expect((await loadManifest(s, result.uid)).expiresAt).toBe(12345);
  });

  it('listVersions() rejects an unknown image', async () => {
    const { s } = await withVersions(1);
    await expect(listVersions(s, { image: 'nope' })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });

  it('a backup without tags gets the automatic tags once per day', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: B }]);
    expect((await backup(s, { source: image, image: 'vm1' })).tags).toEqual(['b_daily', 'b_weekly', 'b_monthly']);
    expect((await backup(s, { source: image, image: 'vm1' })).tags).toEqual([]);
  });
});

describe('stats', () => {
  it('versionSpace() splits referenced bytes into unique and shared', async () => {
    const s = (store = makeMemoryStore());
    const dir = makeTempDir();
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    makeImage(a, [{ kind: 'random', length: 3 * B }, { kind: 'zero', length: B }]);
    const shared = (await import('node:fs')).readFileSync(a).subarray(0, 2 * B);
    makeImage(b, [{ kind: 'bytes', data: shared }, { kind: 'random', length: 5 * B }]);
    const va = await backup(s, { source: a, image: 'a' });
    await backup(s, { source: b, image: 'b' });
    const space = await versionSpace(s, va.uid);
    expect(space).toMatchObject({ blocks: 4, sparseBlocks: 1, bytesReferenced: 3 * B, bytesShared: 2 * B, bytesUnique: B });
    const total = await storeSpace(s);
    expect(total).toMatchObject({ images: 2, versions: 2, blocks: 8, bytesStored: 8 * B });
    const out = path.join(dir, 'out');
    await restore(s, { uid: va.uid, target: out });
  });
});
