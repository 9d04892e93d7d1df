import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { killHard, startHelper } from '../../helpers/child.js';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { parseExposition } from '../../helpers/exposition.js';
import { makeImage } from '../../helpers/image.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { makeTempDir } from '../../helpers/temp.js';
import { SqliteCatalog } from '../../../src/engine/catalog/sqlite-catalog.js';
import { copyCatalog } from '../../../src/engine/operations/catalog-copy.js';
import { catalogLocation, loadConfig } from '../../../src/engine/support/config.js';

const B = 64 * 1024;
let server: TestPostgres;
let dir: string;
let storeDir: string;
let sqliteConfig: string;

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(() => server?.down());

beforeEach(async () => {
  dir = makeTempDir();
  storeDir = path.join(dir, 'store');
  sqliteConfig = path.join(dir, 'sqlite.yaml');
  writeFileSync(sqliteConfig, `store: ${storeDir}\nhost: host-a\nbackup:\n  blockSize: 64KiB\n`);
  await initStoreFor({}, ['--config', sqliteConfig]);
});

/** A config of the same store with its catalog in `url`. */
function pgConfig(url: string, host = 'host-b'): string {
  const file = path.join(dir, `pg-${host}.yaml`);
  writeFileSync(file, `store: ${storeDir}\ncatalog: ${url}\nhost: ${host}\nbackup:\n  blockSize: 64KiB\n`);
  return file;
}

/** Parsed JSON without the ages (seconds pass between two runs). */
function withoutAges(json: string): unknown {
  return JSON.parse(json, (key, value: unknown) => (key === 'ageSeconds' ? undefined : value));
}

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('backy2 db copy', () => {
  it('moves a SQLite catalog into PostgreSQL: every version restores byte-identical, backups go on there, and the old catalog is refused', async () => {
    const a = path.join(dir, 'a.img');
    const b = path.join(dir, 'b.img');
    makeImage(a, [{ kind: 'random', length: 5 * B }, { kind: 'zero', length: 3 * B }, { kind: 'random', length: 2 * B }]);
    makeImage(b, [{ kind: 'random', length: 4 * B }]);
    const ua = await ok(['--config', sqliteConfig, 'backup', a, 'vm1', '-t', 'first']);
    const ub = await ok(['--config', sqliteConfig, 'backup', b, 'vm2']);
    await ok(['--config', sqliteConfig, 'protect', ua]);
    const before = JSON.parse(await ok(['--config', sqliteConfig, 'ls', '--json'])) as unknown[];
    const stats = withoutAges(await ok(['--config', sqliteConfig, 'stats', '--json']));

    const url = await server.createDatabase();
    const copied = await runCli(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(copied.stderr).toMatch(/^Copied catalog ".*catalog\.sqlite" to postgresql:\/\/backy2@127\.0\.0\.1:\d+\/\w+: 2 versions, \d+ blocks, \d+ map segments; the store now belongs to/);

    const pg = pgConfig(url);
    expect(JSON.parse(await ok(['--config', pg, 'ls', '--json']))).toEqual(before);
    expect(withoutAges(await ok(['--config', pg, 'stats', '--json']))).toEqual(stats);
    for (const [uid, file] of [[ua, a], [ub, b]] as const) {
      const out = path.join(dir, `${uid}.out`);
      await ok(['--config', pg, 'restore', uid, out]);
      expect(readFileSync(out).equals(readFileSync(file))).toBe(true);
    }
    const uc = await ok(['--config', pg, 'backup', a, 'vm1']);
    const listed = JSON.parse(await ok(['--config', pg, 'ls', '--json'])) as { uid: string; host: string | null; status: string }[];
    expect(listed.map((v) => [v.uid, v.host, v.status])).toEqual([[ua, 'host-a', 'valid'], [ub, 'host-a', 'valid'], [uc, 'host-b', 'valid']]);
    // The new version deduplicated against the copied blocks: nothing new was written.
    expect((JSON.parse(await ok(['--config', pg, 'ls', '--json'])) as { uid: string; stats: { blocksWritten: number } }[]).find((v) => v.uid === uc)?.stats.blocksWritten).toBe(0);

    const old = await runCli(['--config', sqliteConfig, 'ls']);
    expect(old.code).toBe(10);
    expect(old.stderr).toContain('is used by another catalog');
    const again = await runCli(['--config', sqliteConfig, 'db', 'copy', '--to', await server.createDatabase()]);
    expect(again.code).toBe(10);
    const onto = await runCli(['--config', pg, 'db', 'copy', '--to', url]);
    expect(onto.code).toBe(2);
  });

  it('is refused while a command holds a lock, and then leaves no catalog in the database and the store with its old catalog', async () => {
    const a = path.join(dir, 'a.img');
    makeImage(a, [{ kind: 'random', length: 3 * B }]);
    await ok(['--config', sqliteConfig, 'backup', a, 'vm1']);
    const holder = await startHelper('hold-lock.ts', [path.join(storeDir, 'catalog.sqlite'), 'image:vm1', 'exclusive'], 'locked');
    const url = await server.createDatabase();
    try {
      const r = await runCli(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
      expect(r.code).toBe(11);
      expect(r.stderr).toMatch(/is in use by test holder \(pid \d+ on /);
    } finally {
      await killHard(holder);
    }
    expect(await server.sql("SELECT nspname FROM pg_namespace WHERE nspname = 'backy2'", new URL(url).pathname.slice(1))).toEqual([]);
    await ok(['--config', sqliteConfig, 'ls']);
    const none = await runCli(['--config', pgConfig(url), 'ls']);
    expect(none.code).toBe(10);
  });

  it('a change to the old catalog during the copy undoes it: no catalog in the database, and the store keeps its old one with the change', async () => {
    const a = path.join(dir, 'a.img');
    makeImage(a, [{ kind: 'random', length: 3 * B }]);
    const uid = await ok(['--config', sqliteConfig, 'backup', a, 'vm1', '-t', 'first']);
    const url = await server.createDatabase();
    // A command that opened the store before the copy began writes while the rows move.
    const meanwhile = SqliteCatalog.open(path.join(storeDir, 'catalog.sqlite'));
    let written = false;
    const progress = () => {
      if (written) return;
      written = true;
      void meanwhile.addTags(uid, ['meanwhile']);
    };
    try {
      const config = await loadConfig({ configFile: sqliteConfig, env: {} });
      await expect(copyCatalog(config, catalogLocation(url), { progress, batch: 1 })).rejects.toMatchObject({ code: 'E_CONFLICT', message: expect.stringContaining('changed during the copy') });
    } finally {
      await meanwhile.close();
    }
    expect(written).toBe(true);
    expect(await server.sql("SELECT nspname FROM pg_namespace WHERE nspname = 'backy2'", new URL(url).pathname.slice(1))).toEqual([]);
    const listed = JSON.parse(await ok(['--config', sqliteConfig, 'ls', '--json'])) as { uid: string; tags: string[] }[];
    expect(listed.map((v) => [v.uid, v.tags])).toEqual([[uid, ['first', 'meanwhile']]]);
    expect((await runCli(['--config', pgConfig(url), 'ls'])).code).toBe(10);
    // And the copy goes through once nothing writes.
    await ok(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
  });

  it('refuses a database that has a catalog already, and never shows a password given in the URL', async () => {
    const url = await server.createDatabase();
    const first = await ok(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
    expect(first).toBe('');
    const other = path.join(dir, 'other');
    const otherConfig = path.join(dir, 'other.yaml');
    writeFileSync(otherConfig, `store: ${other}\n`);
    await initStoreFor({}, ['--config', otherConfig]);
    const withPassword = url.replace('backy2@', 'backy2:s3cret-pw@');
    const r = await runCli(['--config', otherConfig, 'db', 'copy', '--to', withPassword]);
    expect(r.code).toBe(5);
    expect(r.stderr).not.toContain('s3cret-pw');
    expect(r.stderr).toContain('postgresql://backy2@127.0.0.1');
  });
});

describe('backy2 db migrate', () => {
  it('says a catalog is up to date, on SQLite and PostgreSQL', async () => {
    expect((await runCli(['--config', sqliteConfig, 'db', 'migrate'])).stderr).toMatch(/^Catalog ".*catalog\.sqlite" is up to date: schema version \d+\n$/);
    const url = await server.createDatabase();
    await ok(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
    const r = await runCli(['--config', pgConfig(url), 'db', 'migrate', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ catalog: expect.stringMatching(/^postgresql:\/\/backy2@/), from: 1, to: 1 });
  });
});

describe('host identity on a shared catalog', () => {
  it('ls shows the host of each version once other hosts made some; metrics name this host, the host of each newest backup and the locks of every host', async () => {
    const url = await server.createDatabase();
    await ok(['--config', sqliteConfig, 'db', 'copy', '--to', url]);
    const a = path.join(dir, 'a.img');
    makeImage(a, [{ kind: 'random', length: 3 * B }]);
    const hostB = pgConfig(url, 'host-b');
    const hostC = pgConfig(url, 'host-c');
    await ok(['--config', hostB, 'backup', a, 'vm1']);
    expect((await runCli(['--config', hostB, 'ls'])).stdout).not.toContain('HOST');
    await ok(['--config', hostC, 'backup', a, 'vm2']);
    const table = (await runCli(['--config', hostB, 'ls'])).stdout.split('\n');
    expect(table[0]).toMatch(/ HOST$/);
    expect(table[1]).toMatch(/ vm1 .* host-b$/);
    expect(table[2]).toMatch(/ vm2 .* host-c$/);

    const holder = await startHelper('hold-lock.ts', [url, 'image:vm1', 'exclusive', 'host-d'], 'locked');
    try {
      const m = parseExposition(await ok(['--config', hostB, 'metrics']));
      expect([...m.keys()].find((k) => k.startsWith('backy2_info{'))).toMatch(/host="host-b"/);
      expect(m.get('backy2_last_backup_host_info{image="vm1",host="host-b"}')).toBe(1);
      expect(m.get('backy2_last_backup_host_info{image="vm2",host="host-c"}')).toBe(1);
      expect(m.get('backy2_locks{host="host-d",operation="test holder"}')).toBe(1);
    } finally {
      await killHard(holder);
    }
  });
});
