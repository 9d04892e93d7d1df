import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { native } from '../../../../src/engine/sys/native.js';

const gcm = native?.aesGcm;
const key = randomBytes(32);
const nonce = randomBytes(12);
const aad = Buffer.from('blocks/ab/abcdef and a header');

/** node:crypto's AES-256-GCM: the reference. */
function reference(data: Buffer): { ciphertext: Buffer; tag: Buffer } {
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

// The native helper is built by npm ci (the package's gypfile); without it node:crypto is used.
describe.skipIf(gcm === undefined)('the native helper\'s AES-256-GCM', () => {
  it('encrypts as node:crypto does, for empty, odd and 4 MiB inputs, also in place', () => {
    for (const length of [0, 1, 4097, 4 * 1024 * 1024]) {
      const data = randomBytes(length);
      const { ciphertext, tag } = reference(data);
      const out = Buffer.alloc(length);
      const outTag = Buffer.alloc(16);
      expect(gcm!(true, key, nonce, aad, data, out, outTag)).toBe(true);
      expect(out.equals(ciphertext)).toBe(true);
      expect(outTag.equals(tag)).toBe(true);
      const inPlace = Buffer.from(data);
      gcm!(true, key, nonce, aad, inPlace, inPlace, outTag);
      expect(inPlace.equals(ciphertext)).toBe(true);
    }
  });

  it('decrypts what node:crypto encrypted, and refuses a changed tag, ciphertext or additional data, leaving zeros', () => {
    const data = randomBytes(65536);
    const { ciphertext, tag } = reference(data);
    const out = Buffer.alloc(data.length);
    expect(gcm!(false, key, nonce, aad, ciphertext, out, tag)).toBe(true);
    expect(out.equals(data)).toBe(true);
    const flip = (b: Buffer, at: number) => {
      const c = Buffer.from(b);
      c[at]! ^= 1;
      return c;
    };
    for (const [c, t, a] of [
      [ciphertext, flip(tag, 3), aad],
      [flip(ciphertext, 1000), tag, aad],
      [ciphertext, tag, flip(aad, 0)],
    ] as const) {
      out.fill(0xee);
      expect(gcm!(false, key, nonce, a, c, out, t)).toBe(false);
      expect(out.every((b) => b === 0)).toBe(true);
    }
  });

  it('refuses bad arguments and partly overlapping buffers instead of corrupting memory', () => {
    const memory = Buffer.alloc(200);
    expect(() => gcm!(true, key, nonce, aad, memory.subarray(0, 100), memory.subarray(10, 110), Buffer.alloc(16))).toThrow(RangeError);
    expect(() => gcm!(true, key.subarray(0, 16), nonce, aad, memory, Buffer.alloc(200), Buffer.alloc(16))).toThrow(RangeError);
    expect(() => gcm!(true, key, nonce, aad, memory, Buffer.alloc(100), Buffer.alloc(16))).toThrow(RangeError);
  });
});
