import { isBadBlock } from '../errors.js';
import { encodeSegment, noteDataEntries, saveSegment, segmentCount, segmentLength, type BlockMap, type MapStorage } from './block-map.js';
import { DIGEST_LENGTH, SEGMENT_ENTRIES, SPARSE_ENTRY } from './formats.js';

interface OpenSegment {
  readonly entries: Buffer;
  pending: number;
}

/**
 * Builds a new version's block map segment by segment, in any order of block completion.
 *
 * A segment is opened with its known entries (e.g. from the base version) and the number of
 * entries still to come; once the last arrives it is encoded and saved, so only the segments
 * with blocks in flight are held in memory. Unchanged segments are reused by digest without
 * being loaded at all.
 *
 * @example
 * const writer = new BlockMapWriter(storage, blocks);
 * writer.open(0, null, 2); writer.set(0, digest); writer.set(1, null);
 * const segments = await writer.finish();
 */
export class BlockMapWriter {
  readonly blocks: number;
  readonly #storage: MapStorage;
  readonly #digests: (Buffer | undefined)[];
  readonly #open = new Map<number, OpenSegment>();
  readonly #saving = new Set<Promise<void>>();
  readonly #saved = new Set<string>();
  #error: unknown;

  constructor(storage: MapStorage, blocks: number) {
    this.#storage = storage;
    this.blocks = blocks;
    this.#digests = new Array<Buffer | undefined>(segmentCount(blocks));
  }

  /** Segments held in memory right now. */
  get openSegments(): number {
    return this.#open.size;
  }

  /** Takes over segment `k` unchanged. */
  reuse(k: number, digest: Buffer): void {
    this.#digests[k] = digest;
  }

  /**
   * Opens segment `k`.
   * @param initial entries to start from (copied), or null for all sparse
   * @param pending how many entries will still be set with {@link set}
   */
  open(k: number, initial: Buffer | null, pending: number): void {
    const length = segmentLength(k, this.blocks) * DIGEST_LENGTH;
    const entries = Buffer.alloc(length);
    if (initial) initial.copy(entries, 0, 0, length);
    const segment = { entries, pending };
    this.#open.set(k, segment);
    if (pending === 0) this.#seal(k, segment);
  }

  /** Sets the entry of block `i`: its digest, or null when sparse. */
  set(i: number, digest: Uint8Array | null): void {
    const k = Math.floor(i / SEGMENT_ENTRIES);
    const segment = this.#open.get(k);
    if (!segment || segment.pending <= 0) throw new RangeError(`Block ${i} is not pending in the map`);
    segment.entries.set(digest ?? SPARSE_ENTRY, (i % SEGMENT_ENTRIES) * DIGEST_LENGTH);
    segment.pending--;
    if (segment.pending === 0) this.#seal(k, segment);
  }

  /**
   * Waits until every segment is saved.
   * @returns the segment digests in order
   * @throws the first error of saving a segment, or RangeError when a segment is incomplete
   */
  async finish(): Promise<Buffer[]> {
    while (this.#saving.size > 0) await Promise.allSettled([...this.#saving]);
    if (this.#error !== undefined) throw this.#error;
    const missing = this.#digests.findIndex((d) => d === undefined);
    if (missing >= 0 || this.#digests.length !== segmentCount(this.blocks)) {
      throw new RangeError(`Block map segment ${missing} is incomplete`);
    }
    return this.#digests as Buffer[];
  }

  #seal(k: number, segment: OpenSegment): void {
    this.#open.delete(k);
    const encoded = encodeSegment(segment.entries, this.#storage.transforms);
    this.#digests[k] = encoded.digest;
    // The version's allocated bytes are counted from its segments when it is published.
    noteDataEntries(encoded.digest, segment.entries);
    // Identical segments (e.g. all sparse) are saved once per run.
    const hex = encoded.digest.toString('hex');
    if (this.#saved.has(hex)) return;
    this.#saved.add(hex);
    const saving: Promise<void> = saveSegment(this.#storage, encoded)
      .catch((err: unknown) => {
        this.#error ??= err;
      })
      .finally(() => this.#saving.delete(saving));
    this.#saving.add(saving);
  }
}

/**
 * Segment `k` of a base map, for building a new map on it: loaded and checked even when it will
 * be reused as it is, because a new version must never build on a damaged segment.
 * @returns its entries; null when the base has no segment there, or `unreadable` when it is
 *   damaged or missing (the caller then reads those blocks afresh, which heals it)
 */
export async function baseSegment(base: BlockMap | undefined, k: number): Promise<{ entries: Buffer | null; unreadable: boolean }> {
  if (!base || k >= base.segments.length) return { entries: null, unreadable: false };
  try {
    return { entries: await base.segmentEntries(k), unreadable: false };
  } catch (err) {
    if (!isBadBlock(err)) throw err;
    return { entries: null, unreadable: true };
  }
}
