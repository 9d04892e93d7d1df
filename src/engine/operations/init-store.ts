import { chmod, rm } from 'node:fs/promises';
import type { BlockStore } from '../blockstore/block-store.js';
import { SqliteCatalog } from '../catalog/sqlite-catalog.js';
import { ConflictError, isBackyError } from '../errors.js';
import { KeyPrefix } from '../objects/store-keys.js';
import { loadStoreSettings, newStoreSettings, saveStoreOwner, saveStoreSettings, type StoreSettings } from '../objects/store-settings.js';
import { openBlockStore } from '../store.js';
import type { Config } from '../support/config.js';

/** What `backy2 init` created. */
export interface InitResult {
  /** The store directory. */
  readonly path: string;
  readonly catalog: string;
  /** The block store, without credentials. */
  readonly blockStore: string;
  readonly settings: StoreSettings;
}

/**
 * Creates the store that `config` names: a new catalog, and the block store with its settings
 * and owner. Everything is private to the owner (directories 0700, files 0600). Nothing else
 * creates a store: a mistyped path is an error, never a new empty store.
 * @param config names the store (directory, catalog, block store)
 * @returns where everything went
 * @throws {ConflictError} when a store (or its catalog) exists there already, or another `init` is creating it
 * @throws {StoreUnavailableError} when it cannot be created
 * @example
 * await initStore(await loadConfig({ storePath: '/srv/backy2' }));
 */
export async function initStore(config: Config): Promise<InitResult> {
  const where = config.store;
  // The catalog file is created first and exclusively: of two inits at once, one fails here.
  let catalog: SqliteCatalog;
  try {
    catalog = SqliteCatalog.create(where.catalogPath);
  } catch (err) {
    if (isBackyError(err) && err.code === 'E_CONFLICT') {
      throw new ConflictError(`A store exists at "${where.path}" already (its catalog "${where.catalogPath}" exists), or another backy2 init is creating it`, {
        hint: 'use it as it is; a store is created once',
      });
    }
    throw err;
  }
  let blocks: BlockStore | undefined;
  try {
    blocks = await openBlockStore(config, { create: true });
    await refuseExisting(blocks);
    if (where.blockStore.type === 'file') await chmod(where.blockStore.path, 0o700);
    const settings = newStoreSettings();
    await catalog.bindToStore(settings.storeId);
    await saveStoreSettings(blocks, settings);
    const { catalogId } = await catalog.identity();
    await saveStoreOwner(blocks, catalogId, catalog.location);
    return { path: where.path, catalog: catalog.location, blockStore: blocks.properties.location, settings };
  } catch (err) {
    await catalog.close();
    // What this init created goes again; the block store's directory may hold other things.
    for (const suffix of ['', '-wal', '-shm']) await rm(`${where.catalogPath}${suffix}`, { force: true });
    throw err;
  } finally {
    await catalog.close();
    await blocks?.close();
  }
}

/** A block store that holds a store already must not get a second catalog (see store-settings.ts). */
async function refuseExisting(blocks: BlockStore): Promise<void> {
  const hint = 'if its catalog is lost, `backy2 db rebuild` recreates it from the block store';
  if (await loadStoreSettings(blocks)) throw new ConflictError(`Block store ${blocks.properties.location} holds a store already`, { hint });
  for (const prefix of [KeyPrefix.manifests, KeyPrefix.blocks]) {
    for await (const _ of blocks.list(prefix)) {
      throw new ConflictError(`Block store ${blocks.properties.location} holds backups of a store already`, { hint });
    }
  }
}
