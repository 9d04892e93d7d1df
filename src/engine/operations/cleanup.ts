/**
 * Cleanup: mark and sweep of unreferenced blocks and segments, safe against concurrent writers.
 *
 * The rule (docs/architecture.md, "Decisions" 5): a block is deleted only when no committed version refers to it and it
 * was last written or referenced before T, the start of the oldest writer still running (or the
 * start of the cleanup when none runs). Writers register as locks with `writer` set; a writer
 * that deduplicates against a stored block refreshes its reference time in the catalog first, and
 * a running backup holds its base version locked. So whatever a running or just-committed backup
 * or copy-on-write session refers to is either live or younger than T.
 *
 * Deletion is three steps per batch: claim (blocks become `deleting`, so no writer deduplicates
 * against them), delete the objects, forget the rows. A writer that meets a `deleting` block
 * waits for the cleanup, or takes the block over when the cleanup died. A killed cleanup leaves
 * `deleting` rows that the next run finishes first: it can be killed at any moment.
 */
import { BlockMap, blockCount, saveSegmentObject } from '../objects/block-map.js';
import { BlockState, CLEANUP_RESOURCE } from '../catalog/catalog.js';
import { ConflictError, isBackyError, throwIfAborted } from '../errors.js';
import { acquireLocks, eitherSignal } from '../catalog/locking.js';
import { Semaphore } from '../pipeline/semaphore.js';
import type { Progress } from '../support/progress.js';
import { assertWritable, type Store } from '../store.js';
import { recordRun } from './run-records.js';
import { KeyPrefix, StoreKeys, parseBlockKey, parseInvalidMarkerKey, parseManifestKey, parseSegmentKey } from '../objects/store-keys.js';

/**
 * Objects the catalog does not know are judged by their file-system mtime, which comes from
 * another clock (coarse kernel timestamps; an NFS server's clock). They are deleted only when
 * older than T by this margin. Catalog-tracked blocks need no margin: their times are the
 * writers' own.
 */
export const ORPHAN_CLOCK_SLACK_MS = 10 * 60 * 1000;

/** The lock of a running cleanup; writers that meet a `deleting` block look for it. */

/** Options of {@link cleanup}. */
export interface CleanupOptions {
  /** Only count what would be deleted. @default false */
  readonly dryRun?: boolean | undefined;
  /** Blocks claimed per batch. @default 256 */
  readonly batch?: number | undefined;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Current time (tests). @default Date.now() */
  readonly now?: number | undefined;
}

/** What a cleanup did (or, with dryRun, would do). */
export interface CleanupResult {
  readonly dryRun: boolean;
  /** Oldest running writer's start (or the cleanup's start): nothing touched after it is deleted. */
  readonly safeBefore: number;
  readonly blocksDeleted: number;
  readonly bytesFreed: number;
  /** Unreferenced blocks kept because a running writer might still refer to them. */
  readonly blocksKept: number;
  readonly bytesKept: number;
  readonly segmentsDeleted: number;
  /** Objects in the block store that the catalog does not know (left by killed writers). */
  readonly orphansDeleted: number;
  readonly orphanBytes: number;
  /** Temp files of unfinished writes. */
  readonly tempFilesDeleted: number;
  /** Blocks a killed cleanup had left half-deleted. */
  readonly resumed: number;
  readonly durationSeconds: number;
}

/** A block store that can sweep its own temp data (the file store). */
interface TemporarySweeper {
  sweepTemporary(olderThan: number, dryRun: boolean): Promise<{ files: number; bytes: number }>;
}

function canSweepTemporary(store: unknown): store is TemporarySweeper {
  return typeof (store as Partial<TemporarySweeper>).sweepTemporary === 'function';
}

/**
 * Deletes unreferenced blocks, segments, orphan objects and stale temp files.
 * @throws {LockedError} when another cleanup runs
 * @throws {ConflictError} when the block store holds versions the catalog does not know (a lost
 *   catalog: rebuild it first, or everything would look unreferenced)
 * @example
 * const result = await cleanup(store, { dryRun: true });
 */
export async function cleanup(store: Store, options: CleanupOptions = {}): Promise<CleanupResult> {
  const t0 = Date.now();
  const dryRun = options.dryRun === true;
  const batch = options.batch ?? 256;
  if (!dryRun) assertWritable(store, 'clean up');
  const { catalog, blocks } = store;
  const locks = await acquireLocks(catalog, [{ resource: CLEANUP_RESOURCE, mode: 'exclusive', operation: dryRun ? 'cleanup --dry-run' : 'cleanup' }]);
  // Stops when asked to, or before its lease could expire: another cleanup (or a writer taking
  // over a block being deleted) may act once it has.
  const signal = eitherSignal(options.signal, locks.signal);
  const counters = { blocksDeleted: 0, bytesFreed: 0, segmentsDeleted: 0, orphansDeleted: 0, orphanBytes: 0, tempFilesDeleted: 0, resumed: 0 };
  const deletes = new Semaphore(Math.max(1, blocks.properties.maxConnections));
  // Every delete of a batch settles before an error propagates: none may run after this cleanup
  // released its lock (a writer could take the block over and lose it to a late delete).
  const deleteKeys = async (keys: string[]) => {
    const results = await Promise.allSettled(
      keys.map((key) =>
        deletes.run(() => {
          throwIfAborted(signal);
          return blocks.delete(key);
        }),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    // The catalog's clock, read before the writers are listed: a writer registered after that
    // touches blocks only later, so they are younger than this.
    const started = options.now ?? (await catalog.now());
    const writers = (await catalog.listLocks()).filter((l) => l.writer);
    const safeBefore = Math.min(started, ...writers.map((l) => l.acquiredAt));
    await refuseLostCatalog(store);

    // 1. Finish what a killed cleanup left half-deleted.
    if (!dryRun) {
      for (let left = await catalog.deletingBlocks(batch); left.length > 0; left = await catalog.deletingBlocks(batch)) {
        throwIfAborted(signal);
        await deleteKeys(left.map((b) => StoreKeys.block(b.digest)));
        await catalog.forgetDeletedBlocks(left.map((b) => b.digest));
        counters.resumed += left.length;
      }
    }

    // 2. Mark: every block of every committed version is live.
    await catalog.beginMark();
    const liveSegments = new Set<string>();
    for (const version of await catalog.listVersions()) {
      if (version.status === 'incomplete') continue;
      // Removed meanwhile (a copy-on-write session replacing its commit): nothing to keep.
      const segments = await catalog.versionSegments(version.uid).catch((err: unknown) => {
        if (isBackyError(err) && err.code === 'E_NOT_FOUND') return undefined;
        throw err;
      });
      if (!segments) continue;
      const map = new BlockMap(store, segments, blockCount(version.size, version.blockSize));
      for (let k = 0; k < segments.length; k++) {
        const hex = (segments[k] as Buffer).toString('hex');
        if (liveSegments.has(hex)) continue;
        liveSegments.add(hex);
        throwIfAborted(signal);
        await catalog.markLive(await map.segmentEntries(k));
      }
    }
    const totals = await catalog.garbageTotals(safeBefore);
    options.progress?.start?.({ totalBytes: totals.old.bytes, workBytes: totals.old.bytes });

    // 3. Sweep blocks in batches: claim, delete objects, forget rows.
    if (dryRun) {
      counters.blocksDeleted = totals.old.blocks;
      counters.bytesFreed = totals.old.bytes;
    } else {
      for (let claimed = await catalog.claimGarbageBlocks(safeBefore, batch); claimed.length > 0; claimed = await catalog.claimGarbageBlocks(safeBefore, batch)) {
        throwIfAborted(signal);
        await deleteKeys(claimed.map((b) => StoreKeys.block(b.digest)));
        await catalog.forgetDeletedBlocks(claimed.map((b) => b.digest));
        const bytes = claimed.reduce((n, b) => n + b.storedLength, 0);
        counters.blocksDeleted += claimed.length;
        counters.bytesFreed += bytes;
        options.progress?.advance?.(bytes);
      }
    }
    await catalog.endMark();

    // 4. Segments no version refers to.
    const deadSegments = (await catalog.listSegments()).filter((s) => s.touchedAt < safeBefore && !liveSegments.has(s.digest.toString('hex')));
    if (dryRun) counters.segmentsDeleted = deadSegments.length;
    else {
      const deleted = await catalog.deleteSegments(deadSegments.map((s) => s.digest), safeBefore);
      await deleteKeys(deleted.map((d) => StoreKeys.segment(d)));
      counters.segmentsDeleted = deleted.length;
      // A writer may have saved one of them again meanwhile: put its durable copy back.
      for (const digest of deleted) {
        const payload = await catalog.getSegment(digest);
        if (payload) await saveSegmentObject(store, { digest, payload });
      }
    }

    // 5. Objects the catalog does not know, and temp files of unfinished writes.
    const orphanBefore = safeBefore - ORPHAN_CLOCK_SLACK_MS;
    // Objects old enough that no writer can be about to register them, and that the catalog lacks.
    const orphans = [
      { prefix: KeyPrefix.blocks, parse: parseBlockKey, known: async (d: Buffer) => (await catalog.getBlock(d)) !== undefined },
      { prefix: KeyPrefix.segments, parse: parseSegmentKey, known: async (d: Buffer) => liveSegments.has(d.toString('hex')) || (await catalog.getSegment(d)) !== undefined },
    ];
    for (const kind of orphans) {
      for await (const info of blocks.list(kind.prefix)) {
        throwIfAborted(signal);
        const digest = kind.parse(info.key);
        if (info.mtimeMs >= orphanBefore || !digest || (await kind.known(digest))) continue;
        if (!dryRun) await deletes.run(() => blocks.delete(info.key));
        counters.orphansDeleted++;
        counters.orphanBytes += info.size;
      }
    }
    // Invalid markers of blocks that are gone or were stored again (a scrub sets the state right
    // after writing the marker; not counted as orphans: they hold no data).
    for await (const info of blocks.list(KeyPrefix.invalidMarkers)) {
      const digest = parseInvalidMarkerKey(info.key);
      if (info.mtimeMs >= orphanBefore || !digest) continue;
      if ((await catalog.getBlock(digest))?.state === BlockState.invalid) continue;
      if (!dryRun) await deletes.run(() => blocks.delete(info.key));
    }
    if (canSweepTemporary(blocks)) counters.tempFilesDeleted = (await blocks.sweepTemporary(orphanBefore, dryRun)).files;
    const result = {
      dryRun,
      safeBefore,
      ...counters,
      blocksKept: totals.young.blocks,
      bytesKept: totals.young.bytes,
      durationSeconds: (Date.now() - t0) / 1000,
    };
    if (!dryRun) {
      const { safeBefore: _, dryRun: __, ...figures } = result;
      await recordRun(store, 'cleanup', figures);
    }
    return result;
  } finally {
    await catalog.endMark().catch(() => undefined);
    await locks.release();
  }
}

/**
 * The catalog must know every version the store has a manifest of, or all would look like garbage.
 * A manifest without a catalog row is re-checked in this order to tell a lost catalog from a
 * version created or removed meanwhile: rows exist before their manifests are written, and
 * manifests are deleted before their rows.
 */
async function refuseLostCatalog(store: Store): Promise<void> {
  const known = new Set((await store.catalog.listVersions()).map((v) => v.uid));
  for await (const info of store.blocks.list(KeyPrefix.manifests)) {
    const uid = parseManifestKey(info.key);
    if (uid === undefined || known.has(uid) || (await store.catalog.getVersion(uid))) continue;
    if (!(await store.blocks.stat(info.key))) continue;
    throw new ConflictError(`The block store has version "${uid}" that the catalog does not know: the catalog is incomplete`, {
      hint: 'run `backy2 db rebuild` before a cleanup',
    });
  }
}

