/**
 * Every on-disk (and on-S3) format of backy2: magics, versions and fixed sizes.
 *
 * NEVER CHANGE a value or layout in this file once released: stores written by older versions
 * must stay readable. Add fields into reserved bytes, say in a comment which format version added
 * them and what older data reads as, and mirror every change in docs/formats.md.
 */

/** Length of a content digest (SHA-256 or BLAKE3) in bytes. */
export const DIGEST_LENGTH = 32;

/**
 * Hash algorithm (node:crypto name) of the header digest of settings, owner and key files,
 * whatever the store's naming digest: they must be readable before that digest is known. Blocks,
 * segments, manifests and sealed invalid markers carry the settings' `digest`.
 */
export const DIGEST_ALGORITHM = 'sha256';

/**
 * Object header, at offset 0 of every stored object (block, map segment, version manifest).
 *
 * | offset | size | field | notes |
 * | --- | --- | --- | --- |
 * | 0 | 4 | magic | ASCII "BKY2" |
 * | 4 | 1 | format version | 1, or 2 when compressed or encrypted |
 * | 5 | 1 | kind | {@link ObjectKind} |
 * | 6 | 1 | compression | {@link Compression}; 0 = none |
 * | 7 | 1 | encryption | {@link Encryption}; 0 = none |
 * | 8 | 8 | plain length | u64 little-endian, length of the plaintext payload |
 * | 16 | 8 | stored length | u64 little-endian, length of the payload as stored after the header |
 * | 24 | 32 | id | the digest that names the object (the settings' `digest`): SHA-256 or BLAKE3 of the plaintext, or with encryption HMAC-SHA-256 or keyed BLAKE3 of it under the store's id key |
 * | 56 | 4 | stored CRC | format 2: CRC-32 (IEEE) of the stored payload, checked without the key; zero in format 1 |
 * | 60 | 4 | reserved | zero |
 *
 * The payload follows immediately. 64 bytes keep the payload cache-line aligned when an object is
 * read into a page-aligned buffer at (payload − 64), which keeps kernel copies fast.
 *
 * Format 2 payload: the plaintext, zstd-compressed when compression is 1 (kept only when it saves
 * space); with encryption 1 (AES-256-GCM) that is sealed as nonce (12 bytes) ‖ ciphertext ‖ tag
 * (16 bytes), with the object's key (UTF-8) and header bytes 0–55 as additional data, so an object
 * can neither be changed nor moved to another key unnoticed. Format 2 was added with encryption;
 * format 1 objects (plaintext stores) are read as before.
 */
export const OBJECT_HEADER_LENGTH = 64;
export const OBJECT_MAGIC = 0x3259_4b42; // "BKY2" read as u32 little-endian
export const OBJECT_FORMAT_VERSION = 1;
/** Format of compressed or encrypted objects (header with CRC). */
export const OBJECT_FORMAT_VERSION_SEALED = 2;
/** AES-256-GCM nonce and tag lengths in a format 2 payload. */
export const GCM_NONCE_LENGTH = 12;
export const GCM_TAG_LENGTH = 16;

export const ObjectKind = {
  block: 1,
  segment: 2,
  manifest: 3,
  /** The store's settings (UTF-8 JSON); added with `backy2 init`, older stores have none. */
  settings: 4,
  /** The catalog that uses the block store (UTF-8 JSON); added with `backy2 init`. */
  owner: 5,
  /** A key file: the master key of an encrypted store, wrapped under a passphrase (UTF-8 JSON). */
  key: 6,
  /** An invalid marker of a compressed or encrypted store (plaintext stores keep plain text). */
  invalidMarker: 7,
} as const;
export type ObjectKindValue = (typeof ObjectKind)[keyof typeof ObjectKind];

export const Compression = { none: 0, zstd: 1 } as const;
export type CompressionValue = (typeof Compression)[keyof typeof Compression];

export const Encryption = { none: 0, aes256gcm: 1 } as const;
export type EncryptionValue = (typeof Encryption)[keyof typeof Encryption];

/**
 * Block map segment payload (object kind 2). A version's block map is the ordered list of its
 * segments' digests; unchanged segments are shared between versions by reference.
 *
 * | offset | size | field |
 * | --- | --- | --- |
 * | 0 | 4 | entry count n, u32 little-endian, 1..{@link SEGMENT_ENTRIES} |
 * | 4 | 4 | reserved, zero |
 * | 8 | 32 × n | entries: block digest, or 32 zero bytes for a sparse (all-zero) block |
 *
 * Every segment but a version's last holds exactly SEGMENT_ENTRIES entries, so block i of a
 * version is entry (i mod SEGMENT_ENTRIES) of segment floor(i / SEGMENT_ENTRIES).
 */
export const SEGMENT_ENTRIES = 1024;

/** The map entry of an all-zero (sparse) block: 32 zero bytes. */
export const SPARSE_ENTRY: Buffer = Buffer.alloc(DIGEST_LENGTH);
export const SEGMENT_HEADER_LENGTH = 8;

/** Version manifest (object kind 3): UTF-8 JSON, see docs/formats.md. */
export const MANIFEST_FORMAT_VERSION = 1;

/**
 * Store settings (object kind 4): UTF-8 JSON, see docs/formats.md and store-settings.ts. Format 1
 * stores name objects by SHA-256 (or HMAC-SHA-256); format 2, added with BLAKE3 naming, by BLAKE3
 * (or keyed BLAKE3), so that older programs refuse them as newer instead of misreading them.
 */
export const STORE_FORMAT_VERSION = 2;
/** The store format of stores named by SHA-256. */
export const STORE_FORMAT_SHA256 = 1;

/** Block sizes we accept: powers of two between 64 KiB and 64 MiB. */
export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 64 * 1024 * 1024;
export const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;
