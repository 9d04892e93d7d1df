/**
 * Locks, held in the catalog with holder pid, host and boot-bound start stamp, and released
 * automatically when the holder dies (or, on another host, stops its heartbeat). Which operation
 * takes which lock:
 *
 * | operation | image lock | version lock | other |
 * | --- | --- | --- | --- |
 * | backup | exclusive, writer | exclusive on the new version; shared on its base | |
 * | copy-on-write commit (mount, nbd) | – | exclusive on the new version, writer | |
 * | copy-on-write session | – | shared on the written version | |
 * | restore, scrub | – | shared | |
 * | mount (open file), nbd (connected export) | – | shared while open | `mount:<dir>` exclusive per daemon |
 * | rm | – | exclusive (refused while restored, scrubbed, mounted, served or used as a base) | |
 * | forget | – | exclusive on each version it removes (one at a time; a version in use is skipped) | |
 * | cleanup | – | – | `cleanup` exclusive; honours every writer's start |
 * | protect, unprotect, tag, expire | – | shared (not while the version is being removed) | |
 * | ls, stats, due, check, metrics | – | – (reads) | |
 * | key remove, key passwd | – | – | `keys` exclusive (never two removals at once) |
 *
 * Shared locks never conflict, so restores, scrubs, mounts and backups of different images all
 * run at the same time; `db rebuild` works on an empty catalog only.
 */
import type { LockRecord, LockRequest, LockTable } from './catalog.js';
import { HEARTBEAT_INTERVAL_MS } from './holder.js';

/** Lock resource of an image. */
export const imageResource = (image: string) => `image:${image}`;
/** Lock resource of a version. */
export const versionResource = (uid: string) => `version:${uid}`;

/** Lock resource of the store's key files. */
export const keysResource = 'keys';

/** Locks held together, with a heartbeat while held. */
export interface HeldLocks {
  readonly locks: readonly LockRecord[];
  release(): Promise<void>;
}

/**
 * Takes all `requests` in order, or none.
 * @throws {LockedError} when one of them is held by a live process in a conflicting mode
 */
export async function acquireLocks(catalog: LockTable, requests: readonly LockRequest[]): Promise<HeldLocks> {
  const locks: LockRecord[] = [];
  try {
    for (const request of requests) locks.push(await catalog.acquireLock(request));
  } catch (err) {
    for (const lock of locks) await catalog.releaseLock(lock.id).catch(() => undefined);
    throw err;
  }
  const ids = locks.map((l) => l.id);
  const timer = setInterval(() => {
    catalog.heartbeat(ids).catch(() => undefined);
  }, HEARTBEAT_INTERVAL_MS);
  timer.unref();
  let released = false;
  return {
    locks,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      for (const id of ids) await catalog.releaseLock(id).catch(() => undefined);
    },
  };
}

/**
 * Runs `fn` while holding `requests`.
 * @example
 * await withLocks(catalog, [{ resource: versionResource(uid), mode: 'shared', operation: 'restore' }], () => restore());
 */
export async function withLocks<T>(catalog: LockTable, requests: readonly LockRequest[], fn: () => Promise<T>): Promise<T> {
  const held = await acquireLocks(catalog, requests);
  try {
    return await fn();
  } finally {
    await held.release();
  }
}
