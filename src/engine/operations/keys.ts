/**
 * Passphrases of an encrypted store: each key file wraps the same master key, so adding,
 * changing or removing one rewrites no data. A new key file is written before an old one goes,
 * so a kill at any moment leaves at least one that opens the store; removals hold the `keys` lock,
 * so two of them at once cannot remove the last two key files.
 */
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { keysResource, withLocks } from '../catalog/locking.js';
import { DEFAULT_KDF, deleteKeyFile, listKeyFiles, saveKeyFile, wrapMasterKey, type KeyFile } from '../objects/key-files.js';
import { assertWritable, type Store } from '../store.js';

/** A key file as listed (never its secrets). */
export interface KeyInfo {
  readonly id: string;
  readonly createdAt: number;
  readonly host: string;
  readonly kdf: string;
  /** True for the key file whose passphrase opened the store now. */
  readonly current: boolean;
}

/** Options of the key operations that make a key file. */
export interface KeyOptions {
  /** scrypt cost. @default DEFAULT_KDF */
  readonly kdf?: { readonly N: number; readonly r: number; readonly p: number } | undefined;
}

/**
 * Lists the key files of a store.
 * @throws {UsageError} when the store is not encrypted
 */
export async function listKeys(store: Store): Promise<KeyInfo[]> {
  requireEncrypted(store);
  return (await listKeyFiles(store.blocks)).map((f) => info(f, store.keyFile));
}

/**
 * Adds a key file for another passphrase (the store must be unlocked).
 * @returns the new key file
 */
export async function addKey(store: Store, passphrase: string, options: KeyOptions = {}): Promise<KeyInfo> {
  const master = unlockedMaster(store, 'add a key');
  const file = await wrapMasterKey(master, passphrase, options.kdf ?? DEFAULT_KDF);
  await saveKeyFile(store.blocks, file);
  return info(file, undefined);
}

/**
 * Removes a key file; the last one is never removed (the store would be lost).
 * @param id the key file's id, or a unique prefix
 * @throws {ConflictError} for the last key file
 * @throws {NotFoundError} when no key file has that id
 */
export async function removeKey(store: Store, id: string): Promise<KeyInfo> {
  requireEncrypted(store);
  assertWritable(store, 'remove a key');
  return withLocks(store.catalog, [{ resource: keysResource, mode: 'exclusive', operation: 'key remove' }], async () => {
    const files = await listKeyFiles(store.blocks);
    const file = pick(files, id);
    if (files.length === 1) throw new ConflictError(`Key file ${file.id} is the store's last: without it the store cannot be opened`, { hint: 'add another with `backy2 key add` first' });
    await deleteKeyFile(store.blocks, file.id);
    return info(file, store.keyFile);
  });
}

/**
 * Changes the passphrase of the key file that opened the store: the new key file is written,
 * then the old one removed.
 * @returns the new key file
 */
export async function changePassphrase(store: Store, passphrase: string, options: KeyOptions = {}): Promise<KeyInfo> {
  const master = unlockedMaster(store, 'change a passphrase');
  if (store.keyFile === undefined) throw new UsageError('The store was opened with a raw key file: no passphrase to change', { hint: 'use `backy2 key add` to add one' });
  const old = store.keyFile;
  const file = await wrapMasterKey(master, passphrase, options.kdf ?? DEFAULT_KDF);
  return withLocks(store.catalog, [{ resource: keysResource, mode: 'exclusive', operation: 'key passwd' }], async () => {
    await saveKeyFile(store.blocks, file);
    await deleteKeyFile(store.blocks, old);
    return info(file, undefined);
  });
}

function unlockedMaster(store: Store, what: string): Buffer {
  requireEncrypted(store);
  assertWritable(store, what);
  if (!store.masterKey) throw new UsageError(`To ${what}, open the store with its key`);
  return store.masterKey;
}

function requireEncrypted(store: Store): void {
  if (store.settings.encryption === 'none') throw new UsageError(`Store ${store.blocks.properties.location} is not encrypted: it has no keys`);
}

function pick(files: readonly KeyFile[], id: string): KeyFile {
  const matches = files.filter((f) => f.id.startsWith(id));
  if (matches.length === 1 && matches[0]) return matches[0];
  if (matches.length > 1) throw new UsageError(`Key id "${id}" is ambiguous`, { hint: 'type more of it (backy2 key list)' });
  throw new NotFoundError(`No key file "${id}"`, { hint: 'run `backy2 key list`' });
}

function info(f: KeyFile, current: string | undefined): KeyInfo {
  return { id: f.id, createdAt: f.createdAt, host: f.host, kdf: `scrypt N=${f.kdf.N} r=${f.kdf.r} p=${f.kdf.p}`, current: f.id === current };
}
