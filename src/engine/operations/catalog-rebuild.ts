/**
 * The catalog is not a single point of failure: every committed version's manifest and map
 * segments live in the block store too, so the catalog can be rebuilt from the block store alone,
 * a version can be restored without any catalog, and version metadata can move between catalogs
 * as JSON.
 */
import { decodeSegment, encodeSegment, loadSegment } from '../objects/block-map.js';
import type { BlockStore } from '../blockstore/block-store.js';
import { BlockState, type Catalog } from '../catalog/catalog.js';
import { SqliteCatalog } from '../catalog/sqlite-catalog.js';
import { catalogName, createCatalog, moveCatalogAside, openCatalog, type CatalogOpenOptions } from '../catalog/open-catalog.js';
import type { CatalogLocation, Config } from '../support/config.js';
import { ConflictError, LockedError, NotFoundError, StoreUnavailableError, UsageError, isBackyError, isBadBlock } from '../errors.js';
import { DIGEST_LENGTH, OBJECT_HEADER_LENGTH, SPARSE_ENTRY } from '../objects/formats.js';
import { isSealed, objectId } from '../objects/object-seal.js';
import { decodeObjectHeader } from '../objects/object-codec.js';
import { checkManifest, loadManifest, manifestOf, versionOfManifest, type Manifest } from '../objects/manifest.js';
import { assembleStore, assertWritable, blockStoreSettings, openBlockStore, unlock, type OpenStoreOptions, type Store, type Unlocked } from '../store.js';
import { canonicalSettings, loadStoreSettings, saveStoreOwner, saveStoreSettings, type StoreSettings } from '../objects/store-settings.js';
import { getVersion, resolveUids } from './versions.js';
import { printable } from '../support/names.js';
import { VERSION_UID_PATTERN } from '../support/uid.js';
import { KeyPrefix, StoreKeys, parseBlockKey, parseInvalidMarkerKey, parseManifestKey } from '../objects/store-keys.js';

/** What a rebuild found. */
export interface RebuildResult {
  readonly versions: number;
  /** Versions whose blocks are not all in the block store (imported as invalid). */
  readonly incompleteVersions: number;
  readonly segments: number;
  readonly blocks: number;
  /** Manifests that could not be read (damaged). */
  readonly badManifests: readonly string[];
  readonly durationSeconds: number;
}

/**
 * Fills an empty catalog from the block store: versions from their manifests, segments, and the
 * known blocks (those with a scrub's invalid marker as invalid). A version whose blocks are not
 * all present, or that a scrub marked invalid, is imported as invalid.
 * @param store a store whose catalog has no versions
 * @throws {ConflictError} when the catalog has versions already
 * @example
 * const result = await rebuildCatalog(store);
 */
export async function rebuildCatalog(store: Store): Promise<RebuildResult> {
  const started = Date.now();
  const { catalog, blocks } = store;
  if ((await catalog.listVersions()).length > 0) {
    throw new ConflictError(`Catalog "${catalog.location}" has versions already`, { hint: 'move it away first; rebuild fills an empty catalog' });
  }
  // Blocks first, with their lengths.
  let blockCount = 0;
  let batch: { digest: Buffer; length: number; storedLength: number }[] = [];
  for await (const info of blocks.list(KeyPrefix.blocks)) {
    const digest = parseBlockKey(info.key);
    const lengths = digest && (await blockLengths(store, info.key, info.size));
    if (!digest || !lengths) continue;
    batch.push({ digest, ...lengths });
    if (batch.length >= 1024) {
      await catalog.registerBlocks(batch);
      blockCount += batch.length;
      batch = [];
    }
  }
  await catalog.registerBlocks(batch);
  blockCount += batch.length;
  // Blocks a scrub found bad stay bad (the next backup re-stores them).
  let invalid: Buffer[] = [];
  for await (const info of blocks.list(KeyPrefix.invalidMarkers)) {
    const digest = parseInvalidMarkerKey(info.key);
    if (digest) invalid.push(digest);
    if (invalid.length >= 1024) {
      await catalog.setBlockState(invalid, BlockState.invalid);
      invalid = [];
    }
  }
  await catalog.setBlockState(invalid, BlockState.invalid);

  const badManifests: string[] = [];
  const segmentsSeen = new Map<string, boolean>();
  let versions = 0;
  let incompleteVersions = 0;
  for await (const info of blocks.list(KeyPrefix.manifests)) {
    const uid = parseManifestKey(info.key);
    if (uid === undefined) continue;
    let manifest: Manifest;
    try {
      manifest = await loadManifest(store, uid);
    } catch (err) {
      if (!isBackyError(err)) throw err;
      badManifests.push(uid);
      continue;
    }
    const complete = await importManifest(store, manifest, segmentsSeen);
    versions++;
    if (!complete) incompleteVersions++;
  }
  return { versions, incompleteVersions, segments: segmentsSeen.size, blocks: blockCount, badManifests, durationSeconds: (Date.now() - started) / 1000 };
}

/**
 * Adds one manifest's version to the catalog with its segments, checking that every block it
 * uses is known and not invalid; when one is not, the version is imported as invalid.
 * @param segmentsSeen per segment already imported, whether all its blocks are good
 * @returns true when every block is present and good
 */
async function importManifest(store: Store, manifest: Manifest, segmentsSeen = new Map<string, boolean>()): Promise<boolean> {
  const segments = manifest.segments.map((hex) => Buffer.from(hex, 'hex'));
  let complete = true;
  for (const digest of segments) {
    const hex = digest.toString('hex');
    let good = segmentsSeen.get(hex);
    if (good === undefined) {
      good = await importSegment(store, digest);
      segmentsSeen.set(hex, good);
    }
    complete &&= good;
  }
  await store.catalog.importVersion(versionOfManifest(manifest, complete && manifest.status !== 'invalid' ? 'valid' : 'invalid'), segments);
  return complete;
}

/** Puts a segment into the catalog; false when it cannot be read or uses a missing or invalid block. */
async function importSegment(store: Store, digest: Buffer): Promise<boolean> {
  let entries: Buffer;
  try {
    entries = await loadSegment(store, digest);
  } catch (err) {
    if (!isBackyError(err)) throw err;
    return false;
  }
  await store.catalog.putSegment(digest, entries.length / DIGEST_LENGTH, encodeSegment(entries, store.transforms).payload);
  for (let at = 0; at < entries.length; at += DIGEST_LENGTH) {
    const entry = entries.subarray(at, at + DIGEST_LENGTH);
    if (!entry.equals(SPARSE_ENTRY) && (await store.catalog.getBlock(entry))?.state !== BlockState.valid) return false;
  }
  return true;
}

/** Version metadata as moved by `db export` / `db import`. */
export interface ExportedVersion {
  readonly manifest: Manifest;
  /** Segment payloads in hex, by digest. */
  readonly segments: Record<string, string>;
}

/**
 * Exports versions' metadata and maps (not their blocks) as JSON-ready objects.
 * @throws {NotFoundError} when a uid does not exist
 */
export async function exportVersions(store: Store, uids: readonly string[]): Promise<ExportedVersion[]> {
  const out: ExportedVersion[] = [];
  for (const uid of await resolveUids(store, uids)) {
    // The catalog is authoritative when it has the version (tags may be newer than the manifest).
    const v = await getVersion(store, uid);
    const manifest = manifestOf(v, await store.catalog.versionSegments(uid));
    const segments: Record<string, string> = {};
    for (const hex of manifest.segments) {
      segments[hex] = encodeSegment(await loadSegment(store, Buffer.from(hex, 'hex')), store.transforms).payload.toString('hex');
    }
    out.push({ manifest, segments });
  }
  return out;
}

/**
 * Imports exported versions into this catalog. Their blocks must be in this store's block store
 * (the same bucket or directory); blocks the catalog does not know yet are registered from it.
 * @returns per version, whether all its blocks were found (else it is imported as invalid)
 * @throws {UsageError} for malformed JSON input
 * @throws {ConflictError} when a version exists already
 */
export async function importVersions(store: Store, exported: unknown): Promise<{ uid: string; complete: boolean }[]> {
  if (!Array.isArray(exported)) throw new UsageError('Version metadata must be a JSON array (as `backy2 db export` prints)');
  assertWritable(store, 'import versions');
  const results: { uid: string; complete: boolean }[] = [];
  for (const item of exported as ExportedVersion[]) {
    if (!item || typeof item !== 'object' || !item.manifest || typeof item.segments !== 'object') throw new UsageError('Malformed version metadata');
    const uid = (item.manifest as { uid?: unknown }).uid;
    let manifest: Manifest;
    try {
      manifest = checkManifest(item.manifest, typeof uid === 'string' ? uid : '');
    } catch (err) {
      throw new UsageError(isBackyError(err) ? err.message : 'Malformed version metadata', { cause: err });
    }
    const maps: Buffer[] = [];
    for (const [hex, payloadHex] of Object.entries(item.segments)) {
      const payload = Buffer.from(payloadHex, 'hex');
      if (objectId(store.transforms, payload).toString('hex') !== hex) throw new UsageError(`Segment ${hex} does not match its digest`);
      let entries: Buffer;
      try {
        entries = decodeSegment(payload, hex);
      } catch (err) {
        throw new UsageError(`Segment ${hex} is malformed`, { cause: err });
      }
      await store.catalog.putSegment(Buffer.from(hex, 'hex'), entries.length / DIGEST_LENGTH, payload);
      maps.push(entries);
    }
    await registerPresentBlocks(store, maps);
    results.push({ uid: manifest.uid, complete: await importManifest(store, manifest) });
  }
  return results;
}

/** Registers the blocks an imported version uses (segment entries) that the block store has but the catalog lacks. */
async function registerPresentBlocks(store: Store, maps: readonly Buffer[]): Promise<void> {
  for (const entries of maps) {
    const found: { digest: Buffer; length: number; storedLength: number }[] = [];
    for (let at = 0; at < entries.length; at += DIGEST_LENGTH) {
      const digest = entries.subarray(at, at + DIGEST_LENGTH);
      if (digest.equals(SPARSE_ENTRY) || (await store.catalog.getBlock(digest))) continue;
      const info = await store.blocks.stat(StoreKeys.block(digest));
      const lengths = info && (await blockLengths(store, info.key, info.size));
      if (lengths) found.push({ digest: Buffer.from(digest), ...lengths });
    }
    await store.catalog.registerBlocks(found);
  }
}

/**
 * A store for one version straight from the block store, with a throwaway in-memory catalog
 * holding only that version: restores work when the catalog is lost or damaged.
 * @throws {ObjectMissingError} when the block store has no manifest for `uid`
 */
export async function storeWithoutCatalog(config: Config, blocks: BlockStore, uid: string, options: OpenStoreOptions = {}): Promise<Store> {
  const settings = await blockStoreSettings(config, blocks);
  const master = await unlock(blocks, settings, options);
  const catalog: Catalog = SqliteCatalog.open(':memory:');
  const store = assembleStore(config, catalog, blocks, settings, master);
  try {
    const manifest = await loadManifest(store, uid);
    // Blocks are not registered: restore reads every block from the block store anyway.
    await catalog.importVersion(versionOfManifest(manifest, manifest.status === 'invalid' ? 'invalid' : 'valid'), manifest.segments.map((hex) => Buffer.from(hex, 'hex')));
    return store;
  } catch (err) {
    await catalog.close();
    throw err;
  }
}

/** Options of {@link rebuildCatalogAt}. */
export interface RebuildAtOptions extends OpenStoreOptions {
  /** Move a catalog that still has versions aside instead of refusing. @default false */
  readonly force?: boolean | undefined;
}

/**
 * Rebuilds the catalog that `config` names from its block store. An existing catalog file that
 * cannot be opened, or (with `force`) one that has versions, is kept as `<file>.old-<time>`.
 * @returns the figures and where the old catalog went, if anywhere
 * @throws {ConflictError} when the catalog has versions and `force` is not set
 * @throws {LockedError} when a command is using the catalog
 */
export async function rebuildCatalogAt(config: Config, options: RebuildAtOptions = {}): Promise<RebuildResult & { movedTo: string | undefined }> {
  const where = config.store.catalog;
  const host = { host: config.host, log: options.log };
  // The store and its key are checked first: a wrong passphrase must not move the catalog aside.
  const blocks = await openBlockStore(config);
  let settings: StoreSettings;
  let master: Unlocked | undefined;
  let movedTo: string | undefined;
  let catalog: Catalog;
  try {
    settings = await blockStoreSettings(config, blocks);
    master = await unlock(blocks, settings, options);
    if (blocks.properties.readOnly) throw new StoreUnavailableError(`Cannot rebuild the catalog: block store ${blocks.properties.location} is read-only`);
    const way = await makeWay(where, host, options.force === true);
    movedTo = way.movedTo;
    catalog = way.reuse ? await openCatalog(where, host) : await createCatalog(where, host);
  } catch (err) {
    await blocks.close();
    throw err;
  }
  const store = assembleStore(config, catalog, blocks, settings, master);
  try {
    const result = await rebuildCatalog(store);
    // The rebuilt catalog is the block store's catalog now (a store made before init gets its settings).
    if (!(await loadStoreSettings(blocks))) await saveStoreSettings(blocks, settings);
    await catalog.bindToStore(settings.storeId, canonicalSettings(settings));
    await saveStoreOwner(blocks, (await catalog.identity()).catalogId, catalog.location, config.host);
    return { ...result, movedTo };
  } finally {
    await store.close();
  }
}

/**
 * Makes way for a rebuilt catalog: an unreadable catalog, or with `force` one that has versions,
 * is moved aside (a file to `<file>.old-<time>`, a database schema renamed); an empty one is reused.
 * @returns where the old catalog went, if anywhere, and whether the existing one is reused
 */
async function makeWay(where: CatalogLocation, host: CatalogOpenOptions, force: boolean): Promise<{ movedTo: string | undefined; reuse: boolean }> {
  let existing: Catalog;
  try {
    existing = await openCatalog(where, host);
  } catch (err) {
    if (!isBackyError(err)) throw err;
    // None (nothing to move), or unreadable (moved aside); a database out of reach is no reason to rebuild.
    if (err.code === 'E_NOT_FOUND') return { movedTo: undefined, reuse: false };
    if (where.type === 'postgresql') throw err;
    return { movedTo: await moveCatalogAside(where, host), reuse: false };
  }
  let versions: number;
  let holders: string[];
  try {
    versions = (await existing.listVersions()).length;
    holders = (await existing.listLocks()).map((l) => `${l.operation} (pid ${l.pid} on ${l.host})`);
  } finally {
    await existing.close();
  }
  // Moving a catalog away under a running command would lose what it writes.
  if (holders.length > 0) throw new LockedError(`Catalog ${catalogName(where)} is in use by ${[...new Set(holders)].join(', ')}`, { hint: 'wait for them to finish' });
  if (versions === 0) return { movedTo: undefined, reuse: true };
  if (!force) throw new ConflictError(`Catalog ${catalogName(where)} has ${versions} versions`, { hint: 'use --force to move it aside and rebuild' });
  return { movedTo: await moveCatalogAside(where, host), reuse: false };
}

/** Opens the block store of `config` and a catalog-less store for restoring `uid` (see storeWithoutCatalog). */
export async function openWithoutCatalog(config: Config, uid: string, options: OpenStoreOptions = {}): Promise<Store> {
  if (!VERSION_UID_PATTERN.test(uid)) {
    throw new UsageError(`Version ${printable(uid)} is not a uid: without the catalog, name the version by its full uid`, {
      hint: 'the block store lists them as versions/<uid>',
    });
  }
  const blocks = await openBlockStore(config);
  try {
    return await storeWithoutCatalog(config, blocks, uid, options);
  } catch (err) {
    if (isBackyError(err) && err.code === 'E_OBJECT_MISSING') {
      throw new NotFoundError(`Version "${uid}" has no manifest in block store ${blocks.properties.location}`, { cause: err });
    }
    throw err;
  }
}

/**
 * A stored block's plaintext and stored lengths: from its size in a plaintext store (64-byte
 * header, no transform), from its header otherwise (compression changes the size).
 * @returns undefined for an object too damaged to tell (it is then unknown to the catalog)
 */
async function blockLengths(store: Store, key: string, size: number): Promise<{ length: number; storedLength: number } | undefined> {
  if (size < OBJECT_HEADER_LENGTH) return undefined;
  if (!isSealed(store.transforms)) return { length: size - OBJECT_HEADER_LENGTH, storedLength: size - OBJECT_HEADER_LENGTH };
  try {
    const header = decodeObjectHeader(await store.blocks.get(key, { length: OBJECT_HEADER_LENGTH }), key);
    return { length: header.plainLength, storedLength: header.storedLength };
  } catch (err) {
    if (isBadBlock(err)) return undefined;
    throw err;
  }
}
