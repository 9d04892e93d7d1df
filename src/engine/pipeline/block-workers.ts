import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { CorruptBlockError } from '../errors.js';
import { OBJECT_HEADER_LENGTH } from '../objects/formats.js';
import type { ReadProof, Transforms } from '../objects/object-seal.js';
import type { BlockTask, BlockTaskResult, HashResult } from './block-worker.js';
import type { PooledBuffer } from './buffer-pool.js';

/**
 * Worker threads that do the CPU work of every block in shared memory (zero check and naming
 * digest; compression and encryption; proving and opening stored objects), so that it runs on
 * every core while the main thread keeps the I/O going.
 *
 * @example
 * const workers = new BlockWorkers(2, transforms);
 * const { zero, digest } = await workers.hash(buf, length);
 */
export class BlockWorkers {
  readonly #piscina: Piscina<BlockTask, BlockTaskResult>;
  readonly #transforms: Transforms;
  /** Settle once each worker has loaded its code (or died). */
  readonly #loaded: Promise<void>[];

  /**
   * @param threads worker threads to run
   * @param transforms how the store's objects are made (keys included, for encrypted stores)
   */
  constructor(threads: number, transforms: Transforms) {
    this.#transforms = transforms;
    // Under the test runner the engine runs from TypeScript sources; workers then need a loader.
    const fromSource = import.meta.url.endsWith('.ts');
    this.#piscina = new Piscina<BlockTask, BlockTaskResult>({
      filename: new URL(fromSource ? './block-worker.ts' : './block-worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 30_000,
      ...(fromSource ? { execArgv: ['--import', 'tsx'] } : {}),
    });
    this.#loaded = this.#piscina.threads.map(loaded);
  }

  /**
   * Checks the first `length` bytes of a pooled buffer for zeros and names them.
   * @param buf the buffer (read in place, not copied)
   * @param length bytes of the block
   * @param zeroCheck return `{ zero: true, digest: null }` for an all-zero block
   */
  async hash(buf: PooledBuffer, length: number, zeroCheck = true): Promise<HashResult> {
    return (await this.#piscina.run({ op: 'hash', memory: buf.memory, offset: buf.payloadOffset, length, zeroCheck, transforms: this.#transforms })) as HashResult;
  }

  /**
   * Turns the block in `buf.payload` into its stored object (compressed, encrypted), written over
   * `buf.sealed` from its start; the plaintext is gone afterwards.
   * @returns the object's length (header included)
   */
  async seal(buf: PooledBuffer, length: number, key: string, id: Uint8Array): Promise<number> {
    const result = await this.#piscina.run({
      op: 'seal',
      memory: buf.memory,
      payloadOffset: buf.payloadOffset,
      length,
      objectOffset: buf.payloadOffset - OBJECT_HEADER_LENGTH,
      capacity: buf.sealed.length,
      key,
      id,
      transforms: this.#transforms,
    });
    if ('failed' in result) throw new RangeError(result.failed);
    return OBJECT_HEADER_LENGTH + (result as { storedLength: number }).storedLength;
  }

  /**
   * Proves a stored object that was read into `buf.sealed` (from its start) and puts its
   * plaintext into `buf.payload`, or both elsewhere in the buffer's memory.
   * @param proof how much to prove
   * @param at where the object is and where its plaintext goes, as offsets in `buf.memory`
   * @throws {CorruptBlockError} when it does not check out
   */
  async open(
    buf: PooledBuffer,
    objectLength: number,
    length: number,
    key: string,
    id: Uint8Array,
    what: string,
    proof: ReadProof,
    at: { objectOffset: number; payloadOffset: number } = { objectOffset: buf.sealed.byteOffset, payloadOffset: buf.payloadOffset },
  ): Promise<void> {
    const result = await this.#piscina.run({
      op: 'open',
      memory: buf.memory,
      objectOffset: at.objectOffset,
      objectLength,
      payloadOffset: at.payloadOffset,
      length,
      key,
      id,
      what,
      transforms: this.#transforms,
      proof,
    });
    if ('failed' in result) throw new CorruptBlockError(result.failed);
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
