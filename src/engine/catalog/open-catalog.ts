/**
 * Which catalog a store uses, opened or created: SQLite for one host, PostgreSQL for many. The
 * PostgreSQL driver is loaded only when a store uses it.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Catalog } from './catalog.js';
import { SqliteCatalog } from './sqlite-catalog.js';
import { NotFoundError } from '../errors.js';
import type { CatalogLocation } from '../support/config.js';
import { redactUrl } from '../support/names.js';
import type { PgCatalogOptions } from './pg-catalog.js';

/** Options of {@link openCatalog} and {@link createCatalog}. */
export interface CatalogOpenOptions {
  /** This backup host's name in locks and versions. */
  readonly host: string;
  /** Where lock takeovers are told. @default nowhere */
  readonly log?: ((line: string) => void) | undefined;
}

/** Where a catalog is, for messages (never with a password). */
export function catalogName(location: CatalogLocation): string {
  if (location.type === 'sqlite') return `"${location.path}"`;
  return redactUrl(location.url);
}

function pgOptions(location: Extract<CatalogLocation, { type: 'postgresql' }>, options: CatalogOpenOptions): PgCatalogOptions {
  return { url: location.url, passwordFile: location.passwordFile, poolSize: location.poolSize, leaseMs: location.leaseMs, host: options.host, log: options.log };
}

/**
 * Opens an existing catalog.
 * @throws {NotFoundError} when there is none (E_NOT_FOUND: no file, or no catalog in the database)
 * @throws {StoreUnavailableError} when it cannot be opened, is damaged, or has another schema
 */
export async function openCatalog(location: CatalogLocation, options: CatalogOpenOptions): Promise<Catalog> {
  if (location.type === 'sqlite') {
    if (!existsSync(location.path)) throw new NotFoundError(`No catalog at "${location.path}"`);
    return SqliteCatalog.open(location.path, { host: options.host });
  }
  const { PgCatalog } = await import('./pg-catalog.js');
  return PgCatalog.open(pgOptions(location, options));
}

/**
 * Creates a new, empty catalog.
 * @throws {ConflictError} when one exists there already
 */
export async function createCatalog(location: CatalogLocation, options: CatalogOpenOptions): Promise<Catalog> {
  if (location.type === 'sqlite') return SqliteCatalog.create(location.path, { host: options.host });
  const { PgCatalog } = await import('./pg-catalog.js');
  return PgCatalog.create(pgOptions(location, options));
}

/** Removes a catalog that {@link createCatalog} just made (a failed init), closing it. */
export async function discardCatalog(location: CatalogLocation, catalog: Catalog): Promise<void> {
  if (location.type === 'sqlite') {
    await catalog.close();
    for (const suffix of ['', '-wal', '-shm']) await rm(`${location.path}${suffix}`, { force: true });
    return;
  }
  const { PgCatalog } = await import('./pg-catalog.js');
  if (catalog instanceof PgCatalog) await catalog.discard();
  else await catalog.close();
}

/**
 * Applies the schema migrations a catalog lacks (`backy2 db migrate`). SQLite catalogs migrate
 * when opened (one host runs one program); a shared PostgreSQL catalog only here.
 * @returns the schema version before and after
 */
export async function migrateCatalog(location: CatalogLocation, options: CatalogOpenOptions): Promise<{ from: number; to: number }> {
  if (location.type === 'sqlite') {
    if (!existsSync(location.path)) throw new NotFoundError(`No catalog at "${location.path}"`);
    return SqliteCatalog.migrate(location.path);
  }
  const { PgCatalog } = await import('./pg-catalog.js');
  return PgCatalog.migrate(pgOptions(location, options));
}

/**
 * Moves an existing catalog aside (db rebuild --force): the file to `<file>.old-<time>`, the
 * PostgreSQL schema to `backy2_old_<time>`.
 * @returns where it went, or undefined when there was none
 */
export async function moveCatalogAside(location: CatalogLocation, options: CatalogOpenOptions): Promise<string | undefined> {
  if (location.type === 'sqlite') {
    const file = location.path;
    if (!existsSync(file)) return undefined;
    const { renameSync } = await import('node:fs');
    const movedTo = `${file}.old-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
    return movedTo;
  }
  const { PgCatalog } = await import('./pg-catalog.js');
  return PgCatalog.moveAside(pgOptions(location, options));
}
