import { createHash } from 'node:crypto';
import { CorruptBlockError } from '../errors.js';
import {
  Compression,
  DIGEST_ALGORITHM,
  DIGEST_LENGTH,
  Encryption,
  OBJECT_FORMAT_VERSION,
  OBJECT_FORMAT_VERSION_SEALED,
  OBJECT_HEADER_LENGTH,
  OBJECT_MAGIC,
  type CompressionValue,
  type EncryptionValue,
  type ObjectKindValue,
} from './formats.js';

/** The decoded object header (layout in formats.ts). */
export interface ObjectHeader {
  readonly formatVersion: number;
  readonly kind: ObjectKindValue;
  readonly compression: CompressionValue;
  readonly encryption: EncryptionValue;
  readonly plainLength: number;
  readonly storedLength: number;
  /** The id: the store's naming digest of the payload (SHA-256 for settings, owner and key files). */
  readonly digest: Buffer;
}

/**
 * Encodes an object header for an uncompressed, unencrypted payload.
 * @param kind what the object holds
 * @param digest the id that names the payload (the store's naming digest; SHA-256 for settings, owner and key files)
 * @param plainLength payload length in bytes
 * @returns a fresh 64-byte buffer
 */
export function encodeObjectHeader(kind: ObjectKindValue, digest: Uint8Array, plainLength: number): Buffer {
  if (digest.length !== DIGEST_LENGTH) throw new TypeError(`Digest must be ${DIGEST_LENGTH} bytes`);
  const header = Buffer.alloc(OBJECT_HEADER_LENGTH);
  header.writeUInt32LE(OBJECT_MAGIC, 0);
  header.writeUInt8(OBJECT_FORMAT_VERSION, 4);
  header.writeUInt8(kind, 5);
  header.writeUInt8(Compression.none, 6);
  header.writeUInt8(Encryption.none, 7);
  header.writeBigUInt64LE(BigInt(plainLength), 8);
  header.writeBigUInt64LE(BigInt(plainLength), 16);
  header.set(digest, 24);
  return header;
}

/**
 * Decodes and checks an object header.
 * @param bytes at least the first 64 bytes of an object
 * @param what names the object in error messages
 * @throws {CorruptBlockError} when the magic, version, kind or lengths are not valid
 */
export function decodeObjectHeader(bytes: Uint8Array, what: string): ObjectHeader {
  if (bytes.length < OBJECT_HEADER_LENGTH) throw new CorruptBlockError(`Object ${what} is corrupt: header is truncated`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, OBJECT_HEADER_LENGTH);
  if (view.readUInt32LE(0) !== OBJECT_MAGIC) throw new CorruptBlockError(`Object ${what} is corrupt: bad magic`);
  const formatVersion = view.readUInt8(4);
  if (formatVersion !== OBJECT_FORMAT_VERSION && formatVersion !== OBJECT_FORMAT_VERSION_SEALED) {
    throw new CorruptBlockError(`Object ${what} has unknown format version ${formatVersion}`);
  }
  const kind = view.readUInt8(5);
  if (kind < 1 || kind > 7) throw new CorruptBlockError(`Object ${what} is corrupt: unknown kind ${kind}`);
  const compression = view.readUInt8(6);
  const encryption = view.readUInt8(7);
  const known = (value: number, set: Record<string, number>) => Object.values(set).includes(value);
  if (!known(compression, Compression) || !known(encryption, Encryption) || (formatVersion === OBJECT_FORMAT_VERSION && (compression !== 0 || encryption !== 0))) {
    throw new CorruptBlockError(`Object ${what} uses compression ${compression} / encryption ${encryption}, which this version cannot read`);
  }
  const plainLength = Number(view.readBigUInt64LE(8));
  const storedLength = Number(view.readBigUInt64LE(16));
  if (formatVersion === OBJECT_FORMAT_VERSION && storedLength !== plainLength) throw new CorruptBlockError(`Object ${what} is corrupt: inconsistent lengths`);
  return {
    formatVersion,
    kind: kind as ObjectKindValue,
    compression: compression as CompressionValue,
    encryption: encryption as EncryptionValue,
    plainLength,
    storedLength,
    digest: Buffer.from(view.subarray(24, 24 + DIGEST_LENGTH)),
  };
}

/**
 * Encodes a small JSON object that must be readable before the store's digest and keys are known
 * (settings, owner, key files) with its header; the SHA-256 of the payload lets a reader tell a
 * damaged object from a good one. Manifests are sealed like blocks (object-seal.ts).
 * @param kind what the object holds
 * @param value anything JSON.stringify accepts
 * @returns the header and the payload, to be stored concatenated
 */
export function encodeJsonObject(kind: ObjectKindValue, value: unknown): [Buffer, Buffer] {
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  return [encodeObjectHeader(kind, createHash(DIGEST_ALGORITHM).update(payload).digest(), payload.length), payload];
}

/**
 * Decodes a JSON object written by {@link encodeJsonObject}, checking its header, kind and digest.
 * @param bytes the whole object
 * @param kind the kind expected
 * @param what names the object in error messages
 * @throws {CorruptBlockError} when it is damaged, of another kind, or not JSON
 */
export function decodeJsonObject(bytes: Uint8Array, kind: ObjectKindValue, what: string): unknown {
  const object = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = decodeObjectHeader(object, what);
  if (header.kind !== kind) throw new CorruptBlockError(`Object ${what} is corrupt: kind ${header.kind} instead of ${kind}`);
  const payload = object.subarray(OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + header.plainLength);
  if (payload.length !== header.plainLength || object.length !== OBJECT_HEADER_LENGTH + header.plainLength) {
    throw new CorruptBlockError(`Object ${what} is corrupt: ${object.length - OBJECT_HEADER_LENGTH} bytes of payload instead of ${header.plainLength}`);
  }
  if (!createHash(DIGEST_ALGORITHM).update(payload).digest().equals(header.digest)) {
    throw new CorruptBlockError(`Object ${what} is corrupt: its content does not match its digest`);
  }
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch (err) {
    throw new CorruptBlockError(`Object ${what} is corrupt: not JSON`, { cause: err });
  }
}
