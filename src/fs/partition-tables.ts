import { LRUCache } from 'lru-cache';
import type { VersionRecord } from '../engine/catalog/catalog.js';
import { readPartitionTable, type Partition, type PartitionTable } from '../engine/live/partition-table.js';
import type { VersionReader } from '../engine/live/version-reader.js';
import { SEGMENT_ENTRIES } from '../engine/objects/formats.js';
import { Semaphore } from '../engine/pipeline/semaphore.js';

/** Versions whose table is kept (each entry points at a table shared by content: a few bytes). */
const MAX_VERSIONS = 100_000;
/** Distinct tables kept by content (a few hundred bytes each). */
const MAX_CONTENTS = 8192;
/** Tables read at once when a directory of many versions is listed. */
const PARALLEL_READS = 4;

/** A table read, and whether every byte it was read from lies in the version's first map segment. */
interface Read {
  readonly table: PartitionTable | undefined;
  readonly withinFirstSegment: boolean;
}

/**
 * The partition tables of versions, read when first needed and kept per version uid (a version
 * never changes, so neither does its table). Versions whose first map segment is the same start
 * with the same bytes: a table read only from those bytes is kept by that segment too, so the
 * thousands of versions of an image that did not change there share one read. A table that
 * cannot be read (a bad block) is logged, counts as none and is tried again next time.
 */
export class PartitionTables {
  readonly #readerOf: (version: VersionRecord) => Promise<VersionReader>;
  readonly #log: (line: string) => void;
  readonly #byVersion = new LRUCache<string, Promise<PartitionTable | undefined>>({ max: MAX_VERSIONS });
  readonly #byContent = new LRUCache<string, Promise<Read>>({ max: MAX_CONTENTS });
  readonly #reads = new Semaphore(PARALLEL_READS);

  /**
   * @param readerOf the reader of a version as committed (copy-on-write sessions do not change its table)
   * @param log one line per table that could not be read
   */
  constructor(readerOf: (version: VersionRecord) => Promise<VersionReader>, log: (line: string) => void) {
    this.#readerOf = readerOf;
    this.#log = log;
  }

  /**
   * The version's partitions, none when its image has no partition table.
   * @param firstSegment the digest of the version's first map segment, when known (see Catalog.firstSegments)
   */
  async partitions(version: VersionRecord, firstSegment?: Buffer): Promise<readonly Partition[]> {
    return (await this.#table(version, firstSegment))?.partitions ?? [];
  }

  /** True when the version's table was read (or is being read). */
  has(uid: string): boolean {
    return this.#byVersion.has(uid);
  }

  /** Partition `number` of the version, or undefined when it has none of that number. */
  async find(version: VersionRecord, number: number): Promise<Partition | undefined> {
    return (await this.partitions(version)).find((p) => p.number === number);
  }

  #table(version: VersionRecord, firstSegment: Buffer | undefined): Promise<PartitionTable | undefined> {
    const cached = this.#byVersion.get(version.uid);
    if (cached) return cached;
    const table: Promise<PartitionTable | undefined> = this.#shared(version, firstSegment).catch((err: unknown) => {
      if (this.#byVersion.get(version.uid) === table) this.#byVersion.delete(version.uid);
      this.#log(`cannot read the partition table of ${version.image} version ${version.uid}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    });
    this.#byVersion.set(version.uid, table);
    return table;
  }

  /** The table of a version with the same first segment and geometry, when it was read from that segment alone. */
  async #shared(version: VersionRecord, firstSegment: Buffer | undefined): Promise<PartitionTable | undefined> {
    if (!firstSegment) return (await this.#read(version)).table;
    const key = `${firstSegment.toString('hex')}/${version.size}/${version.blockSize}`;
    const earlier = this.#byContent.get(key);
    if (earlier) {
      const read = await earlier.catch(() => undefined);
      if (read?.withinFirstSegment) return read.table;
      return (await this.#read(version)).table;
    }
    const read = this.#read(version);
    this.#byContent.set(key, read);
    void read.then(
      (r) => !r.withinFirstSegment && this.#byContent.delete(key),
      () => this.#byContent.delete(key),
    );
    return (await read).table;
  }

  #read(version: VersionRecord): Promise<Read> {
    return this.#reads.run(async () => {
      const reader = await this.#readerOf(version);
      const firstSegmentEnd = SEGMENT_ENTRIES * version.blockSize;
      let end = 0;
      const table = await readPartitionTable(async (offset, length) => {
        end = Math.max(end, offset + length);
        const into = Buffer.alloc(length);
        return into.subarray(0, await reader.read(offset, into));
      }, version.size);
      return { table, withinFirstSegment: end <= firstSegmentEnd };
    });
  }
}
