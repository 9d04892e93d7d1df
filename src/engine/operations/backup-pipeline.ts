import { randomInt } from 'node:crypto';
import { BlockMapWriter, baseSegment } from '../objects/block-map-writer.js';
import { blockCount, proveSegments, segmentCount, segmentLength, type BlockMap, type MapStorage } from '../objects/block-map.js';
import { newWriteCounters, storeHashedBlock, type BlockWriter, type WriteCounters } from '../objects/block-writer.js';
import type { Progress } from '../support/progress.js';
import { ConflictError } from '../errors.js';
import { DIGEST_LENGTH, SEGMENT_ENTRIES, SPARSE_ENTRY } from '../objects/formats.js';
import type { BufferPool } from '../pipeline/buffer-pool.js';
import type { BlockWorkers } from '../pipeline/block-workers.js';
import type { Semaphore } from '../pipeline/semaphore.js';
import { TaskGroup } from '../pipeline/task-group.js';
import type { BlockSource } from '../endpoints/endpoints.js';
import { bitIsSet } from '../endpoints/hints.js';



/** The base version an incremental backup builds on. */
export interface BaseMap {
  readonly map: BlockMap;
  readonly size: number;
}

/** What to back up. */
export interface PipelineInput {
  readonly source: BlockSource;
  readonly size: number;
  readonly blockSize: number;
  readonly base: BaseMap | undefined;
  /** Blocks the hints name (bit i = block i); undefined reads every block. */
  readonly hinted: Uint8Array | undefined;
  /** Names the hints in errors. */
  readonly hintsName: string;
  /** How many unhinted blocks to re-read and compare with the base. */
  readonly sample: number;
  /** Hex digests of blocks marked invalid: always re-read and re-stored. */
  readonly invalid: ReadonlySet<string>;
}

/** The machinery a run uses. */
export interface PipelineContext {
  readonly storage: MapStorage;
  readonly writer: BlockWriter;
  readonly hasher: BlockWorkers;
  readonly pool: BufferPool;
  readonly readers: Semaphore;
  readonly progress: Progress | undefined;
  readonly signal: AbortSignal | undefined;
}

type Plan = 'read' | 'verify' | 'keep';

/** Base segments proven sound per catalog round trip. */
const PROOF_WINDOW = 256;

/**
 * Reads, zero-checks, digests and stores the blocks of a source, building the new block map.
 * Memory is bounded by the buffer pool: at most `pool.size` blocks are in flight.
 * @returns the new map's segment digests and the counters
 * @throws {ConflictError} when a sampled unhinted block differs from the base (hints are wrong)
 */
export async function runBackupPipeline(input: PipelineInput, ctx: PipelineContext): Promise<{ segments: Buffer[]; counters: WriteCounters }> {
  const { size, blockSize, base } = input;
  const blocks = blockCount(size, blockSize);
  const counters = newWriteCounters();
  const blockLength = (i: number) => Math.min(blockSize, size - i * blockSize);
  const covered = (i: number) => {
    if (!base) return false;
    const end = (i + 1) * blockSize;
    return (end <= size && end <= base.size) || (size === base.size && i < blocks);
  };
  const plannedRead = (i: number) => input.hinted === undefined || !covered(i) || bitIsSet(input.hinted, i);
  const samples = pickSamples(input, blocks, covered);

  let readBytes = 0;
  for (let i = 0; i < blocks; i++) if (plannedRead(i) || samples.has(i)) readBytes += blockLength(i);
  ctx.progress?.start?.({ totalBytes: size, workBytes: readBytes });

  const mapWriter = new BlockMapWriter(ctx.storage, blocks);
  const group = new TaskGroup(ctx.signal);

  // A base segment none of whose blocks is read, verified or invalid is taken over by digest,
  // once proven sound; proven a window at a time, in one catalog round trip each.
  const unchanged = (k: number): boolean => {
    if (!base || input.invalid.size > 0 || k >= base.map.segments.length || segmentLength(k, base.map.blocks) !== segmentLength(k, blocks)) return false;
    for (let i = k * SEGMENT_ENTRIES; i < k * SEGMENT_ENTRIES + segmentLength(k, blocks); i++) if (plannedRead(i) || samples.has(i)) return false;
    return true;
  };
  /** Positions of the current window's segments to take over as they are. */
  let reusable = new Set<number>();
  const proveWindow = async (from: number) => {
    const candidates = new Map<number, Buffer>();
    for (let k = from; k < Math.min(segmentCount(blocks), from + PROOF_WINDOW); k++) {
      const digest = base?.map.segments[k];
      if (digest && unchanged(k)) candidates.set(k, digest);
    }
    const proven = await proveSegments(ctx.storage, [...candidates.values()]);
    reusable = new Set([...candidates].filter(([, d]) => proven.has(d.toString('hex'))).map(([k]) => k));
  };

  // Whatever fails here (a wrong hint, an unreadable base segment) still waits for the blocks in flight.
  try {
    for (let k = 0; k < segmentCount(blocks) && !group.failed; k++) {
      const first = k * SEGMENT_ENTRIES;
      const n = segmentLength(k, blocks);
      if (k % PROOF_WINDOW === 0) await proveWindow(k);
      const baseDigest = base?.map.segments[k];
      const reuseBase = (digest: Buffer) => {
        mapWriter.reuse(k, digest);
        const bytes = Math.min(size, (first + n) * blockSize) - first * blockSize;
        counters.bytesSkipped += bytes;
        ctx.progress?.advance?.(bytes);
      };
      if (baseDigest && reusable.has(k)) {
        reuseBase(baseDigest);
        continue;
      }
      const plan: Plan[] = [];
      for (let i = first; i < first + n; i++) plan.push(plannedRead(i) ? 'read' : samples.has(i) ? 'verify' : 'keep');

      // A base segment that cannot be read is no base: its blocks are read afresh, which heals it.
      const { entries: baseEntries, unreadable } = await baseSegment(base?.map, k);
      if (unreadable) for (let j = 0; j < n; j++) plan[j] = 'read';
      const sameShape = baseEntries !== null && base !== undefined && segmentLength(k, base.map.blocks) === n;
      if (sameShape && input.invalid.size === 0 && plan.every((p) => p === 'keep')) {
        if (baseDigest) {
          reuseBase(baseDigest);
          continue;
        }
      }
      const baseEntry = (i: number): Buffer | null => {
        const at = (i - first) * DIGEST_LENGTH;
        if (!baseEntries || at + DIGEST_LENGTH > baseEntries.length || !covered(i)) return null;
        const entry = baseEntries.subarray(at, at + DIGEST_LENGTH);
        return entry.equals(SPARSE_ENTRY) ? null : entry;
      };
      // Blocks that a check found bad are re-read whatever the hints say.
      if (input.invalid.size > 0) {
        for (let j = 0; j < n; j++) {
          const entry = baseEntry(first + j);
          if (plan[j] !== 'read' && entry && input.invalid.has(entry.toString('hex'))) plan[j] = 'read';
        }
      }
      mapWriter.open(k, baseEntries, plan.filter((p) => p === 'read').length);

      for (let j = 0; j < n && !group.failed; j++) {
        const i = first + j;
        const length = blockLength(i);
        const what = plan[j];
        if (what === 'keep') {
          counters.bytesSkipped += length;
          ctx.progress?.advance?.(length);
          continue;
        }
        if (!input.source.mayHaveData(i * blockSize, length)) {
          // A hole of a sparse file: zeros without reading.
          if (what === 'verify') {
            if (baseEntry(i) !== null) throw wrongHints(input, i, blockSize);
            counters.bytesSkipped += length;
          } else {
            counters.bytesSparse += length;
            mapWriter.set(i, null);
          }
          ctx.progress?.advance?.(length);
          continue;
        }
        const held = await group.obtain((signal) => ctx.pool.acquire(signal));
        if (!held) break;
        group.spawn(async () => {
          try {
            const view = held.payload.subarray(0, length);
            await ctx.readers.run(() => input.source.read(i * blockSize, view));
            counters.bytesRead += length;
            counters.blocksRead++;
            const hashed = await ctx.hasher.hash(held, length);
            const { zero, digest } = hashed;
            const expected = baseEntry(i);
            if (what === 'verify') {
              const same = zero ? expected === null : expected !== null && digest !== null && expected.equals(digest);
              if (!same) throw wrongHints(input, i, blockSize);
              counters.bytesSkipped += length;
            } else {
              const unchanged = expected !== null && digest !== null && expected.equals(digest) && !input.invalid.has(expected.toString('hex'));
              mapWriter.set(i, await storeHashedBlock(ctx.writer, hashed, held, length, counters, unchanged));
            }
            ctx.progress?.advance?.(length);
          } finally {
            ctx.pool.release(held);
          }
        });
      }
    }
  } catch (err) {
    group.fail(err);
  }
  await group.wait();
  await ctx.writer.flush();
  return { segments: await mapWriter.finish(), counters };
}

function wrongHints(input: PipelineInput, i: number, blockSize: number): ConflictError {
  return new ConflictError(
    `Hints ${input.hintsName} are wrong: block ${i} (offset ${i * blockSize}) changed since the base version but no hint covers it`,
    { hint: 'back up without hints (-r) to read everything' },
  );
}

function pickSamples(input: PipelineInput, blocks: number, covered: (i: number) => boolean): Set<number> {
  const samples = new Set<number>();
  const { hinted } = input;
  if (hinted === undefined || input.base === undefined || input.sample <= 0) return samples;
  const candidates: number[] = [];
  // Reservoir sampling keeps memory at `sample` entries whatever the image size.
  let seen = 0;
  for (let i = 0; i < blocks; i++) {
    if (!covered(i) || bitIsSet(hinted, i)) continue;
    seen++;
    if (candidates.length < input.sample) candidates.push(i);
    else {
      const r = randomInt(seen);
      if (r < input.sample) candidates[r] = i;
    }
  }
  for (const i of candidates) samples.add(i);
  return samples;
}
