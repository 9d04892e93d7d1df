import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BlockCache } from './block-cache.js';
import { BlockMapWriter, baseSegment } from '../objects/block-map-writer.js';
import { BlockMap, blockCount, segmentCount } from '../objects/block-map.js';
import { blockWriterFor, newWriteCounters, storeHashedBlock } from '../objects/block-writer.js';
import { BlockState, type VersionRecord } from '../catalog/catalog.js';
import { debug } from '../support/debug.js';
import { CorruptBlockError, IoError, UsageError, errnoCode } from '../errors.js';
import { SEGMENT_ENTRIES } from '../objects/formats.js';
import { acquireLocks, eitherSignal, lockNewVersion, versionResource, type HeldLocks } from '../catalog/locking.js';
import { BufferPool } from '../pipeline/buffer-pool.js';
import { buildVersion } from '../objects/publish.js';
import { assertWritable, type Store } from '../store.js';
import { zeroRange } from '../sys/native.js';
import { VersionReader, type Extent } from './version-reader.js';
import { removeVersions } from '../operations/versions.js';

/** The tag of versions made by copy-on-write sessions. */
export const COW_TAG = 'cow';

/** Options of {@link CowSession.open}. */
export interface CowSessionOptions {
  /** Directory of the spill file that holds written blocks (never RAM). */
  readonly spillDir: string;
  /** Block cache for reads of unchanged blocks. */
  readonly cache: BlockCache;
  /** Who writes, recorded as the source of new versions, e.g. `mount /backy`. */
  readonly origin: string;
}

/** What a commit stored for a written block, applied once the commit is published. */
interface CommitUpdate {
  readonly block: DirtyBlock;
  readonly generation: number;
  readonly committed: Buffer | 'zero';
}

/** State of one written block. */
interface DirtyBlock {
  /** Slot in the spill file, or -1 when it has none (a block zeroed before any write). */
  slot: number;
  /** The block reads as zeros (trimmed or zeroed); its slot, if any, is reused by the next write. */
  zero: boolean;
  /** Digest stored by the last commit; null when written since. */
  committed: Buffer | 'zero' | null;
  /** Counts writes, so a commit racing with a write does not mark newer data as committed. */
  generation: number;
}

/**
 * A writable view of a version: writes go to a spill file on local disk, reads see them, and
 * `commit` turns the changes into a new version whose base is the written one. The original is
 * never modified. Shared by the FUSE and NBD front ends.
 *
 * Writes are block-granular copy-on-write: the first write to a block copies it into the spill
 * file. A commit hashes only blocks written since the previous commit, stores new blocks with
 * deduplication, and reuses every untouched map segment of the base. Each later commit of the
 * same session supersedes (removes) the version the previous commit made, so one session leaves
 * one version however often it is flushed. Until a commit, written data lives only in the spill
 * file (unlinked, so it vanishes with the process): a commit is what makes writes durable.
 *
 * @example
 * const session = await CowSession.open(store, base, { spillDir: '/var/tmp', cache, origin: 'nbd' });
 * await session.write(4096, data);
 * const version = await session.commit();
 * await session.close();
 */
export class CowSession {
  readonly base: VersionRecord;
  readonly #store: Store;
  readonly #reader: VersionReader;
  readonly #spill: fsp.FileHandle;
  readonly #locks: HeldLocks;
  readonly #origin: string;
  readonly #dirty = new Map<number, DirtyBlock>();
  readonly #materializing = new Map<number, Promise<DirtyBlock>>();
  #nextSlot = 0;
  #lastCommit: string | undefined;
  #closed = false;
  #committing: Promise<VersionRecord | undefined> | undefined;
  /** The commit queued behind the running one. */
  #nextCommit: Promise<VersionRecord | undefined> | undefined;
  /** Reads, writes and zeroes in flight: close waits for them (the spill file must stay open). */
  readonly #inFlight = new Set<Promise<unknown>>();

  private constructor(store: Store, reader: VersionReader, spill: fsp.FileHandle, locks: HeldLocks, origin: string) {
    this.#store = store;
    this.base = reader.version;
    this.#reader = reader;
    this.#spill = spill;
    this.#locks = locks;
    this.#origin = origin;
  }

  /**
   * Opens a session on a committed version; holds a shared lock on it (so it cannot be removed)
   * until closed.
   * @throws {UsageError} when the version is incomplete or the spill directory is unusable
   * @throws {LockedError} when the version is being removed
   */
  static async open(store: Store, base: VersionRecord, options: CowSessionOptions): Promise<CowSession> {
    assertWritable(store, 'write (copy-on-write)');
    const locks = await acquireLocks(store.catalog, [{ resource: versionResource(base.uid), mode: 'shared', operation: `copy-on-write session (${options.origin})` }]);
    try {
      const reader = await VersionReader.open(store, base, options.cache, { readAhead: 0 });
      const file = path.join(options.spillDir, `backy2-cow-${base.uid}-${randomBytes(4).toString('hex')}.spill`);
      let spill: fsp.FileHandle;
      try {
        spill = await fsp.open(file, 'wx+', 0o600);
        // Unlinked at once: the kernel frees it when we close it or die.
        await fsp.unlink(file);
      } catch (err) {
        throw new UsageError(`Cannot create a spill file in "${options.spillDir}": ${errnoCode(err) ?? String(err)}`, { cause: err });
      }
      return new CowSession(store, reader, spill, locks, options.origin);
    } catch (err) {
      await locks.release();
      throw err;
    }
  }

  get size(): number {
    return this.base.size;
  }

  get blockSize(): number {
    return this.base.blockSize;
  }

  /** The uid of this session's newest committed version, if any. */
  get lastCommit(): string | undefined {
    return this.#lastCommit;
  }

  /** True when blocks were written since the last commit. */
  get dirty(): boolean {
    for (const block of this.#dirty.values()) if (block.committed === null) return true;
    return false;
  }

  /**
   * Reads up to `into.length` bytes at `offset`, written data included.
   * @returns bytes read; less than asked only at the end
   */
  read(offset: number, into: Uint8Array): Promise<number> {
    return this.#track(this.#read(offset, into));
  }

  async #read(offset: number, into: Uint8Array): Promise<number> {
    const end = Math.min(offset + into.length, this.size);
    if (offset >= end) return 0;
    const bs = this.blockSize;
    const parts: Promise<unknown>[] = [];
    for (let i = Math.floor(offset / bs); i * bs < end; i++) {
      const from = Math.max(offset, i * bs);
      const to = Math.min(end, (i + 1) * bs);
      const view = into.subarray(from - offset, to - offset);
      const block = this.#dirty.get(i);
      if (!block && !this.#materializing.has(i)) parts.push(this.#reader.read(from, view));
      else parts.push(this.#readDirty(i, from - i * bs, view));
    }
    await Promise.all(parts);
    return end - offset;
  }

  /**
   * Writes `data` at `offset`.
   * @throws {UsageError} when the write reaches past the end (the size is fixed)
   */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#track(this.#write(offset, data));
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkRange(offset, data.length);
    const bs = this.blockSize;
    const parts: Promise<void>[] = [];
    for (let i = Math.floor(offset / bs); i * bs < offset + data.length; i++) {
      const from = Math.max(offset, i * bs);
      const to = Math.min(offset + data.length, (i + 1) * bs);
      parts.push(
        this.#materialize(i).then(async (block) => {
          await this.#spillWrite(block.slot * bs + (from - i * bs), data.subarray(from - offset, to - offset));
          block.generation++;
          block.committed = null;
        }),
      );
    }
    await Promise.all(parts);
  }

  /** Makes a range read as zeros (TRIM, WRITE_ZEROES); whole blocks become sparse. */
  zero(offset: number, length: number): Promise<void> {
    return this.#track(this.#zero(offset, length));
  }

  async #zero(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length);
    const bs = this.blockSize;
    const end = offset + length;
    const parts: Promise<void>[] = [];
    for (let i = Math.floor(offset / bs); i * bs < end; i++) {
      const from = Math.max(offset, i * bs);
      const to = Math.min(end, (i + 1) * bs);
      if (from === i * bs && to === i * bs + this.#reader.blockLength(i)) {
        parts.push(
          (this.#materializing.get(i) ?? Promise.resolve()).then(() => {
            const previous = this.#dirty.get(i);
            if (previous) {
              previous.zero = true;
              previous.committed = null;
              previous.generation++;
            } else this.#dirty.set(i, { slot: -1, zero: true, committed: null, generation: 1 });
          }),
        );
      } else {
        parts.push(this.#write(from, Buffer.alloc(to - from)));
      }
    }
    await Promise.all(parts);
  }

  /**
   * Allocation of a range as block-granular runs: written blocks are data, zeroed ones and
   * untouched sparse blocks of the base are holes.
   */
  async extents(offset: number, length: number): Promise<Extent[]> {
    const base = await this.#reader.extents(offset, length);
    const bs = this.blockSize;
    const out: Extent[] = [];
    const push = (from: number, to: number, sparse: boolean) => {
      const last = out[out.length - 1];
      if (last && last.sparse === sparse && last.offset + last.length === from) out[out.length - 1] = { offset: last.offset, length: to - last.offset, sparse };
      else out.push({ offset: from, length: to - from, sparse });
    };
    for (const e of base) {
      for (let i = Math.floor(e.offset / bs); i * bs < e.offset + e.length; i++) {
        const from = Math.max(e.offset, i * bs);
        const to = Math.min(e.offset + e.length, (i + 1) * bs);
        const block = this.#dirty.get(i);
        push(from, to, block ? block.zero : e.sparse);
      }
    }
    return out;
  }

  /**
   * Commits the changes as a new version (base = the session's base), superseding the version of
   * this session's previous commit. A call while a commit runs gets one more commit after it (the
   * running one may have missed writes that came before this call); calls meanwhile share that one.
   * When the promise resolves, every write made before the call is in a committed version.
   * @returns the new version, or undefined when nothing was written since the last commit
   */
  commit(): Promise<VersionRecord | undefined> {
    if (this.#committing) {
      this.#nextCommit ??= this.#committing
        .catch(() => undefined)
        .then(() => {
          this.#nextCommit = undefined;
          return this.commit();
        });
      return this.#nextCommit;
    }
    this.#committing = this.#commit().finally(() => {
      this.#committing = undefined;
    });
    return this.#committing;
  }

  /** Ends the session without committing: written data is dropped, the base lock released. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#committing?.catch(() => undefined);
    await this.#nextCommit?.catch(() => undefined);
    await this.#spill.close().catch(() => undefined);
    await this.#locks.release();
  }

  async #commit(): Promise<VersionRecord | undefined> {
    if (!this.dirty) return undefined;
    const store = this.#store;
    const { catalog } = store;
    const started = Date.now();
    const { uid, locks } = await lockNewVersion(catalog, started, [], { operation: 'copy-on-write commit', writer: true });
    try {
      const draft = { uid, image: this.base.image, createdAt: started, size: this.size, blockSize: this.blockSize, snapshot: null, snapshotId: null, baseUid: this.base.uid, source: this.#origin, kind: 'cow' as const };
      let updates: CommitUpdate[] = [];
      // Valid only while the commit's lock and the session's lock on its base are both held.
      const leases = [...locks.locks, ...this.#locks.locks].map((l) => l.id);
      const signal = eitherSignal(locks.signal, this.#locks.signal);
      const built = await buildVersion(
        store,
        draft,
        async () => {
          const map = await this.#writeMap(started, signal);
          updates = map.updates;
          return { segments: map.segments, stats: map.stats, tags: [COW_TAG] };
        },
        { leases },
      );
      // Only now are the blocks committed: a failed commit leaves them dirty for the next one.
      for (const u of updates) if (u.block.generation === u.generation) u.block.committed = u.committed;
      debug(`cow: committed ${uid} from ${this.base.uid}, ${built.stats.blocksWritten} blocks written`);
    } finally {
      await locks.release();
    }
    const previous = this.#lastCommit;
    this.#lastCommit = uid;
    if (previous) {
      await removeVersions(store, [previous], { force: true }).catch((err: unknown) => debug(`cow: kept superseded ${previous}: ${String(err)}`));
    }
    return catalog.getVersion(uid);
  }

  async #writeMap(started: number, signal: AbortSignal) {
    const store = this.#store;
    const bs = this.blockSize;
    const blocks = blockCount(this.size, bs);
    const baseMap = new BlockMap(store, await store.catalog.versionSegments(this.base.uid), blocks);
    const mapWriter = new BlockMapWriter(store, blocks);
    const writer = blockWriterFor(store, { writers: store.config.writers, signal });
    const pool = new BufferPool(bs, 2);
    const counters = newWriteCounters();
    const byIndex = [...this.#dirty.keys()].sort((a, b) => a - b);
    const updates: CommitUpdate[] = [];
    let at = 0;
    for (let k = 0; k < segmentCount(blocks); k++) {
      const inSegment: number[] = [];
      while (at < byIndex.length && Math.floor((byIndex[at] ?? 0) / SEGMENT_ENTRIES) === k) inSegment.push(byIndex[at++] ?? 0);
      const base = await baseSegment(baseMap, k);
      const baseDigest = baseMap.segments[k];
      if (inSegment.length === 0 && baseDigest && base.entries) {
        mapWriter.reuse(k, baseDigest);
        continue;
      }
      // The written version's own map is damaged there: nothing of it can be taken over.
      if (base.unreadable) throw new CorruptBlockError(`Map segment ${k} of version "${this.base.uid}" is damaged: its blocks cannot be carried into the new version`);
      mapWriter.open(k, base.entries, inSegment.length);
      for (const i of inSegment) {
        const block = this.#dirty.get(i);
        const length = this.#reader.blockLength(i);
        if (!block) continue;
        const generation = block.generation;
        if (block.zero) {
          counters.bytesSparse += length;
          mapWriter.set(i, null);
          updates.push({ block, generation, committed: 'zero' });
          continue;
        }
        // Unchanged since the last commit: reuse its digest, touched so that a cleanup keeps it.
        const previous = block.committed;
        if (previous === 'zero' || (previous !== null && (await store.catalog.touchBlock(previous)) === BlockState.valid)) {
          mapWriter.set(i, previous === 'zero' ? null : previous);
          continue;
        }
        const buf = await pool.acquire();
        try {
          await this.#spillRead(block.slot * bs, buf.payload.subarray(0, length));
          counters.bytesRead += length;
          counters.blocksRead++;
          const entry = await storeHashedBlock(writer, await store.workers().hash(buf, length), buf, length, counters);
          mapWriter.set(i, entry);
          updates.push({ block, generation, committed: entry === null ? 'zero' : Buffer.from(entry) });
        } finally {
          pool.release(buf);
        }
      }
    }
    await writer.flush();
    const segments = await mapWriter.finish();
    return { segments, updates, stats: { ...counters, bytesStored: writer.bytesStored, durationSeconds: (Date.now() - started) / 1000 } };
  }

  /** Gives block `i` a spill slot holding its current contents, before a (partial) write. */
  #materialize(i: number): Promise<DirtyBlock> {
    const existing = this.#dirty.get(i);
    if (existing && existing.slot >= 0 && !existing.zero) return Promise.resolve(existing);
    let pending = this.#materializing.get(i);
    if (!pending) {
      pending = (async () => {
        if (existing && existing.slot >= 0) {
          // A zeroed block keeps its slot: clear the old data (punch a hole, or write zeros).
          const at = existing.slot * this.blockSize;
          if (!zeroRange(this.#spill.fd, at, this.blockSize)) await this.#spillWrite(at, Buffer.alloc(this.blockSize));
          existing.zero = false;
          return existing;
        }
        // A fresh slot of the sparse spill file reads as zeros: copy only non-zero base data.
        const slot = this.#nextSlot++;
        if (!existing) {
          const cached = await this.#reader.block(i);
          // A copy: the cache may reuse its buffer during the write.
          if (cached) await this.#spillWrite(slot * this.blockSize, Buffer.from(cached));
        }
        const block: DirtyBlock = { slot, zero: false, committed: null, generation: (existing?.generation ?? 0) + 1 };
        this.#dirty.set(i, block);
        return block;
      })().finally(() => this.#materializing.delete(i));
      this.#materializing.set(i, pending);
    }
    return pending;
  }

  async #readDirty(i: number, within: number, view: Uint8Array): Promise<void> {
    const block = this.#dirty.get(i) ?? (await this.#materializing.get(i));
    if (!block || block.zero || block.slot < 0) view.fill(0);
    else await this.#spillRead(block.slot * this.blockSize + within, view);
  }

  async #spillWrite(position: number, data: Uint8Array): Promise<void> {
    try {
      let done = 0;
      while (done < data.length) done += (await this.#spill.write(data, done, data.length - done, position + done)).bytesWritten;
    } catch (err) {
      throw new IoError(`Cannot write the copy-on-write spill file: ${errnoCode(err) ?? String(err)}`, { cause: err });
    }
  }

  async #spillRead(position: number, into: Uint8Array): Promise<void> {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.#spill.read(into, done, into.length - done, position + done);
      if (bytesRead === 0) {
        into.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }

  #track<T>(operation: Promise<T>): Promise<T> {
    this.#inFlight.add(operation);
    void operation.then(
      () => this.#inFlight.delete(operation),
      () => this.#inFlight.delete(operation),
    );
    return operation;
  }

  #checkRange(offset: number, length: number): void {
    if (this.#closed) throw new UsageError('The copy-on-write session is closed');
    if (offset < 0 || offset + length > this.size) {
      throw new UsageError(`Write at ${offset} of ${length} bytes is past the end of version "${this.base.uid}" (${this.size} bytes); the size is fixed`);
    }
  }
}
