import type { VersionRecord } from '../catalog/catalog.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { versionResource, withLocks } from '../catalog/locking.js';
import { deleteManifest, manifestOf, saveManifest } from '../objects/manifest.js';
import { checkImageName, checkTag } from '../support/names.js';
import { assertWritable, type Store } from '../store.js';
import { formatDuration } from '../support/units.js';

/** Selects versions for {@link listVersions}. */
export interface ListOptions {
  /** Only this image; unknown images are an error. */
  readonly image?: string | undefined;
  /** Only versions with this tag. */
  readonly tag?: string | undefined;
}

/**
 * Lists versions, oldest first.
 * @throws {NotFoundError} when `image` has no versions
 * @example
 * const versions = await listVersions(store, { image: 'vm1' });
 */
export async function listVersions(store: Store, options: ListOptions = {}): Promise<VersionRecord[]> {
  const image = options.image === undefined ? undefined : checkImageName(options.image);
  const versions = await store.catalog.listVersions({
    ...(image !== undefined ? { image } : {}),
    ...(options.tag !== undefined ? { tag: options.tag } : {}),
  });
  if (image !== undefined && versions.length === 0 && (await store.catalog.imageBlockSize(image)) === undefined) {
    throw new NotFoundError(`Image "${image}" not found`, { hint: 'run `backy2 ls` to see images' });
  }
  return versions;
}

/**
 * Looks up a version.
 * @throws {NotFoundError} when it does not exist
 */
export async function getVersion(store: Store, uid: string): Promise<VersionRecord> {
  const version = await store.catalog.getVersion(uid);
  if (!version) throw new NotFoundError(`Version "${uid}" not found`, { hint: 'run `backy2 ls` to see versions' });
  return version;
}

/** Options of {@link removeVersions}. */
export interface RemoveOptions {
  /** Remove versions younger than the minimum age too. @default false */
  readonly force?: boolean | undefined;
  /** Current time, ms since the epoch. @default Date.now() */
  readonly now?: number | undefined;
}

/**
 * Removes versions (all or none pass the checks first). Their blocks stay until cleanup.
 * Incomplete versions (from killed backups) are removed whatever their age.
 * @returns the removed versions
 * @throws {NotFoundError} when a uid does not exist
 * @throws {ConflictError} when a version is protected, or younger than the minimum age without `force`
 * @throws {LockedError} when a version is being restored, backed up or used as a base
 */
export async function removeVersions(store: Store, uids: readonly string[], options: RemoveOptions = {}): Promise<VersionRecord[]> {
  const now = options.now ?? Date.now();
  assertWritable(store, 'remove versions');
  const unique = [...new Set(uids)];
  for (const uid of unique) await getVersion(store, uid);
  const locks = unique.map((uid) => ({ resource: versionResource(uid), mode: 'exclusive' as const, operation: 'rm' }));
  // All locks at once, then the checks on what the catalog says now: a protect or a backup
  // that started meanwhile must win, and either every version goes or none.
  return withLocks(store.catalog, locks, async () => {
    const versions = await Promise.all(unique.map((uid) => getVersion(store, uid)));
    for (const v of versions) checkRemovable(v, now, store.config.minRemoveAgeMs, options.force === true);
    for (const v of versions) {
      // Manifest first: a version must never come back from a catalog rebuild after removal.
      await deleteManifest(store.blocks, v.uid);
      await store.catalog.deleteVersion(v.uid);
    }
    return versions;
  });
}

function checkRemovable(v: VersionRecord, now: number, minAge: number, force: boolean): void {
  if (v.protected) throw new ConflictError(`Version "${v.uid}" is protected`, { hint: `run \`backy2 unprotect ${v.uid}\` first` });
  if (v.status !== 'incomplete' && !force && now - v.createdAt < minAge) {
    throw new ConflictError(
      `Version "${v.uid}" is only ${formatDuration(Math.max(0, now - v.createdAt))} old, younger than the minimum age of ${formatDuration(minAge)}`,
      { hint: 'use --force to remove it anyway' },
    );
  }
}

/**
 * Protects or unprotects versions against removal.
 * @throws {NotFoundError} when a uid does not exist
 * @throws {LockedError} when a version is being removed
 */
export async function setProtected(store: Store, uids: readonly string[], value: boolean): Promise<VersionRecord[]> {
  const out: VersionRecord[] = [];
  for (const uid of uids) {
    await getVersion(store, uid);
    out.push(await changeMetadata(store, uid, () => store.catalog.setProtected(uid, value)));
  }
  return out;
}

/**
 * Adds or removes tags of a version.
 * @throws {NotFoundError} when the version does not exist
 * @throws {UsageError} when a tag is malformed
 * @throws {LockedError} when the version is being removed
 */
export async function changeTags(store: Store, uid: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<VersionRecord> {
  const add = (change.add ?? []).map(checkTag);
  const remove = change.remove ?? [];
  await getVersion(store, uid);
  return changeMetadata(store, uid, async () => {
    if (add.length) await store.catalog.addTags(uid, add);
    if (remove.length) await store.catalog.removeTags(uid, remove);
  });
}

/**
 * Changes a version's metadata in the catalog and rewrites its manifest, so rebuilds see the
 * change. Under a shared lock: a concurrent rm (exclusive) must not see its deleted manifest
 * written again, nor a protect land after its checks.
 */
export async function changeMetadata(store: Store, uid: string, change: () => Promise<void>): Promise<VersionRecord> {
  assertWritable(store, 'change a version');
  return withLocks(store.catalog, [{ resource: versionResource(uid), mode: 'shared', operation: 'metadata change' }], async () => {
    await getVersion(store, uid);
    await change();
    const version = await getVersion(store, uid);
    if (version.status !== 'incomplete') await saveManifest(store.blocks, manifestOf(version, await store.catalog.versionSegments(uid)));
    return version;
  });
}
