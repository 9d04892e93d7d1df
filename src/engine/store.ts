import type { BlockStore } from './blockstore/block-store.js';
import { FaultInjectingStore } from './blockstore/fault-injection.js';
import { FileStore } from './blockstore/file-store.js';
import type { Catalog } from './catalog/catalog.js';
import { catalogName, openCatalog } from './catalog/open-catalog.js';
import type { Config } from './support/config.js';
import { KeyError, NotFoundError, StoreUnavailableError, isBackyError } from './errors.js';
import { debug } from './support/debug.js';
import { KeyPrefix } from './objects/store-keys.js';
import {
  canonicalSettings,
  describeSettingsChange,
  loadStoreOwner,
  loadStoreSettings,
  newStoreSettings,
  saveStoreOwner,
  saveStoreSettings,
  settingsOfStoreBeforeInit,
  transformsOf,
  type StoreSettings,
} from './objects/store-settings.js';
import { deriveSealKeys, settingsCheck, unlockMasterKey, type KeySource } from './objects/key-files.js';
import type { Transforms } from './objects/object-seal.js';
import { BlockWorkers } from './pipeline/block-workers.js';

/** An open store: settings, catalog, block store and the shared block workers. */
export interface Store {
  readonly config: Config;
  /** What the store says about itself (format, digest, transforms). */
  readonly settings: StoreSettings;
  readonly catalog: Catalog;
  readonly blocks: BlockStore;
  /** True when the store cannot be changed (read-only media): reading commands still work. */
  readonly readOnly: boolean;
  /**
   * How its objects are made (compression, encryption keys).
   * @throws {KeyError} for an encrypted store opened without its key (commands that need no data do)
   */
  readonly transforms: Transforms;
  /** The master key of an encrypted store once unlocked (key management rewraps it). */
  readonly masterKey: Buffer | undefined;
  /** The id of the key file whose passphrase unlocked it (undefined for a raw key file). */
  readonly keyFile: string | undefined;
  /** Block worker threads, started on first use and stopped by `close`. */
  workers(): BlockWorkers;
  close(): Promise<void>;
}

/** Gives the key of an encrypted store when asked (passphrase from a file, the environment, a TTY). */
export type KeyProvider = (storeId: string) => Promise<KeySource | undefined>;

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Where the key of an encrypted store comes from; asked only when the store is encrypted. */
  readonly keys?: KeyProvider | undefined;
  /**
   * Open an encrypted store without its key: the catalog and the list of objects work, object
   * contents do not (ls, rm, key list, scrub --without-key). @default false
   */
  readonly withoutKey?: boolean;
  /**
   * Wraps the block store after the standard layers; tests insert their own layers here.
   * Layers, outermost first: this hook, fault injection (config.faults), the backend (file or
   * S3, which retries with backoff itself).
   */
  readonly wrapBlockStore?: (store: BlockStore) => BlockStore;
  /** Where the catalog tells lock takeovers (a dead host's lease expired). @default nowhere */
  readonly log?: ((line: string) => void) | undefined;
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
    let catalog: Catalog;
    try {
      catalog = await openCatalog(location.catalog, { host: config.host, log: options.log });
    } catch (err) {
      if (!isBackyError(err) || err.code !== 'E_NOT_FOUND') throw err;
      if (!settings) throw noStore(location.catalog.type === 'sqlite' ? location.path : catalogName(location.catalog));
      throw new StoreUnavailableError(`The catalog of store ${blocks.properties.location} is missing: ${catalogName(location.catalog)}`, {
        hint: 'run `backy2 db rebuild` to recreate it from the block store',
      });
    }
    try {
      const bound = await bindCatalog(blocks, catalog, settings, config.host);
      const unlocked = await unlock(blocks, bound, options);
      debug(`store ${location.path} opened`);
      return assembleStore(config, catalog, blocks, bound, unlocked);
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
  for await (const _ of blocks.list(KeyPrefix.manifests)) return settingsOfStoreBeforeInit();
  throw noStore(config.store.path);
}

/**
 * The master key of an encrypted store, from the key provider; checks that the settings are the
 * ones made with that key. A plaintext store that holds key files was tampered with (its
 * encryption switched off): refused, or backups would go on in plaintext.
 * @returns the master key, or undefined for a plaintext store (or `withoutKey`)
 * @throws {KeyError} when the key is missing or wrong
 * @throws {StoreUnavailableError} when the settings do not match the key, or were tampered with
 */
export async function unlock(blocks: BlockStore, settings: StoreSettings, options: OpenStoreOptions): Promise<Unlocked | undefined> {
  if (settings.encryption === 'none') {
    for await (const _ of blocks.list(KeyPrefix.keyFiles)) {
      throw new StoreUnavailableError(`Store ${blocks.properties.location} says it is not encrypted, but holds key files: its settings were changed`, {
        hint: 'restore the object "settings" from a copy of the store',
      });
    }
    return undefined;
  }
  const source = await options.keys?.(settings.storeId);
  if (!source) {
    if (options.withoutKey) return undefined;
    throw new KeyError(`Store ${blocks.properties.location} is encrypted: its passphrase or key file is needed`, {
      hint: 'give --password-file FILE, BACKY2_PASSWORD_FILE or BACKY2_PASSWORD (or a terminal to ask on), or --key-file FILE',
    });
  }
  if (source.kind === 'raw' && source.storeId !== settings.storeId) {
    throw new KeyError(`Key file "${source.file}" belongs to store ${source.storeId.slice(0, 8)}…, not to ${blocks.properties.location} (${settings.storeId.slice(0, 8)}…)`);
  }
  const unlocked = await unlockMasterKey(blocks, settings.storeId, source);
  if (settings.check !== settingsCheck(unlocked.master, settings.storeId, canonicalSettings(settings))) {
    throw new StoreUnavailableError(`The settings of store ${blocks.properties.location} were changed without its key: refused`, {
      hint: 'restore the object "settings" from a copy of the store',
    });
  }
  return unlocked;
}

/** An unlocked encrypted store's master key, and the key file that opened it. */
export interface Unlocked {
  readonly master: Buffer;
  readonly keyFile: string | undefined;
}

/**
 * Makes a Store of parts that are already open (tests use a memory block store and an
 * in-memory catalog). Closing the store closes the parts.
 * @param settings the store's settings @default those of a new store
 * @param master the master key of an encrypted store, unlocked
 */
export function assembleStore(config: Config, catalog: Catalog, blocks: BlockStore, settings: StoreSettings = newStoreSettings(), unlocked?: Unlocked): Store {
  const master = unlocked?.master;
  let workers: BlockWorkers | undefined;
  const encrypted = settings.encryption !== 'none';
  const transforms = encrypted && !master ? undefined : transformsOf(settings, master ? deriveSealKeys(master, settings.storeId) : undefined);
  const locked = () =>
    new KeyError(`Store ${blocks.properties.location} is encrypted and was opened without its key: this needs it`, {
      hint: 'give --password-file FILE, BACKY2_PASSWORD_FILE or BACKY2_PASSWORD, or --key-file FILE',
    });
  return {
    config,
    settings,
    catalog,
    blocks,
    readOnly: catalog.readOnly || blocks.properties.readOnly,
    get transforms(): Transforms {
      if (!transforms) throw locked();
      return transforms;
    },
    masterKey: master,
    keyFile: unlocked?.keyFile,
    workers: () => {
      if (!transforms) throw locked();
      return (workers ??= new BlockWorkers(config.hashWorkers, transforms));
    },
    close: async () => {
      await workers?.close();
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
 * @param host this backup host's name (config `host`), recorded with a new owner
 */
async function bindCatalog(blocks: BlockStore, catalog: Catalog, found: StoreSettings | undefined, host: string): Promise<StoreSettings> {
  const writable = !catalog.readOnly && !blocks.properties.readOnly;
  const { catalogId, storeId, storeSettings } = await catalog.identity();
  let settings = found;
  if (!settings) {
    if (storeId !== null) {
      throw new StoreUnavailableError(`The settings object of store ${blocks.properties.location} is missing (catalog "${catalog.location}" belongs to store ${storeId})`, {
        hint: 'restore the object "settings" from a copy of the store',
      });
    }
    // A store made before `backy2 init` existed: it describes itself from now on (new objects
    // stay as its old ones are).
    settings = settingsOfStoreBeforeInit();
    if (writable) await saveStoreSettings(blocks, settings);
  }
  if (storeId !== null && storeId !== settings.storeId) {
    throw new StoreUnavailableError(`Catalog "${catalog.location}" belongs to another store (${storeId}) than ${blocks.properties.location} (${settings.storeId})`, {
      hint: 'check --store and the config\'s catalog and blockStore',
    });
  }
  // Settings are never changed after init: different ones were changed by someone else (a store
  // switched to plaintext would take the next backups in plaintext).
  const canonical = canonicalSettings(settings);
  if (storeSettings !== null && storeSettings !== canonical) {
    throw new StoreUnavailableError(
      `The settings of store ${blocks.properties.location} are not those catalog "${catalog.location}" was made with (${describeSettingsChange(storeSettings, settings)}): they were changed`,
      { hint: 'restore the object "settings" from a copy of the store' },
    );
  }
  const owner = await loadStoreOwner(blocks);
  if (owner && owner.catalogId !== catalogId) {
    throw new StoreUnavailableError(
      `Block store ${blocks.properties.location} is used by another catalog ("${owner.catalog}" on ${owner.host}): two catalogs over one block store would delete each other's blocks`,
      { hint: 'use that catalog; `backy2 db rebuild --force` makes this one the owner, and the other is refused from then on' },
    );
  }
  if (writable) {
    if (storeId === null || storeSettings === null) await catalog.bindToStore(settings.storeId, canonical);
    if (!owner) await saveStoreOwner(blocks, catalogId, catalog.location, host);
  }
  return settings;
}
