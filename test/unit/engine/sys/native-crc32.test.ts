import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, native } from '../../../../src/engine/sys/native.js';

// 4 MiB and a bit, so that every start offset and length below has bytes to read.
const data = randomBytes(4 * 1024 * 1024 + 64);

// The native helper is built by npm ci (the package's gypfile); without it zlib's CRC is used.
describe.skipIf(native === undefined)("the native helper's CRC-32", () => {
  it('is zlib\'s for every length up to 300 bytes at every alignment (the folded body and the bytewise tail)', () => {
    for (let start = 0; start < 16; start++) {
      for (let length = 0; length <= 300; length++) {
        const bytes = data.subarray(start, start + length);
        expect(native!.crc32(bytes), `start ${start}, length ${length}`).toBe(zlibCrc32(bytes));
      }
    }
  });

  it("is zlib's for 4 MiB blocks and random long ranges", () => {
    expect(native!.crc32(data.subarray(0, 4 * 1024 * 1024))).toBe(zlibCrc32(data.subarray(0, 4 * 1024 * 1024)));
    for (let i = 0; i < 50; i++) {
      const start = Math.floor(Math.random() * 64);
      const bytes = data.subarray(start, start + Math.floor(Math.random() * 4 * 1024 * 1024));
      expect(native!.crc32(bytes)).toBe(zlibCrc32(bytes));
    }
  });

  it('continues from a CRC as zlib does: the CRC of a whole is that of its second part from the first', () => {
    const whole = data.subarray(0, 100_003);
    const first = whole.subarray(0, 65_541);
    expect(native!.crc32(whole.subarray(65_541), native!.crc32(first))).toBe(zlibCrc32(whole));
    expect(native!.crc32(whole, 0xdeadbeef)).toBe(zlibCrc32(whole, 0xdeadbeef));
  });

  it('refuses what is not bytes', () => {
    expect(() => native!.crc32('text' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('crc32 (what reads check)', () => {
  it("is zlib's, whichever implementation this machine got", () => {
    for (const length of [0, 1, 63, 64, 4096, 4 * 1024 * 1024]) expect(crc32(data.subarray(3, 3 + length))).toBe(zlibCrc32(data.subarray(3, 3 + length)));
  });

  it("is the helper's where the CPU folds, zlib's otherwise (the helper's bytewise CRC is slower)", () => {
    expect(crc32 === native?.crc32).toBe(native?.crc32Folds === true);
  });
});
