import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../../src/engine/blockstore/memory-store.js';
import { BlockState } from '../../../../src/engine/catalog/catalog.js';
import { SqliteCatalog } from '../../../../src/engine/catalog/sqlite-catalog.js';
import { BlockWriter, newWriteCounters, storeHashedBlock } from '../../../../src/engine/objects/block-writer.js';
import { StoreKeys } from '../../../../src/engine/objects/store-keys.js';
import { BufferPool, type PooledBuffer } from '../../../../src/engine/pipeline/buffer-pool.js';
import { assembleStore, type Store } from '../../../../src/engine/store.js';
import { testConfig } from '../../../helpers/store.js';

class CountingStore extends MemoryStore {
  puts = 0;
  override async put(...args: Parameters<MemoryStore['put']>): Promise<void> {
    this.puts++;
    return super.put(...args);
  }
}

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

const B = 65536;

async function setup() {
  const blocks = new CountingStore();
  const s = (store = assembleStore(testConfig('/nonexistent'), SqliteCatalog.open(':memory:'), blocks));
  const pool = new BufferPool(B, 4);
  const fill = async (data: Buffer): Promise<PooledBuffer> => {
    const buf = await pool.acquire();
    data.copy(buf.payload);
    return buf;
  };
  return { s, blocks, pool, fill, writer: new BlockWriter(s.catalog, s.blocks) };
}

const digestOf = (data: Buffer) => createHash('sha256').update(data).digest();

describe('BlockWriter', () => {
  it('stores a block once when it comes twice at the same time, and registers it on flush', async () => {
    const { s, blocks, fill, writer } = await setup();
    const data = randomBytes(B);
    const [a, b] = await Promise.all([fill(data), fill(data)]);
    const written = await Promise.all([writer.store(digestOf(data), a, B), writer.store(digestOf(data), b, B)]);
    expect(written.sort()).toEqual([false, true]);
    expect(blocks.puts).toBe(1);
    expect(await s.catalog.getBlock(digestOf(data))).toBeUndefined(); // not before flush
    await writer.flush();
    expect((await s.catalog.getBlock(digestOf(data)))?.state).toBe(BlockState.valid);
  });

  it('does not write a block the store has, but marks it referenced', async () => {
    const { s, blocks, fill, writer } = await setup();
    const data = randomBytes(B);
    await writer.store(digestOf(data), await fill(data), B);
    await writer.flush();
    const later = new BlockWriter(s.catalog, s.blocks);
    const before = Date.now();
    expect(await later.store(digestOf(data), await fill(data), B)).toBe(false);
    expect(blocks.puts).toBe(1);
    expect((await s.catalog.getBlock(digestOf(data)))?.lastRef).toBeGreaterThanOrEqual(before);
  });

  it('writes a block a scrub found bad again, and drops its invalid marker', async () => {
    const { s, blocks, fill, writer } = await setup();
    const data = randomBytes(B);
    const digest = digestOf(data);
    await writer.store(digest, await fill(data), B);
    await writer.flush();
    await s.catalog.setBlockState([digest], BlockState.invalid);
    await s.blocks.put(StoreKeys.invalidMarker(digest), [Buffer.from('E_CORRUPT: test\n')]);
    const again = new BlockWriter(s.catalog, s.blocks);
    expect(await again.store(digest, await fill(data), B)).toBe(true);
    await again.flush();
    expect(blocks.puts).toBe(3); // the block, the marker, the block again
    expect((await s.catalog.getBlock(digest))?.state).toBe(BlockState.valid);
    expect(await s.blocks.stat(StoreKeys.invalidMarker(digest))).toBeUndefined();
  });
});

describe('storeHashedBlock()', () => {
  it('turns a hashed block into a map entry and counts what it did', async () => {
    const { fill, writer } = await setup();
    const counters = newWriteCounters();
    const data = randomBytes(B);
    const buf = await fill(data);
    expect(await storeHashedBlock(writer, { zero: true, digest: null }, buf, B, counters)).toBeNull();
    expect(await storeHashedBlock(writer, { zero: false, digest: digestOf(data) }, buf, B, counters)).toEqual(digestOf(data));
    expect(await storeHashedBlock(writer, { zero: false, digest: digestOf(data) }, buf, 100, counters, true)).toEqual(digestOf(data));
    expect(counters).toMatchObject({ bytesSparse: B, bytesWritten: B, blocksWritten: 1, bytesDeduplicated: 100 });
  });
});
