import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadStoreOwner, type StoreOwner } from '../../../../src/engine/objects/store-settings.js';
import { copyCatalog } from '../../../../src/engine/operations/catalog-copy.js';
import { rebuildCatalogAt } from '../../../../src/engine/operations/catalog-rebuild.js';
import { initStore } from '../../../../src/engine/operations/init-store.js';
import { openBlockStore, openStore } from '../../../../src/engine/store.js';
import type { Config } from '../../../../src/engine/support/config.js';
import { testConfig } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

/** The block store's owner object as recorded now. */
async function ownerOf(config: Config): Promise<StoreOwner | undefined> {
  const blocks = await openBlockStore(config);
  try {
    return await loadStoreOwner(blocks);
  } finally {
    await blocks.close();
  }
}

/** The same store as `config`, its catalog at `catalogFile`, run on backup host `host`. */
function withCatalog(config: Config, catalogFile: string, host: string): Config {
  return { ...config, host, store: { ...config.store, catalogPath: catalogFile, catalog: { type: 'sqlite', path: catalogFile } } };
}

describe("a block store's owner names the configured backup host (config `host`), not the machine's name", () => {
  // Names no machine here has, so that os.hostname() cannot pass for them.
  const hosts = ['backup-owner-a', 'backup-owner-b', 'backup-owner-c', 'backup-owner-d'];
  it('the test hosts are not this machine', () => {
    expect(hosts).not.toContain(hostname());
  });

  it('init, a store that lost its owner object, db rebuild and db copy record the configured host; another catalog is refused naming it', async () => {
    const dir = makeTempDir('backy2-owner-');
    const config = testConfig(dir, { host: hosts[0]! });
    await initStore(config);
    expect(await ownerOf(config)).toMatchObject({ catalog: path.join(dir, 'catalog.sqlite'), host: hosts[0] });

    // An owner object gone (a store made before owners were recorded): the next opening records it.
    rmSync(path.join(dir, 'owner'));
    await (await openStore({ ...config, host: hosts[1]! })).close();
    expect((await ownerOf(config))?.host).toBe(hosts[1]);

    // A catalog rebuilt elsewhere becomes the owner; the old one is refused, and told which host has it.
    const rebuilt = withCatalog(config, path.join(dir, 'rebuilt.sqlite'), hosts[2]!);
    await rebuildCatalogAt(rebuilt);
    expect(await ownerOf(config)).toMatchObject({ catalog: path.join(dir, 'rebuilt.sqlite'), host: hosts[2] });
    await expect(openStore(config)).rejects.toThrow(`is used by another catalog ("${path.join(dir, 'rebuilt.sqlite')}" on ${hosts[2]})`);

    // db copy hands the block store to the new catalog, recorded with the host that copied it.
    await copyCatalog({ ...rebuilt, host: hosts[3]! }, { type: 'sqlite', path: path.join(dir, 'copy.sqlite') });
    expect(await ownerOf(config)).toMatchObject({ catalog: path.join(dir, 'copy.sqlite'), host: hosts[3] });
  });
});
