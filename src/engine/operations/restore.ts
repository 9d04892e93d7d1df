import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { BlockMap, blockCount, segmentCount } from '../objects/block-map.js';
import { confirmBadBlock, fetchBlock, fetchContextOf } from '../objects/block-reader.js';
import { DIGEST_LENGTH, SEGMENT_ENTRIES, SPARSE_ENTRY } from '../objects/formats.js';
import { InterruptedError, UsageError, isBackyError, isBadBlock } from '../errors.js';
import { resolveVersion } from './versions.js';
import { versionResource, withLocks } from '../catalog/locking.js';
import { BufferPool, alignedBuffer } from '../pipeline/buffer-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';
import { TaskGroup } from '../pipeline/task-group.js';
import type { Progress } from '../support/progress.js';
import { openTarget } from '../endpoints/endpoints.js';
import type { Store } from '../store.js';

/** Options of {@link restore}. */
export interface RestoreOptions {
  /** Version to restore. */
  readonly uid: string;
  /** Target: a new file, `rbd:POOL/IMAGE`, or with `force` an existing file, block device or RBD image. */
  readonly target: string;
  /** Skip all-zero blocks instead of writing zeros. @default false */
  readonly sparse?: boolean | undefined;
  /** Overwrite an existing target. @default false */
  readonly force?: boolean | undefined;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** A block that could not be restored. */
export interface BadBlock {
  readonly index: number;
  readonly offset: number;
  readonly digest: string;
  /** Error code, e.g. E_CORRUPT or E_OBJECT_MISSING. */
  readonly code: string;
  readonly message: string;
}

/** What a restore reports. */
export interface RestoreResult {
  readonly uid: string;
  readonly image: string;
  readonly target: string;
  readonly size: number;
  /** Bytes of data blocks written. */
  readonly bytesWritten: number;
  /** Bytes of all-zero blocks (skipped with `sparse`, else written as zeros). */
  readonly bytesSparse: number;
  /** How many blocks were bad; their range is left zero. */
  readonly badBlockCount: number;
  /** The first bad blocks (at most 100). */
  readonly badBlocks: readonly BadBlock[];
  readonly durationSeconds: number;
}

const MAX_REPORTED_BAD_BLOCKS = 100;

/**
 * Restores a version to a file or block device. Every block is proven (ReadProof `checksum`: its
 * CRC and header, its tag, or in an old store its digest); a bad block is reported, its range left
 * zero, and the restore goes on. Versions marked invalid restore too.
 *
 * @param store the open store
 * @param options what to restore where
 * @returns figures, with the bad blocks (the caller decides the exit status)
 * @throws {NotFoundError} when the version does not exist
 * @throws {UsageError} when the version is incomplete
 * @throws {ConflictError} when the target exists (without `force`) or is too small
 * @throws {LockedError} when the version is being removed
 * @example
 * const result = await restore(store, { uid: 'v1kx3f9qm7wz', target: '/tmp/vm1.img', sparse: true });
 */
export async function restore(store: Store, options: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const { catalog, config } = store;
  const version = await resolveVersion(store, options.uid);
  if (version.status === 'incomplete') throw new UsageError(`Version "${version.uid}" is incomplete and cannot be restored`);
  await refuseStorePaths(store, options.target);
  return withLocks(catalog, [{ resource: versionResource(version.uid), mode: 'shared', operation: 'restore' }], async () => {
    const blocks = blockCount(version.size, version.blockSize);
    const map = new BlockMap(store, await catalog.versionSegments(version.uid), blocks);
    const target = await openTarget(options.target, { size: version.size, force: options.force === true, sparse: options.sparse === true, ceph: config.ceph });
    const counters = { bytesWritten: 0, bytesSparse: 0, badBlockCount: 0 };
    const badBlocks: BadBlock[] = [];
    try {
      options.progress?.start?.({ totalBytes: version.size, workBytes: version.size });
      const pool = new BufferPool(version.blockSize, Math.max(4, Math.min(12, Math.floor((128 << 20) / version.blockSize))));
      const reads = new Semaphore(config.readers * 2);
      const group = new TaskGroup(options.signal);
      const zeros = alignedBuffer(version.blockSize);
      // --sparse: zero blocks stay unwritten (already zero, or zeroed without allocating).
      const sparse = options.sparse === true;
      // A failure here (an unreadable segment) still waits for the writes in flight.
      try {
        for (let k = 0; k < segmentCount(blocks) && !group.failed; k++) {
          const entries = await map.segmentEntries(k);
          for (let j = 0; j < entries.length / DIGEST_LENGTH && !group.failed; j++) {
            const i = k * SEGMENT_ENTRIES + j;
            const offset = i * version.blockSize;
            const length = Math.min(version.blockSize, version.size - offset);
            const digest = entries.subarray(j * DIGEST_LENGTH, (j + 1) * DIGEST_LENGTH);
            if (digest.equals(SPARSE_ENTRY)) {
              counters.bytesSparse += length;
              if (!sparse || !target.zeroed) {
                await group.below(pool.size);
                group.spawn(() => (sparse ? target.zero(offset, length) : target.write(offset, zeros.subarray(0, length))));
              }
              options.progress?.advance?.(length);
              continue;
            }
            const held = await group.obtain((signal) => pool.acquire(signal));
            if (!held) break;
            group.spawn(async () => {
              try {
                const data = await reads.run(() => fetchBlock(fetchContextOf(store), digest, length, held, { aligned: true, signal: group.signal, proof: 'checksum' }));
                await target.write(offset, data);
                counters.bytesWritten += length;
              } catch (err) {
                if (!isBadBlock(err)) throw err;
                await confirmBadBlock(store.blocks);
                counters.badBlockCount++;
                if (badBlocks.length < MAX_REPORTED_BAD_BLOCKS) {
                  badBlocks.push({ index: i, offset, digest: digest.toString('hex'), code: err.code, message: err.message });
                }
                if (!target.zeroed) await target.zero(offset, length);
              } finally {
                pool.release(held);
              }
              options.progress?.advance?.(length);
            });
          }
        }
      } catch (err) {
        group.fail(err);
      }
      await group.wait();
      await target.finish();
    } catch (err) {
      await target.abort();
      if (isBackyError(err) && err.code === 'E_INTERRUPTED') {
        // Whoever pressed Ctrl-C at 3 am must know what the target holds now.
        throw new InterruptedError(
          target.created
            ? `Restore of ${version.uid} interrupted: the new target "${target.location}" was removed`
            : `Restore of ${version.uid} interrupted: target "${target.location}" is now partially overwritten and unusable`,
          { cause: err, hint: 'run the restore again to complete it' },
        );
      }
      throw err;
    }
    badBlocks.sort((a, b) => a.index - b.index);
    return {
      uid: version.uid,
      image: version.image,
      target: target.location,
      size: version.size,
      ...counters,
      badBlocks,
      durationSeconds: (Date.now() - started) / 1000,
    };
  });
}

/**
 * A restore must never write into the store it reads from (a mistyped `--force` target once
 * overwrote a block object): targets inside the store directory, the block store or the catalog
 * are refused, symlinks resolved.
 */
async function refuseStorePaths(store: Store, target: string): Promise<void> {
  if (/^[a-z][a-z0-9+.-]*:/.test(target) && !target.startsWith('file:')) return; // rbd: and other schemes
  const file = path.resolve(target.startsWith('file:') ? target.slice('file:'.length) : target);
  const real = async (p: string): Promise<string> => {
    try {
      return await realpath(p);
    } catch {
      // Not there yet: resolve its directory (a new file in the store is as bad as an old one).
      const parent = path.dirname(p);
      return parent === p ? p : path.join(await real(parent), path.basename(p));
    }
  };
  const where = store.config.store;
  const protectedPaths = [where.path, where.catalogPath, `${where.catalogPath}-wal`, `${where.catalogPath}-shm`];
  if (where.blockStore.type === 'file') protectedPaths.push(where.blockStore.path);
  const resolved = await real(file);
  for (const p of protectedPaths) {
    const inside = await real(p);
    if (resolved === inside || resolved.startsWith(`${inside}${path.sep}`)) {
      throw new UsageError(`Target "${target}" is inside the store (${inside}): a restore never writes into the store it reads`, { hint: 'restore to a path outside the store' });
    }
  }
}
