import { chmod } from 'node:fs/promises';
import type { BlockStore } from '../blockstore/block-store.js';
import type { Catalog } from '../catalog/catalog.js';
import { catalogName, createCatalog, discardCatalog } from '../catalog/open-catalog.js';
import { ConflictError, UsageError, isBackyError } from '../errors.js';
import { KeyPrefix } from '../objects/store-keys.js';
import { canonicalSettings, loadStoreSettings, newStoreSettings, saveStoreOwner, saveStoreSettings, type NewStoreOptions, type StoreSettings } from '../objects/store-settings.js';
import { DEFAULT_KDF, newMasterKey, saveKeyFile, settingsCheck, wrapMasterKey } from '../objects/key-files.js';
import { openBlockStore } from '../store.js';
import type { Config } from '../support/config.js';

/**
 * The compression of a new store when none is asked for, by measurement (README, Performance):
 * on S3 the network is the bottleneck and zstd level 1 made backups faster (4 GiB image into
 * radosgw: 23.5 s instead of 33.3 s, 56% of the bytes sent); on a local disk the CPU is, and it
 * made full backups about twice as slow, so file stores stay uncompressed unless asked.
 */
export function defaultCompression(blockStoreType: 'file' | 's3'): 'none' | 'zstd' {
  return blockStoreType === 's3' ? 'zstd' : 'none';
}

/** What a new store is to be. */
export interface InitOptions extends NewStoreOptions {
  /** The passphrase of the first key file; required with encryption. */
  readonly passphrase?: string | undefined;
  /** scrypt cost of that key file. @default DEFAULT_KDF */
  readonly kdf?: { readonly N: number; readonly r: number; readonly p: number } | undefined;
}

/** What `backy2 init` created. */
export interface InitResult {
  /** The store directory. */
  readonly path: string;
  readonly catalog: string;
  /** The block store, without credentials. */
  readonly blockStore: string;
  readonly settings: StoreSettings;
  /** The master key of an encrypted store (for a raw key file of an unattended host). */
  readonly masterKey: Buffer | undefined;
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
export async function initStore(config: Config, options: InitOptions = {}): Promise<InitResult> {
  const where = config.store;
  if ((options.encryption ?? 'none') !== 'none' && !options.passphrase) {
    throw new UsageError('An encrypted store needs a passphrase for its first key file', { hint: 'give --password-file FILE, BACKY2_PASSWORD_FILE or BACKY2_PASSWORD, or a terminal to ask on' });
  }
  // The catalog is created first and exclusively: of two inits at once, one fails here.
  let catalog: Catalog;
  try {
    catalog = await createCatalog(where.catalog, { host: config.host });
  } catch (err) {
    if (isBackyError(err) && err.code === 'E_CONFLICT') {
      const at = where.catalog.type === 'sqlite' ? `"${where.path}"` : `catalog ${catalogName(where.catalog)}`;
      throw new ConflictError(`A store exists at ${at} already (its catalog ${catalogName(where.catalog)} exists), or another backy2 init is creating it`, {
        hint: 'use it as it is; a store is created once',
      });
    }
    throw err;
  }
  let created = true;
  let blocks: BlockStore | undefined;
  try {
    blocks = await openBlockStore(config, { create: true });
    await refuseExisting(blocks);
    if (where.blockStore.type === 'file') await chmod(where.blockStore.path, 0o700);
    let settings = newStoreSettings({ ...options, compression: options.compression ?? defaultCompression(where.blockStore.type) });
    let masterKey: Buffer | undefined;
    if (settings.encryption !== 'none') {
      // The key file before the settings: settings that say "encrypted" always come with a key.
      masterKey = newMasterKey();
      settings = { ...settings, check: settingsCheck(masterKey, settings.storeId, canonicalSettings(settings)) };
      await saveKeyFile(blocks, await wrapMasterKey(masterKey, options.passphrase ?? '', options.kdf ?? DEFAULT_KDF));
    }
    await catalog.bindToStore(settings.storeId, canonicalSettings(settings));
    await saveStoreSettings(blocks, settings);
    const { catalogId } = await catalog.identity();
    await saveStoreOwner(blocks, catalogId, catalog.location, config.host);
    return { path: where.path, catalog: catalog.location, blockStore: blocks.properties.location, settings, masterKey };
  } catch (err) {
    // What this init created goes again; the block store's directory may hold other things.
    created = false;
    await discardCatalog(where.catalog, catalog).catch(() => undefined);
    throw err;
  } finally {
    if (created) await catalog.close();
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
