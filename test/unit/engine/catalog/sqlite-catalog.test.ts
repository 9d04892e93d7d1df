import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../../../../src/engine/catalog/sqlite-catalog.js';
import { MIGRATIONS } from '../../../../src/engine/catalog/migrations.js';
import { killHard, startHelper } from '../../../helpers/child.js';
import { makeTempDir } from '../../../helpers/temp.js';

const catalogs: SqliteCatalog[] = [];
afterEach(async () => {
  for (const c of catalogs.splice(0)) await c.close();
});
function open(file = path.join(makeTempDir(), 'catalog.sqlite')): SqliteCatalog {
  const c = existsSync(file) ? SqliteCatalog.open(file) : SqliteCatalog.create(file);
  catalogs.push(c);
  return c;
}

const version = (uid: string, image = 'vm1', createdAt = 1000) => ({
  uid,
  image,
  createdAt,
  size: 100,
  blockSize: 64,
  snapshot: null,
  baseUid: null,
  source: '/dev/x',
  kind: 'backup' as const,
});
const stats = { bytesRead: 1, bytesWritten: 2, bytesDeduplicated: 3, bytesSparse: 4, bytesSkipped: 5, blocksRead: 6, blocksWritten: 7, durationSeconds: 8 };

describe('SqliteCatalog', () => {
  it('open() applies every migration and records the schema version', () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    open(file);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('open() refuses a catalog from a newer backy2', () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    const db = new Database(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => SqliteCatalog.open(file)).toThrow(expect.objectContaining({ code: 'E_STORE', message: expect.stringContaining('newer') }));
  });

  it('open() refuses a file that is not a catalog', async () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    (await import('node:fs')).writeFileSync(file, 'this is not sqlite, just some text that is long enough to matter'.repeat(100));
    expect(() => SqliteCatalog.open(file)).toThrow(expect.objectContaining({ code: 'E_STORE' }));
  });

  it('createVersion() and commitVersion() move a version from incomplete to valid with its map', async () => {
    const c = open();
    await c.createVersion(version('v1'));
    expect((await c.getVersion('v1'))?.status).toBe('incomplete');
    expect(await c.latestValidVersion('vm1')).toBeUndefined();
    const segs = [randomBytes(32), randomBytes(32)];
    await c.commitVersion('v1', { segments: segs, stats, tags: ['a', 'b'], allocated: 0 });
    const v = await c.getVersion('v1');
    expect(v).toMatchObject({ status: 'valid', tags: ['a', 'b'], stats, image: 'vm1', blockSize: 64 });
    expect((await c.versionSegments('v1')).map((d) => d.toString('hex'))).toEqual(segs.map((d) => d.toString('hex')));
    expect((await c.latestValidVersion('vm1'))?.uid).toBe('v1');
    await expect(c.commitVersion('v1', { segments: segs, stats, tags: [], allocated: 0 })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });

  it('listVersions() filters by image, tag and status, oldest first', async () => {
    const c = open();
    await c.createVersion(version('v2', 'vm1', 2000));
    await c.createVersion(version('v1', 'vm1', 1000));
    await c.createVersion(version('v3', 'vm2', 3000));
    await c.commitVersion('v1', { segments: [], stats, tags: ['keep'], allocated: 0 });
    expect((await c.listVersions()).map((v) => v.uid)).toEqual(['v1', 'v2', 'v3']);
    expect((await c.listVersions({ image: 'vm1' })).map((v) => v.uid)).toEqual(['v1', 'v2']);
    expect((await c.listVersions({ tag: 'keep' })).map((v) => v.uid)).toEqual(['v1']);
    expect((await c.listVersions({ status: 'incomplete' })).map((v) => v.uid)).toEqual(['v2', 'v3']);
  });

  it('setExpiry() sets and clears an expiry date that createVersion() and importVersion() record too', async () => {
    const c = open();
    await c.createVersion({ ...version('v1'), expiresAt: 5000 });
    expect((await c.getVersion('v1'))?.expiresAt).toBe(5000);
    await c.setExpiry('v1', null);
    expect((await c.getVersion('v1'))?.expiresAt).toBeNull();
    await c.setExpiry('v1', 7000);
    await c.commitVersion('v1', { segments: [], stats, tags: [], allocated: 0 });
    const copy = { ...(await c.getVersion('v1'))!, uid: 'v2' };
    await c.importVersion(copy, []);
    expect((await c.getVersion('v2'))?.expiresAt).toBe(7000);
    await expect(c.setExpiry('v9', 1)).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });

  it('recordRun() keeps the last run of each operation and adds its figures to the totals', async () => {
    const c = open();
    expect(await c.listRuns()).toEqual([]);
    await c.recordRun('scrub', 1000, { blocksChecked: 10, badBlocks: 1 });
    await c.recordRun('scrub', 2000, { blocksChecked: 5, badBlocks: 0 });
    await c.recordRun('cleanup', 1500, { bytesFreed: 7 });
    expect(await c.listRuns()).toEqual([
      { operation: 'cleanup', finishedAt: 1500, last: { bytesFreed: 7 }, totals: { bytesFreed: 7, runs: 1 } },
      { operation: 'scrub', finishedAt: 2000, last: { blocksChecked: 5, badBlocks: 0 }, totals: { blocksChecked: 15, badBlocks: 1, runs: 2 } },
    ]);
  });

  it('deleteVersion() removes the image with its last version, so a new block size can be chosen', async () => {
    const c = open();
    await c.createVersion(version('v1'));
    expect(await c.imageBlockSize('vm1')).toBe(64);
    await c.deleteVersion('v1');
    expect(await c.imageBlockSize('vm1')).toBeUndefined();
    await expect(c.deleteVersion('v1')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
  });

  it('touchBlock() tells the state and protects all but blocks being deleted', async () => {
    const c = open();
    const d = randomBytes(32);
    expect(await c.touchBlock(d)).toBeUndefined();
    await c.registerBlocks([{ digest: d, length: 10, storedLength: 10 }]);
    expect(await c.touchBlock(d)).toBe(0);
    await c.setBlockState([d], 1);
    const before = Date.now();
    expect(await c.touchBlock(d)).toBe(1);
    expect((await c.getBlock(d))?.lastRef).toBeGreaterThanOrEqual(before);
    await c.beginMark();
    expect(await c.claimGarbageBlocks(before + 1000, 10)).toHaveLength(1);
    expect(await c.touchBlock(d)).toBe(2);
    await c.endMark();
  });

  it('acquireLock() refuses conflicting live locks and allows shared ones together', async () => {
    const c = open();
    const a = await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
    await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
    await expect(c.acquireLock({ resource: 'version:v1', mode: 'exclusive', operation: 'rm' })).rejects.toMatchObject({
      code: 'E_LOCKED',
      message: expect.stringContaining('restore by process'),
    });
    await c.releaseLock(a.id);
    expect((await c.listLocks('version:v1')).length).toBe(1);
  });

  it('acquireLock() releases the lock of a process killed with SIGKILL', async () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    const c = open(file);
    const child = await startHelper('hold-lock.ts', [file, 'image:vm1', 'exclusive'], 'locked');
    await expect(c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' })).rejects.toMatchObject({ code: 'E_LOCKED' });
    await killHard(child);
    const lock = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' });
    expect(lock.pid).toBe(process.pid);
    expect((await c.listLocks('image:vm1')).map((l) => l.operation)).toEqual(['backup']);
  });
});
