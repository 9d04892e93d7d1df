import { BlockMap, blockCount, loadSegment } from '../objects/block-map.js';
import type { VersionRecord, VersionStats } from '../catalog/catalog.js';
import { DIGEST_LENGTH, SEGMENT_ENTRIES, SPARSE_ENTRY } from '../objects/formats.js';
import type { Store } from '../store.js';
import { resolveVersion } from './versions.js';

/** Space figures of one version. */
export interface VersionSpace {
  readonly uid: string;
  readonly image: string;
  readonly size: number;
  readonly blockSize: number;
  readonly blocks: number;
  readonly sparseBlocks: number;
  /** Bytes of non-zero blocks the version refers to (each distinct block once). */
  readonly bytesReferenced: number;
  /** Of those, bytes of blocks no other version refers to: what removing it frees. */
  readonly bytesUnique: number;
  /** Of those, bytes of blocks other versions refer to as well. */
  readonly bytesShared: number;
  /** Figures of the backup run that made it. */
  readonly backup: VersionStats | null;
}

/**
 * Computes what a version occupies, alone and shared with others. Memory grows with the
 * version's number of distinct blocks.
 * @throws {NotFoundError} when the version does not exist
 * @example
 * const space = await versionSpace(store, 'v1kx3f9qm7wz');
 */
export async function versionSpace(store: Store, selector: string): Promise<VersionSpace> {
  const version = await resolveVersion(store, selector);
  const blocks = blockCount(version.size, version.blockSize);
  const ownSegments = await store.catalog.versionSegments(version.uid);
  const map = new BlockMap(store, ownSegments, version.status === 'incomplete' ? 0 : blocks);
  const own = new Map<string, number>();
  let sparseBlocks = 0;
  for (let k = 0; k < map.segments.length; k++) {
    const entries = await map.segmentEntries(k);
    for (let j = 0; j < entries.length / DIGEST_LENGTH; j++) {
      const entry = entries.subarray(j * DIGEST_LENGTH, (j + 1) * DIGEST_LENGTH);
      if (entry.equals(SPARSE_ENTRY)) {
        sparseBlocks++;
        continue;
      }
      const i = k * SEGMENT_ENTRIES + j;
      own.set(entry.toString('hex'), Math.min(version.blockSize, version.size - i * version.blockSize));
    }
  }
  let bytesReferenced = 0;
  for (const length of own.values()) bytesReferenced += length;

  const ownSegmentSet = new Set(ownSegments.map((d) => d.toString('hex')));
  const seen = new Set<string>();
  const shared = new Set<string>();
  for (const other of await store.catalog.listVersions()) {
    if (other.uid === version.uid || other.status === 'incomplete') continue;
    for (const segment of await store.catalog.versionSegments(other.uid)) {
      const hex = segment.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      const entries = ownSegmentSet.has(hex) ? await map.segmentEntries(ownSegments.findIndex((d) => d.equals(segment))) : await loadSegment(store, segment);
      for (let at = 0; at < entries.length; at += DIGEST_LENGTH) {
        const key = entries.subarray(at, at + DIGEST_LENGTH).toString('hex');
        if (own.has(key)) shared.add(key);
      }
    }
  }
  let bytesShared = 0;
  for (const key of shared) bytesShared += own.get(key) ?? 0;
  return {
    uid: version.uid,
    image: version.image,
    size: version.size,
    blockSize: version.blockSize,
    blocks,
    sparseBlocks,
    bytesReferenced,
    bytesUnique: bytesReferenced - bytesShared,
    bytesShared,
    backup: version.stats,
  };
}

/** Space figures of the whole store. */
export interface StoreSpace {
  readonly images: number;
  readonly versions: number;
  /** Sum of the sizes of all versions (what they would take without dedup and sparseness). */
  readonly bytesLogical: number;
  /** Distinct blocks stored. */
  readonly blocks: number;
  /** Bytes those blocks take in the block store (payload). */
  readonly bytesStored: number;
  readonly invalidBlocks: number;
  /** bytesLogical / bytesStored. */
  readonly reduction: number;
  /** Per image: how many versions, and its newest valid backup. */
  readonly perImage: readonly ImageSummary[];
}

/** One image in {@link StoreSpace}. */
export interface ImageSummary {
  readonly image: string;
  readonly versions: number;
  readonly invalidVersions: number;
  /** The newest valid backup version (not copy-on-write), or null when it has none. */
  readonly newestBackup: { readonly uid: string; readonly createdAt: number; readonly ageSeconds: number } | null;
}

/** Computes the space figures of the whole store. */
export async function storeSpace(store: Store): Promise<StoreSpace> {
  const versions = await store.catalog.listVersions();
  const totals = await store.catalog.blockTotals();
  const bytesLogical = versions.reduce((n, v) => n + v.size, 0);
  const now = Date.now();
  const perImage = new Map<string, { versions: number; invalid: number; newest: VersionRecord | null }>();
  for (const v of versions) {
    const entry = perImage.get(v.image) ?? { versions: 0, invalid: 0, newest: null };
    entry.versions++;
    if (v.status === 'invalid') entry.invalid++;
    if (v.status === 'valid' && v.kind === 'backup') entry.newest = v; // oldest first: the last one wins
    perImage.set(v.image, entry);
  }
  return {
    images: perImage.size,
    versions: versions.length,
    bytesLogical,
    blocks: totals.blocks,
    bytesStored: totals.bytes,
    invalidBlocks: totals.invalid,
    reduction: totals.bytes > 0 ? bytesLogical / totals.bytes : 0,
    perImage: [...perImage].map(([image, e]) => ({
      image,
      versions: e.versions,
      invalidVersions: e.invalid,
      newestBackup: e.newest ? { uid: e.newest.uid, createdAt: e.newest.createdAt, ageSeconds: Math.max(0, Math.round((now - e.newest.createdAt) / 1000)) } : null,
    })),
  };
}
