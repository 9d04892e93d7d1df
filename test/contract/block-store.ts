import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlockStore } from '../../src/engine/blockstore/block-store.js';

/** Lists every key of a prefix. */
async function keys(store: BlockStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.list(prefix)) out.push(info.key);
  return out.sort();
}

/**
 * The conformance suite every block store passes.
 * @param name the store's name in test titles
 * @param makeStore opens a fresh, empty store; `leftovers` reports temp data an implementation may leave
 */
export function describeBlockStore(
  name: string,
  makeStore: () => Promise<{ store: BlockStore; leftovers?: () => Promise<string[]> }>,
): void {
  describe(`${name} block store contract`, () => {
    let current: { store: BlockStore; leftovers?: () => Promise<string[]> } | undefined;
    const open = async () => (current = await makeStore());
    afterEach(async () => {
      await current?.store.close();
      current = undefined;
    });

    it(`${name}.put() then get() returns the concatenated body`, async () => {
      const { store } = await open();
      const a = randomBytes(100);
      const b = randomBytes(5000);
      await store.put('blocks/aa/aa01', [a, b]);
      expect(Buffer.from(await store.get('blocks/aa/aa01')).equals(Buffer.concat([a, b]))).toBe(true);
    });

    it(`${name}.put() twice replaces the object`, async () => {
      const { store } = await open();
      await store.put('blocks/aa/aa02', [Buffer.from('first')]);
      await store.put('blocks/aa/aa02', [Buffer.from('second!')]);
      expect(Buffer.from(await store.get('blocks/aa/aa02')).toString()).toBe('second!');
      expect((await store.stat('blocks/aa/aa02'))?.size).toBe(7);
    });

    it(`${name}.get() reads a range, into a given buffer`, async () => {
      const { store } = await open();
      const data = randomBytes(4096);
      await store.put('blocks/bb/bb01', [data]);
      expect(Buffer.from(await store.get('blocks/bb/bb01', { offset: 100, length: 50 })).equals(data.subarray(100, 150))).toBe(true);
      const into = Buffer.alloc(8192);
      const view = await store.get('blocks/bb/bb01', { into });
      expect(view.length).toBe(4096);
      expect(into.subarray(0, 4096).equals(data)).toBe(true);
    });

    it(`${name}.get() of a whole object larger than the buffer given is a corrupt object, not a crash`, async () => {
      const { store } = await open();
      await store.put('blocks/bb/bb03', [Buffer.alloc(5000)]);
      await expect(store.get('blocks/bb/bb03', { into: Buffer.alloc(4096) })).rejects.toMatchObject({ code: 'E_CORRUPT' });
    });

    it(`${name}.get() past the end throws a typed error`, async () => {
      const { store } = await open();
      await store.put('blocks/bb/bb02', [Buffer.alloc(10)]);
      await expect(store.get('blocks/bb/bb02', { offset: 5, length: 10 })).rejects.toMatchObject({ code: 'E_CORRUPT' });
      await expect(store.get('blocks/bb/bb02', { offset: 5, length: 10, into: Buffer.alloc(64) })).rejects.toMatchObject({ code: 'E_CORRUPT' });
      // Read into a buffer: a range, the rest from an offset, and an empty object.
      await store.put('blocks/bb/bb04', [Buffer.from('0123456789')]);
      expect(Buffer.from(await store.get('blocks/bb/bb04', { offset: 2, length: 3, into: Buffer.alloc(8) })).toString()).toBe('234');
      expect(Buffer.from(await store.get('blocks/bb/bb04', { offset: 4, into: Buffer.alloc(8) })).toString()).toBe('456789');
      await store.put('blocks/bb/bb05', []);
      expect((await store.get('blocks/bb/bb05', { into: Buffer.alloc(8) })).length).toBe(0);
    });

    it(`${name}.get() of a missing object throws E_OBJECT_MISSING`, async () => {
      const { store } = await open();
      await expect(store.get('blocks/cc/cc01')).rejects.toMatchObject({ code: 'E_OBJECT_MISSING' });
      await expect(store.get('blocks/cc/cc01', { into: Buffer.alloc(64) })).rejects.toMatchObject({ code: 'E_OBJECT_MISSING' });
      expect(await store.stat('blocks/cc/cc01')).toBeUndefined();
    });

    it(`${name}.list() yields keys under a prefix only`, async () => {
      const { store } = await open();
      await store.put('blocks/aa/aa03', [Buffer.from('x')]);
      await store.put('blocks/ab/ab01', [Buffer.from('y')]);
      await store.put('segments/aa/aa03', [Buffer.from('z')]);
      expect(await keys(store, 'blocks/')).toEqual(['blocks/aa/aa03', 'blocks/ab/ab01']);
      expect(await keys(store, 'blocks/aa/')).toEqual(['blocks/aa/aa03']);
      expect(await keys(store, 'segments/')).toEqual(['segments/aa/aa03']);
      expect(await keys(store, 'versions/')).toEqual([]);
    });

    it(`${name}.list() survives deletes while listing`, async () => {
      const { store } = await open();
      for (let i = 0; i < 20; i++) await store.put(`blocks/dd/dd${String(i).padStart(2, '0')}`, [Buffer.from([i])]);
      const seen: string[] = [];
      for await (const info of store.list('blocks/')) {
        seen.push(info.key);
        await store.delete(info.key);
      }
      expect(seen.length).toBeGreaterThan(0);
      expect(await keys(store, 'blocks/')).toEqual([]);
    });

    it(`${name}.delete() of a missing object succeeds`, async () => {
      const { store } = await open();
      await store.delete('blocks/ee/ee01');
    });

    it(`${name}.put() with an aborted signal stores nothing and leaves no temp data`, async () => {
      const { store, leftovers } = await open();
      const controller = new AbortController();
      controller.abort();
      await expect(store.put('blocks/ff/ff01', [Buffer.alloc(10)], { signal: controller.signal })).rejects.toMatchObject({ code: 'E_INTERRUPTED' });
      expect(await store.stat('blocks/ff/ff01')).toBeUndefined();
      if (leftovers) expect(await leftovers()).toEqual([]);
    });

    it(`${name}.put() leaves no temp data behind`, async () => {
      const { store, leftovers } = await open();
      await Promise.all(Array.from({ length: 16 }, (_, i) => store.put(`blocks/ab/ab${i}`, [randomBytes(1000)])));
      if (leftovers) expect(await leftovers()).toEqual([]);
      expect((await keys(store, 'blocks/')).length).toBe(16);
    });

    it(`${name} rejects invalid keys`, async () => {
      const { store } = await open();
      await expect(store.put('../escape', [Buffer.alloc(1)])).rejects.toBeInstanceOf(TypeError);
      await expect(store.get('blocks/../../x')).rejects.toBeInstanceOf(TypeError);
    });

    it(`${name}.probe() answers while the store is there`, async () => {
      const { store } = await open();
      await store.probe();
      await store.close();
      await expect(store.probe()).rejects.toBeInstanceOf(TypeError);
    });

    it(`${name}.close() is idempotent and later calls throw`, async () => {
      const { store } = await open();
      await store.close();
      await store.close();
      await expect(store.get('blocks/aa/aa01')).rejects.toBeInstanceOf(TypeError);
    });
  });
}
