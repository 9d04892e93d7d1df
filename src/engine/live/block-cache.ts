import { LRUCache } from 'lru-cache';
import { fetchBlock, type BlockFetchContext } from '../objects/block-reader.js';
import { debug } from '../support/debug.js';
import { BufferPool } from '../pipeline/buffer-pool.js';
import { Semaphore } from '../pipeline/semaphore.js';

/** Options of {@link BlockCache}. */
export interface BlockCacheOptions {
  /** Bytes of verified blocks kept in memory. @default 256 MiB */
  readonly maxBytes?: number;
  /** Parallel fetches from the block store. @default 8 */
  readonly fetchers?: number;
  /** Largest block size served; fetch buffers are sized for it. @default 4 MiB */
  readonly maxBlockSize?: number;
}

/**
 * An LRU cache of verified block contents, bounded in bytes and shared by every version reader
 * of a process (a block shared by versions is fetched once). Concurrent requests for the same
 * block share one fetch; `prefetch` starts a fetch in the background for read-ahead.
 *
 * @example
 * const cache = new BlockCache(fetchContextOf(store), { maxBytes: 256 << 20 });
 * const data = await cache.get(digest, length);
 */
export class BlockCache {
  readonly #ctx: BlockFetchContext;
  readonly #lru: LRUCache<string, Buffer>;
  readonly #inFlight = new Map<string, Promise<Buffer>>();
  readonly #fetches: Semaphore;
  readonly #pool: BufferPool;
  readonly #maxBytes: number;
  /** Evicted buffers by length, reused for the next fetch: fresh 4 MiB allocations cost page faults. */
  readonly #spare = new Map<number, Buffer[]>();

  constructor(ctx: BlockFetchContext, options: BlockCacheOptions = {}) {
    this.#ctx = ctx;
    this.#maxBytes = options.maxBytes ?? 256 << 20;
    const fetchers = options.fetchers ?? 8;
    this.#fetches = new Semaphore(fetchers);
    this.#pool = new BufferPool(options.maxBlockSize ?? 4 << 20, fetchers);
    this.#lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, this.#maxBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
      dispose: (b, _key, reason) => {
        if (reason !== 'evict') return;
        const list = this.#spare.get(b.length) ?? [];
        if (list.length < 4) list.push(b);
        this.#spare.set(b.length, list);
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
    if (cached && cached.length === length) return cached;
    let fetching = this.#inFlight.get(key);
    if (!fetching) {
      fetching = this.#fetch(digest, length).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, fetching);
    }
    return fetching;
  }

  /** The cached contents of a block, or undefined (no fetch). */
  peek(digest: Buffer, length: number): Buffer | undefined {
    const cached = this.#lru.get(digest.toString('hex'));
    return cached && cached.length === length ? cached : undefined;
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

  async #fetch(digest: Buffer, length: number): Promise<Buffer> {
    const data = await this.#fetches.run(async () => {
      const buf = await this.#pool.acquire();
      try {
        const view = await fetchBlock(this.#ctx, digest, length, buf);
        const data = this.#spare.get(length)?.pop() ?? Buffer.allocUnsafeSlow(length);
        view.copy(data);
        return data;
      } finally {
        this.#pool.release(buf);
      }
    });
    if (length <= this.#maxBytes) this.#lru.set(digest.toString('hex'), data);
    return data;
  }
}
