/**
 * What turns a plaintext into a stored object and back: the naming digest, compression and
 * authenticated encryption of format 2 (layout in formats.ts). Pure and synchronous, so the
 * block workers and the main thread (segments, manifests) run the very same code.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { BlockStore } from '../blockstore/block-store.js';
import { CorruptBlockError } from '../errors.js';
import {
  Compression,
  Encryption,
  GCM_NONCE_LENGTH,
  GCM_TAG_LENGTH,
  OBJECT_FORMAT_VERSION_SEALED,
  OBJECT_HEADER_LENGTH,
  ObjectKind,
  type ObjectKindValue,
} from './formats.js';
import { crc32, native } from '../sys/native.js';
import { namingDigest, type DigestAlgorithm } from './naming-digest.js';
import { decodeObjectHeader, encodeObjectHeader } from './object-codec.js';
import { StoreKeys } from './store-keys.js';

/** The keys an encrypted store's objects are made with (derived from its master key). */
export interface SealKeys {
  /** Names objects: the keyed digest of the plaintext, so names reveal nothing of the content. */
  readonly idKey: Buffer;
  /** Encrypts objects with AES-256-GCM. */
  readonly dataKey: Buffer;
}

/** How a store's objects are made. Plain-copyable, so it can go to a worker with a task. */
export interface Transforms {
  /** What names objects (keyed with `keys.idKey` when encrypted). @default 'sha256' (store format 1) */
  readonly digest?: DigestAlgorithm;
  readonly compression: 'none' | 'zstd';
  /** zstd level. @default 1 */
  readonly level: number;
  /** Present when the store is encrypted. */
  readonly keys: SealKeys | undefined;
  /**
   * Plaintext objects are written in format 2 too, with the CRC of their bytes that reads check
   * (stores made since the `checksum` setting); compressed or encrypted objects always are.
   */
  readonly checksummed?: boolean;
}

/** The transforms of a plaintext, uncompressed store made before the `checksum` setting (format 1 objects). */
export const PLAIN: Transforms = { compression: 'none', level: 0, keys: undefined };

/** The transforms of a plaintext, uncompressed store whose objects carry a CRC (format 2). */
export const PLAIN_CHECKSUMMED: Transforms = { ...PLAIN, checksummed: true };

/** True when objects are written in format 2 (compressed, encrypted, or with a CRC). */
export function isSealed(t: Transforms): boolean {
  return t.compression !== 'none' || t.keys !== undefined || t.checksummed === true;
}

/**
 * True when an object's payload is the plaintext as it is (neither compressed nor encrypted), so
 * its stored length is known from the plaintext's: format 1, or format 2 with only a CRC.
 */
export function hasPlainPayload(t: Transforms): boolean {
  return t.compression === 'none' && t.keys === undefined;
}

/**
 * How much of a stored object a read proves.
 * - `full`: everything, down to the naming digest of an unencrypted plaintext (SHA-256 about
 *   0.5 CPU-s per GB here, BLAKE3 about 0.1): what scrub does.
 * - `checksum`: what proves an object intact without re-deriving its digest, where the object can
 *   be proven so: the CRC-32 of its stored bytes (format 2; about 0.15 CPU-s per GB) with its
 *   header naming the digest asked for, or the tag of an encrypted one. Format 1 objects have no
 *   CRC: their digest is always re-derived. What this catches and what it leaves to scrub is in
 *   docs/architecture.md ("How reads are checked").
 */
export type ReadProof = 'full' | 'checksum';

/** The digest that names `data` in this store (naming-digest.ts): SHA-256 or BLAKE3, keyed when encrypted. */
export function objectId(t: Transforms, data: Uint8Array): Buffer {
  return namingDigest(t.digest ?? 'sha256', t.keys?.idKey, data);
}

interface Zstd {
  readonly CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  readonly DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  compressBound(size: number): number;
}
let zstd: { lib: Zstd; cctx: InstanceType<Zstd['CCtx']>; dctx: InstanceType<Zstd['DCtx']> } | undefined;
/** zstd, loaded on first use (plaintext stores never load it); one context per thread. */
function zstdLib() {
  if (!zstd) {
    const lib = createRequire(import.meta.url)('zstd-napi/binding') as Zstd;
    zstd = { lib, cctx: new lib.CCtx(), dctx: new lib.DCtx() };
  }
  return zstd;
}

/**
 * Cipher input per node:crypto call, when the native helper is not built. Node returns a new
 * buffer per call: 4 MiB ones cost a fresh mapping (page faults, about 4× the CPU of the cipher
 * itself); 256 KiB ones are recycled by the allocator, but wait for the garbage collector.
 */
const CIPHER_CHUNK = 256 * 1024;

/** The native helper's AES-256-GCM between given buffers (no allocation, about twice as fast), if built. */
const nativeGcm = native?.aesGcm;

/** Per-thread scratch memory for compression and for inputs that overlap their output. */
let scratchMemory = Buffer.alloc(0);
function scratch(size: number): Buffer {
  if (scratchMemory.length < size) scratchMemory = Buffer.allocUnsafeSlow(Math.max(size, 2 * scratchMemory.length));
  return scratchMemory.subarray(0, size);
}

/** True when two views share bytes (a block sealed or opened in place). */
function overlaps(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** Streams `input` through a cipher into `out` at `at`; returns the bytes written. */
function cipherInto(cipher: { update(data: Uint8Array): Buffer }, input: Uint8Array, out: Buffer, at: number): number {
  let written = 0;
  for (let i = 0; i < input.length; i += CIPHER_CHUNK) written += cipher.update(input.subarray(i, i + CIPHER_CHUNK)).copy(out, at + written);
  return written;
}

/**
 * The most bytes the stored object of a plaintext of `length` bytes takes, header included
 * (compression is kept only when it saves space; encryption adds nonce and tag).
 */
export function sealedCapacity(t: Transforms, length: number): number {
  return OBJECT_HEADER_LENGTH + length + (t.keys ? GCM_NONCE_LENGTH + GCM_TAG_LENGTH : 0);
}

/**
 * Makes the stored form of a plaintext in `out`: header, then payload (format 1 for plaintext
 * stores, format 2 otherwise). `out` may overlap the plaintext (a block sealed in its own slot).
 * @param t the store's transforms
 * @param kind what the object holds
 * @param key its key in the block store (bound into the encryption)
 * @param id its naming digest (see objectId)
 * @param plaintext the content
 * @param out where the object goes: at least sealedCapacity() bytes
 * @returns the object's length
 */
export function sealObjectInto(t: Transforms, kind: ObjectKindValue, key: string, id: Uint8Array, plaintext: Uint8Array, out: Buffer): number {
  const capacity = sealedCapacity(t, plaintext.length);
  if (out.length < capacity) throw new RangeError(`An object of ${plaintext.length} bytes needs ${capacity} bytes to be sealed into, not ${out.length}`);
  if (!isSealed(t)) {
    out.set(plaintext, OBJECT_HEADER_LENGTH);
    encodeObjectHeader(kind, id, plaintext.length).copy(out, 0);
    return OBJECT_HEADER_LENGTH + plaintext.length;
  }
  if (hasPlainPayload(t)) {
    // Format 2 plaintext: the payload is the plaintext, already in place when sealed in its slot.
    const payload = out.subarray(OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + plaintext.length);
    if (!(plaintext.buffer === payload.buffer && plaintext.byteOffset === payload.byteOffset)) payload.set(plaintext);
    writeHeader(out, kind, Compression.none, Encryption.none, plaintext.length, plaintext.length, id);
    out.writeUInt32LE(crc32(payload), 56);
    return OBJECT_HEADER_LENGTH + plaintext.length;
  }
  let body: Uint8Array = plaintext;
  let compression: number = Compression.none;
  if (t.compression === 'zstd' && plaintext.length > 0) {
    const { lib, cctx } = zstdLib();
    const packed = scratch(lib.compressBound(plaintext.length));
    const n = cctx.compress(packed, plaintext, t.level);
    // Kept only when it saves space (random data grows a little).
    if (n < plaintext.length) {
      body = packed.subarray(0, n);
      compression = Compression.zstd;
    }
  }
  const storedLength = t.keys ? GCM_NONCE_LENGTH + body.length + GCM_TAG_LENGTH : body.length;
  const header = out.subarray(0, OBJECT_HEADER_LENGTH);
  const payload = out.subarray(OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + storedLength);
  if (overlaps(body, out)) {
    // Encrypting forwards would overwrite plaintext not yet read (the payload starts later).
    const copy = scratch(body.length);
    copy.set(body);
    body = copy;
  }
  writeHeader(header, kind, compression, t.keys ? Encryption.aes256gcm : Encryption.none, plaintext.length, storedLength, id);
  if (t.keys) {
    const nonce = randomBytes(GCM_NONCE_LENGTH);
    nonce.copy(payload, 0);
    if (nativeGcm) {
      const ciphertext = payload.subarray(GCM_NONCE_LENGTH, GCM_NONCE_LENGTH + body.length);
      nativeGcm(true, t.keys.dataKey, nonce, additionalData(key, header), body, ciphertext, payload.subarray(GCM_NONCE_LENGTH + body.length));
    } else {
      const cipher = createCipheriv('aes-256-gcm', t.keys.dataKey, nonce);
      cipher.setAAD(additionalData(key, header));
      let at = GCM_NONCE_LENGTH + cipherInto(cipher, body, payload, GCM_NONCE_LENGTH);
      at += cipher.final().copy(payload, at);
      cipher.getAuthTag().copy(payload, at);
    }
  } else {
    payload.set(body);
  }
  header.writeUInt32LE(crc32(payload), 56);
  return OBJECT_HEADER_LENGTH + storedLength;
}

/**
 * Makes the stored form of a small plaintext (segment, manifest) in new memory.
 * @returns the header and the payload, to be stored concatenated
 */
export function sealObject(t: Transforms, kind: ObjectKindValue, key: string, id: Uint8Array, plaintext: Uint8Array): [Buffer, Buffer] {
  if (!isSealed(t)) return [encodeObjectHeader(kind, id, plaintext.length), Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength)];
  const out = Buffer.allocUnsafe(sealedCapacity(t, plaintext.length));
  const length = sealObjectInto(t, kind, key, id, plaintext, out);
  return [out.subarray(0, OBJECT_HEADER_LENGTH), out.subarray(OBJECT_HEADER_LENGTH, length)];
}

/**
 * Proves and opens a stored object: header, kind, the CRC of what is stored, the authentication
 * tag (encrypted), the length, and for unencrypted objects the digest of the plaintext (with
 * `proof` `checksum`, only for objects without a CRC).
 * @param t the store's transforms
 * @param kind the kind expected
 * @param key its key in the block store
 * @param id the naming digest expected
 * @param object the whole stored object
 * @param what names the object in errors
 * @param out where the plaintext goes (may overlap the object: a block opened in its own slot);
 *   new memory when omitted. Zero-filled when the object does not check out.
 * @param proof how much to prove (see {@link ReadProof})
 * @returns the plaintext
 * @throws {CorruptBlockError} when anything does not check out
 */
export function openObject(t: Transforms, kind: ObjectKindValue, key: string, id: Uint8Array, object: Uint8Array, what: string, out?: Buffer, proof: ReadProof = 'full'): Buffer {
  try {
    return openInto(t, kind, key, id, object, what, out, proof);
  } catch (err) {
    // Never leave unauthenticated plaintext behind for a caller that ignores the error.
    out?.fill(0);
    throw err;
  }
}

function openInto(t: Transforms, kind: ObjectKindValue, key: string, id: Uint8Array, object: Uint8Array, what: string, out: Buffer | undefined, proof: ReadProof): Buffer {
  const bytes = Buffer.from(object.buffer, object.byteOffset, object.byteLength);
  const header = decodeObjectHeader(bytes, what);
  if (header.kind !== kind) throw new CorruptBlockError(`Object ${what} is corrupt: kind ${header.kind} instead of ${kind}`);
  if (!header.digest.equals(id)) throw new CorruptBlockError(`Object ${what} carries another object's header`);
  const payload = bytes.subarray(OBJECT_HEADER_LENGTH);
  if (payload.length !== header.storedLength) {
    throw new CorruptBlockError(`Object ${what} is corrupt: ${payload.length} bytes stored, the header says ${header.storedLength}`);
  }
  if (header.formatVersion === OBJECT_FORMAT_VERSION_SEALED && crc32(payload) !== bytes.readUInt32LE(56)) {
    throw new CorruptBlockError(`Object ${what} is corrupt: its stored bytes do not match their checksum`);
  }
  if (header.encryption !== Encryption.none && !t.keys) throw new CorruptBlockError(`Object ${what} is encrypted, but the store is not`);
  if (header.encryption === Encryption.none && t.keys) throw new CorruptBlockError(`Object ${what} is not encrypted, but the store is: it was not written by this store`);
  if (out !== undefined && out.length < header.plainLength) throw new RangeError(`Object ${what} holds ${header.plainLength} bytes, more than the ${out.length} bytes given for it`);
  const compressed = header.compression === Compression.zstd;
  const target = out === undefined ? Buffer.allocUnsafe(header.plainLength) : out.subarray(0, header.plainLength);
  let body: Buffer = payload;
  if (t.keys) {
    if (payload.length < GCM_NONCE_LENGTH + GCM_TAG_LENGTH) throw new CorruptBlockError(`Object ${what} is corrupt: truncated`);
    const nonce = payload.subarray(0, GCM_NONCE_LENGTH);
    const ciphertext = payload.subarray(GCM_NONCE_LENGTH, payload.length - GCM_TAG_LENGTH);
    const tag = payload.subarray(payload.length - GCM_TAG_LENGTH);
    const aad = additionalData(key, bytes.subarray(0, OBJECT_HEADER_LENGTH));
    if (!compressed && ciphertext.length !== header.plainLength) throw new CorruptBlockError(`Object ${what} is corrupt: ${ciphertext.length} bytes, the header says ${header.plainLength}`);
    // A compressed body goes to scratch memory first, to be decompressed into place.
    const into = compressed ? scratch(ciphertext.length) : target;
    const failed = (cause?: unknown) => new CorruptBlockError(`Object ${what} failed authentication: it was changed, damaged or moved`, { cause });
    if (nativeGcm) {
      // The native cipher takes the same memory or apart, never partly overlapping.
      let input = ciphertext;
      if (overlaps(into, ciphertext) && into.byteOffset !== ciphertext.byteOffset) {
        input = scratch(ciphertext.length);
        ciphertext.copy(input);
      }
      // The tag is copied first: the plaintext may land over it (an object read at the start of its slot).
      if (!nativeGcm(false, t.keys.dataKey, nonce, aad, input, into.subarray(0, input.length), Buffer.from(tag))) throw failed();
      body = into.subarray(0, input.length);
    } else {
      const decipher = createDecipheriv('aes-256-gcm', t.keys.dataKey, nonce);
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      // Decrypting forwards into memory before the ciphertext only overwrites what was read.
      let input = ciphertext;
      if (overlaps(into, ciphertext) && into.byteOffset > ciphertext.byteOffset) {
        input = scratch(ciphertext.length);
        ciphertext.copy(input);
      }
      let n: number;
      try {
        n = cipherInto(decipher, input, into, 0);
        n += decipher.final().copy(into, n);
      } catch (err) {
        throw failed(err);
      }
      body = into.subarray(0, n);
    }
  } else if (compressed && out !== undefined && overlaps(payload, target)) {
    body = scratch(payload.length);
    payload.copy(body);
  }
  if (compressed) {
    let n: number;
    try {
      n = zstdLib().dctx.decompress(target, body);
    } catch (err) {
      throw new CorruptBlockError(`Object ${what} is corrupt: it does not decompress`, { cause: err });
    }
    if (n !== header.plainLength) throw new CorruptBlockError(`Object ${what} is corrupt: ${n} bytes decompressed, the header says ${header.plainLength}`);
  } else if (body.length !== header.plainLength) {
    throw new CorruptBlockError(`Object ${what} is corrupt: ${body.length} bytes, the header says ${header.plainLength}`);
  } else if (body !== target && !(body.buffer === target.buffer && body.byteOffset === target.byteOffset)) {
    body.copy(target);
  }
  // Encrypted objects are proven by their tag; the others by their digest, or for a checksum
  // proof by the CRC checked above (with the header naming the digest asked for).
  const crcProven = proof === 'checksum' && header.formatVersion === OBJECT_FORMAT_VERSION_SEALED;
  if (!t.keys && !crcProven && !objectId(t, target).equals(id)) throw new CorruptBlockError(`Object ${what} is corrupt: its data does not match its digest`);
  return target;
}

/**
 * Checks a stored object without any key (a scrub of a store whose key is elsewhere): its header
 * and the CRC of its stored bytes. Format 1 objects have no CRC: only their header is checked.
 * @throws {CorruptBlockError} when it does not check out
 */
export function checkStoredObject(kind: ObjectKindValue, id: Uint8Array, object: Uint8Array, what: string): void {
  const bytes = Buffer.from(object.buffer, object.byteOffset, object.byteLength);
  const header = decodeObjectHeader(bytes, what);
  if (header.kind !== kind || !header.digest.equals(id)) throw new CorruptBlockError(`Object ${what} carries another object's header`);
  if (bytes.length - OBJECT_HEADER_LENGTH !== header.storedLength) throw new CorruptBlockError(`Object ${what} is corrupt: truncated or too long`);
  if (header.formatVersion === OBJECT_FORMAT_VERSION_SEALED && crc32(bytes.subarray(OBJECT_HEADER_LENGTH)) !== bytes.readUInt32LE(56)) {
    throw new CorruptBlockError(`Object ${what} is corrupt: its stored bytes do not match their checksum`);
  }
}

function writeHeader(header: Buffer, kind: ObjectKindValue, compression: number, encryption: number, plainLength: number, storedLength: number, id: Uint8Array): void {
  encodeObjectHeader(kind, id, plainLength).copy(header);
  header.writeUInt8(OBJECT_FORMAT_VERSION_SEALED, 4);
  header.writeUInt8(compression, 6);
  header.writeUInt8(encryption, 7);
  header.writeBigUInt64LE(BigInt(storedLength), 16);
}

/** What the tag also covers: the object's key (no swapping objects) and its header (no editing it). */
function additionalData(key: string, header: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(key, 'utf8'), header.subarray(0, 56)]);
}

/** A block store and how its objects are made. */
export interface SealedStore {
  readonly blocks: BlockStore;
  readonly transforms: Transforms;
}

/**
 * Stores a small object (segment, manifest) sealed as the store makes objects, durably.
 * @param id its naming digest; computed from the plaintext when omitted
 */
export async function putSealed(s: SealedStore, kind: ObjectKindValue, key: string, plaintext: Uint8Array, id: Uint8Array = objectId(s.transforms, plaintext)): Promise<void> {
  await s.blocks.put(key, sealObject(s.transforms, kind, key, id, plaintext));
}

/**
 * Reads and opens a small object.
 * @param id the naming digest expected; when omitted, the header's (its consistency is still proven)
 * @throws {ObjectMissingError} when it is missing
 * @throws {CorruptBlockError} when it does not check out
 */
export async function getSealed(s: SealedStore, kind: ObjectKindValue, key: string, what: string, id?: Uint8Array): Promise<Buffer> {
  const object = Buffer.from(await s.blocks.get(key));
  const expected = id ?? (object.length >= OBJECT_HEADER_LENGTH ? object.subarray(24, 56) : Buffer.alloc(0));
  return openObject(s.transforms, kind, key, expected, object, what);
}

/**
 * Marks a block a scrub found bad, so that a catalog rebuild knows it too (by the key alone). The
 * text says why: in plain text in stores of format 1 objects, sealed like every object otherwise
 * (a plaintext store's marker then reads as text after the 64-byte header).
 */
export async function saveInvalidMarker(s: SealedStore, digest: Uint8Array, why: string): Promise<void> {
  const key = StoreKeys.invalidMarker(digest);
  const text = Buffer.from(why, 'utf8');
  if (isSealed(s.transforms)) await putSealed(s, ObjectKind.invalidMarker, key, text);
  else await s.blocks.put(key, [text]);
}
