import { randomBytes } from 'node:crypto';
import { constants as fsc, existsSync, mkdtempSync, promises as fsp, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FileStore } from '../../../../src/engine/blockstore/file-store.js';
import { ObjectKind } from '../../../../src/engine/objects/formats.js';
import { deriveSealKeys, newMasterKey } from '../../../../src/engine/objects/key-files.js';
import { PLAIN_CHECKSUMMED, objectId, openObject, type Transforms } from '../../../../src/engine/objects/object-seal.js';
import { BlockWorkers } from '../../../../src/engine/pipeline/block-workers.js';
import { BufferPool, alignedBuffer, pageAlignedObject } from '../../../../src/engine/pipeline/buffer-pool.js';
import { deferCleanup } from '../../../helpers/cleanup.js';
import { makeTempDir } from '../../../helpers/temp.js';

const PAGE = 4096;
const KEY = 'blocks/ab/abcdef';

/** The O_DIRECT opens made while `work` runs. */
async function directOpens(work: () => Promise<void>): Promise<string[]> {
  const open = vi.spyOn(fsp, 'open');
  try {
    await work();
    return open.mock.calls.filter(([, flags]) => typeof flags === 'number' && (flags & fsc.O_DIRECT) !== 0).map(([file]) => String(file));
  } finally {
    open.mockRestore();
  }
}

/** statfs(2) f_type of tmpfs. */
const TMPFS = 0x01021994;
/** Whether the temp directory is on a file system that is not in memory (where stores write around the cache). */
const onDisk = (await fsp.statfs(tmpdir())).type !== TMPFS;

afterEach(() => vi.restoreAllMocks());

describe('a file store on a file system in memory', () => {
  it.runIf(existsSync('/dev/shm'))('does not ask for page-aligned objects (going around the page cache saves nothing there)', async () => {
    if ((await fsp.statfs('/dev/shm')).type !== TMPFS) return;
    const dir = mkdtempSync('/dev/shm/backy2-direct-writes-');
    deferCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const inMemory = await FileStore.open(dir);
    expect(inMemory.properties.alignedPuts).toBe(false);
    await inMemory.close();
  });
});

describe.runIf(onDisk)('a file store writing around the page cache', () => {
  it('stores a page-aligned object of any length byte for byte: whole pages with O_DIRECT, the tail buffered', async () => {
    const s = await FileStore.open(makeTempDir('backy2-direct-writes-'));
    expect(s.properties.alignedPuts).toBe(true);
    for (const length of [4 * 1024 * 1024 + 64, 2 * PAGE, PAGE + 1, 100]) {
      const memory = alignedBuffer(length + PAGE);
      const object = memory.subarray(0, length);
      randomBytes(length).copy(object);
      const key = `blocks/0a/len${length}`;
      const opens = await directOpens(() => s.put(key, [object]));
      // Less than a page has nothing to write around the cache.
      expect(opens, `length ${length}`).toHaveLength(length >= PAGE ? 1 : 0);
      const back = Buffer.from(await s.get(key));
      expect(back.length, `length ${length}`).toBe(length);
      expect(back.equals(object), `length ${length}`).toBe(true);
    }
  });

  it('writes other bodies buffered, byte for byte: several parts, or memory not on a page boundary', async () => {
    const s = await FileStore.open(makeTempDir('backy2-direct-writes-'));
    const data = randomBytes(3 * PAGE + 10);
    const shifted = alignedBuffer(data.length + PAGE).subarray(64, 64 + data.length);
    data.copy(shifted);
    // A Node Buffer of its own: at offset 0 of its memory, which malloc need not have page-aligned
    // (then the O_DIRECT write is refused and the object written again, buffered).
    const own = Buffer.allocUnsafeSlow(data.length);
    data.copy(own);
    const bodies: Record<string, Uint8Array[]> = { parts: [data.subarray(0, 100), data.subarray(100)], shifted: [shifted], own: [own] };
    for (const [name, body] of Object.entries(bodies)) {
      const opens = await directOpens(() => s.put(`blocks/0b/${name}`, body));
      if (name !== 'own') expect(opens, name).toEqual([]);
      expect(Buffer.from(await s.get(`blocks/0b/${name}`)).equals(data), name).toBe(true);
    }
  });
});

describe('blocks sealed on a page boundary', () => {
  const keys = deriveSealKeys(newMasterKey(), 'ab'.repeat(16));
  const kinds: Record<string, Transforms> = {
    'plaintext with CRC': PLAIN_CHECKSUMMED,
    compressed: { compression: 'zstd', level: 1, keys: undefined },
    encrypted: { compression: 'none', level: 0, keys },
  };
  const B = 256 * 1024 + 512; // not a whole number of pages
  const data = Buffer.concat([randomBytes(B / 2), Buffer.alloc(B / 2, 'backy2 ')]);

  for (const [name, t] of Object.entries(kinds)) {
    it(`${name}: the object starts on the payload's page and opens to the block, as one sealed in the header room does`, async () => {
      const workers = new BlockWorkers(1, t);
      const pool = new BufferPool(B, 2);
      try {
        const id = objectId(t, data);
        const [a, b] = [await pool.acquire(), await pool.acquire()];
        data.copy(a.payload);
        data.copy(b.payload);
        const usual = await workers.seal(a, B, KEY, id);
        const aligned = await workers.seal(b, B, KEY, id, true);
        expect(usual.byteOffset).toBe(a.payloadOffset - 64);
        expect(aligned.byteOffset).toBe(b.payloadOffset);
        expect(aligned.byteOffset % PAGE).toBe(0);
        for (const object of [usual, aligned]) expect(openObject(t, ObjectKind.block, KEY, id, Buffer.from(object), 'test').equals(data), name).toBe(true);
        // Nothing random in a plaintext or compressed object: the very same bytes.
        if (!t.keys) expect(Buffer.from(aligned).equals(usual)).toBe(true);
      } finally {
        await workers.close();
      }
    });
  }

  it('a format 1 block moves up behind its header room, on the payload page', async () => {
    const pool = new BufferPool(B, 1);
    const buf = await pool.acquire();
    data.copy(buf.payload);
    const object = pageAlignedObject(buf, B);
    expect(object.byteOffset).toBe(buf.payloadOffset);
    expect(object.length).toBe(64 + B);
    expect(object.subarray(64).equals(data)).toBe(true);
  });
});
