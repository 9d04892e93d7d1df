import type { VersionRecord } from '../catalog/catalog.js';
import { BlockMap, blockCount, dataBytes } from '../objects/block-map.js';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { versionResource, withLocks } from '../catalog/locking.js';
import { manifestOf, saveManifest } from '../objects/manifest.js';
import { removeVersion } from '../objects/publish.js';
import { checkImageName, checkTag, printable } from '../support/names.js';
import { closeMatches } from '../support/suggest.js';
import { assertWritable, type Store } from '../store.js';
import { formatDuration } from '../support/units.js';

/** Selects versions for {@link listVersions}. */
export interface ListOptions {
  /** Only this image; unknown images are an error. */
  readonly image?: string | undefined;
  /** Only versions with this tag. */
  readonly tag?: string | undefined;
  /** Only the newest `last` versions of each image. */
  readonly last?: number | undefined;
  /** Only versions whose expiry date is at or before this time (ms since the epoch). */
  readonly expiredAt?: number | undefined;
}

/**
 * Lists versions, oldest first.
 * @throws {NotFoundError} when `image` has no versions
 * @example
 * const versions = await listVersions(store, { image: 'vm1' });
 */
export async function listVersions(store: Store, options: ListOptions = {}): Promise<VersionRecord[]> {
  const image = options.image === undefined ? undefined : checkImageName(options.image);
  let versions = await store.catalog.listVersions({
    ...(image !== undefined ? { image } : {}),
    ...(options.tag !== undefined ? { tag: options.tag } : {}),
  });
  if (image !== undefined && versions.length === 0 && (await store.catalog.imageBlockSize(image)) === undefined) {
    const near = closeMatches(image, (await store.catalog.listVersions()).map((v) => v.image));
    throw new NotFoundError(`Image ${printable(image)} not found`, { hint: near.length ? `did you mean ${near.map((n) => `"${n}"`).join(' or ')}?` : 'run `backy2 ls` to see images' });
  }
  const expiredAt = options.expiredAt;
  if (expiredAt !== undefined) versions = versions.filter((v) => v.expiresAt !== null && v.expiresAt <= expiredAt);
  if (options.last === undefined) return versions;
  const seen = new Map<string, number>();
  const newestFirst = versions.toReversed().filter((v) => {
    const n = (seen.get(v.image) ?? 0) + 1;
    seen.set(v.image, n);
    return n <= (options.last ?? 0);
  });
  return newestFirst.toReversed();
}

/**
 * Bytes of a version's data blocks (what `du` shows of its file). Recorded at commit; computed
 * once (and recorded, when the store can be written) for versions older than that.
 */
export async function versionAllocated(store: Store, version: VersionRecord): Promise<number> {
  if (version.allocated !== null || version.status === 'incomplete') return version.allocated ?? 0;
  const map = new BlockMap(store, await store.catalog.versionSegments(version.uid), blockCount(version.size, version.blockSize));
  const bytes = await dataBytes(map, version);
  if (!store.readOnly) await store.catalog.setAllocated(version.uid, bytes).catch(() => undefined);
  return bytes;
}

/**
 * Looks up a version by its exact uid.
 * @throws {NotFoundError} when it does not exist
 */
export async function getVersion(store: Store, uid: string): Promise<VersionRecord> {
  const version = await store.catalog.getVersion(uid);
  if (!version) throw new NotFoundError(`Version ${printable(uid)} not found`, { hint: 'run `backy2 ls` to see versions' });
  return version;
}

/** The suffix that names an image's newest valid backup: `vm1@latest`. */
export const LATEST_SUFFIX = '@latest';

/** Options of {@link resolveVersion}. */
export interface ResolveOptions {
  /** Names the version in messages. @default 'Version' */
  readonly what?: string;
  /**
   * Let a bare image name select its newest backup. `rm vm1` must not quietly remove the newest
   * backup of vm1: there, `vm1@latest` says so explicitly. @default true
   */
  readonly bareImage?: boolean;
}

/**
 * Finds the version a selector names, as typed on a command line: a uid (`v1kx3f9qm7wz`), a
 * unique uid prefix (`v1kx3f`), an image name or `IMAGE@latest` (its newest valid backup
 * version; copy-on-write versions are experiments, not backups).
 * @throws {NotFoundError} when nothing matches (with the closest uids or images as a hint)
 * @throws {UsageError} when a prefix matches several versions
 * @example
 * const version = await resolveVersion(store, 'vm1@latest');
 */
export async function resolveVersion(store: Store, selector: string, options: ResolveOptions = {}): Promise<VersionRecord> {
  const what = options.what ?? 'Version';
  const { catalog } = store;
  const exact = await catalog.getVersion(selector);
  if (exact) return exact;
  const image = selector.endsWith(LATEST_SUFFIX) && !(await imageExists(store, selector)) ? selector.slice(0, -LATEST_SUFFIX.length) : selector;
  if (await imageExists(store, image)) {
    if (image === selector && options.bareImage === false) {
      throw new UsageError(`${printable(selector)} is an image, not a version`, { hint: `name its versions (backy2 ls ${selector}), or ${selector}${LATEST_SUFFIX} for its newest backup` });
    }
    const latest = await catalog.latestValidVersion(image, 'backup');
    if (!latest) throw new NotFoundError(`Image ${printable(image)} has no valid backup version`, { hint: `run \`backy2 ls ${image}\` to see its versions` });
    return latest;
  }
  const versions = await catalog.listVersions();
  if (/^v[0-9a-z]{1,10}$/.test(selector)) {
    const matches = versions.filter((v) => v.uid.startsWith(selector));
    if (matches.length === 1 && matches[0]) return matches[0];
    if (matches.length > 1) {
      const shown = matches.slice(0, 5).map((v) => v.uid);
      throw new UsageError(`${what} ${printable(selector)} is ambiguous: it starts ${matches.length} uids (${shown.join(', ')}${matches.length > 5 ? ', …' : ''})`, {
        hint: 'type more of the uid',
      });
    }
  }
  const images = [...new Set(versions.map((v) => v.image))];
  const candidates = [...versions.map((v) => v.uid), ...images, ...images.map((i) => `${i}${LATEST_SUFFIX}`)];
  const near = closeMatches(image, candidates);
  throw new NotFoundError(`${what} ${printable(selector)} not found`, {
    hint: near.length ? `did you mean ${near.map((n) => `"${n}"`).join(' or ')}?` : 'run `backy2 ls` to see versions',
  });
}

/** The uids that selectors name (see {@link resolveVersion}), all resolved before anything is done. */
export async function resolveUids(store: Store, selectors: readonly string[], options: ResolveOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (const selector of selectors) out.push((await resolveVersion(store, selector, options)).uid);
  return out;
}

async function imageExists(store: Store, name: string): Promise<boolean> {
  return (await store.catalog.imageBlockSize(name)) !== undefined;
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
  const unique = [...new Set(await resolveUids(store, uids, { bareImage: false }))];
  const locks = unique.map((uid) => ({ resource: versionResource(uid), mode: 'exclusive' as const, operation: 'rm' }));
  // All locks at once, then the checks on what the catalog says now: a protect or a backup
  // that started meanwhile must win, and either every version goes or none.
  return withLocks(store.catalog, locks, async () => {
    const versions = await Promise.all(unique.map((uid) => getVersion(store, uid)));
    for (const v of versions) checkRemovable(v, now, store.config.minRemoveAgeMs, options.force === true);
    for (const v of versions) await removeVersion(store, v.uid);
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
  for (const uid of await resolveUids(store, uids)) {
    out.push(await changeMetadata(store, uid, () => store.catalog.setProtected(uid, value)));
  }
  return out;
}

/**
 * Sets or clears the expiry date of versions: `forget` keeps a version until its date and removes
 * it after, whatever its rules say.
 * @param expiresAt ms since the epoch, or null for none
 * @throws {NotFoundError} when a version does not exist
 * @throws {UsageError} when a version is incomplete
 * @throws {LockedError} when a version is being removed
 * @example
 * await setExpiry(store, ['vm1@latest'], Date.parse('2030-01-01T00:00:00Z'));
 */
export async function setExpiry(store: Store, selectors: readonly string[], expiresAt: number | null): Promise<VersionRecord[]> {
  const out: VersionRecord[] = [];
  for (const uid of await resolveUids(store, selectors)) {
    out.push(
      await changeMetadata(store, uid, async () => {
        if ((await getVersion(store, uid)).status === 'incomplete') throw new UsageError(`Version "${uid}" is incomplete: it has no expiry to set`);
        await store.catalog.setExpiry(uid, expiresAt);
      }),
    );
  }
  return out;
}

/**
 * Adds or removes tags of a version.
 * @throws {NotFoundError} when the version does not exist
 * @throws {UsageError} when a tag is malformed
 * @throws {LockedError} when the version is being removed
 */
export async function changeTags(store: Store, selector: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<VersionRecord> {
  const add = (change.add ?? []).map(checkTag);
  const remove = change.remove ?? [];
  const { uid } = await resolveVersion(store, selector);
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
    if (version.status !== 'incomplete') await saveManifest(store, manifestOf(version, await store.catalog.versionSegments(uid)));
    return version;
  });
}
