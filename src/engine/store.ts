import { existsSync } from 'node:fs';
import type { BlockStore } from './blockstore/block-store.js';
import { FaultInjectingStore } from './blockstore/fault-injection.js';
import { FileStore } from './blockstore/file-store.js';
import type { Catalog } from './catalog/catalog.js';
import { SqliteCatalog } from './catalog/sqlite-catalog.js';
import type { Config } from './support/config.js';
import { NotFoundError, StoreUnavailableError } from './errors.js';
import { debug } from './support/debug.js';
import { KeyPrefix } from './objects/store-keys.js';
import {
  loadStoreOwner,
  loadStoreSettings,
  newStoreSettings,
  saveStoreOwner,
  saveStoreSettings,
  type StoreSettings,
} from './objects/store-settings.js';
import { HashPool } from './pipeline/hash-pool.js';

/** An open store: settings, catalog, block store and the shared hash workers. */
export interface Store {
  readonly config: Config;
  /** What the store says about itself (format, digest, transforms). */
  readonly settings: StoreSettings;
  readonly catalog: Catalog;
  readonly blocks: BlockStore;
  /** True when the store cannot be changed (read-only media): reading commands still work. */
  readonly readOnly: boolean;
  /** Hash worker threads, started on first use and stopped by `close`. */
  hasher(): HashPool;
  close(): Promise<void>;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /**
   * Wraps the block store after the standard layers; tests insert their own layers here.
   * Layers, outermost first: this hook, fault injection (config.faults), the backend (file or
   * S3, which retries with backoff itself).
   */
  readonly wrapBlockStore?: (store: BlockStore) => BlockStore;
}

/**
 * Opens the store that `config` names: its settings, its catalog, and checks that the two belong
 * together (a catalog of another store, or a second catalog over one block store, is refused).
 * A store made before `backy2 init` existed is adopted: its settings are written on first use.
 * @throws {NotFoundError} when there is no store (`backy2 init` creates one)
 * @throws {StoreUnavailableError} when it cannot be opened, its catalog is missing or damaged, or
 * the catalog and block store do not belong together
 * @example
 * const store = await openStore(await loadConfig({ storePath: '/srv/backy2' }));
 * try { ... } finally { await store.close(); }
 */
export async function openStore(config: Config, options: OpenStoreOptions = {}): Promise<Store> {
  const location = config.store;
  const blocks = await openBlockStore(config, options);
  try {
    const settings = await loadStoreSettings(blocks);
    if (!existsSync(location.catalogPath)) {
      if (!settings) throw noStore(location.path);
      throw new StoreUnavailableError(`The catalog of store ${blocks.properties.location} is missing: "${location.catalogPath}"`, {
        hint: 'run `backy2 db rebuild` to recreate it from the block store',
      });
    }
    const catalog = SqliteCatalog.open(location.catalogPath);
    try {
      const bound = await bindCatalog(blocks, catalog, settings);
      debug(`store ${location.path} opened`);
      return assembleStore(config, catalog, blocks, bound);
    } catch (err) {
      await catalog.close();
      throw err;
    }
  } catch (err) {
    await blocks.close();
    throw err;
  }
}

/**
 * Opens only the block store that `config` names, with the standard layers (no settings check).
 * @throws {NotFoundError} when it does not exist
 * @throws {StoreUnavailableError} when it cannot be opened
 */
export async function openBlockStore(config: Config, options: OpenStoreOptions & { readonly create?: boolean } = {}): Promise<BlockStore> {
  const where = config.store.blockStore;
  const create = options.create === true;
  // The S3 SDK costs about 20 MiB and 0.1 s to load: only when a store needs it.
  let store: BlockStore =
    where.type === 's3'
      ? await (await import('./blockstore/s3-store.js')).S3Store.open({ ...where, createBucket: create })
      : await FileStore.open(where.path, { maxConnections: config.writers, create });
  if (config.faults) store = new FaultInjectingStore(store, config.faults);
  return options.wrapBlockStore ? options.wrapBlockStore(store) : store;
}

/**
 * The settings of a block store opened without its catalog (rebuild, restore without catalog).
 * A store made before `backy2 init` has none but holds versions: it reads with the defaults.
 * @throws {NotFoundError} when the block store holds no store at all
 */
export async function blockStoreSettings(config: Config, blocks: BlockStore): Promise<StoreSettings> {
  const settings = await loadStoreSettings(blocks);
  if (settings) return settings;
  for await (const _ of blocks.list(KeyPrefix.manifests)) return newStoreSettings();
  throw noStore(config.store.path);
}

/**
 * Makes a Store of parts that are already open (tests use a memory block store and an
 * in-memory catalog). Closing the store closes the parts.
 * @param settings the store's settings @default those of a new store
 */
export function assembleStore(config: Config, catalog: Catalog, blocks: BlockStore, settings: StoreSettings = newStoreSettings()): Store {
  let hasher: HashPool | undefined;
  return {
    config,
    settings,
    catalog,
    blocks,
    readOnly: catalog.readOnly || blocks.properties.readOnly,
    hasher: () => (hasher ??= new HashPool(config.hashWorkers)),
    close: async () => {
      await hasher?.close();
      await catalog.close();
      await blocks.close();
    },
  };
}

/**
 * Refuses to change a read-only store, before any work starts.
 * @param what the operation, for the message (`backup`, `rm`, ...)
 * @throws {StoreUnavailableError} when the store is read-only
 */
export function assertWritable(store: Store, what: string): void {
  if (!store.readOnly) return;
  const where = store.blocks.properties.readOnly ? store.blocks.properties.location : `catalog "${store.catalog.location}"`;
  throw new StoreUnavailableError(`Cannot ${what}: the store is read-only (${where} cannot be written)`, {
    hint: 'ls, restore and read-only mounts work; copy the store to writable media to change it',
  });
}

function noStore(where: string): NotFoundError {
  return new NotFoundError(`No store at "${where}"`, { hint: 'create one with `backy2 init`, or name the store with --store or BACKY2_STORE' });
}

/**
 * Checks that a catalog and a block store belong together, and records what is missing: the
 * settings of a store made before `init` existed, the catalog's store id, the block store's owner.
 */
async function bindCatalog(blocks: BlockStore, catalog: Catalog, found: StoreSettings | undefined): Promise<StoreSettings> {
  const writable = !catalog.readOnly && !blocks.properties.readOnly;
  const { catalogId, storeId } = await catalog.identity();
  let settings = found;
  if (!settings) {
    if (storeId !== null) {
      throw new StoreUnavailableError(`The settings object of store ${blocks.properties.location} is missing (catalog "${catalog.location}" belongs to store ${storeId})`, {
        hint: 'restore the object "settings" from a copy of the store',
      });
    }
    // A store made before `backy2 init` existed: it describes itself from now on.
    settings = newStoreSettings();
    if (writable) await saveStoreSettings(blocks, settings);
  }
  if (storeId !== null && storeId !== settings.storeId) {
    throw new StoreUnavailableError(`Catalog "${catalog.location}" belongs to another store (${storeId}) than ${blocks.properties.location} (${settings.storeId})`, {
      hint: 'check --store and the config\'s catalog and blockStore',
    });
  }
  const owner = await loadStoreOwner(blocks);
  if (owner && owner.catalogId !== catalogId) {
    throw new StoreUnavailableError(
      `Block store ${blocks.properties.location} is used by another catalog ("${owner.catalog}" on ${owner.host}): two catalogs over one block store would delete each other's blocks`,
      { hint: 'use that catalog; `backy2 db rebuild --force` makes this one the owner, and the other is refused from then on' },
    );
  }
  if (writable) {
    if (storeId === null) await catalog.bindToStore(settings.storeId);
    if (!owner) await saveStoreOwner(blocks, catalogId, catalog.location);
  }
  return settings;
}
