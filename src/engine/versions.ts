import type { VersionRecord } from './catalog/catalog.js';
import { ConflictError, NotFoundError } from './errors.js';
import { versionResource, withLocks } from './locking.js';
import { deleteManifest, manifestOf, saveManifest } from './manifest.js';
import { checkImageName, checkTag } from './names.js';
import type { Store } from './store.js';
import { formatDuration } from './units.js';

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
  const minAge = store.config.minRemoveAgeMs;
  const versions = await Promise.all(uids.map((uid) => getVersion(store, uid)));
  for (const v of versions) {
    if (v.protected) throw new ConflictError(`Version "${v.uid}" is protected`, { hint: `run \`backy2 unprotect ${v.uid}\` first` });
    if (v.status !== 'incomplete' && !options.force && now - v.createdAt < minAge) {
      throw new ConflictError(
        `Version "${v.uid}" is only ${formatDuration(Math.max(0, now - v.createdAt))} old, younger than the minimum age of ${formatDuration(minAge)}`,
        { hint: 'use --force to remove it anyway' },
      );
    }
  }
  for (const v of versions) {
    await withLocks(store.catalog, [{ resource: versionResource(v.uid), mode: 'exclusive', operation: 'rm' }], async () => {
      // Manifest first: a version must never come back from a catalog rebuild after removal.
      await deleteManifest(store.blocks, v.uid);
      await store.catalog.deleteVersion(v.uid);
    });
  }
  return versions;
}

/**
 * Protects or unprotects versions against removal.
 * @throws {NotFoundError} when a uid does not exist
 */
export async function setProtected(store: Store, uids: readonly string[], value: boolean): Promise<VersionRecord[]> {
  const out: VersionRecord[] = [];
  for (const uid of uids) {
    await getVersion(store, uid);
    await store.catalog.setProtected(uid, value);
    out.push(await refreshManifest(store, uid));
  }
  return out;
}

/**
 * Adds or removes tags of a version.
 * @throws {NotFoundError} when the version does not exist
 * @throws {UsageError} when a tag is malformed
 */
export async function changeTags(store: Store, uid: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<VersionRecord> {
  const add = (change.add ?? []).map(checkTag);
  const remove = change.remove ?? [];
  await getVersion(store, uid);
  if (add.length) await store.catalog.addTags(uid, add);
  if (remove.length) await store.catalog.removeTags(uid, remove);
  return refreshManifest(store, uid);
}

/**
 * Rewrites a committed version's manifest after a metadata change, so rebuilds see it. Under a
 * shared lock: a concurrent rm (exclusive) must not see its deleted manifest written again.
 */
async function refreshManifest(store: Store, uid: string): Promise<VersionRecord> {
  return withLocks(store.catalog, [{ resource: versionResource(uid), mode: 'shared', operation: 'metadata change' }], async () => {
    const version = await getVersion(store, uid);
    if (version.status !== 'incomplete') await saveManifest(store.blocks, manifestOf(version, await store.catalog.versionSegments(uid)));
    return version;
  });
}
