import type { VersionRecord } from '../catalog/catalog.js';
import { BlockMap, blockCount, dataBytes } from './block-map.js';
import { deleteManifest, manifestOf, saveManifest } from './manifest.js';
import type { Store } from '../store.js';

/** A version about to become valid: its record (without status) and its map. */
export type NewVersionRecord = Omit<VersionRecord, 'status' | 'allocated' | 'expiresAt'> & {
  readonly stats: NonNullable<VersionRecord['stats']>;
  readonly expiresAt?: number | null;
};

/**
 * Publishes an incomplete version whose blocks and segments are all durable: first its manifest
 * into the block store (so a catalog rebuild finds it), then one durable catalog transaction
 * that makes it valid. Used by backups and copy-on-write commits.
 */
export async function publishVersion(store: Store, record: NewVersionRecord, segments: readonly Buffer[]): Promise<void> {
  const allocated = await dataBytes(new BlockMap(store, segments, blockCount(record.size, record.blockSize)), record);
  await saveManifest(store.blocks, manifestOf({ ...record, status: 'valid' }, segments));
  await store.catalog.commitVersion(record.uid, { segments, stats: record.stats, tags: record.tags, allocated });
}

/**
 * Drops an incomplete version after a failure: its manifest (if written) and its row. Its blocks
 * stay, unreferenced, until a cleanup. Best effort: a killed process leaves it incomplete instead.
 */
export async function abandonVersion(store: Store, uid: string): Promise<void> {
  await deleteManifest(store.blocks, uid).catch(() => undefined);
  await store.catalog.deleteVersion(uid).catch(() => undefined);
}
