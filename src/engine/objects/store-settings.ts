/**
 * A store describes itself: `settings` (written once by `backy2 init`) records everything needed
 * to read the store — format, digest, transforms — so that a rebuild or a restore without the
 * catalog needs nothing but the store. `owner` names the one catalog that uses the block store:
 * two catalogs over one block store would each delete blocks only the other knows.
 */
import { randomBytes } from 'node:crypto';
import type { BlockStore } from '../blockstore/block-store.js';
import { StoreUnavailableError, isBackyError } from '../errors.js';
import { PACKAGE_VERSION } from '../support/package-version.js';
import { ObjectKind, STORE_FORMAT_SHA256, STORE_FORMAT_VERSION } from './formats.js';
import type { DigestAlgorithm } from './naming-digest.js';
import { PLAIN, PLAIN_CHECKSUMMED, type SealKeys, type Transforms } from './object-seal.js';
import { decodeJsonObject, encodeJsonObject } from './object-codec.js';
import { StoreKeys } from './store-keys.js';

/** The settings object of a store (object kind 4, UTF-8 JSON). */
export interface StoreSettings {
  /** Store format; a newer one is refused by older programs. */
  readonly format: number;
  /** Random id, 32 hex digits; the catalog records it too. */
  readonly storeId: string;
  readonly createdAt: number;
  /** The program that created the store, e.g. `backy2 0.2.0`. */
  readonly createdBy: string;
  /**
   * What names objects: BLAKE3 (store format 2) or SHA-256 (format 1) of the plaintext; when
   * encrypted, keyed BLAKE3 or HMAC-SHA-256 under the store's id key.
   */
  readonly digest: 'blake3' | 'keyed-blake3' | 'sha256' | 'hmac-sha256';
  /** Compression of stored objects (each kept only when it saves space). */
  readonly compression: 'none' | 'zstd';
  /** zstd level; absent with compression `none`. */
  readonly compressionLevel?: number;
  readonly encryption: 'none' | 'aes-256-gcm';
  /**
   * `crc32`: every object carries a CRC-32 of its stored bytes (format 2), which reads check
   * instead of re-deriving a plaintext's digest (scrub still derives it). Absent in stores made
   * before it: their plaintext objects are format 1, and every read derives the digest.
   */
  readonly checksum?: 'crc32';
  /**
   * Encrypted stores: a MAC over the other fields under the master key, so settings changed
   * without the key (encryption switched off, say) are refused rather than obeyed.
   */
  readonly check?: string;
}

/** What a new store is to be. */
export interface NewStoreOptions {
  readonly compression?: 'none' | 'zstd';
  readonly compressionLevel?: number;
  readonly encryption?: 'none' | 'aes-256-gcm';
  /** `none` only for a store that existed before its settings did (format 1 objects). @default 'crc32' */
  readonly checksum?: 'crc32' | 'none';
  /** What names objects (keyed when encrypted). @default 'blake3' */
  readonly digest?: DigestAlgorithm;
}

/**
 * Each naming digest: the store format it goes with, and its `digest` setting without and with
 * encryption (keyed). The one place that pairs them.
 */
const DIGESTS: Readonly<Record<DigestAlgorithm, { readonly format: number; readonly names: readonly [StoreSettings['digest'], StoreSettings['digest']] }>> = {
  sha256: { format: STORE_FORMAT_SHA256, names: ['sha256', 'hmac-sha256'] },
  blake3: { format: STORE_FORMAT_VERSION, names: ['blake3', 'keyed-blake3'] },
};

/** The digest algorithm of a store's `digest` setting. */
export function digestAlgorithmOf(s: StoreSettings): DigestAlgorithm {
  return DIGESTS.blake3.names.includes(s.digest) ? 'blake3' : 'sha256';
}

/**
 * The settings without their check, in a fixed order: what the check covers and what the
 * catalog records. `checksum` is appended only when present, so older stores keep their form.
 */
export function canonicalSettings(s: StoreSettings): string {
  return JSON.stringify([s.format, s.storeId, s.createdAt, s.createdBy, s.digest, s.compression, s.compressionLevel ?? null, s.encryption, ...(s.checksum ? [s.checksum] : [])]);
}

/**
 * Says how settings differ from ones recorded in canonical form, for messages: e.g.
 * `encryption none instead of aes-256-gcm`.
 */
export function describeSettingsChange(recorded: string, now: StoreSettings): string {
  const names = ['format', 'storeId', 'createdAt', 'createdBy', 'digest', 'compression', 'compressionLevel', 'encryption', 'checksum'];
  let before: unknown[] = [];
  try {
    const parsed: unknown = JSON.parse(recorded);
    if (Array.isArray(parsed)) before = parsed;
  } catch {
    // unreadable: every field differs
  }
  const after = JSON.parse(canonicalSettings(now)) as unknown[];
  const changes = names.flatMap((name, i) => (JSON.stringify(before[i]) === JSON.stringify(after[i]) ? [] : [`${name} ${String(after[i])} instead of ${String(before[i])}`]));
  return changes.join(', ') || 'they differ';
}

/**
 * The transforms objects are made with in a store of these settings.
 * @param keys the sealing keys (derived from the master key) when the store is encrypted
 */
export function transformsOf(s: StoreSettings, keys: SealKeys | undefined): Transforms {
  const digest = digestAlgorithmOf(s);
  if (s.compression === 'none' && s.encryption === 'none') return { ...(s.checksum === 'crc32' ? PLAIN_CHECKSUMMED : PLAIN), digest };
  return { digest, compression: s.compression, level: s.compressionLevel ?? 1, keys: s.encryption === 'none' ? undefined : keys };
}

/** The owner object (kind 5): the catalog that uses a block store. */
export interface StoreOwner {
  readonly catalogId: string;
  /** Where that catalog is, for messages (a path or URL without credentials). */
  readonly catalog: string;
  /** The backup host (config `host`) that made that catalog the owner, for messages. */
  readonly host: string;
  /** When it became the owner, ms since the epoch. */
  readonly since: number;
}

/** Settings of a new store (plaintext, uncompressed, checksummed and named by BLAKE3 unless told otherwise). */
export function newStoreSettings(options: NewStoreOptions = {}, now: number = Date.now()): StoreSettings {
  const encryption = options.encryption ?? 'none';
  const compression = options.compression ?? 'none';
  const checksum = options.checksum ?? 'crc32';
  const { format, names } = DIGESTS[options.digest ?? 'blake3'];
  const digest = names[encryption === 'none' ? 0 : 1];
  return {
    format,
    storeId: randomBytes(16).toString('hex'),
    createdAt: now,
    createdBy: `backy2 ${PACKAGE_VERSION}`,
    digest,
    compression,
    ...(compression === 'zstd' ? { compressionLevel: options.compressionLevel ?? 1 } : {}),
    encryption,
    ...(checksum === 'crc32' ? { checksum } : {}),
  };
}

/**
 * The settings a store made before `backy2 init` existed reads with: format 1 objects (no CRC),
 * named by SHA-256, plaintext and uncompressed.
 */
export function settingsOfStoreBeforeInit(): StoreSettings {
  return newStoreSettings({ checksum: 'none', digest: 'sha256' });
}

/**
 * Reads a store's settings.
 * @returns the settings, or undefined when the block store has none (no store, or one made before `init` existed)
 * @throws {StoreUnavailableError} when they are damaged, or the store is newer than this program
 */
export async function loadStoreSettings(blocks: BlockStore): Promise<StoreSettings | undefined> {
  const what = `The settings object of store ${blocks.properties.location}`;
  const value = await readJson(blocks, StoreKeys.settings, ObjectKind.settings, what);
  if (value === undefined) return undefined;
  const s = value as Partial<StoreSettings>;
  if (typeof s.format === 'number' && s.format > STORE_FORMAT_VERSION) {
    throw new StoreUnavailableError(`Store ${blocks.properties.location} has format ${s.format}, newer than this backy2 understands (${STORE_FORMAT_VERSION})`, {
      hint: 'upgrade backy2',
    });
  }
  const own = Object.values(DIGESTS).find((d) => d.format === s.format);
  if (!own || typeof s.storeId !== 'string' || !/^[0-9a-f]{32}$/.test(s.storeId) || typeof s.createdAt !== 'number') {
    throw damaged(what);
  }
  // Each format names objects by its own digest; the keyed form goes with encryption. A digest
  // of the other format was never written by any backy2: the object was edited.
  const [unkeyed, keyed] = own.names;
  if (Object.values(DIGESTS).some((d) => d !== own && d.names.includes(s.digest as StoreSettings['digest']))) {
    throw new StoreUnavailableError(`${what} is damaged: store format ${s.format} never goes with digest "${s.digest}"`, { hint: 'restore that object from a copy of the store' });
  }
  const plain = s.digest === unkeyed && s.encryption === 'none';
  const encrypted = s.digest === keyed && s.encryption === 'aes-256-gcm';
  const level = s.compressionLevel;
  const compression = (s.compression === 'none' && level === undefined) || (s.compression === 'zstd' && typeof level === 'number' && level >= 1 && level <= 19);
  if (!(plain || encrypted) || !compression || (s.checksum !== undefined && s.checksum !== 'crc32')) {
    throw new StoreUnavailableError(`Store ${blocks.properties.location} uses digest "${String(s.digest)}", compression "${String(s.compression)}", encryption "${String(s.encryption)}" and checksum "${String(s.checksum ?? 'none')}", which this backy2 cannot read`, {
      hint: 'upgrade backy2',
    });
  }
  return s as StoreSettings;
}

/** Writes a store's settings, durably. */
export async function saveStoreSettings(blocks: BlockStore, settings: StoreSettings): Promise<void> {
  await blocks.put(StoreKeys.settings, encodeJsonObject(ObjectKind.settings, settings));
}

/**
 * Reads the owner of a block store.
 * @returns the owner, or undefined when none is recorded
 * @throws {StoreUnavailableError} when it is damaged
 */
export async function loadStoreOwner(blocks: BlockStore): Promise<StoreOwner | undefined> {
  const what = `The owner object of block store ${blocks.properties.location}`;
  const value = await readJson(blocks, StoreKeys.owner, ObjectKind.owner, what);
  if (value === undefined) return undefined;
  const o = value as Partial<StoreOwner>;
  if (typeof o.catalogId !== 'string' || typeof o.catalog !== 'string' || typeof o.host !== 'string' || typeof o.since !== 'number') throw damaged(what);
  return o as StoreOwner;
}

/**
 * Records `catalogId` as the owner of a block store, durably.
 * @param host this backup host's name (config `host`, which defaults to the machine's name)
 */
export async function saveStoreOwner(blocks: BlockStore, catalogId: string, catalog: string, host: string): Promise<StoreOwner> {
  const owner: StoreOwner = { catalogId, catalog, host, since: Date.now() };
  await blocks.put(StoreKeys.owner, encodeJsonObject(ObjectKind.owner, owner));
  return owner;
}

async function readJson(blocks: BlockStore, key: string, kind: (typeof ObjectKind)[keyof typeof ObjectKind], what: string): Promise<unknown> {
  // A read damaged in flight (a flaky link) is read once more before the object counts as damaged.
  for (let attempt = 1; ; attempt++) {
    let bytes: Uint8Array;
    try {
      bytes = await blocks.get(key);
    } catch (err) {
      if (isBackyError(err) && err.code === 'E_OBJECT_MISSING') return undefined;
      if (attempt < 2 && isBackyError(err) && err.code === 'E_CORRUPT') continue;
      throw err;
    }
    try {
      return decodeJsonObject(bytes, kind, what);
    } catch (err) {
      if (!isBackyError(err) || err.code !== 'E_CORRUPT') throw err;
      if (attempt >= 2) throw damaged(what, err);
    }
  }
}

function damaged(what: string, cause?: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`${what} is damaged`, { cause, hint: 'restore that object from a copy of the store' });
}
