import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { HashResult, HashTask } from './hash-worker.js';
import type { PooledBuffer } from './buffer-pool.js';

/**
 * Worker threads that zero-check and digest blocks in shared memory, so that hashing runs on
 * every core while the main thread keeps the I/O going.
 *
 * @example
 * const pool = new HashPool(2);
 * const { zero, digest } = await pool.hash(buf, length);
 */
export class HashPool {
  readonly #piscina: Piscina<HashTask, HashResult>;
  /** Settle once each worker has loaded its code (or died). */
  readonly #loaded: Promise<void>[];

  /** @param threads worker threads to run */
  constructor(threads: number) {
    // Under the test runner the engine runs from TypeScript sources; workers then need a loader.
    const fromSource = import.meta.url.endsWith('.ts');
    this.#piscina = new Piscina<HashTask, HashResult>({
      filename: new URL(fromSource ? './hash-worker.ts' : './hash-worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 30_000,
      ...(fromSource ? { execArgv: ['--import', 'tsx'] } : {}),
    });
    this.#loaded = this.#piscina.threads.map(loaded);
  }

  /**
   * Digests the first `length` bytes of a pooled buffer.
   * @param buf the buffer (read in place, not copied)
   * @param length bytes of the block
   * @param zeroCheck return `{ zero: true, digest: null }` for an all-zero block
   */
  async hash(buf: PooledBuffer, length: number, zeroCheck = true): Promise<HashResult> {
    return this.#piscina.run({ memory: buf.memory, offset: buf.payloadOffset, length, zeroCheck });
  }

  /**
   * Digests bytes anywhere in a pooled buffer's shared memory.
   * @param buf the buffer whose memory holds the bytes
   * @param offset byte offset in that memory
   */
  async hashAt(buf: PooledBuffer, offset: number, length: number, zeroCheck = false): Promise<HashResult> {
    return this.#piscina.run({ memory: buf.memory, offset, length, zeroCheck });
  }

  /**
   * Stops the worker threads. Terminating a worker that is still loading its modules aborts the
   * whole process (a V8 fatal error, exit status 134, seen after short backups), so this waits
   * until every worker has loaded first.
   */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.#loaded), new Promise((resolve) => (timer = setTimeout(resolve, LOAD_TIMEOUT_MS)))]);
    clearTimeout(timer);
    await this.#piscina.destroy();
  }
}

/** How long close waits for a worker that never reports ready (it then terminates it anyway). */
const LOAD_TIMEOUT_MS = 30_000;

/** The message piscina's worker posts once it has loaded the task module. */
const WORKER_READY = '_WORKER_READY';

function loaded(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      worker.off('message', onMessage);
      worker.off('exit', done);
      worker.off('error', done);
      resolve();
    };
    const onMessage = (message: unknown) => {
      if (typeof message === 'object' && message !== null && WORKER_READY in message) done();
    };
    worker.on('message', onMessage);
    worker.once('exit', done);
    worker.once('error', done);
  });
}
