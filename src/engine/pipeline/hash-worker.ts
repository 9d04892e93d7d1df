/**
 * Worker-thread side of the hash pool: checks a block for all zeros and digests it in place in
 * shared memory. Runs under piscina; see hash-pool.ts.
 */
import { createHash } from 'node:crypto';
import { DIGEST_ALGORITHM } from '../objects/formats.js';

/** A block in shared memory. */
export interface HashTask {
  readonly memory: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
  /** Skip the digest when the block is all zeros. */
  readonly zeroCheck: boolean;
}

/** `digest` is null for an all-zero block when `zeroCheck` was requested. */
export interface HashResult {
  readonly zero: boolean;
  readonly digest: Uint8Array | null;
}

let zeros = Buffer.alloc(0);

/** Piscina entry point. */
export default function hashBlock(task: HashTask): HashResult {
  const view = Buffer.from(task.memory, task.offset, task.length);
  if (task.zeroCheck) {
    if (zeros.length < task.length) zeros = Buffer.alloc(task.length);
    if (view.equals(zeros.subarray(0, task.length))) return { zero: true, digest: null };
  }
  return { zero: false, digest: createHash(DIGEST_ALGORITHM).update(view).digest() };
}
