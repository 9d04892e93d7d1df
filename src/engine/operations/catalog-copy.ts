/**
 * `db copy`: moves a store's catalog into a new one of either kind, typically a SQLite catalog
 * into a PostgreSQL database shared by many backup hosts. Row by row, table by table, then the
 * block store's owner becomes the new catalog, so the old one is refused from then on (two
 * catalogs over one block store would delete each other's blocks).
 */
import { TRANSFER_TABLES, type Catalog, type TransferTable } from '../catalog/catalog.js';
import { catalogName, createCatalog, discardCatalog } from '../catalog/open-catalog.js';
import { ConflictError, LockedError, StoreUnavailableError, UsageError } from '../errors.js';
import { canonicalSettings, saveStoreOwner } from '../objects/store-settings.js';
import { assertWritable, openStore, type OpenStoreOptions } from '../store.js';
import type { CatalogLocation, Config } from '../support/config.js';

/** Options of {@link copyCatalog}. */
export interface CopyCatalogOptions extends OpenStoreOptions {
  /** Rows read and written at a time. @default 2000 */
  readonly batch?: number | undefined;
  /** Told after each batch: the table and the rows copied of it so far. @default nothing */
  readonly progress?: ((table: TransferTable, rows: number) => void) | undefined;
}

/** What a copy moved. */
export interface CopyCatalogResult {
  /** The old catalog and the new one, for messages (no password). */
  readonly from: string;
  readonly to: string;
  readonly versions: number;
  readonly blocks: number;
  /** Rows copied per table. */
  readonly rows: Readonly<Record<TransferTable, number>>;
}

/**
 * Copies the catalog of the store `config` names into a new catalog at `to` and makes the new one
 * the block store's catalog. Refused while any command holds a lock in the old catalog; should
 * one change it during the copy all the same, the copy is undone and the old catalog stays the
 * store's.
 * @returns what was copied
 * @throws {UsageError} when `to` is the catalog itself
 * @throws {ConflictError} when `to` has a catalog already, or the old one changed during the copy
 * @throws {LockedError} when a command holds a lock in the old catalog
 * @throws {StoreUnavailableError} when either catalog or the block store cannot be used
 * @example
 * await copyCatalog(config, { type: 'postgresql', url: 'postgresql://backy2@db/backy2', passwordFile: undefined, leaseMs: 120_000, poolSize: 4 });
 */
export async function copyCatalog(config: Config, to: CatalogLocation, options: CopyCatalogOptions = {}): Promise<CopyCatalogResult> {
  const from = config.store.catalog;
  if (catalogName(from) === catalogName(to)) throw new UsageError(`Cannot copy catalog ${catalogName(from)} onto itself`, { hint: 'name another catalog with --to' });
  // The key is not needed: only the catalog and the block store's owner object change.
  const store = await openStore(config, { ...options, withoutKey: true });
  try {
    assertWritable(store, 'copy the catalog');
    const source = store.catalog;
    await assertIdle(source, catalogName(from));
    const before = await fingerprint(source);
    const target = await createCatalog(to, { host: config.host, log: options.log });
    const sourceId = (await source.identity()).catalogId;
    let owned = false;
    try {
      // From here on, commands that open the store through the old catalog are refused.
      await saveStoreOwner(store.blocks, (await target.identity()).catalogId, target.location, config.host);
      owned = true;
      const rows = await copyRows(source, target, options);
      // A command that opened the store before the owner changed may still have written.
      await assertIdle(source, catalogName(from));
      if ((await fingerprint(source)) !== before) {
        throw new ConflictError(`Catalog ${catalogName(from)} changed during the copy: nothing was copied`, { hint: 'run `backy2 db copy` again when no backy2 command uses the store' });
      }
      await target.bindToStore(store.settings.storeId, canonicalSettings(store.settings));
      if ((await fingerprint(target)) !== before) {
        throw new StoreUnavailableError(`The copy in catalog ${catalogName(to)} differs from catalog ${catalogName(from)}: nothing was copied`);
      }
      const totals = await target.blockTotals();
      const versions = (await target.listVersions()).length;
      await target.close();
      return { from: catalogName(from), to: catalogName(to), versions, blocks: totals.blocks, rows };
    } catch (err) {
      if (owned) await saveStoreOwner(store.blocks, sourceId, source.location, config.host);
      await discardCatalog(to, target);
      throw err;
    }
  } finally {
    await store.close();
  }
}

async function copyRows(source: Catalog, target: Catalog, options: CopyCatalogOptions): Promise<Record<TransferTable, number>> {
  const rows = { images: 0, versions: 0, tags: 0, blocks: 0, segments: 0, runs: 0 };
  for (const table of Object.keys(TRANSFER_TABLES) as TransferTable[]) {
    for await (const batch of source.exportRows(table, options.batch ?? 2000)) {
      await target.importRows(table, batch);
      rows[table] += batch.length;
      options.progress?.(table, rows[table]);
    }
  }
  return rows;
}

async function assertIdle(catalog: Catalog, name: string): Promise<void> {
  const holders = (await catalog.listLocks()).map((l) => `${l.operation} (pid ${l.pid} on ${l.host})`);
  if (holders.length > 0) throw new LockedError(`Catalog ${name} is in use by ${[...new Set(holders)].join(', ')}`, { hint: 'wait for them to finish, then copy it' });
}

/** What must be the same in both catalogs: versions with their state, blocks, segments, runs. */
async function fingerprint(catalog: Catalog): Promise<string> {
  const versions = (await catalog.listVersions())
    .map((v) => [v.uid, v.status, v.protected, [...v.tags].sort(), v.expiresAt, v.allocated, v.host])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  const segments = (await catalog.listSegments()).length;
  const runs = (await catalog.listRuns()).map((r) => [r.operation, r.finishedAt]);
  return JSON.stringify([versions, await catalog.blockTotals(), segments, runs]);
}
