import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore, nameOf } from '../../../helpers/store.js';
import { makeImage, sha256Small } from '../../../helpers/image.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

function open(overrides = {}): Store {
  store = makeMemoryStore(overrides);
  return store;
}

describe('backup() and restore()', () => {
  it('backup() then restore() gives the same bytes, storing zero blocks not at all', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [
      { kind: 'random', length: 3 * B },
      { kind: 'zero', length: 5 * B },
      { kind: 'fill', length: 2 * B, byte: 7 },
      { kind: 'random', length: 1000 }, // short last block
    ]);
    const result = await backup(s, { source: image, image: 'vm1' });
    expect(result.status).toBe('valid');
    expect(result.size).toBe(10 * B + 1000);
    expect(result.bytesSparse).toBe(5 * B);
    // two identical fill blocks are stored once
    expect(result.blocksWritten).toBe(3 + 1 + 1);
    expect(result.bytesDeduplicated).toBe(B);

    const out = path.join(dir, 'out');
    const restored = await restore(s, { uid: result.uid, target: out });
    expect(restored.badBlockCount).toBe(0);
    expect(sha256Small(out)).toBe(sha256Small(image));
  });

  it('backup() of the same data under another image stores nothing new', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 20 * B }]);
    await backup(s, { source: image, image: 'a' });
    const second = await backup(s, { source: image, image: 'b' });
    expect(second.bytesWritten).toBe(0);
    expect(second.bytesDeduplicated).toBe(20 * B);
  });

  it('backup() with hints reads only hinted blocks plus the sample and equals a full backup', async () => {
    const s = open({ hintSample: 2 });
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 40 * B }]);
    const base = await backup(s, { source: image, image: 'vm1', snapshot: 's1' });
    // change blocks 3 and 17
    const data = readFileSync(image);
    randomBytes(B).copy(data, 3 * B);
    randomBytes(100).copy(data, 17 * B + 5);
    writeFileSync(image, data);
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, JSON.stringify([
      { offset: 3 * B, length: B, exists: 'true' },
      { offset: 17 * B + 5, length: 100, exists: true },
    ]));
    const inc = await backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's1' });
    expect(inc.baseUid).toBe(base.uid);
    expect(inc.bytesRead).toBe(2 * B + 2 * B);
    expect(inc.bytesWritten).toBe(2 * B);
    const full = await backup(s, { source: image, image: 'vm1-full' });
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await restore(s, { uid: inc.uid, target: a });
    await restore(s, { uid: full.uid, target: b });
    expect(sha256Small(a)).toBe(sha256Small(image));
    expect(sha256Small(b)).toBe(sha256Small(image));
  });

  it('backup() with wrong hints fails and commits nothing', async () => {
    const s = open({ hintSample: 1000 });
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 10 * B }]);
    const base = await backup(s, { source: image, image: 'vm1' });
    const data = readFileSync(image);
    randomBytes(B).copy(data, 4 * B);
    writeFileSync(image, data);
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, JSON.stringify([{ offset: 0, length: B, exists: 'true' }]));
    await expect(backup(s, { source: image, image: 'vm1', hintsFile: hints, baseUid: base.uid })).rejects.toMatchObject({ code: 'E_CONFLICT' });
    expect((await s.catalog.listVersions()).length).toBe(1);
  });

  it('backup() without hints stores only the changed blocks of an incremental', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 10 * B }, { kind: 'zero', length: 10 * B }]);
    await backup(s, { source: image, image: 'vm1' });
    const data = readFileSync(image);
    randomBytes(B).copy(data, 15 * B);
    writeFileSync(image, data);
    const inc = await backup(s, { source: image, image: 'vm1' });
    expect(inc.bytesRead).toBe(20 * B);
    expect(inc.bytesWritten).toBe(B);
    expect(inc.bytesSparse).toBe(9 * B);
  });
});

describe('backup() and restore() with damage', () => {
  it('restore() reports a corrupt and a missing block, leaves their range zero and restores the rest', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 6 * B }]);
    const { uid } = await backup(s, { source: image, image: 'vm1' });
    const data = readFileSync(image);
    const keys: string[] = [];
    for await (const info of s.blocks.list('blocks/')) keys.push(info.key);
    const digestOf = (i: number) => nameOf(s, data.subarray(i * B, (i + 1) * B)).toString('hex');
    const key1 = keys.find((k) => k.endsWith(digestOf(1)))!;
    const key4 = keys.find((k) => k.endsWith(digestOf(4)))!;
    const object = Buffer.from(await s.blocks.get(key1));
    object[100] = object[100]! ^ 0xff;
    await s.blocks.put(key1, [object]);
    await s.blocks.delete(key4);

    const out = path.join(dir, 'out');
    const result = await restore(s, { uid, target: out });
    expect(result.badBlockCount).toBe(2);
    expect(result.badBlocks.map((b) => [b.index, b.code])).toEqual([[1, 'E_CORRUPT'], [4, 'E_OBJECT_MISSING']]);
    const restored = readFileSync(out);
    for (const i of [0, 2, 3, 5]) expect(restored.subarray(i * B, (i + 1) * B).equals(data.subarray(i * B, (i + 1) * B))).toBe(true);
    expect(restored.subarray(B, 2 * B).equals(Buffer.alloc(B))).toBe(true);
  });

  it('backup() re-reads and re-stores blocks marked invalid even when hints leave them out', async () => {
    const s = open({ hintSample: 0 });
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 8 * B }]);
    const first = await backup(s, { source: image, image: 'vm1' });
    const data = readFileSync(image);
    const bad = nameOf(s, data.subarray(2 * B, 3 * B));
    await s.blocks.delete(`blocks/${bad.toString('hex').slice(0, 2)}/${bad.toString('hex')}`);
    await s.catalog.setBlockState([bad], 1);
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, '[]');
    const second = await backup(s, { source: image, image: 'vm1', hintsFile: hints, baseUid: first.uid });
    expect(second.bytesRead).toBe(B);
    expect(second.bytesWritten).toBe(B);
    expect((await s.catalog.getBlock(bad))?.state).toBe(0);
    const out = path.join(dir, 'out');
    expect((await restore(s, { uid: first.uid, target: out })).badBlockCount).toBe(0);
  });
});

describe('backup() arguments', () => {
  it('keeps the block size an image was created with', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 4 * B }]);
    await backup(s, { source: image, image: 'vm1' });
    (s.config as { blockSize: number }).blockSize = 2 * B;
    const second = await backup(s, { source: image, image: 'vm1' });
    expect(second.blockSize).toBe(B);
    expect((await backup(s, { source: image, image: 'vm2' })).blockSize).toBe(2 * B);
  });

  it.each([
    ['a missing source', { source: '/nonexistent/img', image: 'vm1' }, 'E_NOT_FOUND'],
    ['a bad image name', { source: '/dev/null', image: 'a/b' }, 'E_USAGE'],
    ['an unknown base', { image: 'vm1', baseUid: 'v0000000000000' }, 'E_NOT_FOUND'],
    ['a missing hints file', { image: 'vm1', hintsFile: '/nonexistent.json' }, 'E_NOT_FOUND'],
    ['a directory as source', { source: '/tmp', image: 'vm1' }, 'E_USAGE'],
  ])('rejects %s without creating a version', async (_name, options, code) => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 2 * B }]);
    await expect(backup(s, { source: image, ...options } as Parameters<typeof backup>[1])).rejects.toMatchObject({ code });
    expect(await s.catalog.listVersions()).toEqual([]);
  });

  it('rejects a base version of another image', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 2 * B }]);
    const a = await backup(s, { source: image, image: 'a' });
    await expect(backup(s, { source: image, image: 'b', baseUid: a.uid })).rejects.toMatchObject({ code: 'E_USAGE' });
  });

  it('skips the holes of a sparse source without reading them', async () => {
    const s = open();
    const dir = makeTempDir();
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: B }, { kind: 'zero', length: 1000 * B }, { kind: 'random', length: B }]);
    const result = await backup(s, { source: image, image: 'vm1' });
    expect(result.bytesRead).toBe(2 * B);
    expect(result.bytesSparse).toBe(1000 * B);
    const out = path.join(dir, 'out');
    await restore(s, { uid: result.uid, target: out, sparse: true });
    expect(sha256Small(out)).toBe(sha256Small(image));
  });
});
