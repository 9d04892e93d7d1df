/**
 * Worker-thread side of the block workers (see block-workers.ts): everything per block that
 * costs CPU, done in place in shared memory so the main thread only moves bytes. `hash` checks a
 * block for zeros and names it; `seal` turns a block into its stored object (compressed,
 * encrypted); `open` proves a stored object and puts its plaintext in place.
 */
import { DIGEST_LENGTH, OBJECT_HEADER_LENGTH, ObjectKind } from '../objects/formats.js';
import { objectId, openObject, sealObjectInto, sealedCapacity, type ReadProof, type Transforms } from '../objects/object-seal.js';

/** Zero-check and name a block in shared memory. */
export interface HashTask {
  readonly op: 'hash';
  readonly memory: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
  /** Skip the digest when the block is all zeros. */
  readonly zeroCheck: boolean;
  readonly transforms: Transforms;
}

/** Make the stored object of the block at `payloadOffset`: written from `objectOffset` on. */
export interface SealTask {
  readonly op: 'seal';
  readonly memory: SharedArrayBuffer;
  readonly payloadOffset: number;
  readonly length: number;
  readonly objectOffset: number;
  /** Bytes available from objectOffset. */
  readonly capacity: number;
  readonly key: string;
  readonly id: Uint8Array;
  readonly transforms: Transforms;
}

/** Prove the stored object at `objectOffset` and put its plaintext at `payloadOffset`. */
export interface OpenTask {
  readonly op: 'open';
  readonly memory: SharedArrayBuffer;
  readonly objectOffset: number;
  readonly objectLength: number;
  readonly payloadOffset: number;
  /** The plaintext length the map expects. */
  readonly length: number;
  readonly key: string;
  readonly id: Uint8Array;
  readonly what: string;
  readonly transforms: Transforms;
  readonly proof: ReadProof;
}

export type BlockTask = HashTask | SealTask | OpenTask;

/** `digest` is null for an all-zero block when `zeroCheck` was requested. */
export interface HashResult {
  readonly zero: boolean;
  readonly digest: Uint8Array | null;
}

/** Errors do not keep their codes across threads: a failed seal or open says why in a result. */
export type BlockTaskResult = HashResult | { readonly storedLength: number } | { readonly opened: true } | { readonly failed: string };

let zeros = Buffer.alloc(0);

/** Piscina entry point. */
export default function runBlockTask(task: BlockTask): BlockTaskResult {
  switch (task.op) {
    case 'hash':
      return hash(task);
    case 'seal':
      return seal(task);
    case 'open':
      return open(task);
  }
}

function hash(task: HashTask): HashResult {
  const view = Buffer.from(task.memory, task.offset, task.length);
  if (task.zeroCheck) {
    if (zeros.length < task.length) zeros = Buffer.alloc(task.length);
    if (view.equals(zeros.subarray(0, task.length))) return { zero: true, digest: null };
  }
  return { zero: false, digest: objectId(task.transforms, view) };
}

function seal(task: SealTask): BlockTaskResult {
  const plaintext = Buffer.from(task.memory, task.payloadOffset, task.length);
  const id = Buffer.from(task.id.buffer, task.id.byteOffset, DIGEST_LENGTH);
  const needed = sealedCapacity(task.transforms, task.length);
  if (needed > task.capacity) return { failed: `a sealed block of up to ${needed} bytes does not fit its buffer of ${task.capacity}` };
  // Sealed in place: the object overwrites the plaintext it came from.
  const total = sealObjectInto(task.transforms, ObjectKind.block, task.key, id, plaintext, Buffer.from(task.memory, task.objectOffset, task.capacity));
  return { storedLength: total - OBJECT_HEADER_LENGTH };
}

function open(task: OpenTask): BlockTaskResult {
  const object = Buffer.from(task.memory, task.objectOffset, task.objectLength);
  const id = Buffer.from(task.id.buffer, task.id.byteOffset, DIGEST_LENGTH);
  try {
    // Opened in place: the plaintext lands at the start of the slot, over what was read.
    const plaintext = openObject(task.transforms, ObjectKind.block, task.key, id, object, task.what, Buffer.from(task.memory, task.payloadOffset, task.length), task.proof);
    if (plaintext.length !== task.length) return { failed: `Object ${task.what} holds ${plaintext.length} bytes, the map expects ${task.length}` };
    return { opened: true };
  } catch (err) {
    return { failed: err instanceof Error ? err.message : String(err) };
  }
}
