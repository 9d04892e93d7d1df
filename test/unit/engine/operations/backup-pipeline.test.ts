import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BlockSource } from '../../../../src/engine/endpoints/endpoints.js';
import { BlockMap, blockCount } from '../../../../src/engine/objects/block-map.js';
import { BlockWriter } from '../../../../src/engine/objects/block-writer.js';
import { SEGMENT_ENTRIES } from '../../../../src/engine/objects/formats.js';
import { runBackupPipeline, type BaseMap } from '../../../../src/engine/operations/backup-pipeline.js';
import { BufferPool } from '../../../../src/engine/pipeline/buffer-pool.js';
import { Semaphore } from '../../../../src/engine/pipeline/semaphore.js';
import type { Store } from '../../../../src/engine/store.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

/** A source over a buffer that records which blocks were read (a narrow stand-in for a file). */
function bufferSource(data: Buffer): BlockSource & { readonly readBlocks: number[] } {
  const readBlocks: number[] = [];
  return {
    location: 'memory',
    size: data.length,
    readBlocks,
    read: async (offset, into) => {
      readBlocks.push(offset / B);
      data.copy(into, 0, offset, offset + into.length);
    },
    mayHaveData: () => true,
    close: async () => undefined,
  };
}

function hintBits(blocks: number, hinted: readonly number[]): Uint8Array {
  const bits = new Uint8Array(Math.ceil(blocks / 8));
  for (const i of hinted) bits[i >> 3] = (bits[i >> 3] ?? 0) | (1 << (i & 7));
  return bits;
}

async function run(s: Store, source: BlockSource, options: { base?: BaseMap; hinted?: number[]; sample?: number } = {}) {
  const blocks = blockCount(source.size, B);
  return runBackupPipeline(
    {
      source,
      size: source.size,
      blockSize: B,
      base: options.base,
      hinted: options.hinted ? hintBits(blocks, options.hinted) : undefined,
      hintsName: '"test"',
      sample: options.sample ?? 0,
      invalid: new Set(),
    },
    { storage: s, writer: new BlockWriter(s.catalog, s.blocks), hasher: s.workers(), pool: new BufferPool(B, 4), readers: new Semaphore(2), progress: undefined, signal: undefined },
  );
}

describe('runBackupPipeline()', () => {
  it('reads every block without hints, and only hinted blocks plus the sample with them', async () => {
    const s = (store = makeMemoryStore());
    const data = Buffer.concat([randomBytes(6 * B), Buffer.alloc(2 * B)]);
    const full = await run(s, bufferSource(data));
    expect(full.counters).toMatchObject({ blocksRead: 8, blocksWritten: 6, bytesSparse: 2 * B });
    const base = { map: new BlockMap(s, full.segments, 8), size: data.length };
    randomBytes(B).copy(data, 3 * B);
    const source = bufferSource(data);
    const inc = await run(s, source, { base, hinted: [3], sample: 2 });
    expect(source.readBlocks).toHaveLength(3);
    expect(source.readBlocks).toContain(3);
    expect(inc.counters).toMatchObject({ blocksRead: 3, blocksWritten: 1, bytesSkipped: 7 * B });
  });

  it('fails on a sampled block that hints missed, after every block in flight has settled', async () => {
    const s = (store = makeMemoryStore());
    const data = randomBytes(8 * B);
    const full = await run(s, bufferSource(data));
    const base = { map: new BlockMap(s, full.segments, 8), size: data.length };
    data.fill(1); // everything changed, the hints say block 0 only
    await expect(run(s, bufferSource(data), { base, hinted: [0], sample: 7 })).rejects.toMatchObject({ code: 'E_CONFLICT' });
  });

  it('reads afresh the blocks of a base segment that cannot be read, instead of building on it', async () => {
    const s = (store = makeMemoryStore());
    const data = randomBytes(4 * B);
    const source = bufferSource(data);
    const lostBase = { map: new BlockMap(s, [randomBytes(32)], 4), size: data.length };
    const result = await run(s, source, { base: lostBase, hinted: [], sample: 0 });
    expect(source.readBlocks.sort()).toEqual([0, 1, 2, 3]);
    expect(result.counters.bytesSkipped).toBe(0);
  });

  it('takes over unchanged base segments proven in one catalog round trip, and loads one whose catalog copy is damaged from the block store', async () => {
    const s = (store = makeMemoryStore());
    const blocks = 2 * SEGMENT_ENTRIES + 100;
    const withData = new Set([0, SEGMENT_ENTRIES + 7, blocks - 1]);
    const source: BlockSource & { readBlocks: number[] } = {
      ...bufferSource(Buffer.alloc(0)),
      size: blocks * B,
      readBlocks: [],
      read: async function (offset, into) {
        this.readBlocks.push(offset / B);
        into.fill(withData.has(offset / B) ? offset / B : 0);
      },
    };
    const full = await run(s, source);
    expect(new Set(full.segments.map((d) => d.toString('hex'))).size).toBe(3);
    const base = { map: new BlockMap(s, full.segments, blocks), size: blocks * B };
    source.readBlocks.length = 0;
    const getSegment = vi.spyOn(s.catalog, 'getSegment');
    const getSegments = vi.spyOn(s.catalog, 'getSegments');
    const same = await run(s, source, { base, hinted: [] });
    expect(same.segments).toEqual(full.segments);
    expect(source.readBlocks).toEqual([]);
    expect(getSegment).not.toHaveBeenCalled();
    expect(getSegments).toHaveBeenCalledTimes(1);

    // The catalog's copy of the middle segment rots: it is loaded alone, from the block store.
    const middle = full.segments[1]!;
    await s.catalog.putSegment(middle, SEGMENT_ENTRIES, randomBytes(64));
    const again = await run(s, source, { base: { ...base, map: new BlockMap(s, full.segments, blocks) }, hinted: [] });
    expect(again.segments).toEqual(full.segments);
    expect(source.readBlocks).toEqual([]);
    expect(getSegment.mock.calls.map(([d]) => Buffer.from(d).toString('hex'))).toEqual([middle.toString('hex')]);
  });
});
