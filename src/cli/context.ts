import { openWithoutCatalog } from '../engine/operations/catalog-rebuild.js';
import { loadConfig, type Config } from '../engine/support/config.js';
import { openStore, type Store } from '../engine/store.js';
import type { CliIo, Globals } from './io.js';
import { keyProvider } from './keys.js';

/** Opens the store that the global options and environment name, runs `fn`, and closes it. */
export function withStore<T>(globals: Globals, io: CliIo, fn: (store: Store) => Promise<T>, options: { withoutKey?: boolean } = {}): Promise<T> {
  const withoutKey = options.withoutKey === true;
  return withOpened(globals, io, (config) => openStore(config, { keys: keyProvider(globals, io, { ask: !withoutKey }), withoutKey, log: catalogLog(io) }), fn);
}

/**
 * Like withStore, for commands that read or change only the catalog and delete objects by name (ls,
 * stats, protect, tag, rm, umount, due, check, metrics): they work on an encrypted store without its key
 * and never ask for it; a key that was given is still checked. (Cleanup needs the key: it checks
 * the names of the map segments it reads.)
 */
export function withCatalog<T>(globals: Globals, io: CliIo, fn: (store: Store) => Promise<T>): Promise<T> {
  return withStore(globals, io, fn, { withoutKey: true });
}

/** Like withStore, for one version read straight from the block store (restore --no-catalog). */
export function withoutCatalog(uid: string) {
  return <T>(globals: Globals, io: CliIo, fn: (store: Store) => Promise<T>): Promise<T> =>
    withOpened(globals, io, (config) => openWithoutCatalog(config, uid, { keys: keyProvider(globals, io) }), fn);
}

async function withOpened<T>(globals: Globals, io: CliIo, open: (config: Config) => Promise<Store>, fn: (store: Store) => Promise<T>): Promise<T> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const store = await open(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Where the catalog tells what it did on its own (a lock of a dead host taken over). */
export function catalogLog(io: CliIo): (line: string) => void {
  return (line) => io.stderr(`backy2: ${line}\n`);
}
