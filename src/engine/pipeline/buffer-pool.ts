import { OBJECT_HEADER_LENGTH } from '../objects/formats.js';
import { throwIfAborted } from '../errors.js';

const PAGE = 4096;
const WASM_PAGE = 65536;

/**
 * A zero-filled, page-aligned buffer (WebAssembly memory is page-aligned), as O_DIRECT I/O needs.
 * @param length bytes
 */
export function alignedBuffer(length: number): Buffer {
  const pages = Math.max(1, Math.ceil(length / WASM_PAGE));
  return Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, length);
}

/** Bytes per slot: a page before the payload (object header, O_DIRECT alignment) and one after (sealing overhead). */
function slotStride(blockSize: number): number {
  return Math.ceil((blockSize + 2 * PAGE) / PAGE) * PAGE;
}

/** Page-aligned memory that worker threads can share (a shared WebAssembly memory). */
function sharedPages(bytes: number): SharedArrayBuffer {
  const pages = Math.ceil(bytes / WASM_PAGE);
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as SharedArrayBuffer;
}

function slotAt(memory: SharedArrayBuffer, slot: number, stride: number, blockSize: number): PooledBuffer {
  const payloadOffset = slot * stride + PAGE;
  return {
    slot,
    payload: Buffer.from(memory, payloadOffset, blockSize),
    object: Buffer.from(memory, payloadOffset - OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + blockSize),
    sealed: Buffer.from(memory, payloadOffset - OBJECT_HEADER_LENGTH, stride - PAGE + OBJECT_HEADER_LENGTH),
    slotView: Buffer.from(memory, payloadOffset - PAGE, stride),
    memory,
    payloadOffset,
  };
}

/**
 * One block buffer laid out like a pool's, in memory of its own: for a buffer that outlives a
 * pipeline step (a block cache keeps the buffer a block was read into).
 * @param blockSize bytes of payload
 */
export function blockBuffer(blockSize: number): PooledBuffer {
  const stride = slotStride(blockSize);
  return slotAt(sharedPages(stride), 0, stride, blockSize);
}

/** One reusable block buffer of a {@link BufferPool}. */
export interface PooledBuffer {
  readonly slot: number;
  /** Page-aligned view of `blockSize` bytes for the block's plaintext. */
  readonly payload: Buffer;
  /** View of the object-header room (64 bytes) followed by the payload. */
  readonly object: Buffer;
  /**
   * View of the header room, the payload and a tail page: where a block's stored object is made
   * (compressed, encrypted objects may be a little larger than the plaintext).
   */
  readonly sealed: Buffer;
  /** Page-aligned view of the whole slot (4 KiB before the payload, the payload, a tail page), for O_DIRECT and object reads. */
  readonly slotView: Buffer;
  /** Shared memory behind the views, to hand to worker threads without copying. */
  readonly memory: SharedArrayBuffer;
  /** Byte offset of `payload` in `memory`. */
  readonly payloadOffset: number;
}

/**
 * A fixed set of page-aligned block buffers in one shared memory slab.
 *
 * Page alignment makes kernel copies into them several times faster than into ordinary Node
 * buffers; sharing lets hash workers read them without transfer; reuse avoids the page faults of
 * fresh 4 MiB allocations. `acquire` waits while all buffers are in use, which bounds the memory of
 * every pipeline. Each slot holds `OBJECT_HEADER_LENGTH` bytes of header room right before its
 * payload so a whole stored object can be read with one call.
 *
 * @example
 * const pool = new BufferPool(4 << 20, 16);
 * const buf = await pool.acquire();
 * try { ... } finally { pool.release(buf); }
 */
export class BufferPool {
  readonly blockSize: number;
  readonly size: number;
  readonly #memory: SharedArrayBuffer;
  readonly #free: PooledBuffer[] = [];
  readonly #waiters: Array<(buf: PooledBuffer) => void> = [];

  /**
   * @param blockSize bytes per buffer
   * @param count number of buffers
   */
  constructor(blockSize: number, count: number) {
    if (count < 1) throw new RangeError('A buffer pool needs at least one buffer');
    this.blockSize = blockSize;
    this.size = count;
    const stride = slotStride(blockSize);
    this.#memory = sharedPages(stride * count);
    for (let slot = 0; slot < count; slot++) this.#free.push(slotAt(this.#memory, slot, stride, blockSize));
    this.#free.reverse();
  }

  /** Buffers not in use right now. */
  get available(): number {
    return this.#free.length;
  }

  /**
   * Takes a buffer, waiting until one is free.
   * @throws {InterruptedError} when `signal` is aborted while waiting
   */
  async acquire(signal?: AbortSignal): Promise<PooledBuffer> {
    throwIfAborted(signal);
    const buf = this.#free.pop();
    if (buf) return buf;
    return new Promise<PooledBuffer>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        try {
          throwIfAborted(signal);
        } catch (err) {
          reject(err);
        }
      };
      const grant = (b: PooledBuffer) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(b);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(grant);
    });
  }

  /** Returns a buffer taken with `acquire`. */
  release(buf: PooledBuffer): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(buf);
    else this.#free.push(buf);
  }
}
