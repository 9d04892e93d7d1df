import { createHash } from 'node:crypto';
import type { BlockStore } from '../blockstore/block-store.js';
import { decodeObjectHeader, encodeObjectHeader } from './object-codec.js';
import type { VersionRecord, VersionStats, VersionStatus } from '../catalog/catalog.js';
import { CorruptBlockError } from '../errors.js';
import { DIGEST_ALGORITHM, MANIFEST_FORMAT_VERSION, OBJECT_HEADER_LENGTH, ObjectKind } from './formats.js';
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
  readonly baseUid: string | null;
  readonly source: string | null;
  /** Segment digests in hex, in order. */
  readonly segments: readonly string[];
  readonly stats: VersionStats | null;
  /** 'invalid' once a scrub found a bad block in it; absent (valid) in older manifests. */
  readonly status?: Extract<VersionStatus, 'valid' | 'invalid'>;
}

/**
 * Builds the manifest of a version.
 * @param version the catalog record
 * @param segments its segment digests
 */
export function manifestOf(version: Omit<VersionRecord, 'status'> & { readonly status?: VersionStatus }, segments: readonly Buffer[]): Manifest {
  return {
    format: MANIFEST_FORMAT_VERSION,
    uid: version.uid,
    image: version.image,
    createdAt: version.createdAt,
    size: version.size,
    blockSize: version.blockSize,
    protected: version.protected,
    tags: version.tags,
    snapshot: version.snapshot,
    baseUid: version.baseUid,
    source: version.source,
    segments: segments.map((d) => d.toString('hex')),
    stats: version.stats,
    status: version.status === 'invalid' ? 'invalid' : 'valid',
  };
}

/** Writes (or replaces) a version's manifest in the block store, durably. */
export async function saveManifest(blocks: BlockStore, manifest: Manifest): Promise<void> {
  const payload = Buffer.from(JSON.stringify(manifest), 'utf8');
  const digest = createHash(DIGEST_ALGORITHM).update(payload).digest();
  await blocks.put(StoreKeys.manifest(manifest.uid), [encodeObjectHeader(ObjectKind.manifest, digest, payload.length), payload]);
}

/**
 * Reads a version's manifest from the block store.
 * @throws {ObjectMissingError} when there is none
 * @throws {CorruptBlockError} when it is damaged
 */
export async function loadManifest(blocks: BlockStore, uid: string): Promise<Manifest> {
  const object = Buffer.from(await blocks.get(StoreKeys.manifest(uid)));
  const header = decodeObjectHeader(object, `manifest ${uid}`);
  const payload = object.subarray(OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + header.plainLength);
  if (payload.length !== header.plainLength || !createHash(DIGEST_ALGORITHM).update(payload).digest().equals(header.digest)) {
    throw new CorruptBlockError(`Manifest of version "${uid}" is corrupt`);
  }
  return JSON.parse(payload.toString('utf8')) as Manifest;
}

/** Removes a version's manifest from the block store. */
export async function deleteManifest(blocks: BlockStore, uid: string): Promise<void> {
  await blocks.delete(StoreKeys.manifest(uid));
}
