import { randomBytes } from 'node:crypto';
import { readFileSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { BlockWriter } from '../../../../src/engine/objects/block-writer.js';
import { CLEANUP_RESOURCE } from '../../../../src/engine/catalog/catalog.js';
import { cleanup } from '../../../../src/engine/operations/cleanup.js';
import { acquireLocks, imageResource } from '../../../../src/engine/catalog/locking.js';
import { BufferPool } from '../../../../src/engine/pipeline/buffer-pool.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import { removeVersions } from '../../../../src/engine/operations/versions.js';
import { makeImage, sha256Small } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore, makeTempStore, nameOf } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

async function objects(s: Store, prefix = 'blocks/'): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of s.blocks.list(prefix)) keys.push(info.key);
  return keys;
}

async function twoVersions(s: Store): Promise<{ dir: string; a: string; b: string; imageA: string; imageB: string }> {
  const dir = makeTempDir();
  const imageA = path.join(dir, 'a');
  const imageB = path.join(dir, 'b');
  makeImage(imageA, [{ kind: 'random', length: 6 * B }]);
  const shared = readFileSync(imageA).subarray(0, 3 * B);
  makeImage(imageB, [{ kind: 'bytes', data: shared }, { kind: 'random', length: 4 * B }]);
  const a = (await backup(s, { source: imageA, image: 'a' })).uid;
  const b = (await backup(s, { source: imageB, image: 'b' })).uid;
  return { dir, a, b, imageA, imageB };
}

describe('cleanup()', () => {
  it('deletes only what no version refers to; everything left restores', async () => {
    const s = (store = makeMemoryStore());
    const { dir, a, b, imageB } = await twoVersions(s);
    expect(await objects(s)).toHaveLength(10);
    await removeVersions(s, [a], { force: true });
    const dry = await cleanup(s, { dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, blocksDeleted: 3, bytesFreed: 3 * B });
    expect(await objects(s)).toHaveLength(10);
    const result = await cleanup(s);
    expect(result).toMatchObject({ blocksDeleted: 3, bytesFreed: 3 * B, segmentsDeleted: 1 });
    expect(await objects(s)).toHaveLength(7);
    const out = path.join(dir, 'out');
    expect((await restore(s, { uid: b, target: out })).badBlockCount).toBe(0);
    expect(sha256Small(out)).toBe(sha256Small(imageB));
    expect((await cleanup(s)).blocksDeleted).toBe(0);
  });

  it('keeps unreferenced blocks younger than the oldest running writer', async () => {
    const s = (store = makeMemoryStore());
    const writer = await acquireLocks(s.catalog, [{ resource: imageResource('other'), mode: 'exclusive', operation: 'backup', writer: true }]);
    const { a } = await twoVersions(s);
    await removeVersions(s, [a], { force: true });
    const kept = await cleanup(s);
    expect(kept).toMatchObject({ blocksDeleted: 0, blocksKept: 3 });
    await writer.release();
    expect((await cleanup(s)).blocksDeleted).toBe(3);
  });

  it('finishes the blocks a killed cleanup left half-deleted', async () => {
    const s = (store = makeMemoryStore());
    const { a } = await twoVersions(s);
    await removeVersions(s, [a], { force: true });
    // what a cleanup killed between claiming and forgetting leaves
    await s.catalog.beginMark();
    for (const v of await s.catalog.listVersions()) for (const seg of await s.catalog.versionSegments(v.uid)) await s.catalog.markLive((await s.catalog.getSegment(seg))!.subarray(8));
    const claimed = await s.catalog.claimGarbageBlocks(Date.now() + 1, 2);
    await s.catalog.endMark();
    expect(claimed).toHaveLength(2);
    const result = await cleanup(s);
    expect(result.resumed).toBe(2);
    expect(result.blocksDeleted).toBe(1);
    expect(await s.catalog.deletingBlocks(10)).toEqual([]);
  });

  it('a writer that meets a block being deleted waits for the cleanup, or takes it over when it died', async () => {
    const s = (store = makeMemoryStore());
    const { a, imageA } = await twoVersions(s);
    await removeVersions(s, [a], { force: true });
    const data = readFileSync(imageA).subarray(5 * B, 6 * B); // only in the removed version
    const digest = nameOf(s, data);
    await s.catalog.beginMark();
    for (const v of await s.catalog.listVersions()) for (const seg of await s.catalog.versionSegments(v.uid)) await s.catalog.markLive((await s.catalog.getSegment(seg))!.subarray(8));
    await s.catalog.claimGarbageBlocks(Date.now() + 1, 100);
    await s.catalog.endMark();
    expect((await s.catalog.getBlock(digest))?.state).toBe(2);

    const cleanupLock = await acquireLocks(s.catalog, [{ resource: CLEANUP_RESOURCE, mode: 'exclusive', operation: 'cleanup' }]);
    const pool = new BufferPool(B, 1);
    const buf = await pool.acquire();
    data.copy(buf.payload);
    const writer = new BlockWriter(s.catalog, s.blocks);
    let done = false;
    const storing = writer.store(digest, buf, B).then((written) => {
      done = true;
      return written;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(done).toBe(false); // waits while the cleanup is alive
    await cleanupLock.release(); // the cleanup "died": the writer takes over
    expect(await storing).toBe(true);
    await writer.flush();
    expect((await s.catalog.getBlock(digest))?.state).toBe(0);
    expect(await s.blocks.stat(`blocks/${digest.toString('hex').slice(0, 2)}/${digest.toString('hex')}`)).toBeDefined();
  });

  it('removes orphan objects and stale temp files of killed writers from a file store', async () => {
    const { store: s, dir } = await makeTempStore();
    store = s;
    await twoVersions(s);
    const old = Date.now() / 1000 - 3600;
    const orphan = path.join(dir, 'blocks', 'ff', 'ff'.repeat(32));
    mkdirSync(path.dirname(orphan), { recursive: true });
    writeFileSync(orphan, randomBytes(100));
    utimesSync(orphan, old, old);
    // Temp files in every directory of the store, invalid markers' too (once missed there).
    mkdirSync(path.join(dir, 'invalid'), { recursive: true });
    for (const temp of [path.join(dir, 'blocks', 'ff', '.tmp-abc'), path.join(dir, 'invalid', '.tmp-def')]) {
      writeFileSync(temp, randomBytes(10));
      utimesSync(temp, old, old);
    }
    // a running backup wrote this one and is about to register it
    writeFileSync(path.join(dir, 'blocks', 'ff', 'fe'.repeat(32)), randomBytes(10));
    const result = await cleanup(s);
    expect(result).toMatchObject({ orphansDeleted: 1, orphanBytes: 100, tempFilesDeleted: 2, blocksDeleted: 0 });
    expect((await objects(s)).some((k) => k.endsWith('fe'.repeat(32)))).toBe(true);
  });

  it('refuses to run when the catalog lacks versions the block store has', async () => {
    const s = (store = makeMemoryStore());
    const { a } = await twoVersions(s);
    await s.catalog.deleteVersion(a); // as if the catalog had lost it
    await expect(cleanup(s)).rejects.toMatchObject({ code: 'E_CONFLICT', message: expect.stringContaining(a) });
    expect(await objects(s)).toHaveLength(10);
  });
});
