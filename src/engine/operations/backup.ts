import { autoTagPeriods, autoTags } from './auto-tags.js';
import { BlockMap, blockCount } from '../objects/block-map.js';
import { blockWriterFor } from '../objects/block-writer.js';
import type { VersionRecord, VersionStats } from '../catalog/catalog.js';
import { debug } from '../support/debug.js';
import { ConflictError, UsageError } from '../errors.js';
import { imageResource, acquireLocks, eitherSignal, lockNewVersion, versionResource } from '../catalog/locking.js';
import { checkImageName, checkTag } from '../support/names.js';
import { BufferPool } from '../pipeline/buffer-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';
import { runBackupPipeline, type BaseMap } from './backup-pipeline.js';
import type { Progress } from '../support/progress.js';
import { buildVersion, type BuiltVersion } from '../objects/publish.js';
import { hintedBlocks, readHintsFile } from '../endpoints/hints.js';
import { openSource } from '../endpoints/endpoints.js';
import { AUTO_SNAPSHOT_PREFIX } from '../endpoints/rbd-source.js';
import { assertWritable, type Store } from '../store.js';
import { resolveVersion } from './versions.js';

/** The `--snapshot` value that creates a snapshot for the backup. */
export const AUTO_SNAPSHOT = 'auto';

/** Options of {@link backup}. */
export interface BackupOptions {
  /** Source: a path or `file:PATH` (regular file or block device). */
  readonly source: string;
  /** Name of the image the version belongs to. */
  readonly image: string;
  /** `rbd diff --format=json` file: read only the blocks it names (plus a verification sample). */
  readonly hintsFile?: string | undefined;
  /**
   * The snapshot the hints start from (`rbd diff --from-snap`): the base is then the newest valid
   * backup version recorded with that snapshot. Hints need it, or an explicit `baseUid`.
   */
  readonly hintsFrom?: string | undefined;
  /** Base version uid. @default the newest valid backup version of the image */
  readonly baseUid?: string | undefined;
  /**
   * Snapshot name to record with the version; for `rbd:` sources `auto` creates a
   * `backy2-<uid>` snapshot and, after the commit, removes older backy2 snapshots.
   */
  readonly snapshot?: string | undefined;
  /** Tags; when undefined the automatic b_daily/b_weekly/b_monthly tags apply. */
  readonly tags?: readonly string[] | undefined;
  /** When the version expires (ms since the epoch): `forget` removes it then. @default none */
  readonly expiresAt?: number | undefined;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** What a backup reports. */
export interface BackupResult extends VersionStats {
  readonly uid: string;
  readonly image: string;
  readonly size: number;
  readonly blockSize: number;
  readonly status: 'valid';
  readonly baseUid: string | null;
  readonly tags: readonly string[];
  /** Expiry date, ms since the epoch, or null. */
  readonly expiresAt: number | null;
}

/**
 * Backs up a source as a new version of an image. Only changed blocks are stored; all-zero
 * blocks are not stored at all. The version is `incomplete` in the catalog while the backup
 * runs and becomes `valid` in one transaction after every block and its map are durable.
 *
 * @param store the open store
 * @param options what to back up
 * @returns the new version's uid and figures
 * @throws {NotFoundError} when the source, the hints file or the base version does not exist
 * @throws {UsageError} for a bad image name, hints or base of another image
 * @throws {ConflictError} when sampled blocks show that the hints are wrong (nothing is committed)
 * @throws {LockedError} when another backup of the image runs
 * @throws {StoreFullError} when the store runs out of space (nothing is committed)
 * @example
 * const result = await backup(store, { source: '/dev/vg0/vm1', image: 'vm1' });
 */
export async function backup(store: Store, options: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  assertWritable(store, 'back up');
  const image = checkImageName(options.image);
  const tags = options.tags?.map(checkTag);
  const { catalog, config } = store;
  const hints = options.hintsFile === undefined ? undefined : await readHintsFile(options.hintsFile);
  const auto = options.snapshot === AUTO_SNAPSHOT;
  // The image lock comes first: the snapshot made for this backup and the removal of older ones
  // (source.finish) must not interleave with another backup of the image.
  const { uid, locks } = await lockNewVersion(catalog, started, [{ resource: imageResource(image), mode: 'exclusive', operation: 'backup', writer: true }], { operation: 'backup' });
  try {
    const source = await openSource(options.source, {
      ceph: config.ceph,
      createSnapshot: auto ? `${AUTO_SNAPSHOT_PREFIX}${uid}` : undefined,
      tmpDir: config.spillDir,
    });
    debug(`backup: source ${source.location} opened, ${source.size} bytes`);
    let committed = false;
    try {
      if (source.size === 0) {
        throw new UsageError(`Source "${source.location}" is empty (0 bytes): nothing to back up`, { hint: 'an unattached loop device or a truncated image file? check the source' });
      }
      const blockSize = (await catalog.imageBlockSize(image)) ?? config.blockSize;
      const base = await findBase(store, image, options);
      if (base && base.blockSize !== blockSize) {
        throw new UsageError(`Base version "${base.uid}" has block size ${base.blockSize}, image "${image}" uses ${blockSize}`);
      }
      // Sources that know what changed (RBD) plan their reads; their extents are hints unless the user gave some.
      const changed = source.changedExtents ? await source.changedExtents(base ?? null) : undefined;
      const extents = hints ?? changed;
      const hintsName = hints ? `"${options.hintsFile ?? ''}"` : `from rbd diff of ${source.location}`;
      const hinted = extents === undefined ? undefined : hintedBlocks(extents, { size: source.size, blockSize, what: hintsName });
      const snapshot = (auto ? source.snapshot : (options.snapshot ?? source.snapshot)) ?? null;
      // The snapshot's identity only when it is the one the data was read from.
      const snapshotId = snapshot !== null && snapshot === source.snapshot ? (source.snapshotId ?? null) : null;
      const baseLock = base ? await acquireLocks(catalog, [{ resource: versionResource(base.uid), mode: 'shared', operation: 'backup (as base)' }]) : undefined;
      debug(`backup: locked, version ${uid}, base ${base?.uid ?? 'none'}`);
      try {
        // The work stops when a lock's lease is about to be lost, and the commit needs every lock still held.
        const signal = eitherSignal(options.signal, locks.signal, baseLock?.signal);
        const leases = [...locks.locks, ...(baseLock?.locks ?? [])].map((l) => l.id);
        const draft = { uid, image, createdAt: started, size: source.size, blockSize, snapshot, snapshotId, baseUid: base?.uid ?? null, source: source.location, kind: 'backup' as const, expiresAt: options.expiresAt ?? null };
        const built = await buildVersion(
          store,
          draft,
          () => storeVersion(store, { image, started, blockSize, source, base, hinted, hintsName, tags, options: { ...options, signal } }),
          { leases },
        );
        committed = true;
        debug('backup: committed');
        return { ...built.stats, uid, image, size: source.size, blockSize, status: 'valid', baseUid: draft.baseUid, tags: built.tags, expiresAt: draft.expiresAt };
      } finally {
        await baseLock?.release();
      }
    } finally {
      // Closed first, whatever comes after: an RBD source's helper processes (export-diff,
      // qemu-nbd) end before its snapshot may be removed, and a catalog error below cannot
      // leave them running (their pipes would keep this process alive).
      try {
        await source.close();
      } finally {
        if (source.finish) {
          const earlier = (await catalog.listVersions({ image })).flatMap((v) => (v.snapshot !== null && v.uid !== uid ? [v.snapshot] : []));
          await source.finish(committed, earlier).catch((err: unknown) => debug(`backup: finishing the source failed: ${String(err)}`));
        }
      }
    }
  } finally {
    await locks.release();
  }
}

interface RunInput {
  readonly image: string;
  readonly started: number;
  readonly blockSize: number;
  readonly source: Awaited<ReturnType<typeof openSource>>;
  readonly base: VersionRecord | undefined;
  readonly hinted: Uint8Array | undefined;
  readonly hintsName: string;
  readonly tags: readonly string[] | undefined;
  readonly options: BackupOptions;
}

/** Reads and stores the blocks and map of the new version (see buildVersion for the rest). */
async function storeVersion(store: Store, run: RunInput): Promise<BuiltVersion> {
  const { catalog, config } = store;
  const { source, blockSize } = run;
  let baseMap: BaseMap | undefined;
  if (run.base) {
    const segments = await catalog.versionSegments(run.base.uid);
    baseMap = { map: new BlockMap(store, segments, blockCount(run.base.size, blockSize)), size: run.base.size };
  }
  const invalid = new Set((await catalog.invalidBlocks()).map((d) => d.toString('hex')));
  // Enough blocks in flight to keep reads, both hash workers and the writes busy; memory stays fixed.
  const slots = config.readers + 2 * config.hashWorkers + 4;
  const pool = new BufferPool(blockSize, Math.min(slots, Math.max(4, Math.floor((256 << 20) / blockSize))));
  const writer = blockWriterFor(store, { writers: config.writers, ...(run.options.signal ? { signal: run.options.signal } : {}) });
  const { segments, counters } = await runBackupPipeline(
    {
      source,
      size: source.size,
      blockSize,
      base: baseMap,
      hinted: baseMap ? run.hinted : undefined,
      hintsName: run.hintsName,
      sample: config.hintSample,
      invalid,
    },
    {
      storage: store,
      writer,
      hasher: store.workers(),
      pool,
      readers: new Semaphore(config.readers),
      progress: run.options.progress,
      signal: run.options.signal,
    },
  );
  debug(`backup: blocks done, ${counters.blocksRead} read, ${counters.blocksWritten} written`);
  const stats: VersionStats = { ...counters, bytesStored: writer.bytesStored, durationSeconds: (Date.now() - run.started) / 1000 };
  const periods = autoTagPeriods(run.started).map(async (p) => catalog.listVersions({ image: run.image, status: 'valid', ...p, limit: 1 }));
  const others = (await Promise.all(periods)).flat().map((v) => v.createdAt);
  return { segments, stats, tags: run.tags ?? autoTags(run.started, others) };
}

/**
 * The version a backup compares with and takes unread blocks from. Only backups form the
 * lineage: a copy-on-write version holds writes that are in no source, so it is a base only when
 * named, and never for hints (they describe changes of the source since a backup's snapshot).
 * Hints from a file must name where they start (the snapshot, or the base itself): the newest
 * backup is not necessarily the state an `rbd diff --from-snap` started from.
 */
async function findBase(store: Store, image: string, options: BackupOptions): Promise<VersionRecord | undefined> {
  const hinted = options.hintsFile !== undefined;
  let base: VersionRecord | undefined;
  if (options.baseUid !== undefined) {
    base = await resolveVersion(store, options.baseUid, { what: 'Base version' });
    if (base.image !== image) throw new UsageError(`Base version "${base.uid}" belongs to image "${base.image}", not "${image}"`);
    if (base.status === 'incomplete') throw new UsageError(`Base version "${base.uid}" is incomplete and cannot be a base`);
    if (hinted && base.kind !== 'backup') {
      throw new UsageError(`Base version "${base.uid}" is a copy-on-write version: hints describe changes of the source since a backup, so they cannot apply to it`, {
        hint: 'name a backup version with -f, or back up without -r to compare every block with it',
      });
    }
  }
  if (options.hintsFrom !== undefined) {
    if (!hinted) throw new UsageError('--hints-from names where hints (-r) start; there are no hints');
    if (base) {
      if (base.snapshot !== options.hintsFrom) {
        throw new ConflictError(`Base version "${base.uid}" was made from snapshot ${quoteOrNone(base.snapshot)}, not "${options.hintsFrom}" where the hints start`);
      }
      return base;
    }
    const from = (await store.catalog.listVersions({ image, status: 'valid', kind: 'backup' })).filter((v) => v.snapshot === options.hintsFrom).pop();
    if (!from) {
      throw new ConflictError(`No valid backup of image "${image}" was made from snapshot "${options.hintsFrom}", where the hints start`, {
        hint: 'back up without -r (every block is read), and record the snapshot with -s for the next incremental',
      });
    }
    return from;
  }
  if (base) return base;
  const latest = await store.catalog.latestValidVersion(image, 'backup');
  if (hinted && latest) {
    throw new UsageError('Hints need the version they start from: name the snapshot `rbd diff --from-snap` started from with --hints-from', {
      hint: `backups record theirs with -s; or name the base version with -f (the newest backup of "${image}" is ${latest.uid}, snapshot ${quoteOrNone(latest.snapshot)})`,
    });
  }
  return latest;
}

function quoteOrNone(snapshot: string | null): string {
  return snapshot === null ? 'none' : `"${snapshot}"`;
}
