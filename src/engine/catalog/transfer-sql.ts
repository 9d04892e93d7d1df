/**
 * SQL of whole-catalog copies (see {@link CatalogTransfer}), shared by both catalogs: pages of a
 * table in key order (keyset pagination, so each page costs the same however far the copy is).
 */
import { TRANSFER_TABLES, type TransferTable, type TransferValue } from './catalog.js';

/** How a catalog writes a table name and its n-th parameter (1-based). */
export interface SqlDialect {
  readonly table: (table: TransferTable) => string;
  readonly param: (n: number) => string;
}

/**
 * The query of one page of `table`: the first when `first`, else the one after the key given as
 * the first parameters; the page size is the last parameter.
 */
export function pageQuery(dialect: SqlDialect, table: TransferTable, first: boolean): string {
  const { columns, key } = TRANSFER_TABLES[table];
  const keys = key.join(', ');
  const after = first ? '' : ` WHERE (${keys}) > (${key.map((_, i) => dialect.param(i + 1)).join(', ')})`;
  return `SELECT ${columns.join(', ')} FROM ${dialect.table(table)}${after} ORDER BY ${keys} LIMIT ${dialect.param(first ? 1 : key.length + 1)}`;
}

/** The parameters of the page after `last` (a row of the previous page). */
export function pageParams(table: TransferTable, last: readonly TransferValue[] | undefined, batch: number): TransferValue[] {
  if (!last) return [batch];
  const { columns, key } = TRANSFER_TABLES[table];
  return [...key.map((k) => last[columns.indexOf(k as never)] ?? null), batch];
}

/** A row object as a row array in the table's column order; booleans become 0 or 1. */
export function rowValues(table: TransferTable, row: Record<string, unknown>): TransferValue[] {
  return TRANSFER_TABLES[table].columns.map((c) => {
    const v = row[c];
    if (typeof v === 'boolean') return v ? 1 : 0;
    return (v ?? null) as TransferValue;
  });
}

/** An insert of `rows` rows into `table` that skips rows whose key exists. */
export function insertQuery(dialect: SqlDialect, table: TransferTable, rows: number, conflict: 'or-ignore' | 'on-conflict'): string {
  const { columns } = TRANSFER_TABLES[table];
  let n = 0;
  const values = Array.from({ length: rows }, () => `(${columns.map(() => dialect.param(++n)).join(', ')})`).join(', ');
  const head = conflict === 'or-ignore' ? 'INSERT OR IGNORE INTO' : 'INSERT INTO';
  return `${head} ${dialect.table(table)} (${columns.join(', ')}) VALUES ${values}${conflict === 'on-conflict' ? ' ON CONFLICT DO NOTHING' : ''}`;
}
