/** The source comparison of a scrub (`scrub -s`): every (sampled) block against the source. */
import { BlockMap, blockCount } from '../objects/block-map.js';
import type { VersionRecord } from '../catalog/catalog.js';
import { openSource, type BlockSource } from '../endpoints/endpoints.js';
import { objectId } from '../objects/object-seal.js';
import { alignedBuffer } from '../pipeline/buffer-pool.js';
import type { Store } from '../store.js';
import type { ScrubFinding } from './scrub.js';

/**
 * Compares a version with its source, yielding every difference; reads only sampled blocks when a
 * sample is given.
 */
export async function* compareSource(store: Store, version: VersionRecord, spec: string, sampled: Set<number> | undefined, signal: AbortSignal | undefined): AsyncGenerator<ScrubFinding> {
  const source: BlockSource = await openSource(spec, { ceph: store.config.ceph, tmpDir: store.config.spillDir });
  try {
    await source.changedExtents?.(null); // RBD: stream the allocated data in one pass
    if (source.size !== version.size) {
      yield { type: 'source-mismatch', uid: version.uid, block: -1, offset: 0, reason: `the source has ${source.size} bytes, the version ${version.size}` };
      return;
    }
    const blocks = blockCount(version.size, version.blockSize);
    const map = new BlockMap(store, await store.catalog.versionSegments(version.uid), blocks);
    // Page-aligned, so that a file source reads what is not cached around the page cache.
    const buf = alignedBuffer(version.blockSize);
    const zeros = Buffer.alloc(version.blockSize);
    for (let i = 0; i < blocks; i++) {
      if (signal?.aborted) return;
      if (sampled && sampled.size > 0 && !sampled.has(i)) continue;
      const offset = i * version.blockSize;
      const length = Math.min(version.blockSize, version.size - offset);
      const view = buf.subarray(0, length);
      const expected = await map.entry(i);
      if (!source.mayHaveData(offset, length)) view.fill(0);
      else await source.read(offset, view);
      if (expected === null) {
        if (!view.equals(zeros.subarray(0, length))) yield { type: 'source-mismatch', uid: version.uid, block: i, offset, reason: 'sparse in the backup but not zero in the source' };
      } else if (!objectId(store.transforms, view).equals(expected)) {
        yield { type: 'source-mismatch', uid: version.uid, block: i, offset, reason: 'differs from the source' };
      }
    }
  } finally {
    await source.close();
  }
}
