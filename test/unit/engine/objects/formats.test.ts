import { PLAIN } from '../../../../src/engine/objects/object-seal.js';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeSegment, encodeSegment } from '../../../../src/engine/objects/block-map.js';
import { decodeObjectHeader, encodeObjectHeader } from '../../../../src/engine/objects/object-codec.js';
import { OBJECT_HEADER_LENGTH, ObjectKind, SEGMENT_ENTRIES, SEGMENT_HEADER_LENGTH } from '../../../../src/engine/objects/formats.js';

/** The header as docs/formats.md describes it, built independently of the codec. */
function referenceHeader(kind: number, digest: Buffer, length: number): Buffer {
  const bytes: number[] = [0x42, 0x4b, 0x59, 0x32, 1, kind, 0, 0];
  const u64 = (n: number) => {
    for (let i = 0; i < 8; i++) bytes.push(Math.floor(n / 2 ** (8 * i)) & 0xff);
  };
  u64(length);
  u64(length);
  bytes.push(...digest);
  for (let i = 0; i < 8; i++) bytes.push(0);
  return Buffer.from(bytes);
}

describe('object header format', () => {
  it('OBJECT_HEADER_LENGTH is exactly 64 bytes', () => {
    expect(OBJECT_HEADER_LENGTH).toBe(64);
    expect(encodeObjectHeader(ObjectKind.block, Buffer.alloc(32), 0).length).toBe(64);
  });

  it('encodeObjectHeader() matches the documented byte layout', () => {
    const digest = randomBytes(32);
    const length = 4 * 1024 * 1024 + 123;
    expect(encodeObjectHeader(ObjectKind.segment, digest, length).equals(referenceHeader(2, digest, length))).toBe(true);
  });

  it('decodeObjectHeader() reads what the reference builder wrote', () => {
    const digest = randomBytes(32);
    const header = decodeObjectHeader(referenceHeader(1, digest, 65536), 'x');
    expect(header).toMatchObject({ formatVersion: 1, kind: 1, compression: 0, encryption: 0, plainLength: 65536, storedLength: 65536 });
    expect(header.digest.equals(digest)).toBe(true);
  });

  it.each([
    ['bad magic', (h: Buffer) => h.writeUInt8(0x41, 0)],
    ['unknown format version', (h: Buffer) => h.writeUInt8(9, 4)],
    ['unknown kind', (h: Buffer) => h.writeUInt8(9, 5)],
    ['unsupported compression', (h: Buffer) => h.writeUInt8(5, 6)],
    ['inconsistent lengths', (h: Buffer) => h.writeUInt8(1, 16)],
  ])('decodeObjectHeader() rejects %s as corrupt', (_name, damage) => {
    const header = referenceHeader(1, randomBytes(32), 100);
    damage(header);
    expect(() => decodeObjectHeader(header, 'x')).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
  });

  it('decodeObjectHeader() rejects a truncated header', () => {
    expect(() => decodeObjectHeader(Buffer.alloc(10), 'x')).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
  });
});

describe('map segment format', () => {
  it('encodeSegment(, PLAIN) writes the count, reserved bytes and entries, keyed by its SHA-256', () => {
    const entries = Buffer.concat([randomBytes(32), Buffer.alloc(32), randomBytes(32)]);
    const { payload, digest } = encodeSegment(entries, PLAIN);
    expect(SEGMENT_HEADER_LENGTH).toBe(8);
    expect(payload.readUInt32LE(0)).toBe(3);
    expect(payload.readUInt32LE(4)).toBe(0);
    expect(payload.subarray(8).equals(entries)).toBe(true);
    expect(digest.equals(createHash('sha256').update(payload).digest())).toBe(true);
    expect(decodeSegment(payload, 'x').equals(entries)).toBe(true);
  });

  it('decodeSegment() rejects a wrong count and oversize segments', () => {
    const { payload } = encodeSegment(randomBytes(64), PLAIN);
    payload.writeUInt32LE(3, 0);
    expect(() => decodeSegment(payload, 'x')).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
    const big = Buffer.alloc(8 + 32 * (SEGMENT_ENTRIES + 1));
    big.writeUInt32LE(SEGMENT_ENTRIES + 1, 0);
    expect(() => decodeSegment(big, 'x')).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
  });
});
