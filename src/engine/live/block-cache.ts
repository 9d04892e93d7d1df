import { LRUCache } from 'lru-cache';
import { fetchBlock, type BlockFetchContext } from '../objects/block-reader.js';
import { debug } from '../support/debug.js';
import { blockBuffer, type PooledBuffer } from '../pipeline/buffer-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';

/** Options of {@link BlockCache}. */
export interface BlockCacheOptions {
  /** Bytes of verified blocks kept in memory. @default 256 MiB */
  readonly maxBytes?: number;
  /** Parallel fetches from the block store. @default 8 */
  readonly fetchers?: number;
}

/** A cached block: its verified contents, inside the buffer it was read into. */
interface Entry {
  readonly data: Buffer;
  readonly buf: PooledBuffer;
}

/**
 * An LRU cache of verified block contents, bounded in bytes and shared by every version reader
 * of a process (a block shared by versions is fetched once). Concurrent requests for the same
 * block share one fetch; `prefetch` starts a fetch in the background for read-ahead.
 *
 * A block is read and proven in the very buffer the cache keeps (page-aligned shared memory the
 * workers prove it in), so serving it costs no copy on the main thread.
 *
 * @example
 * const cache = new BlockCache(fetchContextOf(store), { maxBytes: 256 << 20 });
 * const data = await cache.get(digest, length);
 */
export class BlockCache {
  readonly #ctx: BlockFetchContext;
  readonly #lru: LRUCache<string, Entry>;
  readonly #inFlight = new Map<string, Promise<Buffer>>();
  readonly #fetches: Semaphore;
  readonly #maxBytes: number;
  readonly #maxSpare: number;
  /** Buffers of evicted blocks by length, reused for the next fetches: fresh 4 MiB buffers cost page faults. */
  readonly #spare = new Map<number, PooledBuffer[]>();

  constructor(ctx: BlockFetchContext, options: BlockCacheOptions = {}) {
    this.#ctx = ctx;
    this.#maxBytes = options.maxBytes ?? 256 << 20;
    const fetchers = options.fetchers ?? 8;
    this.#fetches = new Semaphore(fetchers);
    this.#maxSpare = fetchers;
    this.#lru = new LRUCache<string, Entry>({
      maxSize: Math.max(1, this.#maxBytes),
      sizeCalculation: (e) => Math.max(1, e.data.length),
      dispose: (e, _key, reason) => {
        if (reason === 'evict') this.#recycle(e.buf);
      },
    });
  }

  /**
   * The verified contents of a block. The buffer belongs to the cache and may be reused once
   * evicted: copy from it before the next await.
   * @param digest the block's digest
   * @param length its length (from its position in the map)
   * @throws {CorruptBlockError} or {ObjectMissingError} when the stored block is bad
   */
  async get(digest: Buffer, length: number): Promise<Buffer> {
    const key = digest.toString('hex');
    const cached = this.#lru.get(key);
    if (cached && cached.data.length === length) return cached.data;
    let fetching = this.#inFlight.get(key);
    if (!fetching) {
      fetching = this.#fetch(key, digest, length).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, fetching);
    }
    return fetching;
  }

  /** The cached contents of a block, or undefined (no fetch). */
  peek(digest: Buffer, length: number): Buffer | undefined {
    const cached = this.#lru.get(digest.toString('hex'));
    return cached && cached.data.length === length ? cached.data : undefined;
  }

  /** Starts fetching a block into the cache unless it is there or on its way; errors are dropped. */
  prefetch(digest: Buffer, length: number): void {
    const key = digest.toString('hex');
    if (this.#lru.has(key) || this.#inFlight.has(key) || length > this.#maxBytes / 4) return;
    this.get(digest, length).catch((err: unknown) => debug(`prefetch of ${key} failed: ${String(err)}`));
  }

  /** Bytes held now. */
  get size(): number {
    return this.#lru.calculatedSize;
  }

  async #fetch(key: string, digest: Buffer, length: number): Promise<Buffer> {
    const entry = await this.#fetches.run(async () => {
      const buf = this.#spare.get(length)?.pop() ?? blockBuffer(length);
      try {
        return { data: await fetchBlock(this.#ctx, digest, length, buf, { proof: 'checksum' }), buf };
      } catch (err) {
        this.#recycle(buf);
        throw err;
      }
    });
    // A block larger than the whole cache is handed out once and left to the garbage collector.
    if (length <= this.#maxBytes) this.#lru.set(key, entry);
    return entry.data;
  }

  #recycle(buf: PooledBuffer): void {
    const list = this.#spare.get(buf.payload.length) ?? [];
    if (list.length < this.#maxSpare) list.push(buf);
    this.#spare.set(buf.payload.length, list);
  }
}
