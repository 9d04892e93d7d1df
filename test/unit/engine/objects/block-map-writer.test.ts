import { PLAIN } from '../../../../src/engine/objects/object-seal.js';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockMapWriter, baseSegment } from '../../../../src/engine/objects/block-map-writer.js';
import { BlockMap, dataBytes, encodeSegment, loadSegment } from '../../../../src/engine/objects/block-map.js';
import { SEGMENT_ENTRIES, SPARSE_ENTRY } from '../../../../src/engine/objects/formats.js';
import { StoreKeys } from '../../../../src/engine/objects/store-keys.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeMemoryStore } from '../../../helpers/store.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

describe('BlockMapWriter', () => {
  it('saves a segment as soon as its last entry arrives, in any order, and holds only open segments', async () => {
    const s = (store = makeMemoryStore());
    const blocks = SEGMENT_ENTRIES + 2;
    const writer = new BlockMapWriter(s, blocks);
    const digests = Array.from({ length: blocks }, () => randomBytes(32));
    writer.open(1, null, 2);
    writer.open(0, null, SEGMENT_ENTRIES);
    expect(writer.openSegments).toBe(2);
    writer.set(SEGMENT_ENTRIES + 1, digests[SEGMENT_ENTRIES + 1]!);
    writer.set(SEGMENT_ENTRIES, null);
    expect(writer.openSegments).toBe(1);
    for (let i = SEGMENT_ENTRIES - 1; i >= 0; i--) writer.set(i, digests[i]!);
    const segments = await writer.finish();
    expect(segments).toHaveLength(2);
    const second = await loadSegment(s, segments[1]!);
    expect(second.subarray(0, 32).equals(SPARSE_ENTRY)).toBe(true);
    expect(second.subarray(32, 64).equals(digests[SEGMENT_ENTRIES + 1]!)).toBe(true);
    expect(await s.blocks.stat(StoreKeys.segment(segments[0]!))).toBeDefined();
  });

  it('finish() refuses a map with a segment never completed; set() refuses an entry not pending', async () => {
    const s = (store = makeMemoryStore());
    const writer = new BlockMapWriter(s, 3);
    writer.open(0, null, 2);
    writer.set(0, null);
    await expect(writer.finish()).rejects.toBeInstanceOf(RangeError);
    expect(() => writer.set(SEGMENT_ENTRIES + 5, null)).toThrow(RangeError);
  });

  it('starts from the initial entries, reuses by digest, and stores identical segments once per run', async () => {
    const s = (store = makeMemoryStore());
    const base = Buffer.concat([randomBytes(32), randomBytes(32)]);
    const writer = new BlockMapWriter(s, 2 * SEGMENT_ENTRIES);
    const reused = encodeSegment(Buffer.alloc(32 * SEGMENT_ENTRIES), PLAIN).digest;
    writer.reuse(1, reused);
    writer.open(0, base, 1);
    writer.set(1, null);
    const [first, second] = await writer.finish();
    expect(second?.equals(reused)).toBe(true);
    const entries = await loadSegment(s, first!);
    expect(entries.subarray(0, 32).equals(base.subarray(0, 32))).toBe(true);
    expect(entries.subarray(32, 64).equals(SPARSE_ENTRY)).toBe(true);
  });
});

describe('baseSegment()', () => {
  it('loads and checks a base segment, and says when it cannot be read instead of throwing', async () => {
    const s = (store = makeMemoryStore());
    const writer = new BlockMapWriter(s, 2);
    writer.open(0, null, 2);
    writer.set(0, randomBytes(32));
    writer.set(1, null);
    const [digest] = await writer.finish();
    const map = new BlockMap(s, [digest!], 2);
    expect((await baseSegment(map, 0)).entries?.length).toBe(64);
    expect(await baseSegment(map, 1)).toEqual({ entries: null, unreadable: false });
    expect(await baseSegment(undefined, 0)).toEqual({ entries: null, unreadable: false });
    const lost = new BlockMap(s, [randomBytes(32)], 2);
    expect(await baseSegment(lost, 0)).toEqual({ entries: null, unreadable: true });
  });
});

describe('dataBytes()', () => {
  it('counts the data blocks of any byte range like a walk of every entry, also across segments and in a partial last block', async () => {
    const s = (store = makeMemoryStore());
    const bs = 4096;
    const blocks = 2 * SEGMENT_ENTRIES + 77;
    const size = (blocks - 1) * bs + 1000;
    const writer = new BlockMapWriter(s, blocks);
    for (let k = 0; k < 3; k++) writer.open(k, null, Math.min(SEGMENT_ENTRIES, blocks - k * SEGMENT_ENTRIES));
    const data = Array.from({ length: blocks }, (_, i) => i === blocks - 1 || (i * 7919) % 5 === 0);
    // A digest whose first words are zero is still data.
    for (let i = 0; i < blocks; i++) writer.set(i, data[i] ? Buffer.concat([Buffer.alloc(28), randomBytes(4)]) : null);
    const segments = await writer.finish();
    const naive = (from: number, to: number) => {
      let n = 0;
      for (let i = 0; i < blocks; i++) if (data[i]) n += Math.max(0, Math.min(to, (i + 1) * bs, size) - Math.max(from, i * bs));
      return n;
    };
    const ranges: [number, number][] = [[0, size], [1, size - 1], [bs * 3 + 5, bs * 4], [bs * 5, bs * 5], [SEGMENT_ENTRIES * bs - 10, SEGMENT_ENTRIES * bs + 10], [bs * 10, size]];
    for (let r = 0; r < 20; r++) {
      const a = Math.floor(Math.random() * size);
      ranges.push([a, a + Math.floor(Math.random() * (size - a))]);
    }
    for (const [from, to] of ranges) {
      // A new map each time, and the first twice: counts kept by segment digest give the same answer.
      for (let again = 0; again < 2; again++) {
        expect(await dataBytes(new BlockMap(s, segments, blocks), { size, blockSize: bs }, { from, to }), `${from}-${to}`).toBe(naive(from, to));
      }
    }
    expect(await dataBytes(new BlockMap(s, segments, blocks), { size, blockSize: bs })).toBe(naive(0, size));
  });
});
