/**
 * Locks, held in the catalog with holder pid/host and released automatically when the holder
 * dies. Which operation takes which lock:
 *
 * | operation | image lock | version lock |
 * | --- | --- | --- |
 * | backup | exclusive (one backup per image), writer | shared on its base version |
 * | restore | – | shared |
 * | rm | – | exclusive (refused while restored, mounted or used as a base) |
 * | protect, unprotect, tag | – | – (single-row updates) |
 *
 * Two shared locks never conflict, so restores of one version run in parallel, and backups,
 * restores of other versions and removals of other versions all run at the same time.
 */
import type { Catalog, LockRecord, LockRequest } from './catalog/catalog.js';
import { HEARTBEAT_INTERVAL_MS } from './catalog/holder.js';

/** Lock resource of an image. */
export const imageResource = (image: string) => `image:${image}`;
/** Lock resource of a version. */
export const versionResource = (uid: string) => `version:${uid}`;

/** Locks held together, with a heartbeat while held. */
export interface HeldLocks {
  readonly locks: readonly LockRecord[];
  release(): Promise<void>;
}

/**
 * Takes all `requests` in order, or none.
 * @throws {LockedError} when one of them is held by a live process in a conflicting mode
 */
export async function acquireLocks(catalog: Catalog, requests: readonly LockRequest[]): Promise<HeldLocks> {
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
export async function withLocks<T>(catalog: Catalog, requests: readonly LockRequest[], fn: () => Promise<T>): Promise<T> {
  const held = await acquireLocks(catalog, requests);
  try {
    return await fn();
  } finally {
    await held.release();
  }
}
