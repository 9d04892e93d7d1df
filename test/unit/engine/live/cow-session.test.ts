import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { BlockCache } from '../../../../src/engine/live/block-cache.js';
import { COW_TAG, CowSession } from '../../../../src/engine/live/cow-session.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import { VersionReader } from '../../../../src/engine/live/version-reader.js';
import { removeVersions } from '../../../../src/engine/operations/versions.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';
import { fetchContextOf } from '../../../../src/engine/objects/block-reader.js';

let store: Store | undefined;
const sessions: CowSession[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close();
  await store?.close();
  store = undefined;
});

async function setup(regions = [{ kind: 'random' as const, length: 5 * B }, { kind: 'zero' as const, length: 3 * B }, { kind: 'random' as const, length: 1000 }]) {
  const s = (store = makeMemoryStore());
  const dir = makeTempDir();
  const image = path.join(dir, 'img');
  makeImage(image, regions);
  const result = await backup(s, { source: image, image: 'vm1' });
  const version = (await s.catalog.getVersion(result.uid))!;
  const cache = new BlockCache(fetchContextOf(s), { maxBytes: 4 * B });
  return { s, dir, image, version, cache, data: readFileSync(image) };
}

describe('VersionReader', () => {
  it('read() returns the image bytes at any offset and length, zeros for sparse blocks', async () => {
    const { s, version, cache, data } = await setup();
    const reader = await VersionReader.open(s, version, cache);
    for (const [offset, length] of [[0, 10], [B - 3, 7], [3 * B + 5, 3 * B], [data.length - 100, 500], [0, data.length]] as const) {
      const into = Buffer.alloc(length);
      const n = await reader.read(offset, into);
      expect(n).toBe(Math.min(length, data.length - offset));
      expect(into.subarray(0, n).equals(data.subarray(offset, offset + n))).toBe(true);
    }
    expect(await reader.read(data.length, Buffer.alloc(10))).toBe(0);
    expect(await reader.allocatedBytes()).toBe(5 * B + 1000);
    expect(await reader.extents(0, data.length)).toEqual([
      { offset: 0, length: 5 * B, sparse: false },
      { offset: 5 * B, length: 3 * B, sparse: true },
      { offset: 8 * B, length: 1000, sparse: false },
    ]);
  });

  it('read() throws E_CORRUPT for a damaged block and keeps serving others', async () => {
    const { s, version, cache, data } = await setup();
    const keys: string[] = [];
    for await (const info of s.blocks.list('blocks/')) keys.push(info.key);
    const reader = await VersionReader.open(s, version, cache);
    const digest = (await reader.entry(2))!.toString('hex');
    const key = keys.find((k) => k.endsWith(digest))!;
    const object = Buffer.from(await s.blocks.get(key));
    object[200] = object[200]! ^ 1;
    await s.blocks.put(key, [object]);
    await expect(reader.read(2 * B, Buffer.alloc(10))).rejects.toMatchObject({ code: 'E_CORRUPT' });
    const ok = Buffer.alloc(10);
    await reader.read(B, ok);
    expect(ok.equals(data.subarray(B, B + 10))).toBe(true);
  });
});

describe('CowSession', () => {
  it('write() changes what read() sees and commit() makes a new version; the base stays as it was', async () => {
    const { s, dir, image, version, cache, data } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    sessions.push(session);
    const patch = randomBytes(3 * B);
    await session.write(B + 17, patch); // spans blocks 1..4
    await session.write(6 * B + 5, Buffer.from('into a sparse block'));
    await session.zero(0, B); // whole block becomes sparse
    const expected = Buffer.from(data);
    patch.copy(expected, B + 17);
    Buffer.from('into a sparse block').copy(expected, 6 * B + 5);
    expected.fill(0, 0, B);
    const seen = Buffer.alloc(data.length);
    await session.read(0, seen);
    expect(seen.equals(expected)).toBe(true);

    const committed = await session.commit();
    expect(committed).toMatchObject({ status: 'valid', baseUid: version.uid, tags: [COW_TAG], image: 'vm1', size: data.length });
    expect(await session.commit()).toBeUndefined();

    const out = path.join(dir, 'new.img');
    await restore(s, { uid: committed!.uid, target: out });
    expect(readFileSync(out).equals(expected)).toBe(true);
    const orig = path.join(dir, 'orig.img');
    await restore(s, { uid: version.uid, target: orig });
    expect(readFileSync(orig).equals(readFileSync(image))).toBe(true);
    expect(committed!.stats?.blocksWritten).toBe(5);
  });

  it('a second commit supersedes the first and rehashes only blocks written since', async () => {
    const { s, dir, version, cache } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    sessions.push(session);
    await session.write(0, randomBytes(100));
    const first = await session.commit();
    await session.write(3 * B, randomBytes(100));
    const second = await session.commit();
    expect(second!.stats?.blocksRead).toBe(1);
    expect(second!.baseUid).toBe(version.uid);
    expect(await s.catalog.getVersion(first!.uid)).toBeUndefined();
    expect((await s.catalog.listVersions()).map((v) => v.uid).sort()).toEqual([version.uid, second!.uid].sort());
  });

  it('a commit asked for while one runs commits again afterwards: writes made meanwhile are in a version when it resolves', async () => {
    const { s, dir, version, cache, data } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    sessions.push(session);
    const first = randomBytes(100);
    const second = randomBytes(100);
    await session.write(0, first);
    // Hold the first commit while it stores its block.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let storing!: () => void;
    const commitStoring = new Promise<void>((resolve) => (storing = resolve));
    const blocks = s.blocks as { put: typeof s.blocks.put };
    const put = blocks.put.bind(s.blocks);
    blocks.put = async (...args) => {
      storing();
      await gate;
      return put(...args);
    };
    const running = session.commit();
    await commitStoring;
    // A second writer writes and flushes while the first commit is under way.
    await session.write(3 * B, second);
    const flushing = session.commit();
    blocks.put = put;
    release();
    const earlier = await running;
    const flushed = await flushing;
    expect(flushed).toBeDefined();
    expect(flushed!.uid).not.toBe(earlier!.uid);
    const out = path.join(dir, 'out');
    await restore(s, { uid: flushed!.uid, target: out });
    const expected = Buffer.from(data);
    first.copy(expected, 0);
    second.copy(expected, 3 * B);
    expect(readFileSync(out).equals(expected)).toBe(true);
    expect(await session.commit()).toBeUndefined();
  });

  it('refuses writes past the end and holds the base against removal until closed', async () => {
    const { s, dir, version, cache, data } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    await expect(session.write(data.length - 1, Buffer.alloc(2))).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(removeVersions(s, [version.uid], { force: true })).rejects.toMatchObject({ code: 'E_LOCKED' });
    await session.close();
    await removeVersions(s, [version.uid], { force: true });
  });
});

describe('CowSession edge cases', () => {
  it('a zeroed block that is written again reads as zeros plus the new data', async () => {
    const { s, dir, version, cache, data } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    sessions.push(session);
    await session.write(B, randomBytes(B)); // gives block 1 a slot
    await session.zero(B, B);
    await session.write(B + 100, Buffer.from('xyz'));
    const block = Buffer.alloc(B);
    await session.read(B, block);
    const expected = Buffer.alloc(B);
    Buffer.from('xyz').copy(expected, 100);
    expect(block.equals(expected)).toBe(true);
    const committed = await session.commit();
    const out = path.join(dir, 'out');
    await restore(s, { uid: committed!.uid, target: out });
    expect(readFileSync(out).subarray(B, 2 * B).equals(expected)).toBe(true);
    expect(readFileSync(out).subarray(0, B).equals(data.subarray(0, B))).toBe(true);
  });

  it('a failed commit keeps the writes for the next commit', async () => {
    const { s, dir, version, cache } = await setup();
    const session = await CowSession.open(s, version, { spillDir: dir, cache, origin: 'test' });
    sessions.push(session);
    const patch = randomBytes(4096);
    await session.write(2 * B, patch);
    const put = s.blocks.put.bind(s.blocks);
    s.blocks.put = async () => {
      throw Object.assign(new Error('injected'), { code: 'E_STORE' });
    };
    await expect(session.commit()).rejects.toThrow('injected');
    s.blocks.put = put;
    expect(session.dirty).toBe(true);
    const committed = await session.commit();
    expect(committed).toBeDefined();
    const out = path.join(dir, 'out');
    await restore(s, { uid: committed!.uid, target: out });
    expect(readFileSync(out).subarray(2 * B, 2 * B + 4096).equals(patch)).toBe(true);
  });
});
