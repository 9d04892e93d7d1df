import type { BlockCache } from './block-cache.js';
import { BlockMap, blockCount, dataBytes, type MapStorage } from '../objects/block-map.js';
import type { VersionCatalog, VersionRecord } from '../catalog/catalog.js';
import { UsageError } from '../errors.js';

const MAX_STREAMS = 8;
/** Allocation figures kept per reader (the whole version and its partitions). */
const MAX_ALLOCATION_RANGES = 16;

/** A run of blocks that are all data or all sparse. */
export interface Extent {
  readonly offset: number;
  readonly length: number;
  /** True for all-zero (unstored) blocks. */
  readonly sparse: boolean;
}

/** Options of {@link VersionReader}. */
export interface VersionReaderOptions {
  /** Blocks fetched ahead of a sequential reader. @default 8 */
  readonly readAhead?: number;
}

/**
 * Random-access reads of one version, through a shared block cache: what the FUSE and NBD
 * front ends serve. Sparse blocks read as zeros without I/O; every block is verified.
 *
 * @example
 * const reader = await VersionReader.open(store, version, cache);
 * const n = await reader.read(0, Buffer.alloc(65536));
 */
export class VersionReader {
  readonly version: VersionRecord;
  readonly #map: BlockMap;
  readonly #cache: BlockCache;
  readonly #readAhead: number;
  /** Last block of each sequential stream seen recently. */
  readonly #streams: number[] = [];
  readonly #allocated = new Map<string, Promise<number>>();

  private constructor(version: VersionRecord, map: BlockMap, cache: BlockCache, options: VersionReaderOptions) {
    this.version = version;
    this.#map = map;
    this.#cache = cache;
    this.#readAhead = options.readAhead ?? 8;
  }

  /**
   * Opens a committed version for reading.
   * @throws {UsageError} when the version is incomplete
   */
  static async open(storage: MapStorage & { readonly catalog: VersionCatalog }, version: VersionRecord, cache: BlockCache, options: VersionReaderOptions = {}): Promise<VersionReader> {
    if (version.status === 'incomplete') throw new UsageError(`Version "${version.uid}" is incomplete and cannot be read`);
    const segments = await storage.catalog.versionSegments(version.uid);
    return new VersionReader(version, new BlockMap(storage, segments, blockCount(version.size, version.blockSize)), cache, options);
  }

  get size(): number {
    return this.version.size;
  }

  get blockSize(): number {
    return this.version.blockSize;
  }

  /** Digest of block `i`, or null when it is sparse. */
  async entry(i: number): Promise<Buffer | null> {
    return this.#map.entry(i);
  }

  /** Length of block `i` (the last one may be short). */
  blockLength(i: number): number {
    return Math.min(this.version.blockSize, this.version.size - i * this.version.blockSize);
  }

  /** Verified contents of block `i`, or null when it is sparse; copy from it before the next await (the cache reuses buffers). */
  async block(i: number): Promise<Buffer | null> {
    const digest = await this.#map.entry(i);
    return digest ? this.#cache.get(digest, this.blockLength(i)) : null;
  }

  /**
   * Reads up to `into.length` bytes at `offset`.
   * @returns bytes read; less than asked only at the end of the version
   * @throws {CorruptBlockError} or {ObjectMissingError} when a block in the range is bad
   */
  async read(offset: number, into: Uint8Array): Promise<number> {
    const done = this.readCached(offset, into);
    if (done !== undefined) return done;
    const end = Math.min(offset + into.length, this.version.size);
    const bs = this.version.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const blockStart = i * bs;
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockStart + bs);
      parts.push(
        this.block(i).then((data) => {
          if (data) into.set(data.subarray(from - blockStart, to - blockStart), from - offset);
          else into.fill(0, from - offset, to - offset);
        }),
      );
    }
    this.#maybeReadAhead(first, last);
    await Promise.all(parts);
    return end - offset;
  }

  /**
   * Reads like {@link read} when that needs no waiting: the range lies in one block that is
   * sparse or cached, and its map segment is loaded (FUSE reads are at most 128 KiB, so this is
   * most of them), served without a promise on the one thread all FUSE requests go through.
   * @returns bytes read, or undefined when the read has to wait (call `read`)
   */
  readCached(offset: number, into: Uint8Array): number | undefined {
    const end = Math.min(offset + into.length, this.version.size);
    if (offset >= end) return 0;
    const bs = this.version.blockSize;
    const first = Math.floor(offset / bs);
    if (Math.floor((end - 1) / bs) !== first) return undefined;
    const entry = this.#map.entrySync(first);
    if (entry === undefined) return undefined;
    if (entry === null) {
      into.fill(0, 0, end - offset);
    } else {
      const data = this.#cache.peek(entry, this.blockLength(first));
      if (!data) return undefined;
      into.set(data.subarray(offset - first * bs, end - first * bs));
    }
    this.#maybeReadAhead(first, first);
    return end - offset;
  }

  /**
   * The allocation of a byte range as runs of data and sparse blocks (block granularity).
   * @param offset start of the range
   * @param length bytes
   */
  async extents(offset: number, length: number): Promise<Extent[]> {
    const end = Math.min(offset + length, this.version.size);
    const out: Extent[] = [];
    const bs = this.version.blockSize;
    for (let i = Math.floor(offset / bs); i * bs < end; i++) {
      const from = Math.max(offset, i * bs);
      const to = Math.min(end, (i + 1) * bs);
      const sparse = (await this.#map.entry(i)) === null;
      const prev = out[out.length - 1];
      if (prev && prev.sparse === sparse) out[out.length - 1] = { offset: prev.offset, length: to - prev.offset, sparse };
      else out.push({ offset: from, length: to - from, sparse });
    }
    return out;
  }

  /**
   * Bytes of non-sparse blocks (what `du` should show), of the whole version or of a range (a
   * partition; blocks across its ends count in part), computed once per range.
   * @param offset start of the range
   * @param length bytes
   */
  allocatedBytes(offset = 0, length = this.version.size): Promise<number> {
    const from = Math.max(0, offset);
    const to = Math.min(this.version.size, offset + length);
    const key = `${from}-${to}`;
    let bytes = this.#allocated.get(key);
    if (!bytes) {
      // A few ranges per version (its partitions); forget the oldest beyond that.
      if (this.#allocated.size >= MAX_ALLOCATION_RANGES) this.#allocated.delete(this.#allocated.keys().next().value as string);
      bytes = this.#countAllocated(from, to);
      this.#allocated.set(key, bytes);
    }
    return bytes;
  }

  async #countAllocated(from: number, to: number): Promise<number> {
    // The whole file's figure is recorded at commit (reading every segment of thousands of
    // versions for an `ls -l` of the mount took a minute).
    if (from === 0 && to === this.version.size && this.version.allocated !== null) return this.version.allocated;
    return dataBytes(this.#map, this.version, { from, to });
  }

  #maybeReadAhead(first: number, last: number): void {
    // Several clients (or NBD connections) may read different regions at once: follow up to
    // MAX_STREAMS sequential streams, each by the last block it read.
    const s = this.#streams.findIndex((b) => first === b || first === b + 1);
    if (s < 0) {
      this.#streams.push(last);
      if (this.#streams.length > MAX_STREAMS) this.#streams.shift();
      if (first !== 0) return;
    } else {
      const previous = this.#streams[s] as number;
      this.#streams[s] = last;
      // Once per block entered: FUSE reads a block in many small requests.
      if (first === previous && last === previous) return;
    }
    if (this.#readAhead <= 0) return;
    const blocks = this.#map.blocks;
    for (let i = last + 1; i <= last + this.#readAhead && i < blocks; i++) {
      this.#map.entry(i).then(
        (digest) => {
          if (digest) this.#cache.prefetch(digest, this.blockLength(i));
        },
        () => undefined,
      );
    }
  }
}
