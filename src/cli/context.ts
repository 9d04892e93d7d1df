import { openWithoutCatalog } from '../engine/operations/catalog-rebuild.js';
import { loadConfig } from '../engine/support/config.js';
import { openStore, type Store } from '../engine/store.js';
import type { CliIo, Globals } from './io.js';

/** Opens the store that the global options and environment name, runs `fn`, and closes it. */
export async function withStore<T>(globals: Globals, io: CliIo, fn: (store: Store) => Promise<T>): Promise<T> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const store = await openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Like withStore, for one version read straight from the block store (restore --no-catalog). */
export function withoutCatalog(uid: string) {
  return async <T>(globals: Globals, io: CliIo, fn: (store: Store) => Promise<T>): Promise<T> => {
    const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
    const store = await openWithoutCatalog(config, uid);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
}
