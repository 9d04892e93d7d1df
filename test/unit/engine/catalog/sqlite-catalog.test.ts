import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteCatalog, VERSION_COLUMNS } from '../../../../src/engine/catalog/sqlite-catalog.js';
import { describeCatalog } from '../../../contract/catalog.js';
import { MIGRATIONS } from '../../../../src/engine/catalog/migrations.js';
import { killHard, startHelper } from '../../../helpers/child.js';
import { makeTempDir } from '../../../helpers/temp.js';

const catalogs: SqliteCatalog[] = [];
afterEach(async () => {
  for (const c of catalogs.splice(0)) await c.close();
});
function open(file = path.join(makeTempDir(), 'catalog.sqlite')): SqliteCatalog {
  const c = existsSync(file) ? SqliteCatalog.open(file) : SqliteCatalog.create(file);
  catalogs.push(c);
  return c;
}

describeCatalog('sqlite', async () => SqliteCatalog.create(path.join(makeTempDir(), 'catalog.sqlite')));

describe('SqliteCatalog', () => {
  it('open() applies every migration and records the schema version', () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    open(file);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('lists versions from the covering index, never stepping over the block maps in their rows', () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    open(file);
    const db = new Database(file, { readonly: true });
    const plan = (where: string) => db.prepare(`EXPLAIN QUERY PLAN SELECT ${VERSION_COLUMNS} FROM versions v ${where} ORDER BY v.created_at, v.uid`).all().map((r) => (r as { detail: string }).detail);
    expect(plan('')[0]).toBe('SCAN v USING COVERING INDEX versions_listing');
    expect(plan("WHERE v.image = 'vm1'")[0]).toBe('SEARCH v USING COVERING INDEX versions_listing (image=?)');
    db.close();
  });

  it('open() refuses a catalog from a newer backy2', () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    const db = new Database(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => SqliteCatalog.open(file)).toThrow(expect.objectContaining({ code: 'E_STORE', message: expect.stringContaining('newer') }));
  });

  it('open() refuses a file that is not a catalog', async () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    (await import('node:fs')).writeFileSync(file, 'this is not sqlite, just some text that is long enough to matter'.repeat(100));
    expect(() => SqliteCatalog.open(file)).toThrow(expect.objectContaining({ code: 'E_STORE' }));
  });

  it('acquireLock() releases the lock of a process killed with SIGKILL', async () => {
    const file = path.join(makeTempDir(), 'c.sqlite');
    const c = open(file);
    const child = await startHelper('hold-lock.ts', [file, 'image:vm1', 'exclusive'], 'locked');
    await expect(c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' })).rejects.toMatchObject({ code: 'E_LOCKED' });
    await killHard(child);
    const lock = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' });
    expect(lock.pid).toBe(process.pid);
    expect((await c.listLocks('image:vm1')).map((l) => l.operation)).toEqual(['backup']);
  });
});
