import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../../src/engine/blockstore/memory-store.js';
import { blake3Portable } from '../../../../src/engine/objects/blake3.js';
import { ObjectKind } from '../../../../src/engine/objects/formats.js';
import { namingDigest } from '../../../../src/engine/objects/naming-digest.js';
import { encodeJsonObject } from '../../../../src/engine/objects/object-codec.js';
import { objectId } from '../../../../src/engine/objects/object-seal.js';
import { StoreKeys } from '../../../../src/engine/objects/store-keys.js';
import { loadStoreSettings, newStoreSettings, transformsOf, type StoreSettings } from '../../../../src/engine/objects/store-settings.js';

/** The input of the BLAKE3 team's published test vectors: bytes 0, 1, …, 250, 0, 1, … */
function vectorInput(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = i % 251;
  return out;
}
const VECTOR_KEY = Buffer.from('whats the Elvish word for friend');

/**
 * From the BLAKE3 team's test_vectors.json (the first 32 bytes of each output): lengths that
 * cover one chunk, a partial second chunk, and trees of many chunks (the SIMD paths).
 */
const VECTORS: readonly (readonly [number, string, string])[] = [
  [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26'],
  [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213', '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b'],
  [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7', '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4'],
  [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444', '357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69'],
  [31744, '62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47', 'efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419'],
  [102400, 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085', '1c35d1a5811083fd7119f5d5d1ba027b4d01c0c6c49fb6ff2cf75393ea5db4a7'],
];

describe('the naming digest', () => {
  it.each(VECTORS)('BLAKE3 and keyed BLAKE3 of %i bytes are the published test vectors', (length, hash, keyed) => {
    const input = vectorInput(length);
    expect(namingDigest('blake3', undefined, input).toString('hex')).toBe(hash);
    expect(namingDigest('blake3', VECTOR_KEY, input).toString('hex')).toBe(keyed);
  });

  it.each(VECTORS)('the portable BLAKE3 (no native build) gives the published vectors for %i bytes', (length, hash, keyed) => {
    const input = vectorInput(length);
    expect(blake3Portable(input).toString('hex')).toBe(hash);
    expect(blake3Portable(input, VECTOR_KEY).toString('hex')).toBe(keyed);
  });

  it('the portable BLAKE3 equals the native one at every tree shape: chunk and block edges, 4 MiB, odd lengths', () => {
    const lengths = [63, 64, 65, 1023, 2047, 2048, 3 * 1024 + 1, 8 * 1024, 8 * 1024 + 1, 63 * 1024 + 5, 4 << 20, (4 << 20) - 1, 1_234_567];
    for (let i = 0; i < 20; i++) lengths.push(1 + Math.floor(Math.random() * 200_000));
    const key = randomBytes(32);
    for (const length of lengths) {
      const data = randomBytes(length);
      expect(blake3Portable(data).equals(namingDigest('blake3', undefined, data)), `${length} bytes`).toBe(true);
      expect(blake3Portable(data, key).equals(namingDigest('blake3', key, data)), `${length} bytes, keyed`).toBe(true);
    }
    expect(() => blake3Portable(Buffer.alloc(1), Buffer.alloc(16))).toThrow(RangeError);
  });

  it('hashes a view of shared memory (a block buffer) as its bytes', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(2 * 102400), 4096, 102400);
    shared.set(vectorInput(102400));
    expect(namingDigest('blake3', undefined, shared).toString('hex')).toBe(VECTORS[5]![1]);
  });

  it('SHA-256 stores keep SHA-256 and HMAC-SHA-256', () => {
    const data = vectorInput(5000);
    const key = Buffer.alloc(32, 9);
    expect(namingDigest('sha256', undefined, data).equals(createHash('sha256').update(data).digest())).toBe(true);
    expect(namingDigest('sha256', key, data).equals(createHmac('sha256', key).update(data).digest())).toBe(true);
  });

  it("a store's transforms name objects by its settings' digest, keyed when encrypted", () => {
    const data = vectorInput(4096);
    const keys = { idKey: VECTOR_KEY, dataKey: Buffer.alloc(32) };
    expect(objectId(transformsOf(newStoreSettings(), undefined), data).toString('hex')).toBe(namingDigest('blake3', undefined, data).toString('hex'));
    const encrypted = newStoreSettings({ encryption: 'aes-256-gcm' });
    expect(encrypted.digest).toBe('keyed-blake3');
    expect(objectId(transformsOf(encrypted, keys), data).equals(namingDigest('blake3', VECTOR_KEY, data))).toBe(true);
    const old = newStoreSettings({ digest: 'sha256' });
    expect(objectId(transformsOf(old, undefined), data).equals(createHash('sha256').update(data).digest())).toBe(true);
  });
});

describe('store settings name their digest, and the store format follows it', () => {
  /** A memory block store holding these settings (written as they are, unchecked). */
  async function storeWith(settings: object): Promise<MemoryStore> {
    const blocks = new MemoryStore();
    await blocks.put(StoreKeys.settings, encodeJsonObject(ObjectKind.settings, settings));
    return blocks;
  }

  it('new stores are format 2 named by BLAKE3 (keyed when encrypted); asked for, format 1 named by SHA-256; each loads back', async () => {
    const cases: [StoreSettings, number, string][] = [
      [newStoreSettings(), 2, 'blake3'],
      [newStoreSettings({ encryption: 'aes-256-gcm' }), 2, 'keyed-blake3'],
      [newStoreSettings({ digest: 'sha256' }), 1, 'sha256'],
      [newStoreSettings({ digest: 'sha256', encryption: 'aes-256-gcm' }), 1, 'hmac-sha256'],
    ];
    for (const [settings, format, digest] of cases) {
      expect([settings.format, settings.digest]).toEqual([format, digest]);
      expect(await loadStoreSettings(await storeWith(settings))).toEqual(settings);
    }
  });

  it('a digest that does not belong to the format is refused, not guessed; a newer format asks for an upgrade', async () => {
    const blake3 = newStoreSettings();
    const sha = newStoreSettings({ digest: 'sha256' });
    // Digests of the other format: never written so, the object was edited.
    for (const edited of [
      { ...sha, digest: 'blake3' },
      { ...blake3, digest: 'sha256' },
      { ...blake3, digest: 'hmac-sha256', encryption: 'aes-256-gcm' },
    ]) {
      await expect(loadStoreSettings(await storeWith(edited)), JSON.stringify(edited)).rejects.toThrow(/settings object .* is damaged: store format \d never goes with digest/);
    }
    // A keyed digest without encryption, or one this program does not know: perhaps a newer program's.
    for (const unknown of [
      { ...blake3, digest: 'keyed-blake3' },
      { ...blake3, digest: 'blake2b' },
    ]) {
      await expect(loadStoreSettings(await storeWith(unknown)), JSON.stringify(unknown)).rejects.toThrow(/which this backy2 cannot read/);
    }
    await expect(loadStoreSettings(await storeWith({ ...blake3, format: 3 }))).rejects.toThrow(/has format 3, newer than this backy2 understands \(2\)/);
  });
});
