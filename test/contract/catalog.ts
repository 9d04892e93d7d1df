import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CLEANUP_RESOURCE, type Catalog, type NewVersion, type TransferValue } from '../../src/engine/catalog/catalog.js';

const version = (uid: string, image = 'vm1', createdAt = 1000, kind: NewVersion['kind'] = 'backup'): NewVersion => ({
  uid,
  image,
  createdAt,
  size: 100,
  blockSize: 64,
  snapshot: null,
  baseUid: null,
  source: '/dev/x',
  kind,
});
const stats = { bytesRead: 1, bytesWritten: 2, bytesDeduplicated: 3, bytesSparse: 4, bytesSkipped: 5, blocksRead: 6, blocksWritten: 7, durationSeconds: 8 };

/**
 * The contract every catalog implementation keeps, one role at a time. A new catalog is done
 * when this suite passes against it.
 * @param name names the implementation in test titles
 * @param open makes a new, empty catalog bound to nothing
 */
export function describeCatalog(name: string, open: () => Promise<Catalog>): void {
  describe(`${name} catalog contract`, () => {
    const opened: Catalog[] = [];
    afterEach(async () => {
      for (const c of opened.splice(0)) await c.close();
    });
    const make = async () => {
      const c = await open();
      opened.push(c);
      return c;
    };

    it('identity(): a catalog id of its own, bound to a store once told', async () => {
      const c = await make();
      const { catalogId, storeId, storeSettings } = await c.identity();
      expect(catalogId).toMatch(/^[0-9a-f]{32}$/);
      expect(storeId).toBeNull();
      expect(storeSettings).toBeNull();
      await c.bindToStore('ab'.repeat(16), '[1,"settings"]');
      expect(await c.identity()).toEqual({ catalogId, storeId: 'ab'.repeat(16), storeSettings: '[1,"settings"]' });
      await c.bindToStore('ab'.repeat(16), '[1,"others"]');
      expect((await c.identity()).storeSettings).toBe('[1,"others"]');
    });

    it('createVersion() and commitVersion() move a version from incomplete to valid with its map', async () => {
      const c = await make();
      await c.createVersion(version('v1'));
      expect((await c.getVersion('v1'))?.status).toBe('incomplete');
      expect(await c.latestValidVersion('vm1')).toBeUndefined();
      const segs = [randomBytes(32), randomBytes(32)];
      await c.commitVersion('v1', { segments: segs, stats, tags: ['b', 'a'], allocated: 1234 });
      const v = await c.getVersion('v1');
      expect(v).toMatchObject({ status: 'valid', tags: ['a', 'b'], stats, image: 'vm1', blockSize: 64, kind: 'backup', allocated: 1234 });
      expect((await c.versionSegments('v1')).map((d) => d.toString('hex'))).toEqual(segs.map((d) => d.toString('hex')));
      expect((await c.latestValidVersion('vm1'))?.uid).toBe('v1');
      await expect(c.commitVersion('v1', { segments: segs, stats, tags: [], allocated: 0 })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    });

    it('getSegments() gives many segments at once by hex digest, leaving out unknown ones', async () => {
      const c = await make();
      const [a, b, unknown] = [randomBytes(32), randomBytes(32), randomBytes(32)];
      await c.putSegment(a, 1, Buffer.from('payload a'));
      await c.putSegment(b, 2, Buffer.from('payload b'));
      const got = await c.getSegments([a, unknown, b, a]);
      expect([...got.entries()].map(([hex, data]) => [hex, data.toString()]).sort()).toEqual(
        [[a.toString('hex'), 'payload a'], [b.toString('hex'), 'payload b']].sort(),
      );
      expect((await c.getSegments([])).size).toBe(0);
    });

    it('firstSegments() gives the first map segment of each committed version of an image; versionSegmentsOf() the maps of many', async () => {
      const c = await make();
      const [a, b] = [randomBytes(32), randomBytes(32)];
      for (const [uid, image] of [['v1', 'vm1'], ['v2', 'vm1'], ['v3', 'vm1'], ['v4', 'vm2']] as const) await c.createVersion(version(uid, image));
      await c.commitVersion('v1', { segments: [a, b], stats, tags: [], allocated: 0 });
      await c.commitVersion('v2', { segments: [b], stats, tags: [], allocated: 0 });
      await c.commitVersion('v4', { segments: [a], stats, tags: [], allocated: 0 });
      const first = await c.firstSegments('vm1');
      expect([...first.entries()].map(([uid, d]) => [uid, d.toString('hex')]).sort()).toEqual([['v1', a.toString('hex')], ['v2', b.toString('hex')]]);
      expect((await c.firstSegments('nope')).size).toBe(0);
      const maps = await c.versionSegmentsOf(['v1', 'v2', 'v3', 'nope']);
      expect([...maps.entries()].map(([uid, d]) => [uid, d.map((x) => x.toString('hex'))]).sort()).toEqual([
        ['v1', [a.toString('hex'), b.toString('hex')]],
        ['v2', [b.toString('hex')]],
        ['v3', []],
      ]);
      expect((await c.versionSegmentsOf([])).size).toBe(0);
    });

    it('listVersions() filters by image, tag, status, kind and time, oldest first, up to a limit; latestValidVersion() by kind', async () => {
      const c = await make();
      await c.createVersion(version('v2', 'vm1', 2000, 'cow'));
      await c.createVersion(version('v1', 'vm1', 1000));
      await c.createVersion(version('v3', 'vm2', 3000));
      await c.commitVersion('v1', { segments: [], stats, tags: ['keep'], allocated: 0 });
      await c.commitVersion('v2', { segments: [], stats, tags: [], allocated: 0 });
      expect((await c.listVersions()).map((v) => v.uid)).toEqual(['v1', 'v2', 'v3']);
      expect((await c.listVersions({ image: 'vm1' })).map((v) => v.uid)).toEqual(['v1', 'v2']);
      expect((await c.listVersions({ tag: 'keep' })).map((v) => v.uid)).toEqual(['v1']);
      expect((await c.listVersions({ status: 'incomplete' })).map((v) => v.uid)).toEqual(['v3']);
      expect((await c.listVersions({ kind: 'cow' })).map((v) => v.uid)).toEqual(['v2']);
      expect((await c.listVersions({ since: 2000 })).map((v) => v.uid)).toEqual(['v2', 'v3']);
      expect((await c.listVersions({ image: 'vm1', since: 1000, until: 2000 })).map((v) => v.uid)).toEqual(['v1']);
      expect((await c.listVersions({ since: 1000, limit: 2 })).map((v) => v.uid)).toEqual(['v1', 'v2']);
      expect((await c.latestValidVersion('vm1'))?.uid).toBe('v2');
      expect((await c.latestValidVersion('vm1', 'backup'))?.uid).toBe('v1');
    });

    it('deleteVersion() removes the image with its last version, so a new block size can be chosen', async () => {
      const c = await make();
      await c.createVersion(version('v1'));
      expect(await c.imageBlockSize('vm1')).toBe(64);
      await c.deleteVersion('v1');
      expect(await c.imageBlockSize('vm1')).toBeUndefined();
      await expect(c.deleteVersion('v1')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    });

    it('touchBlock() tells the state and protects all but blocks being deleted', async () => {
      const c = await make();
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

    it('takeOverDeleting() waits while a cleanup holds its lock, and takes the block over after', async () => {
      const c = await make();
      const d = randomBytes(32);
      await c.registerBlocks([{ digest: d, length: 10, storedLength: 10 }]);
      await c.beginMark();
      await c.claimGarbageBlocks(Date.now() + 1000, 10);
      await c.endMark();
      const cleanup = await c.acquireLock({ resource: CLEANUP_RESOURCE, mode: 'exclusive', operation: 'cleanup' });
      expect(await c.takeOverDeleting(d)).toBe('busy');
      await c.releaseLock(cleanup.id);
      expect(await c.takeOverDeleting(d)).toBe('taken');
      expect((await c.getBlock(d))?.state).toBe(1);
      expect(await c.takeOverDeleting(randomBytes(32))).toBe('gone');
    });

    it('putSegment() is idempotent and replaces a damaged payload of the same digest', async () => {
      const c = await make();
      const d = randomBytes(32);
      await c.putSegment(d, 1, Buffer.from('good'));
      await c.putSegment(d, 1, Buffer.from('good'));
      expect((await c.getSegment(d))?.toString()).toBe('good');
      await c.putSegment(d, 1, Buffer.from('repaired'));
      expect((await c.getSegment(d))?.toString()).toBe('repaired');
      expect(await c.touchSegment(d)).toBe(true);
      expect(await c.touchSegment(randomBytes(32))).toBe(false);
    });

    it('the scrub work list holds each block once, in the order added', async () => {
      const c = await make();
      const [a, b] = [randomBytes(32), randomBytes(32)];
      await c.beginScrubList();
      expect(await c.addToScrubList([{ digest: a, length: 5 }, { digest: b, length: 7 }, { digest: a, length: 5 }])).toEqual({ blocks: 2, bytes: 12 });
      expect(await c.addToScrubList([{ digest: b, length: 7 }])).toEqual({ blocks: 0, bytes: 0 });
      expect(await c.addToScrubList([])).toEqual({ blocks: 0, bytes: 0 });
      const batch = await c.scrubListBatch(0, 10);
      expect(batch.map((r) => r.digest.toString('hex'))).toEqual([a.toString('hex'), b.toString('hex')]);
      expect(await c.scrubListBatch(batch[1]!.position, 10)).toEqual([]);
      await c.endScrubList();
    });

    it('acquireLock() refuses conflicting live locks and allows shared ones together', async () => {
      const c = await make();
      const a = await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
      await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
      await expect(c.acquireLock({ resource: 'version:v1', mode: 'exclusive', operation: 'rm' })).rejects.toMatchObject({
        code: 'E_LOCKED',
        message: expect.stringContaining('restore by process'),
      });
      await c.releaseLock(a.id);
      expect((await c.listLocks('version:v1')).length).toBe(1);
    });

    it('acquireLocks() takes every lock or none; releaseLocks() releases many', async () => {
      const c = await make();
      const rm = await c.acquireLock({ resource: 'version:v3', mode: 'exclusive', operation: 'rm' });
      const many = Array.from({ length: 50 }, (_, i) => ({ resource: `version:v${i + 10}`, mode: 'shared' as const, operation: 'scrub' }));
      await expect(c.acquireLocks([...many, { resource: 'version:v3', mode: 'shared', operation: 'scrub' }])).rejects.toMatchObject({
        code: 'E_LOCKED',
        message: expect.stringContaining('rm by process'),
      });
      expect((await c.listLocks()).map((l) => l.resource)).toEqual(['version:v3']);
      const got = await c.acquireLocks([...many, { resource: 'version:v2', mode: 'exclusive', operation: 'rm', writer: true }]);
      expect(got.map((l) => [l.resource, l.mode, l.operation, l.writer])).toEqual([...many.map((m) => [m.resource, 'shared', 'scrub', false]), ['version:v2', 'exclusive', 'rm', true]]);
      expect(new Set(got.map((l) => l.id)).size).toBe(51);
      expect(await c.acquireLocks([])).toEqual([]);
      await c.releaseLocks([...got.map((l) => l.id), rm.id]);
      expect(await c.listLocks()).toEqual([]);
    });

    it('setExpiry() sets and clears an expiry date that createVersion() and importVersion() record too', async () => {
      const c = await make();
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

    it('commitVersion() refuses while a lease it names is no longer held, and the version stays incomplete', async () => {
      const c = await make();
      await c.createVersion(version('v1'));
      const lock = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup', writer: true });
      await c.releaseLock(lock.id);
      await expect(c.commitVersion('v1', { segments: [], stats, tags: [], allocated: 0, leases: [lock.id] })).rejects.toMatchObject({ code: 'E_LOCKED' });
      expect((await c.getVersion('v1'))?.status).toBe('incomplete');
      const held = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup', writer: true });
      await c.commitVersion('v1', { segments: [], stats, tags: [], allocated: 0, leases: [held.id] });
      expect((await c.getVersion('v1'))?.status).toBe('valid');
    });

    it('heartbeat() renews held locks and reports the ones no longer held', async () => {
      const c = await make();
      const a = await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
      const b = await c.acquireLock({ resource: 'version:v2', mode: 'shared', operation: 'restore' });
      await c.releaseLock(b.id);
      expect(await c.heartbeat([a.id, b.id])).toEqual([b.id]);
      const [listed] = await c.listLocks('version:v1');
      expect(listed?.heartbeatAt).toBeGreaterThanOrEqual(a.heartbeatAt);
      if (listed?.expiresAt != null) expect(listed.expiresAt).toBeGreaterThanOrEqual(listed.heartbeatAt + c.leaseMs);
    });

    it('now() is the catalog clock that stamps locks', async () => {
      const c = await make();
      const before = await c.now();
      const lock = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup', writer: true });
      const after = await c.now();
      expect(lock.acquiredAt).toBeGreaterThanOrEqual(before);
      expect(lock.acquiredAt).toBeLessThanOrEqual(after);
      expect(Math.abs(after - Date.now())).toBeLessThan(60_000);
    });

    it('createVersion() records the host of the catalog; importVersion() keeps the one given', async () => {
      const c = await make();
      await c.createVersion(version('v1'));
      const host = (await c.getVersion('v1'))?.host;
      expect(typeof host).toBe('string');
      expect(host).toBe((await c.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'x' })).host);
      await c.commitVersion('v1', { segments: [], stats, tags: [], allocated: 0 });
      await c.importVersion({ ...(await c.getVersion('v1'))!, uid: 'v2', host: 'elsewhere' }, []);
      expect((await c.getVersion('v2'))?.host).toBe('elsewhere');
    });

    it('exportRows() pages every table in key order and importRows() into an empty catalog gives the same catalog', async () => {
      const c = await make();
      for (let i = 0; i < 7; i++) {
        await c.createVersion({ ...version(`v${i}`, i % 2 ? 'vm1' : 'vm2', 1000 + i), expiresAt: i === 3 ? 5000 : null });
        if (i !== 6) await c.commitVersion(`v${i}`, { segments: [randomBytes(32)], stats, tags: [`t${i}`, 'all'], allocated: i });
      }
      await c.setProtected('v2', true);
      await c.registerBlocks(Array.from({ length: 25 }, (_, i) => ({ digest: randomBytes(32), length: 10 + i, storedLength: 5 + i })));
      await c.putSegment(randomBytes(32), 3, randomBytes(96));
      await c.recordRun('scrub', 7000, { checked: 3 });
      const copy = await make();
      for (const table of ['images', 'versions', 'tags', 'blocks', 'segments', 'runs'] as const) {
        const batches: TransferValue[][][] = [];
        for await (const batch of c.exportRows(table, 4)) {
          batches.push(batch);
          await copy.importRows(table, batch);
        }
        expect(batches.slice(0, -1).every((b) => b.length === 4), table).toBe(true);
        // Importing again skips the rows that exist.
        for (const batch of batches) await copy.importRows(table, batch);
      }
      expect(await copy.listVersions()).toEqual(await c.listVersions());
      expect(await copy.blockTotals()).toEqual({ blocks: 25, bytes: (await c.blockTotals()).bytes, invalid: 0 });
      expect(await copy.listSegments()).toEqual(await c.listSegments());
      expect(await copy.listRuns()).toEqual(await c.listRuns());
      expect((await copy.getVersion('v2'))?.protected).toBe(true);
      expect(await copy.versionSegments('v4')).toEqual(await c.versionSegments('v4'));
    });

    it('recordRun() keeps the last run of each operation and adds its figures to the totals', async () => {
      const c = await make();
      expect(await c.listRuns()).toEqual([]);
      await c.recordRun('scrub', 1000, { blocksChecked: 10, badBlocks: 1 });
      await c.recordRun('scrub', 2000, { blocksChecked: 5, badBlocks: 0 });
      await c.recordRun('cleanup', 1500, { bytesFreed: 7 });
      expect(await c.listRuns()).toEqual([
        { operation: 'cleanup', finishedAt: 1500, last: { bytesFreed: 7 }, totals: { bytesFreed: 7, runs: 1 } },
        { operation: 'scrub', finishedAt: 2000, last: { blocksChecked: 5, badBlocks: 0 }, totals: { blocksChecked: 15, badBlocks: 1, runs: 2 } },
      ]);
    });
  });
}
