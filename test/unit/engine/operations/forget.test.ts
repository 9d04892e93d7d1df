import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { VersionRecord } from '../../../../src/engine/catalog/catalog.js';
import { acquireLocks, versionResource } from '../../../../src/engine/catalog/locking.js';
import { loadManifest, manifestOf, saveManifest } from '../../../../src/engine/objects/manifest.js';
import { backup } from '../../../../src/engine/operations/backup.js';
import { forget } from '../../../../src/engine/operations/forget.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import type { Config } from '../../../../src/engine/support/config.js';
import { newVersionUid } from '../../../../src/engine/support/uid.js';
import { makeImage, sha256Small } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

const DAY = 86_400_000;

async function backupOf(s: Store, image: string, dir = makeTempDir()): Promise<{ record: VersionRecord; file: string }> {
  const file = path.join(dir, `${image}-${Math.random()}`);
  makeImage(file, [{ kind: 'random', length: 3 * B }]);
  const { uid } = await backup(s, { source: file, image });
  return { record: (await s.catalog.getVersion(uid))!, file };
}

/** A copy of a committed version (same blocks) made at another time, with its manifest. */
async function copyAt(s: Store, from: VersionRecord, createdAt: number, extra: Partial<VersionRecord> = {}): Promise<string> {
  const uid = newVersionUid(createdAt);
  const record = { ...from, uid, createdAt, tags: [], ...extra };
  const segments = await s.catalog.versionSegments(from.uid);
  await s.catalog.importVersion(record, segments);
  await saveManifest(s, manifestOf(record, segments));
  return uid;
}

function open(overrides: Partial<Config> = {}): Store {
  return (store = makeMemoryStore(overrides));
}

describe('forget()', () => {
  it('removes what no rule keeps, manifests first, whatever retention.minAge says; --prune frees the blocks', async () => {
    const s = open();
    const dir = makeTempDir();
    const old = await backupOf(s, 'vm1', dir);
    const kept = await backupOf(s, 'vm1', dir);
    const result = await forget(s, { rules: { keepLast: 1 }, prune: true });
    expect(result).toMatchObject({ dryRun: false, removed: 1, kept: 1, skipped: 0 });
    expect(result.versions.map((v) => [v.uid, v.action, v.reasons.join('; ')])).toEqual([
      [old.record.uid, 'remove', 'no rule keeps it'],
      [kept.record.uid, 'keep', 'last; newest valid backup'],
    ]);
    expect((await s.catalog.listVersions()).map((v) => v.uid)).toEqual([kept.record.uid]);
    await expect(loadManifest(s, old.record.uid)).rejects.toMatchObject({ code: 'E_OBJECT_MISSING' });
    expect(result.cleanup).toMatchObject({ blocksDeleted: 3, bytesFreed: 3 * B });
    const runs = await s.catalog.listRuns();
    expect(runs.map((r) => [r.operation, r.last.versionsRemoved ?? r.last.bytesFreed])).toEqual([['cleanup', 3 * B], ['forget', 1]]);
    const out = path.join(dir, 'out');
    expect((await restore(s, { uid: kept.record.uid, target: out })).badBlockCount).toBe(0);
    expect(sha256Small(out)).toBe(sha256Small(kept.file));
  });

  it('with dryRun or at removes nothing and says what it would do', async () => {
    const s = open();
    const { record } = await backupOf(s, 'vm1');
    const now = record.createdAt;
    const a = await copyAt(s, record, now - 3 * DAY);
    const b = await copyAt(s, record, now - 2 * DAY);
    const dry = await forget(s, { rules: { keepLast: 2 }, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, removed: 1, kept: 2, cleanup: null });
    expect(dry.versions.find((v) => v.uid === a)?.action).toBe('remove');
    // As if run the day b was made: the newest two then were a and b.
    const at = await forget(s, { rules: { keepLast: 2 }, at: now - 2 * DAY + 1000, prune: true });
    expect(at).toMatchObject({ dryRun: true, at: now - 2 * DAY + 1000, removed: 0, cleanup: null });
    expect(at.versions.find((v) => v.uid === record.uid)?.reasons).toEqual(['created after the time the policy is applied at']);
    expect(at.versions.find((v) => v.uid === b)?.reasons).toEqual(['last', 'newest valid backup']);
    expect(await s.catalog.listVersions()).toHaveLength(3);
  });

  it('skips versions in use, says who uses them, and removes the rest', async () => {
    const s = open();
    const { record } = await backupOf(s, 'vm1');
    const a = await copyAt(s, record, record.createdAt - 3 * DAY);
    const b = await copyAt(s, record, record.createdAt - 2 * DAY);
    const held = await acquireLocks(s.catalog, [{ resource: versionResource(a), mode: 'shared', operation: 'restore' }]);
    try {
      const result = await forget(s, { rules: { keepLast: 1 } });
      expect(result).toMatchObject({ removed: 1, skipped: 1, kept: 1 });
      const skipped = result.versions.find((v) => v.uid === a);
      expect(skipped).toMatchObject({ action: 'skip', rules: ['locked', 'none'] });
      expect(skipped?.reasons[0]).toMatch(/^in use \(restore by process \d+ on .+\): not removed this time$/);
      expect((await s.catalog.listVersions()).map((v) => v.uid).sort()).toEqual([a, record.uid].sort());
      expect(await s.catalog.getVersion(b)).toBeUndefined();
    } finally {
      await held.release();
    }
    expect((await forget(s, { rules: { keepLast: 1 } })).removed).toBe(1);
  });

  it('keeps a copy-on-write version whose base is in use, and removes it with its base later', async () => {
    const s = open();
    const { record } = await backupOf(s, 'vm1');
    const base = await copyAt(s, record, record.createdAt - 3 * DAY);
    const cow = await copyAt(s, record, record.createdAt - 2 * DAY, { kind: 'cow', baseUid: base });
    const held = await acquireLocks(s.catalog, [{ resource: versionResource(base), mode: 'shared', operation: 'mount' }]);
    try {
      const result = await forget(s, { rules: { keepLast: 1 } });
      expect(result.versions.find((v) => v.uid === cow)).toMatchObject({ action: 'keep', rules: ['base'] });
    } finally {
      await held.release();
    }
    const later = await forget(s, { rules: { keepLast: 1 } });
    expect(later.versions.filter((v) => v.action === 'remove').map((v) => v.uid).sort()).toEqual([base, cow].sort());
    expect((await s.catalog.listVersions()).map((v) => v.uid)).toEqual([record.uid]);
  });

  it('applies the first config policy whose pattern matches; images without a policy are left alone', async () => {
    const s = open({
      retentionPolicies: [
        { images: ['db*'], rules: { keepLast: 2 } },
        { images: ['vm-*', 'db1'], rules: { keepLast: 1 } },
      ],
    });
    const versions: Record<string, VersionRecord> = {};
    for (const image of ['vm-a', 'db1', 'other']) {
      const { record } = await backupOf(s, image);
      versions[image] = record;
      for (const days of [1, 2]) await copyAt(s, record, record.createdAt - days * DAY);
    }
    const result = await forget(s);
    expect(result.images).toEqual([
      { image: 'db1', policy: 'keep 2 last', from: 'config: db*' },
      { image: 'other', policy: null, from: null },
      { image: 'vm-a', policy: 'keep 1 last', from: 'config: vm-*, db1' },
    ]);
    expect(result.removed).toBe(3);
    const left = await s.catalog.listVersions();
    expect(left.filter((v) => v.image === 'db1')).toHaveLength(2);
    expect(left.filter((v) => v.image === 'vm-a')).toHaveLength(1);
    expect(left.filter((v) => v.image === 'other')).toHaveLength(3);
    expect(result.versions.some((v) => v.image === 'other')).toBe(false);
    // Named images and patterns narrow it down.
    const only = await forget(s, { images: ['oth*'], rules: { keepLast: 1 }, dryRun: true });
    expect(only.images.map((i) => i.image)).toEqual(['other']);
    expect(only.removed).toBe(2);
  });

  it('refuses to run without a policy, with rules that keep nothing, or for unknown images', async () => {
    const s = open();
    await backupOf(s, 'vm1');
    await expect(forget(s)).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('No retention policy') });
    await expect(forget(s, { rules: { keepDaily: 0 } })).rejects.toMatchObject({ code: 'E_USAGE', message: 'The rules keep nothing' });
    await expect(forget(s, { images: ['vm2'], rules: { keepLast: 1 } })).rejects.toMatchObject({ code: 'E_NOT_FOUND', hint: 'did you mean "vm1"?' });
    await expect(forget(s, { images: ['db*'], rules: { keepLast: 1 } })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: 'No image matches "db*"' });
  });

  it('removes expired versions and the incomplete ones of killed backups', async () => {
    const s = open();
    const { record } = await backupOf(s, 'vm1');
    const expired = await copyAt(s, record, record.createdAt - 3 * DAY, { expiresAt: record.createdAt - DAY });
    const future = await copyAt(s, record, record.createdAt - 2 * DAY, { expiresAt: record.createdAt + DAY });
    await s.catalog.createVersion({ uid: newVersionUid(record.createdAt - DAY), image: 'vm1', createdAt: record.createdAt - DAY, size: record.size, blockSize: record.blockSize, snapshot: null, baseUid: null, source: null, kind: 'backup' });
    const result = await forget(s, { rules: { keepLast: 10 } });
    expect(result.removed).toBe(2);
    expect((await s.catalog.listVersions()).map((v) => v.uid).sort()).toEqual([future, record.uid].sort());
    expect(await s.catalog.getVersion(expired)).toBeUndefined();
  });
});
