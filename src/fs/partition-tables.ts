import { LRUCache } from 'lru-cache';
import type { VersionRecord } from '../engine/catalog/catalog.js';
import { readPartitionTable, type Partition, type PartitionTable } from '../engine/live/partition-table.js';
import type { VersionReader } from '../engine/live/version-reader.js';
import { Semaphore } from '../engine/pipeline/semaphore.js';

/** Tables kept (a few hundred bytes each); a store may hold thousands of versions. */
const MAX_TABLES = 8192;
/** Tables read at once when a directory of many versions is listed. */
const PARALLEL_READS = 4;

/**
 * The partition tables of versions, read when first needed and kept per version uid (a version
 * never changes, so neither does its table). A table that cannot be read (a bad block) is logged,
 * counts as none and is tried again next time.
 */
export class PartitionTables {
  readonly #readerOf: (version: VersionRecord) => Promise<VersionReader>;
  readonly #log: (line: string) => void;
  readonly #tables = new LRUCache<string, Promise<PartitionTable | undefined>>({ max: MAX_TABLES });
  readonly #reads = new Semaphore(PARALLEL_READS);

  /**
   * @param readerOf the reader of a version as committed (copy-on-write sessions do not change its table)
   * @param log one line per table that could not be read
   */
  constructor(readerOf: (version: VersionRecord) => Promise<VersionReader>, log: (line: string) => void) {
    this.#readerOf = readerOf;
    this.#log = log;
  }

  /** The version's partitions, none when its image has no partition table. */
  async partitions(version: VersionRecord): Promise<readonly Partition[]> {
    return (await this.#table(version))?.partitions ?? [];
  }

  /** Partition `number` of the version, or undefined when it has none of that number. */
  async find(version: VersionRecord, number: number): Promise<Partition | undefined> {
    return (await this.partitions(version)).find((p) => p.number === number);
  }

  #table(version: VersionRecord): Promise<PartitionTable | undefined> {
    const cached = this.#tables.get(version.uid);
    if (cached) return cached;
    const table: Promise<PartitionTable | undefined> = this.#reads.run(() => this.#read(version)).catch((err: unknown) => {
      if (this.#tables.get(version.uid) === table) this.#tables.delete(version.uid);
      this.#log(`cannot read the partition table of ${version.image} version ${version.uid}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    });
    this.#tables.set(version.uid, table);
    return table;
  }

  async #read(version: VersionRecord): Promise<PartitionTable | undefined> {
    const reader = await this.#readerOf(version);
    return readPartitionTable(async (offset, length) => {
      const into = Buffer.alloc(length);
      return into.subarray(0, await reader.read(offset, into));
    }, version.size);
  }
}
