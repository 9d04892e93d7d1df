import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockCache } from '../../../../src/engine/live/block-cache.js';
import { VersionReader } from '../../../../src/engine/live/version-reader.js';
import { fetchContextOf } from '../../../../src/engine/objects/block-reader.js';
import { backup } from '../../../../src/engine/operations/backup.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore, nameOf } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

async function setup(blocks: number) {
  const s = (store = makeMemoryStore());
  const image = path.join(makeTempDir(), 'img');
  makeImage(image, [{ kind: 'random', length: blocks * B }, { kind: 'zero', length: B }]);
  const version = (await s.catalog.getVersion((await backup(s, { source: image, image: 'vm1' })).uid))!;
  const data = readFileSync(image);
  const digest = (i: number) => nameOf(s, data.subarray(i * B, (i + 1) * B));
  return { s, version, data, digest };
}

describe('BlockCache', () => {
  it('keeps blocks in the buffers they were read into, and reuses the buffers of evicted blocks', async () => {
    const { s, data, digest } = await setup(6);
    const cache = new BlockCache(fetchContextOf(s), { maxBytes: 2 * B, fetchers: 2 });
    const first = await cache.get(digest(0), B);
    expect(first.equals(data.subarray(0, B))).toBe(true);
    // The memory the workers proved it in (shared), not a copy of it.
    expect(first.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(cache.peek(digest(0), B)).toBe(first);
    const memories = new Set([first.buffer]);
    memories.add((await cache.get(digest(1), B)).buffer);
    // Full: the next block needs a buffer of its own while it is read (one per fetch in flight)
    // and evicts the oldest when it is kept; from then on, blocks land in evicted blocks' buffers.
    memories.add((await cache.get(digest(2), B)).buffer);
    expect(memories.size).toBe(3);
    for (let i = 3; i < 6; i++) {
      const block = await cache.get(digest(i), B);
      expect(block.equals(data.subarray(i * B, (i + 1) * B))).toBe(true);
      expect(memories.has(block.buffer)).toBe(true);
    }
    expect(cache.size).toBe(2 * B);
    expect(cache.peek(digest(0), B)).toBeUndefined();
  });

  it('a damaged block is refused by its checksum, is not cached, and its buffer serves the next block', async () => {
    const { s, data, digest } = await setup(2);
    const key = `blocks/${digest(0).toString('hex').slice(0, 2)}/${digest(0).toString('hex')}`;
    const object = Buffer.from(await s.blocks.get(key));
    object[64 + 123]! ^= 0x01;
    await s.blocks.put(key, [object]);
    const cache = new BlockCache(fetchContextOf(s), { maxBytes: 4 * B, fetchers: 1 });
    await expect(cache.get(digest(0), B)).rejects.toThrow(/do not match their checksum/);
    expect(cache.peek(digest(0), B)).toBeUndefined();
    expect((await cache.get(digest(1), B)).equals(data.subarray(B, 2 * B))).toBe(true);
  });
});

describe('VersionReader.readCached()', () => {
  it('answers at once only what needs no waiting: sparse blocks, and cached ones once their segment is loaded', async () => {
    const { s, version, data } = await setup(3);
    const reader = await VersionReader.open(s, version, new BlockCache(fetchContextOf(s), { maxBytes: 8 * B }), { readAhead: 0 });
    const into = Buffer.alloc(4096);
    // Nothing loaded yet: not even the map segment.
    expect(reader.readCached(B + 10, into)).toBeUndefined();
    await reader.read(B + 10, into);
    expect(reader.readCached(B + 100, into)).toBe(4096);
    expect(into.equals(data.subarray(B + 100, B + 100 + 4096))).toBe(true);
    // Block 2 is not cached; block 3 is sparse; a range across two blocks always waits.
    expect(reader.readCached(2 * B, into)).toBeUndefined();
    into.fill(7);
    expect(reader.readCached(3 * B + 5, into)).toBe(4096);
    expect(into.equals(Buffer.alloc(4096))).toBe(true);
    expect(reader.readCached(2 * B - 10, into)).toBeUndefined();
    expect(reader.readCached(data.length - 10, into)).toBe(10);
    expect(reader.readCached(data.length, into)).toBe(0);
  });
});
