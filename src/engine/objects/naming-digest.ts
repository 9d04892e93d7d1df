/**
 * The digest that names blocks and map segments: SHA-256 (stores made before store format 2, or
 * asked for) or BLAKE3 (new stores). Both give 32 bytes; with encryption both are keyed by the
 * store's id key (HMAC-SHA-256, keyed BLAKE3), so names reveal nothing of the content.
 *
 * Why BLAKE3 for new stores: every block a backup reads is hashed, and SHA-256 costs about 0.5
 * CPU-s per GB here even with the CPU's SHA instructions (2.1 GB/s), which made it the largest
 * single cost of a backup. BLAKE3 (the reference implementation, with AVX-512/AVX2/NEON as the
 * CPU has them) hashes 4 MiB blocks at about 10 GB/s on the same core, and is as collision
 * resistant as dedup needs (a collision would make two blocks share one name).
 */
import { createHash, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { StoreUnavailableError } from '../errors.js';

/** A naming digest; its keyed form is used when the store is encrypted. */
export type DigestAlgorithm = 'sha256' | 'blake3';

interface Blake3Binding {
  blake3(input: Uint8Array): Buffer;
  readonly Blake3Hasher: { newKeyed(key: Buffer): { update(input: Uint8Array): { digestBuffer(): Buffer } } };
}

let blake3Binding: Blake3Binding | Error | undefined;

/** The BLAKE3 binding, loaded on first use (SHA-256 stores never load it); an Error when this platform has none. */
function loadBlake3(): Blake3Binding | Error {
  if (blake3Binding === undefined) {
    try {
      blake3Binding = createRequire(import.meta.url)('@napi-rs/blake-hash') as Blake3Binding;
    } catch (err) {
      blake3Binding = err instanceof Error ? err : new Error(String(err));
    }
  }
  return blake3Binding;
}

/** True when BLAKE3 can be computed here (its prebuilt binding exists for this platform). */
export function blake3Available(): boolean {
  return !(loadBlake3() instanceof Error);
}

/**
 * The BLAKE3 binding.
 * @throws {StoreUnavailableError} when this platform has none
 */
function blake3(): Blake3Binding {
  const binding = loadBlake3();
  if (binding instanceof Error) {
    throw new StoreUnavailableError(`This store names its objects by BLAKE3, which this backy2 cannot compute on ${process.platform}-${process.arch}: ${binding.message}`, {
      hint: 'use the store from a host where the @napi-rs/blake-hash package loads (its prebuilt binaries cover Linux x64 and arm64)',
      cause: binding,
    });
  }
  return binding;
}

/**
 * The digest that names `data`.
 * @param key the store's id key when it is encrypted (32 bytes), else undefined
 * @throws {StoreUnavailableError} for BLAKE3 on a platform without it
 */
export function namingDigest(algorithm: DigestAlgorithm, key: Buffer | undefined, data: Uint8Array): Buffer {
  if (algorithm === 'blake3') {
    const b3 = blake3();
    return key ? b3.Blake3Hasher.newKeyed(key).update(data).digestBuffer() : b3.blake3(data);
  }
  return key ? createHmac('sha256', key).update(data).digest() : createHash('sha256').update(data).digest();
}
