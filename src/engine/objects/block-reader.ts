import type { BlockStore } from '../blockstore/block-store.js';
import { OBJECT_HEADER_LENGTH } from './formats.js';
import type { PooledBuffer } from '../pipeline/buffer-pool.js';
import type { BlockWorkers } from '../pipeline/block-workers.js';
import { StoreKeys } from './store-keys.js';
import { hasPlainPayload, type ReadProof, type Transforms } from './object-seal.js';

/** What {@link fetchBlock} needs. */
export interface BlockFetchContext {
  readonly blocks: BlockStore;
  readonly workers: BlockWorkers;
  /** True when a block's object is its header and plaintext, nothing else (neither compressed nor encrypted): its length is known. */
  readonly plain: boolean;
}

/** The fetch context of a store. */
export function fetchContextOf(store: { readonly blocks: BlockStore; readonly transforms: Transforms; workers(): BlockWorkers }): BlockFetchContext {
  return { blocks: store.blocks, workers: store.workers(), plain: hasPlainPayload(store.transforms) };
}

/** Options of {@link fetchBlock}. */
export interface FetchOptions {
  /** Leave the block in `buf.payload` (page-aligned, e.g. for O_DIRECT writes). @default false */
  readonly aligned?: boolean;
  readonly signal?: AbortSignal | undefined;
  /** How much to prove (see ReadProof): scrub proves everything, readers the checksum. @default 'full' */
  readonly proof?: ReadProof;
}

/**
 * Reads a stored block into a pooled buffer and proves it in a block worker: header, length, and
 * its naming digest (or tag), or with `proof: 'checksum'` its CRC where it has one (format 2).
 * An object with a plain payload is read around the page cache (O_DIRECT where possible) into the
 * page-aligned slot, so the payload lands 64 bytes in, and with `aligned` it is moved to
 * `buf.payload`; a compressed or encrypted one is read whole and opened into `buf.payload`.
 * @param ctx block store and hash workers
 * @param digest the block's digest (its key)
 * @param length the block's plaintext length (from its position in the map)
 * @param buf pooled buffer to read into
 * @returns a view of the verified block inside `buf`
 * @throws {ObjectMissingError} when the object is missing
 * @throws {CorruptBlockError} when it is truncated, malformed or does not match its digest
 */
export async function fetchBlock(ctx: BlockFetchContext, digest: Buffer, length: number, buf: PooledBuffer, options: FetchOptions = {}): Promise<Buffer> {
  const hex = digest.toString('hex');
  const what = `block ${hex}`;
  const key = StoreKeys.block(digest);
  const signal = options.signal ? { signal: options.signal } : {};
  const proof = options.proof ?? 'full';
  if (ctx.plain) {
    // Header and plaintext (format 1, or format 2 with its CRC): the length is known, so it is read
    // around the page cache into the page-aligned slot and proven in a worker where it lies (or
    // moved to the page-aligned payload when `aligned`). Format 1 objects have their digest
    // re-derived whatever the proof asked.
    const object = await ctx.blocks.get(key, { length: OBJECT_HEADER_LENGTH + length, into: buf.slotView, direct: true, ...signal });
    const objectOffset = buf.slotView.byteOffset;
    const payloadOffset = options.aligned ? buf.payloadOffset : objectOffset + OBJECT_HEADER_LENGTH;
    await ctx.workers.open(buf, object.length, length, key, digest, what, proof, { objectOffset, payloadOffset });
    return Buffer.from(buf.memory, payloadOffset, length);
  }
  // Compressed or encrypted: its stored length is in its header. The whole object is read, then
  // proven and opened (tag, CRC, length; the digest for unencrypted ones) in a worker, the
  // plaintext landing in payload. Read 64 bytes before the payload: the plaintext then lands
  // before the ciphertext it comes from, and is decrypted in place.
  const object = await ctx.blocks.get(key, { into: buf.sealed, ...signal });
  await ctx.workers.open(buf, object.length, length, key, digest, what, proof);
  return buf.payload.subarray(0, length);
}

const probes = new WeakMap<BlockStore, { at: number; done: Promise<void> }>();

/**
 * Decides, after an object could not be read, whether it is a bad block (the caller reports it
 * and goes on) or the store is gone (an unmounted disk, S3 down: this throws, and the operation
 * stops instead of reporting every block as bad). One probe serves the failures of a second.
 * @throws {StoreUnavailableError} when the store as a whole cannot be reached
 */
export async function confirmBadBlock(blocks: BlockStore): Promise<void> {
  const now = Date.now();
  let probe = probes.get(blocks);
  if (!probe || now - probe.at > 1000) {
    probe = { at: now, done: blocks.probe() };
    probes.set(blocks, probe);
  }
  await probe.done;
}
