import type { VersionRecord, VersionStats } from '../catalog/catalog.js';
import { BlockMap, blockCount, dataBytes } from './block-map.js';
import { deleteManifest, manifestOf, saveManifest } from './manifest.js';
import type { Store } from '../store.js';

/** A version about to become valid: its record (without status) and its map. */
export type NewVersionRecord = Omit<VersionRecord, 'status' | 'allocated' | 'expiresAt' | 'host'> & {
  readonly stats: NonNullable<VersionRecord['stats']>;
  readonly expiresAt?: number | null;
};

/**
 * Publishes an incomplete version whose blocks and segments are all durable: first its manifest
 * into the block store (so a catalog rebuild finds it), then one durable catalog transaction
 * that makes it valid. Used by backups and copy-on-write commits.
 */
export async function publishVersion(store: Store, record: NewVersionRecord, segments: readonly Buffer[], options: PublishOptions = {}): Promise<void> {
  const allocated = await dataBytes(new BlockMap(store, segments, blockCount(record.size, record.blockSize)), record);
  await saveManifest(store, manifestOf({ ...record, status: 'valid', host: store.config.host }, segments));
  await store.catalog.commitVersion(record.uid, { segments, stats: record.stats, tags: record.tags, allocated, leases: options.leases });
}

/** Options of {@link publishVersion} and {@link buildVersion}. */
export interface PublishOptions {
  /**
   * The writer's locks: the version becomes valid only while all of them are still held, so a
   * writer whose lease expired (another host may have cleaned up what it stored) commits nothing.
   */
  readonly leases?: readonly number[] | undefined;
}

/** A new version before its blocks are stored: what its build does not compute. */
export type VersionDraft = Omit<NewVersionRecord, 'stats' | 'tags' | 'protected'>;

/** What a build of a version computed: its map, its figures and its tags. */
export interface BuiltVersion {
  readonly segments: readonly Buffer[];
  readonly stats: VersionStats;
  readonly tags: readonly string[];
}

/**
 * Makes a new version, the one way backups and copy-on-write commits do: it is recorded as
 * incomplete first (so cleanup respects what it stores), `build` stores its blocks and map,
 * then it is published; any failure drops it again (a kill leaves it incomplete instead).
 * @param store the open store
 * @param draft the new version
 * @param build stores the blocks and the map
 * @returns the published record with its map
 */
export async function buildVersion(
  store: Store,
  draft: VersionDraft,
  build: () => Promise<BuiltVersion>,
  options: PublishOptions = {},
): Promise<NewVersionRecord & { readonly segments: readonly Buffer[] }> {
  await store.catalog.createVersion(draft);
  try {
    const built = await build();
    const record: NewVersionRecord = { ...draft, protected: false, stats: built.stats, tags: built.tags };
    await publishVersion(store, record, built.segments, options);
    return { ...record, segments: built.segments };
  } catch (err) {
    await abandonVersion(store, draft.uid);
    throw err;
  }
}

/**
 * Drops an incomplete version after a failure: its manifest (if written) and its row. Its blocks
 * stay, unreferenced, until a cleanup. Best effort: a killed process leaves it incomplete instead.
 */
export async function abandonVersion(store: Store, uid: string): Promise<void> {
  // A commit whose answer was lost (the connection dropped) may have made it valid: it stays.
  const now = await store.catalog.getVersion(uid).catch(() => undefined);
  if (now && now.status !== 'incomplete') return;
  await deleteManifest(store.blocks, uid).catch(() => undefined);
  await store.catalog.deleteVersion(uid).catch(() => undefined);
}

/**
 * Removes a version for good, in an order that a kill at any point leaves in a plain state: it is
 * marked incomplete first (so a kill leaves a version that is visibly unfinished, which rm and
 * forget remove and which scrub, restore and the mount skip: never a valid version without a
 * manifest, which a scrub would "repair" back), then its manifest goes (so a catalog rebuild
 * cannot bring it back), then its row. Its blocks stay until a cleanup.
 */
export async function removeVersion(store: Store, uid: string): Promise<void> {
  await store.catalog.setStatus(uid, 'incomplete');
  await deleteManifest(store.blocks, uid);
  await store.catalog.deleteVersion(uid);
}
