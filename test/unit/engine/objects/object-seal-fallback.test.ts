import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { OBJECT_HEADER_LENGTH, ObjectKind } from '../../../../src/engine/objects/formats.js';
import { deriveSealKeys, newMasterKey } from '../../../../src/engine/objects/key-files.js';
import type * as SealModule from '../../../../src/engine/objects/object-seal.js';
import type { Transforms } from '../../../../src/engine/objects/object-seal.js';

type Seal = typeof SealModule;

/**
 * object-seal.ts with and without the native helper. native.ts decides when it is evaluated, so
 * each is a fresh copy of the modules, imported with BACKY2_NATIVE set or not.
 */
async function loadSeal(withNative: boolean): Promise<{ seal: Seal; nativeLoaded: boolean }> {
  vi.resetModules();
  vi.stubEnv('BACKY2_NATIVE', withNative ? '1' : '0');
  try {
    const { native } = await import('../../../../src/engine/sys/native.js');
    const seal = await import('../../../../src/engine/objects/object-seal.js');
    return { seal, nativeLoaded: native !== undefined };
  } finally {
    vi.unstubAllEnvs();
    vi.resetModules();
  }
}

const keys = deriveSealKeys(newMasterKey(), 'ab'.repeat(16));
const stores: Record<string, Transforms> = {
  encrypted: { compression: 'none', level: 0, keys },
  'encrypted and compressed': { compression: 'zstd', level: 3, keys },
};
const KEY = 'blocks/ab/abcdef';
// Longer than node:crypto's chunk (256 KiB) and not a multiple of it; half compressible.
const data = Buffer.concat([Buffer.alloc(300 * 1024, 'fallback '), randomBytes(300 * 1024 + 17)]);
const PAGE = 4096;

let withNative: Seal;
let withoutNative: Seal;
let loaded: { withNative: boolean; withoutNative: boolean };

beforeAll(async () => {
  const a = await loadSeal(true);
  const b = await loadSeal(false);
  withNative = a.seal;
  withoutNative = b.seal;
  loaded = { withNative: a.nativeLoaded, withoutNative: b.nativeLoaded };
});

const paths = { 'native helper': () => withNative, 'node:crypto fallback': () => withoutNative };
const seal = (s: Seal, t: Transforms, plain: Buffer, key = KEY) => Buffer.concat(s.sealObject(t, ObjectKind.block, key, s.objectId(t, plain), plain));
const open = (s: Seal, t: Transforms, object: Buffer, plain: Buffer, out?: Buffer) => s.openObject(t, ObjectKind.block, KEY, s.objectId(t, plain), object, 'test object', out);

/** Seals `plain` in place in a buffer slot laid out as the pool does (page, payload, tail page). */
function sealInSlot(s: Seal, t: Transforms, plain: Buffer): { slot: Buffer; object: Buffer; length: number } {
  const slot = Buffer.alloc(PAGE + plain.length + PAGE);
  plain.copy(slot, PAGE);
  const view = slot.subarray(PAGE - OBJECT_HEADER_LENGTH);
  const length = s.sealObjectInto(t, ObjectKind.block, KEY, s.objectId(t, plain), slot.subarray(PAGE, PAGE + plain.length), view);
  return { slot, object: Buffer.from(view.subarray(0, length)), length };
}

/** Opens `object` in place: copied into a slot where sealing leaves it, and opened over itself. */
function openInSlot(s: Seal, t: Transforms, object: Buffer, plain: Buffer): Buffer {
  const slot = Buffer.alloc(PAGE + plain.length + PAGE);
  object.copy(slot, PAGE - OBJECT_HEADER_LENGTH);
  return open(s, t, slot.subarray(PAGE - OBJECT_HEADER_LENGTH, PAGE - OBJECT_HEADER_LENGTH + object.length), plain, slot.subarray(PAGE, PAGE + plain.length));
}

describe('sealing with and without the native helper (BACKY2_NATIVE=0)', () => {
  it('BACKY2_NATIVE=0 leaves the helper unloaded; unset, the helper is loaded where it is built', () => {
    // Where it is not built both copies take the fallback, and the checks below prove less.
    const built = existsSync(fileURLToPath(new URL('../../../../build/Release/backy2_native.node', import.meta.url)));
    expect(loaded).toEqual({ withNative: built, withoutNative: false });
    expect(withNative).not.toBe(withoutNative);
  });

  for (const [pathName, get] of Object.entries(paths)) {
    for (const [name, t] of Object.entries(stores)) {
      describe(`${pathName}, ${name}`, () => {
        it('what is sealed opens to the same bytes (also empty and one byte)', () => {
          const s = get();
          for (const plain of [data, Buffer.alloc(0), Buffer.from('x')]) expect(open(s, t, seal(s, t, plain), plain).equals(plain)).toBe(true);
        });

        it('a changed bit of ciphertext, nonce, tag or header fails authentication, leaving zeros', () => {
          const s = get();
          const object = seal(s, t, data);
          for (const offset of [OBJECT_HEADER_LENGTH + 12 + 5, OBJECT_HEADER_LENGTH + 3, object.length - 4, 9]) {
            const copy = Buffer.from(object);
            copy[offset]! ^= 0x10;
            copy.writeUInt32LE(crc32(copy.subarray(OBJECT_HEADER_LENGTH)), 56);
            // Room for the plain length the changed header claims (byte 9: 4 KiB more).
            const out = Buffer.alloc(data.length + 65536, 0xee);
            expect(() => open(s, t, copy, data, out)).toThrow(expect.objectContaining({ code: 'E_CORRUPT' }));
            expect(out.every((b) => b === 0)).toBe(true);
          }
        });

        it('an object moved to another key fails authentication', () => {
          const s = get();
          const object = seal(s, t, data, 'blocks/aa/one');
          expect(() => open(s, t, object, data)).toThrow(/failed authentication/);
        });

        it('sealed in place in its slot, it is what sealing elsewhere makes, and it opens in place', () => {
          const s = get();
          const { slot, object, length } = sealInSlot(s, t, data);
          expect(open(s, t, object, data).equals(data)).toBe(true);
          expect(openInSlot(s, t, object, data).equals(data)).toBe(true);
          // Read at the start of its slot, the plaintext lands after the ciphertext's start.
          object.copy(slot, 0);
          expect(open(s, t, slot.subarray(0, length), data, slot.subarray(PAGE, PAGE + data.length)).equals(data)).toBe(true);
        });
      });
    }
  }

  for (const [name, t] of Object.entries(stores)) {
    describe(`one format: what one path seals the other opens (${name})`, () => {
      const pairs: [string, () => Seal, () => Seal][] = [
        ['native → fallback', paths['native helper'], paths['node:crypto fallback']],
        ['fallback → native', paths['node:crypto fallback'], paths['native helper']],
      ];
      for (const [direction, from, to] of pairs) {
        it(`${direction}: sealed elsewhere and in place, opened elsewhere and in place`, () => {
          const sealer = from();
          const opener = to();
          for (const object of [seal(sealer, t, data), sealInSlot(sealer, t, data).object]) {
            expect(open(opener, t, object, data).equals(data)).toBe(true);
            expect(openInSlot(opener, t, object, data).equals(data)).toBe(true);
          }
          expect(open(opener, t, seal(sealer, t, Buffer.alloc(0)), Buffer.alloc(0)).length).toBe(0);
        });

        it(`${direction}: a tampered object is refused by the other path too`, () => {
          const object = seal(from(), t, data);
          object[object.length - 1]! ^= 1;
          object.writeUInt32LE(crc32(object.subarray(OBJECT_HEADER_LENGTH)), 56);
          expect(() => open(to(), t, object, data)).toThrow(/failed authentication/);
        });
      }

      it('both paths lay the object out alike: same header, same length', () => {
        const a = seal(withNative, t, data);
        const b = seal(withoutNative, t, data);
        expect(b.length).toBe(a.length);
        // Equal but for the CRC (bytes 56-59), which covers the payload with its random nonce.
        expect(b.subarray(0, 56).equals(a.subarray(0, 56))).toBe(true);
      });
    });
  }
});
