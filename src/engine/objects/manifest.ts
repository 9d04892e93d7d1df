import type { BlockStore } from '../blockstore/block-store.js';
import type { VersionKind, VersionRecord, VersionStats, VersionStatus } from '../catalog/catalog.js';
import { CorruptBlockError } from '../errors.js';
import { VERSION_UID_PATTERN } from '../support/uid.js';
import { DIGEST_LENGTH, MANIFEST_FORMAT_VERSION, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, ObjectKind, SEGMENT_ENTRIES } from './formats.js';
import { getSealed, putSealed, type SealedStore } from './object-seal.js';
import { StoreKeys } from './store-keys.js';

/**
 * A committed version's metadata as stored in the block store next to its blocks (object kind 3,
 * UTF-8 JSON), so that the catalog can be rebuilt from the block store alone.
 */
export interface Manifest {
  readonly format: number;
  readonly uid: string;
  readonly image: string;
  readonly createdAt: number;
  readonly size: number;
  readonly blockSize: number;
  readonly protected: boolean;
  readonly tags: readonly string[];
  readonly snapshot: string | null;
  /** The snapshot's identity beyond its name (see VersionRecord); absent in older manifests. */
  readonly snapshotId?: string | null;
  readonly baseUid: string | null;
  readonly source: string | null;
  /** Segment digests in hex, in order. */
  readonly segments: readonly string[];
  readonly stats: VersionStats | null;
  /** 'invalid' once a scrub found a bad block in it; absent (valid) in older manifests. */
  readonly status?: Extract<VersionStatus, 'valid' | 'invalid'>;
  /**
   * What made the version: a backup, or a copy-on-write commit (mount, nbd). Absent in older
   * manifests, which read as `cow` when tagged "cow" (how those versions were told apart) and
   * else as `backup`.
   */
  readonly kind?: VersionKind;
  /**
   * Expiry date, ms since the epoch, or null for none. Added with catalog schema 5; absent in
   * older manifests, which read as null (no expiry).
   */
  readonly expiresAt?: number | null;
  /** The backup host that made the version. Added with catalog schema 7; absent (null) in older manifests. */
  readonly host?: string | null;
}

/**
 * Builds the manifest of a version.
 * @param version the catalog record
 * @param segments its segment digests
 */
export function manifestOf(
  version: Omit<VersionRecord, 'status' | 'allocated' | 'expiresAt' | 'host'> & { readonly status?: VersionStatus; readonly expiresAt?: number | null; readonly host?: string | null },
  segments: readonly Buffer[],
): Manifest {
  return {
    format: MANIFEST_FORMAT_VERSION,
    uid: version.uid,
    image: version.image,
    createdAt: version.createdAt,
    size: version.size,
    blockSize: version.blockSize,
    protected: version.protected,
    tags: [...version.tags].sort(),
    snapshot: version.snapshot,
    snapshotId: version.snapshotId,
    baseUid: version.baseUid,
    source: version.source,
    segments: segments.map((d) => d.toString('hex')),
    stats: version.stats,
    status: version.status === 'invalid' ? 'invalid' : 'valid',
    kind: version.kind,
    expiresAt: version.expiresAt ?? null,
    host: version.host ?? null,
  };
}

/**
 * The catalog record a manifest describes.
 * @param manifest a checked manifest
 * @param status the status to give it (a rebuild decides from what it finds)
 */
export function versionOfManifest(manifest: Manifest, status: VersionStatus): VersionRecord {
  return {
    uid: manifest.uid,
    image: manifest.image,
    createdAt: manifest.createdAt,
    size: manifest.size,
    blockSize: manifest.blockSize,
    status,
    protected: manifest.protected,
    tags: manifest.tags,
    snapshot: manifest.snapshot,
    snapshotId: manifest.snapshotId ?? null,
    baseUid: manifest.baseUid,
    source: manifest.source,
    stats: manifest.stats,
    kind: manifest.kind ?? (manifest.tags.includes('cow') ? 'cow' : 'backup'),
    allocated: null,
    expiresAt: manifest.expiresAt ?? null,
    host: manifest.host ?? null,
  };
}

/**
 * True when two manifests say the same: fields that older manifests lack read as their defaults,
 * and tag order does not matter (older backy2 kept tags in the order given).
 */
export function sameManifest(a: Manifest, b: Manifest): boolean {
  const normal = (m: Manifest) => JSON.stringify({ ...versionOfManifest(m, m.status ?? 'valid'), tags: [...m.tags].sort(), segments: m.segments, format: m.format });
  return normal(a) === normal(b);
}

/** Writes (or replaces) a version's manifest in the block store, durably (sealed as the store's objects are). */
export async function saveManifest(store: SealedStore, manifest: Manifest): Promise<void> {
  await putSealed(store, ObjectKind.manifest, StoreKeys.manifest(manifest.uid), Buffer.from(JSON.stringify(manifest), 'utf8'));
}

/**
 * Reads a version's manifest from the block store and checks every field.
 * @throws {ObjectMissingError} when there is none
 * @throws {CorruptBlockError} when it is damaged or malformed
 */
export async function loadManifest(store: SealedStore, uid: string): Promise<Manifest> {
  const payload = await getSealed(store, ObjectKind.manifest, StoreKeys.manifest(uid), `manifest ${uid}`);
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new CorruptBlockError(`Manifest of version "${uid}" is corrupt: not JSON`, { cause: err });
  }
  return checkManifest(value, uid);
}

/** Removes a version's manifest from the block store. */
export async function deleteManifest(blocks: BlockStore, uid: string): Promise<void> {
  await blocks.delete(StoreKeys.manifest(uid));
}

const HEX_DIGEST = new RegExp(`^[0-9a-f]{${DIGEST_LENGTH * 2}}$`);

/**
 * Checks that a decoded manifest is one: metadata gets the same scrutiny as data, since a
 * rebuild or a catalog-less restore acts on it.
 * @param value the decoded JSON
 * @param uid the uid its key names
 * @throws {CorruptBlockError} naming the first bad field
 */
export function checkManifest(value: unknown, uid: string): Manifest {
  const bad = (field: string) => new CorruptBlockError(`Manifest of version "${uid}" is malformed: bad "${field}"`);
  if (typeof value !== 'object' || value === null) throw bad('(top level)');
  const m = value as Record<string, unknown>;
  const isText = (v: unknown) => typeof v === 'string' && v.length <= 4096;
  const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (m.format !== MANIFEST_FORMAT_VERSION) throw bad('format');
  if (m.uid !== uid || !VERSION_UID_PATTERN.test(uid)) throw bad('uid');
  if (!isText(m.image) || m.image === '') throw bad('image');
  if (!isCount(m.createdAt)) throw bad('createdAt');
  if (!isCount(m.size)) throw bad('size');
  const bs = m.blockSize;
  if (typeof bs !== 'number' || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) throw bad('blockSize');
  if (typeof m.protected !== 'boolean') throw bad('protected');
  if (!Array.isArray(m.tags) || !m.tags.every(isText)) throw bad('tags');
  for (const field of ['snapshot', 'baseUid', 'source'] as const) if (m[field] !== null && !isText(m[field])) throw bad(field);
  if (m.snapshotId !== undefined && m.snapshotId !== null && !isText(m.snapshotId)) throw bad('snapshotId');
  if (!Array.isArray(m.segments) || !m.segments.every((s) => typeof s === 'string' && HEX_DIGEST.test(s))) throw bad('segments');
  const blocks = Math.ceil((m.size as number) / bs);
  if (m.segments.length !== Math.ceil(blocks / SEGMENT_ENTRIES)) throw bad('segments');
  if (m.stats !== null && (typeof m.stats !== 'object' || Array.isArray(m.stats))) throw bad('stats');
  if (m.status !== undefined && m.status !== 'valid' && m.status !== 'invalid') throw bad('status');
  if (m.kind !== undefined && m.kind !== 'backup' && m.kind !== 'cow') throw bad('kind');
  if (m.expiresAt !== undefined && m.expiresAt !== null && !isCount(m.expiresAt)) throw bad('expiresAt');
  if (m.host !== undefined && m.host !== null && !isText(m.host)) throw bad('host');
  return value as Manifest;
}
