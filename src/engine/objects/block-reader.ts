import type { BlockStore } from '../blockstore/block-store.js';
import { decodeObjectHeader } from './object-codec.js';
import { CorruptBlockError } from '../errors.js';
import { OBJECT_HEADER_LENGTH, ObjectKind } from './formats.js';
import type { PooledBuffer } from '../pipeline/buffer-pool.js';
import type { BlockWorkers } from '../pipeline/block-workers.js';
import { StoreKeys } from './store-keys.js';
import { isSealed, type ReadProof, type Transforms } from './object-seal.js';

/** What {@link fetchBlock} needs. */
export interface BlockFetchContext {
  readonly blocks: BlockStore;
  readonly workers: BlockWorkers;
  /** True when the store writes format 2 objects (compressed, encrypted, or checksummed). */
  readonly sealed: boolean;
  /** True when a block's object is its header and plaintext, nothing else: its length is known. */
  readonly plain: boolean;
}

/** The fetch context of a store. */
export function fetchContextOf(store: { readonly blocks: BlockStore; readonly transforms: Transforms; workers(): BlockWorkers }): BlockFetchContext {
  const t = store.transforms;
  return { blocks: store.blocks, workers: store.workers(), sealed: isSealed(t), plain: t.compression === 'none' && t.keys === undefined };
}

/** Options of {@link fetchBlock}. */
export interface FetchOptions {
  /** Leave the block in `buf.payload` (page-aligned, e.g. for O_DIRECT writes). @default false */
  readonly aligned?: boolean;
  readonly signal?: AbortSignal | undefined;
  /** How much to prove (see ReadProof): scrub proves everything, readers the checksum. @default 'full' */
  readonly proof?: ReadProof;
}

const SLOT_HEAD = 4096;

/**
 * Reads a stored block into a pooled buffer and proves it: header, length, and its SHA-256
 * digest, or with `proof: 'checksum'` its CRC where it has one (format 2).
 * The object is read around the page cache (O_DIRECT where possible) into the page-aligned slot,
 * so the payload lands 64 bytes in; with `aligned` it is moved to `buf.payload`.
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
  if (ctx.sealed && ctx.plain) {
    // Header and plaintext, checksummed (or format 1, from an older program): the length is known,
    // so it is read like a format 1 object, around the page cache, and proven in a worker where it
    // lies (or moved to the page-aligned payload when `aligned`).
    const object = await ctx.blocks.get(key, { length: OBJECT_HEADER_LENGTH + length, into: buf.slotView, direct: true, ...signal });
    const objectOffset = buf.payloadOffset - SLOT_HEAD;
    const payloadOffset = options.aligned ? buf.payloadOffset : objectOffset + OBJECT_HEADER_LENGTH;
    await ctx.workers.open(buf, object.length, length, key, digest, what, options.proof ?? 'full', { objectOffset, payloadOffset });
    return Buffer.from(buf.memory, payloadOffset, length);
  }
  if (ctx.sealed) {
    // Its stored length is in its header: the whole object is read, then proven and opened (tag,
    // CRC, length; the digest for unencrypted ones) in a worker, the plaintext landing in payload.
    // Read 64 bytes before the payload: the plaintext then lands before the ciphertext it comes
    // from, and is decrypted in place.
    const object = await ctx.blocks.get(key, { into: buf.sealed, ...signal });
    await ctx.workers.open(buf, object.length, length, key, digest, what, options.proof ?? 'full');
    return buf.payload.subarray(0, length);
  }
  const object = await ctx.blocks.get(key, {
    length: OBJECT_HEADER_LENGTH + length,
    into: buf.slotView,
    direct: true,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const header = decodeObjectHeader(object, what);
  if (header.kind !== ObjectKind.block) throw new CorruptBlockError(`Object of ${what} is not a block`);
  if (header.plainLength !== length) {
    throw new CorruptBlockError(`Object of ${what} holds ${header.plainLength} bytes, the map expects ${length}`);
  }
  if (!header.digest.equals(digest)) throw new CorruptBlockError(`Object of ${what} carries another block's header`);
  let view: Buffer;
  let offset: number;
  if (options.aligned) {
    buf.slotView.copyWithin(SLOT_HEAD, OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + length);
    view = buf.payload.subarray(0, length);
    offset = buf.payloadOffset;
  } else {
    view = buf.slotView.subarray(OBJECT_HEADER_LENGTH, OBJECT_HEADER_LENGTH + length);
    offset = buf.payloadOffset - SLOT_HEAD + OBJECT_HEADER_LENGTH;
  }
  const { digest: actual } = await ctx.workers.hashAt(buf, offset, length);
  if (!actual || !Buffer.from(actual).equals(digest)) {
    throw new CorruptBlockError(`Block ${hex} is corrupt: its data does not match its digest`);
  }
  return view;
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
