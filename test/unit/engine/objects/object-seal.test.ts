import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { OBJECT_HEADER_LENGTH, ObjectKind } from '../../../../src/engine/objects/formats.js';
import { deriveSealKeys, newMasterKey } from '../../../../src/engine/objects/key-files.js';
import { PLAIN, PLAIN_CHECKSUMMED, checkStoredObject, objectId, openObject, sealObject, sealObjectInto, sealedCapacity, type Transforms } from '../../../../src/engine/objects/object-seal.js';

const keys = deriveSealKeys(newMasterKey(), 'ab'.repeat(16));
const stores: Record<string, Transforms> = {
  plaintext: PLAIN_CHECKSUMMED,
  compressed: { compression: 'zstd', level: 1, keys: undefined },
  encrypted: { compression: 'none', level: 0, keys },
  'encrypted and compressed': { compression: 'zstd', level: 3, keys },
};
const compressible = Buffer.alloc(256 * 1024, 'backy2 block ');
const random = randomBytes(64 * 1024);
const KEY = 'blocks/ab/abcdef';

const seal = (t: Transforms, data: Buffer, key = KEY) => Buffer.concat(sealObject(t, ObjectKind.block, key, objectId(t, data), data));
const open = (t: Transforms, object: Buffer, data: Buffer, key = KEY) => openObject(t, ObjectKind.block, key, objectId(t, data), object, 'test object');

/** Flips one bit and, like an attacker who knows the format, puts a matching CRC back. */
function flipWithCrc(object: Buffer, offset: number): Buffer {
  const copy = Buffer.from(object);
  copy[offset]! ^= 0x10;
  copy.writeUInt32LE(crc32(copy.subarray(OBJECT_HEADER_LENGTH)), 56);
  return copy;
}

describe('sealed objects (format 2)', () => {
  for (const [name, t] of Object.entries(stores)) {
    it(`${name}: what is sealed opens to the same bytes, for compressible, random and empty data`, () => {
      for (const data of [compressible, random, Buffer.alloc(0)]) expect(open(t, seal(t, data), data).equals(data)).toBe(true);
    });
  }

  it('compression is kept only when it saves space: random data is stored as it is', () => {
    const t = stores.compressed!;
    const small = seal(t, compressible);
    expect(small.length).toBeLessThan(compressible.length / 10);
    expect(small[6]).toBe(1);
    const same = seal(t, random);
    expect(same[6]).toBe(0);
    expect(same.length).toBe(OBJECT_HEADER_LENGTH + random.length);
  });

  it('with encryption, names are keyed digests: not the SHA-256 of the data, and not guessable without the key', () => {
    const t = stores.encrypted!;
    const sha = createHash('sha256').update(random).digest();
    expect(objectId(t, random).equals(sha)).toBe(false);
    const other = deriveSealKeys(newMasterKey(), 'ab'.repeat(16));
    expect(objectId({ ...t, keys: other }, random).equals(objectId(t, random))).toBe(false);
    expect(objectId(PLAIN, random).equals(sha)).toBe(true);
  });

  it('with encryption, the stored bytes contain neither the data nor its SHA-256', () => {
    const t = stores.encrypted!;
    const object = seal(t, random);
    expect(object.includes(random.subarray(0, 64))).toBe(false);
    expect(object.includes(createHash('sha256').update(random).digest())).toBe(false);
  });

  it('encryption uses a fresh nonce per object: the same data sealed twice differs', () => {
    const t = stores.encrypted!;
    expect(seal(t, random).equals(seal(t, random))).toBe(false);
  });

  describe('an encrypted object changed by someone who recomputes its CRC fails authentication', () => {
    const t = stores['encrypted and compressed']!;
    const data = compressible;
    const object = seal(t, data);
    const cases: [string, number][] = [
      ['one bit of the ciphertext', OBJECT_HEADER_LENGTH + 12 + 5],
      ['one bit of the nonce', OBJECT_HEADER_LENGTH + 3],
      ['one bit of the tag', object.length - 4],
      ['the compression byte of the header', 6],
      ['the plain length in the header', 9],
    ];
    for (const [what, offset] of cases) {
      it(what, () => {
        expect(() => open(t, flipWithCrc(object, offset), data)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
      });
    }

    it('the id in the header (the object claims another name)', () => {
      const copy = flipWithCrc(object, 30);
      const claimed = copy.subarray(24, 56);
      expect(() => openObject(t, ObjectKind.block, KEY, claimed, copy, 'test object')).toThrow(/failed authentication/);
    });
  });

  it('an object moved to another key fails authentication (no swapping valid objects)', () => {
    const t = stores.encrypted!;
    const a = seal(t, random, 'blocks/aa/one');
    expect(() => open(t, a, random, 'blocks/bb/two')).toThrow(/failed authentication: it was changed, damaged or moved/);
  });

  it('another valid object in its place carries another header: refused before decryption', () => {
    const t = stores.encrypted!;
    const other = randomBytes(1000);
    expect(() => open(t, seal(t, other), random)).toThrow(/carries another object's header/);
  });

  it('truncated objects are refused: by their length, and below nonce + tag', () => {
    const t = stores.encrypted!;
    const object = seal(t, random);
    expect(() => open(t, object.subarray(0, object.length - 1), random)).toThrow(/bytes stored, the header says/);
    expect(() => open(t, object.subarray(0, 20), random)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
    const short = Buffer.from(object.subarray(0, OBJECT_HEADER_LENGTH + 10));
    short.writeBigUInt64LE(10n, 16);
    short.writeUInt32LE(crc32(short.subarray(OBJECT_HEADER_LENGTH)), 56);
    expect(() => open(t, short, random)).toThrow(/truncated/);
  });

  it('a plaintext object in an encrypted store, or the other way round, is refused', () => {
    expect(() => openObject(stores.encrypted!, ObjectKind.block, KEY, objectId(stores.encrypted!, random), seal(stores.compressed!, random), 'x')).toThrow(/carries another object's header|not encrypted/);
    const plainName = objectId(PLAIN, random);
    const compressed = Buffer.concat(sealObject(stores.compressed!, ObjectKind.block, KEY, plainName, random));
    expect(() => openObject({ ...stores.encrypted!, compression: 'none' }, ObjectKind.block, KEY, plainName, compressed, 'x')).toThrow(/not encrypted, but the store is/);
    expect(() => openObject(PLAIN, ObjectKind.block, KEY, objectId(stores.encrypted!, random), seal(stores.encrypted!, random), 'x')).toThrow(/encrypted, but the store is not/);
  });

  it('a compressed object whose data does not decompress to its digest is refused (no key: the digest proves it)', () => {
    const t = stores.compressed!;
    const object = flipWithCrc(seal(t, compressible), OBJECT_HEADER_LENGTH + 20);
    expect(() => open(t, object, compressible)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
  });

  describe('checkStoredObject(): bitrot found without the key', () => {
    const t = stores.encrypted!;
    const object = seal(t, random);
    const id = objectId(t, random);
    it('accepts the object as stored', () => {
      expect(() => checkStoredObject(ObjectKind.block, id, object, 'x')).not.toThrow();
    });
    it('finds a flipped bit anywhere in the stored bytes', () => {
      for (const offset of [OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + 100, object.length - 1]) {
        const copy = Buffer.from(object);
        copy[offset]! ^= 1;
        expect(() => checkStoredObject(ObjectKind.block, id, copy, 'x')).toThrow(/do not match their checksum/);
      }
    });
    it('finds truncation and another object in its place', () => {
      expect(() => checkStoredObject(ObjectKind.block, id, object.subarray(0, object.length - 1), 'x')).toThrow(/truncated/);
      expect(() => checkStoredObject(ObjectKind.block, id, seal(t, randomBytes(10)), 'x')).toThrow(/another object's header/);
    });
  });

  it('plaintext objects of checksummed stores are format 2: the plaintext as payload, and the CRC of it', () => {
    const object = seal(PLAIN_CHECKSUMMED, random);
    expect(object[4]).toBe(2);
    expect(object[6]).toBe(0);
    expect(object[7]).toBe(0);
    expect(object.subarray(OBJECT_HEADER_LENGTH).equals(random)).toBe(true);
    expect(object.readUInt32LE(56)).toBe(crc32(random));
    expect(object.subarray(24, 56).equals(createHash('sha256').update(random).digest())).toBe(true);
  });

  it('format 1 objects of plaintext stores open as before: header and data, no CRC', () => {
    const object = seal(PLAIN, random);
    expect(object[4]).toBe(1);
    expect(object.readUInt32LE(56)).toBe(0);
    expect(object.subarray(OBJECT_HEADER_LENGTH).equals(random)).toBe(true);
    const bad = Buffer.from(object);
    bad[OBJECT_HEADER_LENGTH]! ^= 1;
    expect(() => open(PLAIN, bad, random)).toThrow(/does not match its digest/);
  });
});

describe("reads proven by checksum (proof 'checksum', what the mount, NBD and restore use)", () => {
  const proveByChecksum = (t: Transforms, object: Buffer, data: Buffer) => openObject(t, ObjectKind.block, KEY, objectId(t, data), object, 'test object', undefined, 'checksum');

  for (const [name, t] of Object.entries(stores)) {
    it(`${name}: opens what was sealed, and refuses a flipped bit anywhere in the stored bytes, truncation and another object in its place`, () => {
      const data = name.includes('compressed') ? compressible : random;
      const object = seal(t, data);
      expect(proveByChecksum(t, object, data).equals(data)).toBe(true);
      for (const offset of [OBJECT_HEADER_LENGTH, Math.floor((OBJECT_HEADER_LENGTH + object.length) / 2), object.length - 1]) {
        const copy = Buffer.from(object);
        copy[offset]! ^= 0x04;
        expect(() => proveByChecksum(t, copy, data)).toThrow(/do not match their checksum/);
      }
      expect(() => proveByChecksum(t, object.subarray(0, object.length - 1), data)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
      // A whole valid object under the wrong name (a swap): its header names the other digest.
      expect(() => proveByChecksum(t, seal(t, randomBytes(4096)), data)).toThrow(/carries another object's header/);
      // The header's own fields: the name it carries, its kind, its lengths.
      for (const offset of [5, 9, 17, 40]) {
        const copy = Buffer.from(object);
        copy[offset]! ^= 0x01;
        expect(() => proveByChecksum(t, copy, data)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
      }
    });
  }

  it('format 1 objects (no CRC) still have their digest derived: a flipped bit is found', () => {
    const object = seal(PLAIN, random);
    const bad = Buffer.from(object);
    bad[OBJECT_HEADER_LENGTH + 9]! ^= 1;
    expect(() => proveByChecksum(PLAIN, bad, random)).toThrow(/does not match its digest/);
    expect(proveByChecksum(PLAIN, object, random).equals(random)).toBe(true);
  });

  it('a deliberate change with a recomputed CRC passes a checksum proof of an unencrypted object (scrub, which proves everything, finds it); encryption refuses it either way', () => {
    const forged = flipWithCrc(seal(PLAIN_CHECKSUMMED, random), OBJECT_HEADER_LENGTH + 100);
    expect(proveByChecksum(PLAIN_CHECKSUMMED, forged, random).equals(random)).toBe(false);
    expect(() => open(PLAIN_CHECKSUMMED, forged, random)).toThrow(/does not match its digest/);
    const t = stores.encrypted!;
    expect(() => proveByChecksum(t, flipWithCrc(seal(t, random), OBJECT_HEADER_LENGTH + 100), random)).toThrow(/failed authentication/);
  });
});

describe('blocks sealed and opened in place, in their own buffer slot (as the workers do)', () => {
  // A slot as the buffer pool lays it out: a page, the payload, a tail page.
  const PAGE = 4096;
  const blockLength = 1024 * 1024;
  const data = Buffer.concat([Buffer.alloc(blockLength / 2, 'in place '), randomBytes(blockLength / 2)]);

  for (const [name, t] of Object.entries(stores)) {
    it(`${name}: sealing over the plaintext gives what sealing elsewhere gives, and it opens over itself`, () => {
      const slot = Buffer.alloc(PAGE + blockLength + PAGE);
      const payload = slot.subarray(PAGE, PAGE + blockLength);
      data.copy(payload);
      const id = objectId(t, data);
      const sealedView = slot.subarray(PAGE - OBJECT_HEADER_LENGTH);
      expect(sealedView.length).toBeGreaterThanOrEqual(sealedCapacity(t, blockLength));
      const length = sealObjectInto(t, ObjectKind.block, KEY, id, payload, sealedView);
      const object = Buffer.from(sealedView.subarray(0, length));
      // Independent of where it was made: it opens from a copy.
      expect(openObject(t, ObjectKind.block, KEY, id, object, 'copy').equals(data)).toBe(true);
      // Opened where it lies, the plaintext lands at the payload (before the ciphertext).
      const opened = openObject(t, ObjectKind.block, KEY, id, sealedView.subarray(0, length), 'in place', payload);
      expect(opened.equals(data)).toBe(true);
      // Read at the start of the slot instead, the plaintext lands after the ciphertext's start.
      object.copy(slot, 0);
      expect(openObject(t, ObjectKind.block, KEY, id, slot.subarray(0, length), 'slot start', payload).equals(data)).toBe(true);
    });
  }

  it('an object that does not check out leaves zeros, not unauthenticated plaintext, where it was opened into', () => {
    const t = stores['encrypted and compressed']!;
    const id = objectId(t, data);
    const object = seal(t, data);
    object[object.length - 1]! ^= 1;
    object.writeUInt32LE(crc32(object.subarray(OBJECT_HEADER_LENGTH)), 56);
    const out = Buffer.alloc(blockLength, 0xee);
    expect(() => openObject(t, ObjectKind.block, KEY, id, object, 'x', out)).toThrow(/failed authentication/);
    expect(out.equals(Buffer.alloc(blockLength))).toBe(true);
  });

  it('a buffer smaller than the most a sealed block can take is refused before anything is written', () => {
    const t = stores.encrypted!;
    expect(() => sealObjectInto(t, ObjectKind.block, KEY, objectId(t, data), data, Buffer.alloc(blockLength))).toThrow(RangeError);
  });
});
