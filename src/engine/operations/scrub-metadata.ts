/**
 * The metadata half of a scrub: a version's manifest and map segments live in the block store too
 * (so that a lost catalog can be rebuilt), and rot there as blocks do. A flipped byte in a
 * segment made up to 1024 intact blocks unreachable after a rebuild; one in a manifest made the
 * version vanish from it. Every manifest and every distinct segment of the versions scrubbed is
 * read and checked against its digest and against the catalog, and repaired from whichever copy
 * is good. Only a segment bad in both places is lost: the versions using it are invalid.
 */
import { createHash } from 'node:crypto';
import type { VersionRecord } from '../catalog/catalog.js';
import { CorruptBlockError, isBadBlock } from '../errors.js';
import { decodeSegment, loadSegmentObject, matches, saveSegmentObject } from '../objects/block-map.js';
import { confirmBadBlock } from '../objects/block-reader.js';
import { DIGEST_LENGTH, ObjectKind, SEGMENT_HEADER_LENGTH } from '../objects/formats.js';
import { checkStoredObject } from '../objects/object-seal.js';
import { StoreKeys } from '../objects/store-keys.js';
import { loadManifest, manifestOf, sameManifest, saveManifest } from '../objects/manifest.js';
import type { Store } from '../store.js';
import { inWindow, type ScrubWindow } from './scrub-window.js';

/** What the metadata check found and did. */
export type MetadataFinding =
  | { readonly type: 'manifest-repaired'; readonly uid: string; readonly reason: string }
  | { readonly type: 'segment-repaired'; readonly digest: string; readonly where: 'block store' | 'catalog'; readonly reason: string }
  | { readonly type: 'bad-segment'; readonly digest: string; readonly reason: string }
  | { readonly type: 'metadata-not-repaired'; readonly what: string; readonly reason: string };

/** Counters of the metadata check. */
export interface MetadataCounters {
  manifestsChecked: number;
  segmentsChecked: number;
  /** Distinct segments of the versions (checked or outside the window). */
  segmentsInScope: number;
  metadataRepaired: number;
  /** Segments bad in the block store and in the catalog, by hex digest. */
  readonly badSegments: Set<string>;
}

/**
 * Checks the manifests and segments of `versions`, repairing what a good copy exists of (unless
 * the store is read-only: then it only reports): the manifests and the distinct segments in the
 * scrub's window (all of them in a full scrub).
 * @param store the open store
 * @param versions the versions scrubbed
 * @param counters updated as it goes
 */
export async function* checkMetadata(
  store: Store,
  versions: readonly VersionRecord[],
  counters: MetadataCounters,
  options: { readonly window: ScrubWindow; readonly signal?: AbortSignal | undefined },
): AsyncGenerator<MetadataFinding> {
  const seen = new Set<string>();
  for await (const [version, segments] of withSegments(store, versions)) {
    if (options.signal?.aborted) return;
    if (inWindow(options.window, manifestPosition(version.uid))) yield* checkManifest(store, version, segments, counters);
    for (const digest of segments) {
      const hex = digest.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      counters.segmentsInScope++;
      if (inWindow(options.window, digest)) yield* checkSegment(store, digest, counters);
    }
  }
}

/** Where a version's manifest lies in the scrub window: a digest of its uid, spread like blocks. */
export function manifestPosition(uid: string): Buffer {
  return createHash('sha256').update(uid).digest();
}

/** Versions fetched from the catalog with their segment digests per batch. */
const SEGMENTS_BATCH = 256;

/**
 * The versions, each with its map's segment digests, fetched a batch at a time (one round trip
 * per 256 versions, and never all maps in memory at once). A version removed meanwhile is left out.
 */
export async function* withSegments(store: Store, versions: readonly VersionRecord[]): AsyncGenerator<[VersionRecord, Buffer[]]> {
  for (let i = 0; i < versions.length; i += SEGMENTS_BATCH) {
    const batch = versions.slice(i, i + SEGMENTS_BATCH);
    const maps = await store.catalog.versionSegmentsOf(batch.map((v) => v.uid));
    for (const v of batch) {
      const segments = maps.get(v.uid);
      if (segments) yield [v, segments];
    }
  }
}

async function* checkManifest(store: Store, version: VersionRecord, segments: readonly Buffer[], counters: MetadataCounters): AsyncGenerator<MetadataFinding> {
  counters.manifestsChecked++;
  // The catalog is the authority while it has the version: the manifest must say the same.
  const expected = manifestOf(version, segments);
  let reason: string | undefined;
  try {
    const stored = await loadManifest(store, version.uid);
    if (!sameManifest(stored, expected)) reason = 'it differs from the catalog';
  } catch (err) {
    if (!isBadBlock(err)) throw err;
    await confirmBadBlock(store.blocks);
    reason = err.message;
  }
  if (reason === undefined) return;
  if (store.readOnly) {
    yield { type: 'metadata-not-repaired', what: `manifest of ${version.uid}`, reason: `${reason}; the store is read-only` };
    return;
  }
  await saveManifest(store, expected);
  counters.metadataRepaired++;
  yield { type: 'manifest-repaired', uid: version.uid, reason };
}

/**
 * Checks one segment (both copies) and repairs what a good copy exists of; one with no good copy
 * is added to `counters.badSegments`.
 */
export async function* checkSegment(store: Store, digest: Buffer, counters: MetadataCounters): AsyncGenerator<MetadataFinding> {
  counters.segmentsChecked++;
  const hex = digest.toString('hex');
  let stored: Buffer | undefined;
  let storedProblem: string | undefined;
  try {
    stored = await loadSegmentObject(store, digest);
  } catch (err) {
    if (!isBadBlock(err)) throw err;
    await confirmBadBlock(store.blocks);
    storedProblem = err.message;
  }
  const cached = await store.catalog.getSegment(digest);
  const cachedGood = cached !== undefined && matches(store.transforms, cached, digest);
  if (stored && cachedGood) return;
  const good = stored ?? (cachedGood ? cached : undefined);
  if (!good) {
    counters.badSegments.add(hex);
    yield { type: 'bad-segment', digest: hex, reason: storedProblem ?? 'the catalog has no good copy' };
    return;
  }
  const where = stored ? 'catalog' : 'block store';
  const reason = stored ? (cached ? "the catalog's copy does not match its digest" : 'the catalog has no copy') : (storedProblem ?? 'damaged');
  if (store.readOnly) {
    yield { type: 'metadata-not-repaired', what: `segment ${hex} in the ${where}`, reason: `${reason}; the store is read-only` };
    return;
  }
  if (stored) await store.catalog.putSegment(digest, (good.length - SEGMENT_HEADER_LENGTH) / DIGEST_LENGTH, good);
  else await saveSegmentObject(store, { digest, payload: good });
  counters.metadataRepaired++;
  yield { type: 'segment-repaired', digest: hex, where, reason };
}

/** A segment's entries from the catalog's copy, as it is (a scrub without the key cannot prove it). */
export async function catalogEntries(store: Store, digest: Buffer | undefined): Promise<Buffer> {
  const payload = digest && (await store.catalog.getSegment(digest));
  if (!payload) throw new CorruptBlockError(`Map segment ${digest?.toString('hex') ?? '?'} is not in the catalog`);
  return decodeSegment(payload, digest.toString('hex'));
}

/** The metadata check of a scrub without the key: stored bytes against their CRC, nothing repaired. */
export async function* checkStoredMetadata(store: Store, versions: readonly VersionRecord[], counters: MetadataCounters, window: ScrubWindow): AsyncGenerator<MetadataFinding> {
  const seen = new Set<string>();
  for await (const [v, segments] of withSegments(store, versions)) {
    const key = StoreKeys.manifest(v.uid);
    if (inWindow(window, manifestPosition(v.uid))) {
      counters.manifestsChecked++;
      try {
        const object = await store.blocks.get(key);
        checkStoredObject(ObjectKind.manifest, Buffer.from(object).subarray(24, 56), object, `manifest ${v.uid}`);
      } catch (err) {
        if (!isBadBlock(err)) throw err;
        await confirmBadBlock(store.blocks);
        yield { type: 'metadata-not-repaired', what: `manifest of ${v.uid}`, reason: `${err.message}; scrub with the key to repair it` };
      }
    }
    for (const digest of segments) {
      const hex = digest.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      counters.segmentsInScope++;
      if (!inWindow(window, digest)) continue;
      counters.segmentsChecked++;
      try {
        checkStoredObject(ObjectKind.segment, digest, await store.blocks.get(StoreKeys.segment(digest)), `segment ${hex}`);
      } catch (err) {
        if (!isBadBlock(err)) throw err;
        await confirmBadBlock(store.blocks);
        yield { type: 'metadata-not-repaired', what: `segment ${hex} in the block store`, reason: `${err.message}; scrub with the key to repair it` };
      }
    }
  }
}
