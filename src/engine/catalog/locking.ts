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
import { setMaxListeners } from 'node:events';
import type { LockRecord, LockRequest, LockTable, VersionCatalog } from './catalog.js';
import { LockedError, StoreUnavailableError } from '../errors.js';
import { newVersionUid } from '../support/uid.js';
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
  /**
   * Aborted when the locks can no longer be trusted: a renewal found one taken over, or none
   * succeeded for half the lease (the catalog unreachable), so the holder stops its work well
   * before another host may take the locks over. The reason is a LockedError or a
   * StoreUnavailableError saying which.
   */
  readonly signal: AbortSignal;
  release(): Promise<void>;
}

/** Options of {@link acquireLocks}. */
export interface AcquireOptions {
  /** Heartbeat period, ms. @default the smaller of 60 s and an eighth of the catalog's lease */
  readonly heartbeatMs?: number | undefined;
}

/**
 * Takes all `requests`, or none (in one catalog transaction), and renews them until released. The holder must stop
 * when `signal` of the result fires: its leases are about to be lost.
 * @throws {LockedError} when one of them is held by a live process in a conflicting mode
 */
export async function acquireLocks(catalog: LockTable, requests: readonly LockRequest[], options: AcquireOptions = {}): Promise<HeldLocks> {
  const locks: readonly LockRecord[] = await catalog.acquireLocks(requests);
  const ids = locks.map((l) => l.id);
  const what = [...new Set(requests.map((r) => `${r.resource.replace(/^(\w+):/, '$1 ')} for ${r.operation}`))].join(', ');
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  // Measured on this host's monotonic clock from the start of the last renewal that succeeded:
  // the catalog extended the lease at some moment after that start.
  let renewedAt = performance.now();
  const stopAfter = catalog.leaseMs / 2;
  const period = options.heartbeatMs ?? Math.min(HEARTBEAT_INTERVAL_MS, Math.max(250, Math.floor(catalog.leaseMs / 8)));
  let beating = false;
  const beat = async () => {
    if (beating || controller.signal.aborted) return;
    beating = true;
    const started = performance.now();
    try {
      const lost = await catalog.heartbeat(ids);
      if (lost.length > 0) {
        controller.abort(new LockedError(`Lost the lock of ${what}: its lease expired and it was taken over or released`, { hint: 'the work stopped; run it again' }));
        return;
      }
      renewedAt = started;
    } catch {
      // Retried at the next beat; the check below stops the work in time.
    } finally {
      beating = false;
    }
  };
  const timer = setInterval(() => {
    if (!controller.signal.aborted && performance.now() - renewedAt > stopAfter) {
      controller.abort(
        new StoreUnavailableError(`Stopped ${what}: the catalog could not be reached to renew its lock for ${Math.round((performance.now() - renewedAt) / 1000)} s`, {
          hint: 'nothing half-done was committed; run it again once the catalog is reachable',
        }),
      );
      return;
    }
    void beat();
  }, period);
  timer.unref();
  let released = false;
  return {
    locks,
    signal: controller.signal,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      await catalog.releaseLocks(ids).catch(() => undefined);
    },
  };
}

/**
 * Runs `fn` while holding `requests`; `fn` gets the signal that fires when the locks are lost.
 * @example
 * await withLocks(catalog, [{ resource: versionResource(uid), mode: 'shared', operation: 'restore' }], () => restore());
 */
export async function withLocks<T>(catalog: LockTable, requests: readonly LockRequest[], fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const held = await acquireLocks(catalog, requests);
  try {
    return await fn(held.signal);
  } finally {
    await held.release();
  }
}

/**
 * One signal for a holder's own cancellation and the loss of its locks.
 * @param signals the signals to follow (undefined ones are left out)
 */
export function eitherSignal(...signals: readonly (AbortSignal | undefined)[]): AbortSignal {
  const either = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
  // Every block request in flight (and its retries) listens to it: not a leak, so no warning.
  setMaxListeners(0, either);
  return either;
}

/** Draws of a new version uid before giving up (a draw is rarely taken; eight in a row never are). */
const UID_DRAWS = 8;

/**
 * Takes `requests` and then an exclusive lock on a new version uid that no version has. A uid
 * carries 20 random bits per second, so backups started by timers in the same second on many
 * hosts can draw the same one (1 in 800 for 50 at once): a uid that is taken (a version has it,
 * or a process that drew it holds its lock) is drawn again. Every maker of versions locks the uid
 * before it records the version, so the uid stays free while the lock is held.
 * @param started the new version's creation time (the uid's time part)
 * @param requests the caller's other locks, taken first
 * @param version the operation (and writer flag) of the version lock
 * @throws {LockedError} when one of `requests` is held in a conflicting mode
 */
export async function lockNewVersion(
  catalog: LockTable & Pick<VersionCatalog, 'getVersion'>,
  started: number,
  requests: readonly LockRequest[],
  version: Omit<LockRequest, 'resource' | 'mode'>,
  draw: () => string = () => newVersionUid(started),
): Promise<{ uid: string; locks: HeldLocks }> {
  for (let attempt = 1; ; attempt++) {
    const uid = draw();
    const resource = versionResource(uid);
    let locks: HeldLocks;
    try {
      locks = await acquireLocks(catalog, [...requests, { ...version, resource, mode: 'exclusive' }]);
    } catch (err) {
      // Only a process that drew the same uid is a reason to draw again (it holds the uid's lock).
      if (!(err instanceof LockedError) || (await catalog.listLocks(resource)).length === 0 || attempt >= UID_DRAWS) throw err;
      continue;
    }
    // Locked: no other process can record a version of this uid now; one made earlier may exist.
    if ((await catalog.getVersion(uid)) === undefined) return { uid, locks };
    await locks.release();
    if (attempt >= UID_DRAWS) throw new LockedError(`Could not find a free version uid in ${UID_DRAWS} draws`, { hint: 'run it again' });
  }
}
