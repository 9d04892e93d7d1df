import { MemoryStore } from '../../src/engine/blockstore/memory-store.js';
import { SqliteCatalog } from '../../src/engine/catalog/sqlite-catalog.js';
import { defaultConfig, type Config } from '../../src/engine/support/config.js';
import { initStore } from '../../src/engine/operations/init-store.js';
import { objectId } from '../../src/engine/objects/object-seal.js';
import { assembleStore, openStore, type Store } from '../../src/engine/store.js';
import { makeTempDir } from './temp.js';

/** Small blocks keep tests fast (as restic weakens its KDF in tests). */
export const TEST_BLOCK_SIZE = 64 * 1024;

/** Config for a store in `dir` with test-sized blocks, ignoring the environment and /etc. */
export function testConfig(dir: string, overrides: Partial<Config> = {}): Config {
  return { ...defaultConfig(dir), blockSize: TEST_BLOCK_SIZE, ...overrides };
}

/** A store on a memory block store with an in-memory catalog. */
export function makeMemoryStore(overrides: Partial<Config> = {}): Store {
  return assembleStore(testConfig('/nonexistent', overrides), SqliteCatalog.open(':memory:'), new MemoryStore());
}

/** A real file store with its catalog in a temp directory. */
export async function makeTempStore(overrides: Partial<Config> = {}): Promise<{ store: Store; dir: string }> {
  const dir = makeTempDir('backy2-store-');
  const config = testConfig(dir, overrides);
  await initStore(config);
  return { store: await openStore(config), dir };
}

/** The digest a store names `data` by (its blocks' object keys): BLAKE3 in new stores. */
export function nameOf(store: Store, data: Uint8Array): Buffer {
  return objectId(store.transforms, data);
}
