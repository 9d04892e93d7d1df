import { existsSync } from 'node:fs';
import type { BlockStore } from './blockstore/block-store.js';
import { FaultInjectingStore } from './blockstore/fault-injection.js';
import { FileStore } from './blockstore/file-store.js';
import type { Catalog } from './catalog/catalog.js';
import { SqliteCatalog } from './catalog/sqlite-catalog.js';
import type { Config } from './support/config.js';
import { StoreUnavailableError } from './errors.js';
import { debug } from './support/debug.js';
import { HashPool } from './pipeline/hash-pool.js';

/** An open store: catalog, block store and the shared hash workers. */
export interface Store {
  readonly config: Config;
  readonly catalog: Catalog;
  readonly blocks: BlockStore;
  /** Hash worker threads, started on first use and stopped by `close`. */
  hasher(): HashPool;
  close(): Promise<void>;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Create the store when it does not exist yet (backups do; reading commands do not). @default false */
  readonly create?: boolean;
  /**
   * Wraps the block store after the standard layers; tests insert their own layers here.
   * Layers, outermost first: this hook, fault injection (config.faults), the backend (file or
   * S3, which retries with backoff itself).
   */
  readonly wrapBlockStore?: (store: BlockStore) => BlockStore;
}

/**
 * Opens the store that `config` names.
 * @throws {StoreUnavailableError} when it does not exist (and `create` is false) or cannot be opened
 * @example
 * const store = await openStore(loadConfig({ storePath: '/srv/backy2' }), { create: true });
 * try { ... } finally { await store.close(); }
 */
export async function openStore(config: Config, options: OpenStoreOptions = {}): Promise<Store> {
  const location = config.store;
  if (!options.create && !existsSync(location.catalogPath)) {
    throw new StoreUnavailableError(`No store at "${location.path}": catalog "${location.catalogPath}" does not exist`, {
      hint: 'run a backup to create it, or name the store with --store or BACKY2_STORE',
    });
  }
  const blocks = await openBlockStore(config, options);
  let catalog: Catalog;
  try {
    catalog = SqliteCatalog.open(location.catalogPath);
  } catch (err) {
    await blocks.close();
    throw err;
  }
  debug(`store ${location.path} opened`);
  return assembleStore(config, catalog, blocks);
}

/**
 * Opens only the block store that `config` names, with the standard layers.
 * @throws {StoreUnavailableError} when it cannot be opened
 */
export async function openBlockStore(config: Config, options: Pick<OpenStoreOptions, 'wrapBlockStore'> = {}): Promise<BlockStore> {
  const where = config.store.blockStore;
  // The S3 SDK costs about 20 MiB and 0.1 s to load: only when a store needs it.
  let store: BlockStore =
    where.type === 's3' ? await (await import('./blockstore/s3-store.js')).S3Store.open(where) : await FileStore.open(where.path, { maxConnections: config.writers });
  if (config.faults) store = new FaultInjectingStore(store, config.faults);
  return options.wrapBlockStore ? options.wrapBlockStore(store) : store;
}

/**
 * Makes a Store of parts that are already open (tests use a memory block store and an
 * in-memory catalog). Closing the store closes the parts.
 */
export function assembleStore(config: Config, catalog: Catalog, blocks: BlockStore): Store {
  let hasher: HashPool | undefined;
  return {
    config,
    catalog,
    blocks,
    hasher: () => (hasher ??= new HashPool(config.hashWorkers)),
    close: async () => {
      await hasher?.close();
      await catalog.close();
      await blocks.close();
    },
  };
}
