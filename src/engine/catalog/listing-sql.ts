/**
 * The SQL of a listing of versions, shared by both catalogs: what follows `FROM versions v` for a
 * {@link VersionFilter}, oldest first.
 */
import type { VersionFilter } from './catalog.js';
import type { SqlDialect } from './transfer-sql.js';

/** The WHERE, ORDER BY and LIMIT of the versions `filter` selects, with their parameters. */
export function listingClauses(filter: VersionFilter, dialect: SqlDialect): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (condition: string, value: unknown) => {
    params.push(value);
    where.push(condition.replace('?', dialect.param(params.length)));
  };
  if (filter.image !== undefined) add('v.image = ?', filter.image);
  if (filter.status !== undefined) add('v.status = ?', filter.status);
  if (filter.kind !== undefined) add('v.kind = ?', filter.kind);
  if (filter.tag !== undefined) add(`EXISTS (SELECT 1 FROM ${dialect.table('tags')} t WHERE t.uid = v.uid AND t.tag = ?)`, filter.tag);
  if (filter.since !== undefined) add('v.created_at >= ?', filter.since);
  if (filter.until !== undefined) add('v.created_at < ?', filter.until);
  let sql = `${where.length ? `WHERE ${where.join(' AND ')} ` : ''}ORDER BY v.created_at, v.uid`;
  if (filter.limit !== undefined) {
    params.push(filter.limit);
    sql += ` LIMIT ${dialect.param(params.length)}`;
  }
  return { sql, params };
}
