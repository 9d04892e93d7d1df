import { randomInt } from 'node:crypto';
import { BlockMap, blockCount, loadSegment } from '../objects/block-map.js';
import { confirmBadBlock, fetchBlock, fetchContextOf } from '../objects/block-reader.js';
import { BlockState, type VersionRecord } from '../catalog/catalog.js';
import { NotFoundError, UsageError, isBackyError, isBadBlock } from '../errors.js';
import { DIGEST_LENGTH, ObjectKind, SEGMENT_ENTRIES, SPARSE_ENTRY } from '../objects/formats.js';
import { acquireLocks, versionResource } from '../catalog/locking.js';
import { BufferPool } from '../pipeline/buffer-pool.js';
import { TaskGroup } from '../pipeline/task-group.js';
import type { Progress } from '../support/progress.js';
import type { Store } from '../store.js';
import { changeMetadata, resolveVersion } from './versions.js';
import { checkStoredObject, saveInvalidMarker } from '../objects/object-seal.js';
import { compareSource } from './scrub-source.js';
import { StoreKeys } from '../objects/store-keys.js';
import { recordRun } from './run-records.js';
import { inWindow, scrubWindow } from './scrub-window.js';
import { catalogEntries, checkMetadata, checkSegment, checkStoredMetadata, withSegments, type MetadataCounters, type MetadataFinding } from './scrub-metadata.js';

/** Options of {@link scrub}. */
export interface ScrubOptions {
  /** Versions to check; with `all`, every valid or invalid version (of `image` when given). */
  readonly uids?: readonly string[];
  readonly all?: boolean;
  readonly image?: string | undefined;
  /**
   * Check this share of the distinct blocks and map segments in scope, 0 < percent ≤ 100: a window
   * of the digest space that moves on every day, so consecutive days check different blocks
   * (see scrub-window.ts). @default 100
   */
  readonly percent?: number | undefined;
  /** When the scrub runs, which picks the day's window (ms since the epoch). @default now */
  readonly at?: number | undefined;
  /** Also compare with this source, byte for byte (one version only). */
  readonly source?: string | undefined;
  /**
   * Check an encrypted store without its key (a host that keeps only the storage): headers and the
   * CRC of every stored byte, which finds bitrot; nothing is decrypted, repaired or marked.
   */
  readonly withoutKey?: boolean | undefined;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** Something a scrub found. */
export type ScrubFinding =
  | MetadataFinding
  | { readonly type: 'bad-block'; readonly digest: string; readonly code: string; readonly message: string }
  | { readonly type: 'version-invalid'; readonly uid: string; readonly image: string; readonly badBlocks: number }
  | { readonly type: 'version-valid'; readonly uid: string; readonly image: string }
  | { readonly type: 'source-mismatch'; readonly uid: string; readonly block: number; readonly offset: number; readonly reason: string };

/** Counters a scrub ends with. */
export interface ScrubResult {
  readonly versions: number;
  /** Manifests (all of the versions scrubbed) and distinct map segments (those in the window) read and checked. */
  readonly manifestsChecked: number;
  readonly segmentsChecked: number;
  /** Distinct map segments of the versions scrubbed: what segmentsChecked covers. */
  readonly segmentsInScope: number;
  /** Manifests and segments rewritten from a good copy. */
  readonly metadataRepaired: number;
  /** Segments with no good copy left (their versions are invalid). */
  readonly badSegments: number;
  /** Distinct blocks read and verified (a block shared by versions counts once). */
  readonly blocksChecked: number;
  /** Distinct stored blocks of the versions scrubbed: what blocksChecked covers. */
  readonly blocksInScope: number;
  readonly bytesChecked: number;
  readonly badBlocks: number;
  readonly versionsInvalidated: number;
  readonly versionsRevalidated: number;
  readonly sourceMismatches: number;
  readonly durationSeconds: number;
}

/**
 * Re-reads stored blocks and checks header, length and digest. Bad or missing blocks are marked
 * invalid, and so is every version that uses one (the next backup of such an image re-reads and
 * re-stores them). A complete scrub without findings makes an invalid version valid again. A
 * block shared by several versions is read once. With `source`, the source is compared too: a
 * difference fails the scrub but marks nothing.
 *
 * Yields findings as they come and returns the counters.
 * @throws {NotFoundError} when a version does not exist
 * @throws {UsageError} for a bad percentage, or a source with several versions
 * @example
 * const run = scrub(store, { uids: ['v1kx3f9qm7wz'], percent: 15 });
 * for (let r = await run.next(); !r.done; r = await run.next()) console.log(r.value);
 */
export async function* scrub(store: Store, options: ScrubOptions): AsyncGenerator<ScrubFinding, ScrubResult> {
  const started = Date.now();
  const percent = options.percent ?? 100;
  if (!(percent > 0 && percent <= 100)) throw new UsageError(`Invalid percentage ${percent}: use a number above 0 and at most 100`);
  const selected = await selectVersions(store, options);
  if (options.source !== undefined && selected.length !== 1) throw new UsageError('A source can be compared with exactly one version');
  const locks = await acquireLocks(
    store.catalog,
    selected.map((v) => ({ resource: versionResource(v.uid), mode: 'shared' as const, operation: 'scrub' })),
  );
  const counters = { blocksChecked: 0, bytesChecked: 0, badBlocks: 0, versionsInvalidated: 0, versionsRevalidated: 0, sourceMismatches: 0 };
  const metadata: MetadataCounters = { manifestsChecked: 0, segmentsChecked: 0, segmentsInScope: 0, metadataRepaired: 0, badSegments: new Set() };
  const window = scrubWindow(percent, options.at ?? Date.now());
  let blocksInScope = 0;
  const findings: ScrubFinding[] = [];
  const versions: VersionRecord[] = [];
  try {
    // Under the locks, what is still there: an rm may have finished meanwhile (one listing for many).
    const current = selected.length > 1 ? new Map((await store.catalog.listVersions()).map((v) => [v.uid, v])) : undefined;
    for (const v of selected) {
      const now = current ? current.get(v.uid) : await store.catalog.getVersion(v.uid);
      if (now) versions.push(now);
      else if (!options.all) throw new NotFoundError(`Version "${v.uid}" was removed meanwhile`);
    }
    const keyless = options.withoutKey === true && store.settings.encryption !== 'none';
    if (keyless && options.source !== undefined) throw new UsageError('Comparing with the source needs the key: the stored blocks must be decrypted');
    // 0. Manifests and map segments in the window, repaired from a good copy.
    yield* keyless ? checkStoredMetadata(store, versions, metadata, window) : checkMetadata(store, versions, metadata, { window, signal: options.signal });

    // 1. Which distinct blocks to read: those of the day's window, each once however many
    // versions share it. Every distinct block in scope goes on the list (which lives in the
    // catalog: a 10 TiB version has millions of blocks), so that the coverage can be told; each
    // distinct segment is read once (versions of one image share most of theirs).
    await store.catalog.beginScrubList();
    let totalBytes = 0;
    const listed = new Set<string>();
    for await (const [v, segments] of withSegments(store, versions)) {
      if (options.signal?.aborted) break;
      const blocks = blockCount(v.size, v.blockSize);
      const map = new BlockMap(store, segments, blocks);
      for (let k = 0; k < map.segments.length; k++) {
        const hex = map.segments[k]?.toString('hex') ?? '';
        if (metadata.badSegments.has(hex)) continue; // lost: found above
        // The last block of a version may be short: a last segment is listed per length.
        const key = k === map.segments.length - 1 ? `${hex}/${v.size - k * SEGMENT_ENTRIES * v.blockSize}/${v.blockSize}` : `${hex}/${v.blockSize}`;
        if (listed.has(key)) continue;
        listed.add(key);
        // Without the key the catalog's copy is taken as it is (its naming digest is keyed).
        let entries: Buffer;
        try {
          entries = keyless ? await catalogEntries(store, map.segments[k]) : await map.segmentEntries(k);
        } catch (err) {
          // A segment outside the window, bad in both places: checked now, as in the window.
          const digest = map.segments[k];
          if (keyless || !digest || !isBadBlock(err) || metadata.badSegments.has(hex)) throw err;
          yield* checkSegment(store, digest, metadata);
          if (metadata.badSegments.has(hex)) continue;
          entries = await map.segmentEntries(k);
        }
        const chosen: { digest: Uint8Array; length: number }[] = [];
        const others: { digest: Uint8Array; length: number }[] = [];
        for (let j = 0; j < entries.length / DIGEST_LENGTH; j++) {
          const i = k * SEGMENT_ENTRIES + j;
          const entry = entries.subarray(j * DIGEST_LENGTH, (j + 1) * DIGEST_LENGTH);
          if (entry.equals(SPARSE_ENTRY)) continue;
          (inWindow(window, entry) ? chosen : others).push({ digest: entry, length: Math.min(v.blockSize, v.size - i * v.blockSize) });
        }
        const added = await store.catalog.addToScrubList(chosen);
        totalBytes += added.bytes;
        blocksInScope += added.blocks + (others.length ? (await store.catalog.addToScrubList(others)).blocks : 0);
      }
    }
    // Of the one version compared with the source, the blocks compared: a random share.
    const only = versions[0];
    const sampled = options.source !== undefined && only && percent < 100 ? sample(blockCount(only.size, only.blockSize), Math.max(1, Math.round((blockCount(only.size, only.blockSize) * percent) / 100))) : undefined;
    // 2. Read and verify those in the window, in parallel.
    options.progress?.start?.({ totalBytes, workBytes: totalBytes });
    const bad = new Map<string, { code: string; message: string }>();
    let maxBlock = 65536;
    for (const v of versions) maxBlock = Math.max(maxBlock, v.blockSize);
    // The pool bounds the reads in flight (and their memory).
    const pool = new BufferPool(maxBlock, Math.min(store.config.readers * 2, Math.max(4, Math.floor((128 << 20) / maxBlock))));
    const group = new TaskGroup(options.signal);
    for (let after = 0, batch = await store.catalog.scrubListBatch(0, 1024); batch.length > 0 && !group.failed; batch = await store.catalog.scrubListBatch(after, 1024)) {
      after = batch[batch.length - 1]?.position ?? after;
      for (const ref of batch) {
        if (group.failed) break;
        if (!inWindow(window, ref.digest)) continue;
        const buf = await group.obtain((signal) => pool.acquire(signal));
        if (!buf) break;
        group.spawn(async () => {
          try {
            if (keyless) checkStoredObject(ObjectKind.block, ref.digest, await store.blocks.get(StoreKeys.block(ref.digest), { into: buf.slotView, signal: group.signal }), `block ${ref.digest.toString('hex')}`);
            else await fetchBlock(fetchContextOf(store), ref.digest, ref.length, buf, { signal: group.signal, proof: 'full' });
          } catch (err) {
            if (!isBadBlock(err)) throw err;
            await confirmBadBlock(store.blocks);
            bad.set(ref.digest.toString('hex'), { code: err.code, message: err.message });
          } finally {
            pool.release(buf);
          }
          counters.blocksChecked++;
          counters.bytesChecked += ref.length;
          options.progress?.advance?.(ref.length);
        });
      }
    }
    await group.wait();
    counters.badBlocks = bad.size;
    for (const [digest, why] of bad) findings.push({ type: 'bad-block', digest, ...why });
    for (const f of findings.splice(0)) yield f;

    // 3. Mark bad blocks and every version using one; revalidate versions checked completely.
    // The block store learns it too (markers, manifests): a catalog rebuild must not forget.
    // A read-only store (a write-protected copy) is checked and reported, not marked.
    if ((store.readOnly || keyless) && (bad.size > 0 || metadata.badSegments.size > 0)) {
      const why = keyless ? 'scrubbed without the key: nothing was marked (scrub with the key to mark and heal)' : 'the store is read-only: nothing was marked';
      yield { type: 'metadata-not-repaired', what: 'the bad blocks and the versions using them', reason: why };
    } else if (bad.size > 0 || metadata.badSegments.size > 0) {
      for (const [hex, why] of bad) await saveInvalidMarker(store, Buffer.from(hex, 'hex'), `${why.code}: ${why.message}\n`);
      await store.catalog.setBlockState([...bad.keys()].map((h) => Buffer.from(h, 'hex')), BlockState.invalid);
      const lost = await versionsWithSegments(store, metadata.badSegments);
      for (const { version, count } of await versionsUsing(store, new Set(bad.keys()))) {
        if (version.status !== 'invalid' && (await setStatus(store, version.uid, 'invalid'))) counters.versionsInvalidated++;
        lost.delete(version.uid);
        yield { type: 'version-invalid', uid: version.uid, image: version.image, badBlocks: count };
      }
      for (const version of lost.values()) {
        if (version.status !== 'invalid' && (await setStatus(store, version.uid, 'invalid'))) counters.versionsInvalidated++;
        yield { type: 'version-invalid', uid: version.uid, image: version.image, badBlocks: 0 };
      }
    } else if (percent >= 100) {
      for (const v of versions.filter((x) => x.status === 'invalid')) {
        if (!(await setStatus(store, v.uid, 'valid'))) continue;
        counters.versionsRevalidated++;
        yield { type: 'version-valid', uid: v.uid, image: v.image };
      }
    }

    // 4. Compare with the source (a difference fails the scrub, marks nothing).
    if (options.source !== undefined && only) {
      for await (const mismatch of compareSource(store, only, options.source, sampled, options.signal)) {
        counters.sourceMismatches++;
        yield mismatch;
      }
    }
  } finally {
    await store.catalog.endScrubList().catch(() => undefined);
    await locks.release();
  }
  const result = {
    versions: versions.length,
    manifestsChecked: metadata.manifestsChecked,
    segmentsChecked: metadata.segmentsChecked,
    segmentsInScope: metadata.segmentsInScope,
    metadataRepaired: metadata.metadataRepaired,
    badSegments: metadata.badSegments.size,
    ...counters,
    blocksInScope,
    durationSeconds: (Date.now() - started) / 1000,
  };
  await recordRun(store, 'scrub', result);
  return result;
}

/** Sets a version's status (and its manifest's); false when the version is being removed. */
async function setStatus(store: Store, uid: string, status: 'valid' | 'invalid'): Promise<boolean> {
  try {
    await changeMetadata(store, uid, () => store.catalog.setStatus(uid, status));
    return true;
  } catch (err) {
    if (isBackyError(err) && (err.code === 'E_LOCKED' || err.code === 'E_NOT_FOUND')) return false;
    throw err;
  }
}

/** k distinct random numbers below n (Floyd's algorithm: k draws, whatever k/n). */
function sample(n: number, k: number): Set<number> {
  const chosen = new Set<number>();
  for (let j = Math.max(0, n - k); j < n; j++) {
    const t = randomInt(j + 1);
    chosen.add(chosen.has(t) ? j : t);
  }
  return chosen;
}

async function selectVersions(store: Store, options: ScrubOptions): Promise<VersionRecord[]> {
  if (options.all) {
    const all = await store.catalog.listVersions(options.image !== undefined ? { image: options.image } : {});
    return all.filter((v) => v.status !== 'incomplete');
  }
  if (!options.uids?.length) throw new UsageError('Name the versions to scrub, or use --all');
  const out: VersionRecord[] = [];
  for (const selector of options.uids) {
    const v = await resolveVersion(store, selector);
    if (v.status === 'incomplete') throw new UsageError(`Version "${v.uid}" is incomplete and cannot be scrubbed`);
    out.push(v);
  }
  return out;
}

/** Every committed version whose map has one of the segments `hexes` (lost segments). */
async function versionsWithSegments(store: Store, hexes: ReadonlySet<string>): Promise<Map<string, VersionRecord>> {
  const out = new Map<string, VersionRecord>();
  if (hexes.size === 0) return out;
  for (const v of await store.catalog.listVersions()) {
    if (v.status === 'incomplete') continue;
    const segments = await store.catalog.versionSegments(v.uid).catch(() => []);
    if (segments.some((d) => hexes.has(d.toString('hex')))) out.set(v.uid, v);
  }
  return out;
}

/**
 * Every committed version using one of `digests`, reading each distinct segment once. Versions
 * removed meanwhile are skipped, and so are segments that cannot be read (their versions are
 * invalid since the rebuild that found them missing).
 */
async function versionsUsing(store: Store, digests: ReadonlySet<string>): Promise<{ version: VersionRecord; count: number }[]> {
  const bySegment = new Map<string, number>();
  const out: { version: VersionRecord; count: number }[] = [];
  for (const v of await store.catalog.listVersions()) {
    if (v.status === 'incomplete') continue;
    let count = 0;
    let segments: Buffer[];
    try {
      segments = await store.catalog.versionSegments(v.uid);
    } catch (err) {
      if (isBackyError(err) && err.code === 'E_NOT_FOUND') continue;
      throw err;
    }
    for (const segment of segments) {
      const hex = segment.toString('hex');
      let n = bySegment.get(hex);
      if (n === undefined) {
        n = 0;
        try {
          const entries = await loadSegment(store, segment);
          for (let at = 0; at < entries.length; at += DIGEST_LENGTH) if (digests.has(entries.subarray(at, at + DIGEST_LENGTH).toString('hex'))) n++;
        } catch (err) {
          if (!isBadBlock(err)) throw err;
        }
        bySegment.set(hex, n);
      }
      count += n;
    }
    if (count > 0) out.push({ version: v, count });
  }
  return out;
}
