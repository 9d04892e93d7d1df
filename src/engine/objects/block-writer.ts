import { LRUCache } from 'lru-cache';
import type { BlockStore } from '../blockstore/block-store.js';
import { encodeObjectHeader } from './object-codec.js';
import { BlockState, type BlockIndex } from '../catalog/catalog.js';
import { throwIfAborted } from '../errors.js';
import { OBJECT_HEADER_LENGTH, ObjectKind } from './formats.js';
import type { BlockWorkers } from '../pipeline/block-workers.js';
import type { PooledBuffer } from '../pipeline/buffer-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';
import { StoreKeys } from './store-keys.js';
import { isSealed, type Transforms } from './object-seal.js';

/** How many stored blocks are registered in the catalog per transaction. */
const REGISTER_BATCH = 64;

/** Options of {@link BlockWriter}. */
export interface BlockWriterOptions {
  /** Parallel puts to the block store. @default 8 */
  readonly writers?: number;
  readonly signal?: AbortSignal;
  /**
   * Workers that seal blocks (compress, encrypt) before they are stored; without them blocks are
   * stored as they are (plaintext stores).
   */
  readonly sealer?: BlockWorkers | undefined;
}

/**
 * A block writer for a store: sealing in its workers when the store compresses or encrypts.
 * @param store the open store
 */
export function blockWriterFor(
  store: { readonly catalog: BlockIndex; readonly blocks: BlockStore; readonly transforms: Transforms; workers(): BlockWorkers },
  options: Omit<BlockWriterOptions, 'sealer'> = {},
): BlockWriter {
  return new BlockWriter(store.catalog, store.blocks, { ...options, sealer: isSealed(store.transforms) ? store.workers() : undefined });
}

/**
 * Stores blocks with deduplication: a block whose digest the store already holds (valid) is
 * only marked as referenced; any other is written, durably, and then registered in the catalog.
 * Used by backups and copy-on-write commits.
 *
 * @example
 * const writer = new BlockWriter(catalog, blocks);
 * const written = await writer.store(digest, buf, length);
 * await writer.flush(); // before publishing anything that refers to the blocks
 */
export class BlockWriter {
  readonly #catalog: BlockIndex;
  readonly #blocks: BlockStore;
  readonly #puts: Semaphore;
  readonly #signal: AbortSignal | undefined;
  readonly #sealer: BlockWorkers | undefined;
  readonly #inFlight = new Map<string, Promise<boolean>>();
  /** Digests known stored and referenced during this run, to skip catalog lookups. */
  readonly #recent = new LRUCache<string, true>({ max: 65536 });
  #pending: { digest: Uint8Array; length: number; storedLength: number }[] = [];
  #bytesStored = 0;

  constructor(catalog: BlockIndex, blocks: BlockStore, options: BlockWriterOptions = {}) {
    this.#catalog = catalog;
    this.#blocks = blocks;
    this.#puts = new Semaphore(options.writers ?? 8);
    this.#signal = options.signal;
    this.#sealer = options.sealer;
  }

  /**
   * Makes sure the block with `digest` is stored.
   * @param digest the block's naming digest (the store's: BLAKE3 or SHA-256)
   * @param buf pooled buffer holding the block's plaintext in `payload`; its header room is used
   * @param length block length in bytes
   * @returns true when the block was written, false when it was already stored
   */
  async store(digest: Uint8Array, buf: PooledBuffer, length: number): Promise<boolean> {
    const hex = Buffer.from(digest).toString('hex');
    // Identical blocks in flight at once are stored by the first; the others wait for it.
    const inFlight = this.#inFlight.get(hex);
    if (inFlight) {
      await inFlight;
      return false;
    }
    if (this.#recent.has(hex)) return false;
    const storing = this.#ensureStored(digest, buf, length);
    this.#inFlight.set(hex, storing);
    try {
      const written = await storing;
      this.#recent.set(hex, true);
      return written;
    } finally {
      this.#inFlight.delete(hex);
    }
  }

  async #ensureStored(digest: Uint8Array, buf: PooledBuffer, length: number): Promise<boolean> {
    const state = await this.#catalog.touchBlock(digest);
    if (state === BlockState.valid) return false;
    if (state === BlockState.deleting) await this.#waitForCleanup(digest);
    await this.#write(digest, buf, length);
    // A block a scrub found bad is good again: drop its marker (a leftover one only makes a
    // rebuilt catalog re-store the block once more).
    if (state === BlockState.invalid) await this.#blocks.delete(StoreKeys.invalidMarker(digest)).catch(() => undefined);
    return true;
  }

  /**
   * A cleanup is deleting this very block: writing it now could be undone by the cleanup's
   * delete. Wait until the cleanup has forgotten it, or take it over once no cleanup runs.
   */
  async #waitForCleanup(digest: Uint8Array): Promise<void> {
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      throwIfAborted(this.#signal);
      const state = await this.#catalog.takeOverDeleting(digest);
      if (state !== 'busy') return;
      const known = await this.#catalog.getBlock(digest);
      if (!known || known.state !== BlockState.deleting) return;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Bytes this writer put into the block store for the blocks it wrote: after compression and encryption, without headers. */
  get bytesStored(): number {
    return this.#bytesStored;
  }

  /** Registers every written block in the catalog; call before publishing a map that uses them. */
  async flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    await this.#catalog.registerBlocks(batch);
  }

  async #write(digest: Uint8Array, buf: PooledBuffer, length: number): Promise<void> {
    const key = StoreKeys.block(digest);
    let object: Buffer;
    if (this.#sealer) {
      // Compressed and encrypted in a worker, in place: the plaintext is gone after this.
      object = buf.sealed.subarray(0, await this.#sealer.seal(buf, length, key, digest));
    } else {
      buf.object.set(encodeObjectHeader(ObjectKind.block, digest, length), 0);
      object = buf.object.subarray(0, OBJECT_HEADER_LENGTH + length);
    }
    await this.#puts.run(() => this.#blocks.put(key, [object], { ...(this.#signal ? { signal: this.#signal } : {}) }));
    this.#pending.push({ digest: Buffer.from(digest), length, storedLength: object.length - OBJECT_HEADER_LENGTH });
    this.#bytesStored += object.length - OBJECT_HEADER_LENGTH;
    if (this.#pending.length >= REGISTER_BATCH) await this.flush();
  }
}

/** What storing a version's blocks did, in bytes unless named blocks (backups and commits alike). */
export interface WriteCounters {
  /** Read from the source (or a copy-on-write spill file). */
  bytesRead: number;
  /** Payload written to the block store: new blocks. */
  bytesWritten: number;
  /** Non-zero blocks read but stored already (in the base or anywhere in the store). */
  bytesDeduplicated: number;
  /** All-zero blocks: neither stored nor referenced. */
  bytesSparse: number;
  /** Taken over from the base without reading (hints, untouched blocks). */
  bytesSkipped: number;
  blocksRead: number;
  blocksWritten: number;
}

/** Counters at zero. */
export function newWriteCounters(): WriteCounters {
  return { bytesRead: 0, bytesWritten: 0, bytesDeduplicated: 0, bytesSparse: 0, bytesSkipped: 0, blocksRead: 0, blocksWritten: 0 };
}

/**
 * The one block-storing step of every write path: a hashed block becomes a map entry. All-zero
 * blocks are sparse; a block equal to what the base already has (`unchanged`) is only counted;
 * any other goes to the writer, which deduplicates.
 * @param writer stores the block
 * @param block the hash result of the block in `buf`
 * @param buf pooled buffer with the block's plaintext in `payload`
 * @param length block length in bytes
 * @param counters updated
 * @param unchanged true when the base's entry for this block is this very digest (and good)
 * @returns the map entry: the digest, or null for a sparse block
 */
export async function storeHashedBlock(
  writer: BlockWriter,
  block: { readonly zero: boolean; readonly digest: Uint8Array | null },
  buf: PooledBuffer,
  length: number,
  counters: WriteCounters,
  unchanged = false,
): Promise<Uint8Array | null> {
  if (block.zero || block.digest === null) {
    counters.bytesSparse += length;
    return null;
  }
  if (!unchanged && (await writer.store(block.digest, buf, length))) {
    counters.bytesWritten += length;
    counters.blocksWritten++;
  } else {
    counters.bytesDeduplicated += length;
  }
  return block.digest;
}
