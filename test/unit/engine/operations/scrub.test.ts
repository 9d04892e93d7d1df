import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import { rebuildCatalog } from '../../../../src/engine/operations/catalog-rebuild.js';
import { SqliteCatalog } from '../../../../src/engine/catalog/sqlite-catalog.js';
import { assembleStore, type Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { runScrub } from '../../../helpers/scrub.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore, nameOf } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});


/** The key of the object that holds `data` in the test's store. */
const keyOf = (data: Buffer) => {
  const hex = nameOf(store!, data).toString('hex');
  return `blocks/${hex.slice(0, 2)}/${hex}`;
};

describe('scrub()', () => {
  it('finds every kind of bitrot, marks blocks and all versions using them invalid; a backup heals, a full scrub revalidates', async () => {
    const s = (store = makeMemoryStore());
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 12 * B }, { kind: 'zero', length: 2 * B }]);
    const data = readFileSync(image);
    const a = await backup(s, { source: image, image: 'vm1' });
    const b = await backup(s, { source: image, image: 'vm2' }); // shares every block
    const block = (i: number) => data.subarray(i * B, (i + 1) * B);

    // flipped byte, truncated, deleted, and two objects swapped between keys
    const flipped = Buffer.from(await s.blocks.get(keyOf(block(0))));
    flipped[500] = flipped[500]! ^ 0x40;
    await s.blocks.put(keyOf(block(0)), [flipped]);
    const truncated = Buffer.from(await s.blocks.get(keyOf(block(1))));
    await s.blocks.put(keyOf(block(1)), [truncated.subarray(0, truncated.length - 10)]);
    await s.blocks.delete(keyOf(block(2)));
    const three = Buffer.from(await s.blocks.get(keyOf(block(3))));
    const four = Buffer.from(await s.blocks.get(keyOf(block(4))));
    await s.blocks.put(keyOf(block(3)), [four]);
    await s.blocks.put(keyOf(block(4)), [three]);

    const { findings, result } = await runScrub(s, { uids: [a.uid] });
    expect(result.badBlocks).toBe(5);
    expect(findings.filter((f) => f.type === 'bad-block')).toHaveLength(5);
    expect(result.versionsInvalidated).toBe(2);
    expect((await s.catalog.getVersion(a.uid))?.status).toBe('invalid');
    expect((await s.catalog.getVersion(b.uid))?.status).toBe('invalid');
    expect(await s.catalog.invalidBlocks()).toHaveLength(5);

    // invalid versions still restore what is good
    const out = path.join(dir, 'out');
    expect((await restore(s, { uid: b.uid, target: out })).badBlockCount).toBe(5);

    // the next backup heals even with empty hints
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, '[]');
    const healed = await backup(s, { source: image, image: 'vm1', hintsFile: hints });
    expect(healed.bytesWritten).toBe(5 * B);
    expect(await s.catalog.invalidBlocks()).toHaveLength(0);
    const again = await runScrub(s, { all: true });
    expect(again.result.badBlocks).toBe(0);
    expect(again.result.versionsRevalidated).toBe(2);
    expect((await s.catalog.listVersions()).every((v) => v.status === 'valid')).toBe(true);
    // shared blocks are read once: 12 distinct blocks for 3 versions
    expect(again.result.blocksChecked).toBe(12);
  });

  it('a catalog rebuilt from the block store keeps what a scrub found; healing clears it', async () => {
    const s = (store = makeMemoryStore());
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 4 * B }]);
    const data = readFileSync(image);
    const v = await backup(s, { source: image, image: 'vm1' });
    const key = keyOf(data.subarray(B, 2 * B));
    const bad = Buffer.from(await s.blocks.get(key));
    bad[100] = bad[100]! ^ 1;
    await s.blocks.put(key, [bad]);
    expect((await runScrub(s, { uids: [v.uid] })).result.versionsInvalidated).toBe(1);

    const rebuiltFrom = async () => {
      const fresh = assembleStore(s.config, SqliteCatalog.open(':memory:'), s.blocks);
      await rebuildCatalog(fresh);
      return fresh;
    };
    const rebuilt = await rebuiltFrom();
    expect((await rebuilt.catalog.getVersion(v.uid))?.status).toBe('invalid');
    expect(await rebuilt.catalog.invalidBlocks()).toHaveLength(1);
    await rebuilt.catalog.close();

    // the next backup re-stores the block and drops its marker; the version stays invalid until a full scrub
    await backup(s, { source: image, image: 'vm1' });
    expect(await s.blocks.stat(`invalid/${key.slice(key.lastIndexOf('/') + 1)}`)).toBeUndefined();
    await runScrub(s, { uids: [v.uid] });
    const healed = await rebuiltFrom();
    expect((await healed.catalog.getVersion(v.uid))?.status).toBe('valid');
    expect(await healed.catalog.invalidBlocks()).toHaveLength(0);
    await healed.catalog.close();
  });

  it('checks a random share with -p and compares with the source with -s', async () => {
    const s = (store = makeMemoryStore());
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 100 * B }, { kind: 'zero', length: 10 * B }]);
    const v = await backup(s, { source: image, image: 'vm1' });
    const part = await runScrub(s, { uids: [v.uid], percent: 10 });
    // About 10% of the 100 distinct blocks (a window of the digest space: not exactly 10).
    expect(part.result.blocksInScope).toBe(100);
    expect(part.result.blocksChecked).toBeGreaterThan(0);
    expect(part.result.blocksChecked).toBeLessThanOrEqual(25);

    expect((await runScrub(s, { uids: [v.uid], source: image })).result.sourceMismatches).toBe(0);
    const data = readFileSync(image);
    randomBytes(10).copy(data, 5 * B + 3);
    data[105 * B] = 1; // in a block that is sparse in the backup
    writeFileSync(image, data);
    const { findings, result } = await runScrub(s, { uids: [v.uid], source: image });
    expect(result.sourceMismatches).toBe(2);
    expect(result.badBlocks).toBe(0);
    expect(findings.filter((f) => f.type === 'source-mismatch').map((f) => (f.type === 'source-mismatch' ? f.block : -1))).toEqual([5, 105]);
    expect((await s.catalog.getVersion(v.uid))?.status).toBe('valid');
  });

  it('scrub() -p checks P% of the distinct blocks of many versions sharing them, reading each shared segment once', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 400 * B }]);
    for (let i = 0; i < 12; i++) await backup(s, { source: image, image: 'vm1' });
    const segmentReads = vi.spyOn(s.catalog, 'getSegment');
    const { result } = await runScrub(s, { all: true, percent: 10 });
    expect(result.versions).toBe(12);
    expect(result.blocksInScope).toBe(400);
    expect(result.segmentsInScope).toBe(1);
    // P% of the distinct blocks, not P% of each version (which read most of them: 1 - 0.9^12 = 72%).
    expect(result.blocksChecked).toBeGreaterThan(15);
    expect(result.blocksChecked).toBeLessThan(70);
    expect(segmentReads.mock.calls.length).toBeLessThanOrEqual(2);
  });

  it('scrub() -p checks different blocks on consecutive days and all of them within ceil(100/P) days', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 300 * B }]);
    await backup(s, { source: image, image: 'vm1' });
    await backup(s, { source: image, image: 'vm1' });
    const reads = vi.spyOn(s.blocks, 'get');
    const days: Set<string>[] = [];
    for (let day = 0; day < 7; day++) {
      reads.mockClear();
      const { result } = await runScrub(s, { all: true, percent: 15, at: Date.UTC(2026, 0, 1) + day * 86_400_000 });
      const keys = new Set(reads.mock.calls.map(([key]) => key).filter((key) => key.startsWith('blocks/')));
      expect(keys.size).toBe(result.blocksChecked);
      days.push(keys);
    }
    const union = new Set(days.flatMap((d) => [...d]));
    expect(union.size).toBe(300);
    for (let day = 1; day < 7; day++) {
      const overlap = [...(days[day] ?? [])].filter((key) => days[day - 1]?.has(key));
      expect(overlap).toEqual([]);
    }
  });

  it('scrub() -p checks P% of the manifests, others each day, all of them within ceil(100/P) days', async () => {
    const s = (store = makeMemoryStore());
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 2 * B }]);
    for (let i = 0; i < 30; i++) await backup(s, { source: image, image: 'vm1', tags: ['t'] });
    const reads = vi.spyOn(s.blocks, 'get');
    const seen = new Set<string>();
    let checked = 0;
    for (let day = 0; day < 4; day++) {
      reads.mockClear();
      const { result, findings } = await runScrub(s, { all: true, percent: 25, at: Date.UTC(2026, 0, 1) + day * 86_400_000 });
      expect(findings).toEqual([]);
      const manifests = reads.mock.calls.map(([key]) => key).filter((key) => key.startsWith('versions/'));
      expect(manifests.length).toBe(result.manifestsChecked);
      checked += result.manifestsChecked;
      for (const key of manifests) seen.add(key);
    }
    expect(seen.size).toBe(30);
    expect(checked).toBe(30);
    expect((await runScrub(s, { all: true })).result.manifestsChecked).toBe(30);
  });

  it('rejects bad arguments', async () => {
    const s = (store = makeMemoryStore());
    await expect(runScrub(s, { uids: ['vnope'] })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    await expect(runScrub(s, { uids: [] })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(runScrub(s, { all: true, percent: 0 })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});
