import type { VersionRecord } from './catalog/catalog.js';
import { manifestOf, saveManifest } from './manifest.js';
import type { Store } from './store.js';

/** A version about to become valid: its record (without status) and its map. */
export type NewVersionRecord = Omit<VersionRecord, 'status'> & { readonly stats: NonNullable<VersionRecord['stats']> };

/**
 * Publishes an incomplete version whose blocks and segments are all durable: first its manifest
 * into the block store (so a catalog rebuild finds it), then one durable catalog transaction
 * that makes it valid. Used by backups and copy-on-write commits.
 */
export async function publishVersion(store: Store, record: NewVersionRecord, segments: readonly Buffer[]): Promise<void> {
  await saveManifest(store.blocks, manifestOf(record, segments));
  await store.catalog.commitVersion(record.uid, { segments, stats: record.stats, tags: record.tags });
}
