/**
 * The digest that names blocks and map segments: SHA-256 (stores made before store format 2, or
 * asked for) or BLAKE3 (new stores). Both give 32 bytes; with encryption both are keyed by the
 * store's id key (HMAC-SHA-256, keyed BLAKE3), so names reveal nothing of the content.
 *
 * Why BLAKE3 for new stores: every block a backup reads is hashed, and SHA-256 costs about 0.5
 * CPU-s per GB here even with the CPU's SHA instructions (2.1 GB/s), which made it the largest
 * single cost of a backup. BLAKE3 (the reference implementation through @napi-rs/blake-hash, with
 * AVX-512/AVX2/NEON as the CPU has them) hashes 4 MiB blocks at about 10 GB/s on the same core,
 * and is as collision resistant as dedup needs (a collision would make two blocks share one
 * name). Where that package has no build (it has Linux x64 and arm64), blake3.ts computes the
 * same digests in plain JavaScript, so a BLAKE3 store can be restored wherever Node runs.
 */
import { createHash, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { blake3Portable } from './blake3.js';

/** A naming digest; its keyed form is used when the store is encrypted. */
export type DigestAlgorithm = 'sha256' | 'blake3';

/** What computes BLAKE3: the native binding, or where it has no build (or BACKY2_BLAKE3=portable), blake3.ts. */
type Blake3 = (data: Uint8Array, key: Buffer | undefined) => Buffer;

interface Blake3Binding {
  blake3(input: Uint8Array): Buffer;
  readonly Blake3Hasher: { newKeyed(key: Buffer): { update(input: Uint8Array): { digestBuffer(): Buffer } } };
}

let blake3: Blake3 | undefined;

/** BLAKE3, chosen on first use (SHA-256 stores never load the binding). */
function loadBlake3(): Blake3 {
  if (process.env.BACKY2_BLAKE3 !== 'portable') {
    try {
      const b = createRequire(import.meta.url)('@napi-rs/blake-hash') as Blake3Binding;
      return (data, key) => (key ? b.Blake3Hasher.newKeyed(key).update(data).digestBuffer() : b.blake3(data));
    } catch {
      // no build for this platform: the portable one reads and writes the same stores, slower
    }
  }
  return blake3Portable;
}

/**
 * The digest that names `data`.
 * @param key the store's id key when it is encrypted (32 bytes), else undefined
 */
export function namingDigest(algorithm: DigestAlgorithm, key: Buffer | undefined, data: Uint8Array): Buffer {
  if (algorithm === 'blake3') return (blake3 ??= loadBlake3())(data, key);
  return key ? createHmac('sha256', key).update(data).digest() : createHash('sha256').update(data).digest();
}
