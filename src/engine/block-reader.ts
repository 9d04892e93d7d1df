import type { BlockStore } from './blockstore/block-store.js';
import { decodeObjectHeader } from './blockstore/object-codec.js';
import { CorruptBlockError } from './errors.js';
import { OBJECT_HEADER_LENGTH, ObjectKeys, ObjectKind } from './formats.js';
import type { PooledBuffer } from './pipeline/buffer-pool.js';
import type { HashPool } from './pipeline/hash-pool.js';

/** What {@link fetchBlock} needs. */
export interface BlockFetchContext {
  readonly blocks: BlockStore;
  readonly hasher: HashPool;
}

/**
 * Reads a stored block into `buf.payload` and proves it: header, length and SHA-256 digest.
 * @param ctx block store and hash workers
 * @param digest the block's digest (its key)
 * @param length the block's plaintext length (from its position in the map)
 * @param buf pooled buffer to read into
 * @throws {ObjectMissingError} when the object is missing
 * @throws {CorruptBlockError} when it is truncated, malformed or does not match its digest
 */
export async function fetchBlock(ctx: BlockFetchContext, digest: Buffer, length: number, buf: PooledBuffer, signal?: AbortSignal): Promise<void> {
  const hex = digest.toString('hex');
  const what = `block ${hex}`;
  const object = await ctx.blocks.get(ObjectKeys.block(hex), {
    length: OBJECT_HEADER_LENGTH + length,
    into: buf.object,
    ...(signal ? { signal } : {}),
  });
  const header = decodeObjectHeader(object, what);
  if (header.kind !== ObjectKind.block) throw new CorruptBlockError(`Object of ${what} is not a block`);
  if (header.plainLength !== length) {
    throw new CorruptBlockError(`Object of ${what} holds ${header.plainLength} bytes, the map expects ${length}`);
  }
  if (!header.digest.equals(digest)) throw new CorruptBlockError(`Object of ${what} carries another block's header`);
  const { digest: actual } = await ctx.hasher.hash(buf, length, false);
  if (!actual || !Buffer.from(actual).equals(digest)) {
    throw new CorruptBlockError(`Block ${hex} is corrupt: its data does not match its digest`);
  }
}
