import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCatalog } from '../../../../src/engine/catalog/pg-catalog.js';
import { PG_MIGRATIONS } from '../../../../src/engine/catalog/pg-schema.js';
import { killHard, startHelper } from '../../../helpers/child.js';
import { makeTempDir } from '../../../helpers/temp.js';
import { describeCatalog } from '../../../contract/catalog.js';
import { startPostgres, type TestPostgres } from '../../../helpers/postgres.js';

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(() => server?.down());

describeCatalog('postgresql', async () => PgCatalog.create({ url: await server.createDatabase(), host: 'host-a' }));

describe('PgCatalog', () => {
  it('open() refuses a database without a catalog, and create() one that has one', async () => {
    const url = await server.createDatabase();
    await expect(PgCatalog.open({ url })).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: expect.stringContaining('No catalog in database') });
    const c = await PgCatalog.create({ url });
    await c.close();
    await expect(PgCatalog.create({ url })).rejects.toMatchObject({ code: 'E_CONFLICT' });
    await (await PgCatalog.open({ url })).close();
  });
});

describe('PgCatalog across hosts', () => {
  const open = async (url: string, host: string, extra: Partial<Parameters<typeof PgCatalog.open>[0]> = {}) => PgCatalog.open({ url, host, ...extra });

  it('acquireLock() takes over a lock whose lease expired, says why, and its holder can neither renew nor commit with it', async () => {
    const url = await server.createDatabase();
    await (await PgCatalog.create({ url })).close();
    const logged: string[] = [];
    const a = await open(url, 'host-a', { leaseMs: 1500, log: (l) => logged.push(l) });
    const b = await open(url, 'host-b', { leaseMs: 1500 });
    try {
      await b.createVersion({ uid: 'v1', image: 'vm1', createdAt: 1, size: 100, blockSize: 64, snapshot: null, baseUid: null, source: null, kind: 'backup' });
      const held = await b.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup', writer: true });
      expect(held.expiresAt).toBe(held.acquiredAt + 1500);
      await expect(a.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' })).rejects.toMatchObject({
        code: 'E_LOCKED',
        message: expect.stringContaining(`backup by process ${process.pid} on host-b`),
      });
      expect((await a.listLocks()).map((l) => l.host)).toEqual(['host-b']);
      await new Promise((r) => setTimeout(r, 1700));
      expect(await a.listLocks()).toEqual([]);
      const mine = await a.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup', writer: true });
      expect(mine.host).toBe('host-a');
      expect(logged).toEqual([expect.stringMatching(/^took over the lock of image vm1 \(backup by process \d+ on host-b\): its lease expired \d+ s ago/)]);
      expect(await b.heartbeat([held.id])).toEqual([held.id]);
      await expect(b.commitVersion('v1', { segments: [], stats: { bytesRead: 0, bytesWritten: 0, bytesDeduplicated: 0, bytesSparse: 0, bytesSkipped: 0, blocksRead: 0, blocksWritten: 0, durationSeconds: 0 }, tags: [], allocated: 0, leases: [held.id] })).rejects.toMatchObject({ code: 'E_LOCKED' });
      expect((await a.getVersion('v1'))?.status).toBe('incomplete');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('heartbeat() never revives an expired lease', async () => {
    const url = await server.createDatabase();
    const a = await PgCatalog.create({ url, host: 'host-a', leaseMs: 300 });
    try {
      const lock = await a.acquireLock({ resource: 'version:v1', mode: 'shared', operation: 'restore' });
      expect(await a.heartbeat([lock.id])).toEqual([]);
      await new Promise((r) => setTimeout(r, 400));
      expect(await a.heartbeat([lock.id])).toEqual([lock.id]);
      expect(await a.listLocks()).toEqual([]);
    } finally {
      await a.close();
    }
  });

  it('acquireLock() takes over at once the lock of a process of this host that was killed, but not one of another host', async () => {
    const url = await server.createDatabase();
    await (await PgCatalog.create({ url })).close();
    const a = await open(url, 'host-a');
    try {
      const here = await startHelper('hold-lock.ts', [url, 'image:vm1', 'exclusive', 'host-a'], 'locked');
      await expect(a.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' })).rejects.toMatchObject({ code: 'E_LOCKED' });
      await killHard(here);
      expect((await a.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' })).pid).toBe(process.pid);
      const elsewhere = await startHelper('hold-lock.ts', [url, 'image:vm2', 'exclusive', 'host-b'], 'locked');
      await killHard(elsewhere);
      // Its process is gone, but host-a cannot tell from here: only the lease (120 s) decides.
      await expect(a.acquireLock({ resource: 'image:vm2', mode: 'exclusive', operation: 'backup' })).rejects.toMatchObject({ code: 'E_LOCKED' });
    } finally {
      await a.close();
    }
  });

  it('a touch and a cleanup claim of the same blocks are serialised: a block reported live is never claimed, a claimed one is reported deleting', async () => {
    const url = await server.createDatabase();
    await (await PgCatalog.create({ url })).close();
    const writer = await open(url, 'host-a', { poolSize: 8 });
    const cleaner = await open(url, 'host-b');
    try {
      const digests = Array.from({ length: 600 }, () => randomBytes(32));
      await writer.registerBlocks(digests.map((digest) => ({ digest, length: 10, storedLength: 10 })));
      await server.sql('UPDATE backy2.blocks SET last_ref = 0', new URL(url).pathname.slice(1));
      await cleaner.beginMark();
      const claimed = new Set<string>();
      const claiming = (async () => {
        for (let got = await cleaner.claimGarbageBlocks(1000, 7); got.length > 0; got = await cleaner.claimGarbageBlocks(1000, 7)) {
          for (const b of got) claimed.add(b.digest.toString('hex'));
        }
      })();
      const states = await Promise.all(digests.map(async (d) => [d.toString('hex'), await writer.touchBlock(d)] as const));
      await claiming;
      await cleaner.endMark();
      let live = 0;
      for (const [hex, state] of states) {
        if (state === 0) {
          live++;
          expect(claimed.has(hex)).toBe(false);
        } else {
          expect(state).toBe(2);
          expect(claimed.has(hex)).toBe(true);
        }
      }
      expect(claimed.size + live).toBe(digests.length);
      for (const d of digests.slice(0, 50)) expect((await writer.getBlock(d))?.state).toBe(claimed.has(d.toString('hex')) ? 2 : 0);
    } finally {
      await writer.close();
      await cleaner.close();
    }
  });

  it('a program refuses a schema newer than it knows, and a newer program one that needs `db migrate`, until migrate() brings it up', async () => {
    const url = await server.createDatabase();
    await (await PgCatalog.create({ url })).close();
    const newer = [...PG_MIGRATIONS, 'CREATE TABLE backy2.extra (x integer)'];
    await expect(PgCatalog.open({ url, migrations: newer })).rejects.toMatchObject({ code: 'E_STORE', hint: expect.stringContaining('backy2 db migrate') });
    expect(await PgCatalog.migrate({ url, migrations: newer })).toEqual({ from: PG_MIGRATIONS.length, to: newer.length });
    await (await PgCatalog.open({ url, migrations: newer })).close();
    await expect(PgCatalog.open({ url })).rejects.toMatchObject({ code: 'E_STORE', message: expect.stringContaining('newer than this backy2 understands') });
    await expect(PgCatalog.migrate({ url })).rejects.toMatchObject({ code: 'E_STORE', message: expect.stringContaining('newer than this backy2 understands') });
    expect(await server.sql('SELECT version, program FROM backy2.schema_version ORDER BY version', new URL(url).pathname.slice(1))).toEqual(
      newer.map((_, i) => ({ version: i + 1, program: 'backy2' })),
    );
  });

  it('reads the password from a private file, refuses a file others can read, and never shows the password', async () => {
    const url = await server.createDatabase();
    const passwordUrl = server.passwordUrl(new URL(url).pathname.slice(1));
    const file = path.join(makeTempDir(), 'pw');
    writeFileSync(file, `${server.password}\n`, { mode: 0o600 });
    await (await PgCatalog.create({ url: passwordUrl, passwordFile: file })).close();
    await (await PgCatalog.open({ url: passwordUrl, passwordFile: file })).close();
    chmodSync(file, 0o644);
    await expect(PgCatalog.open({ url: passwordUrl, passwordFile: file })).rejects.toMatchObject({ code: 'E_STORE', message: expect.stringContaining('can be read by others') });
    const wrong = passwordUrl.replace('backy2_pw@', 'backy2_pw:not-the-password@');
    const err = (await PgCatalog.open({ url: wrong }).catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'E_STORE', message: expect.stringContaining('password authentication failed') });
    expect(`${err.message} ${String((err as { hint?: string }).hint)}`).not.toContain('not-the-password');
    expect(err.message).toContain('postgresql://backy2_pw@127.0.0.1');
  });

  it('retries transactions whose connection was killed, and goes on', async () => {
    const url = await server.createDatabase();
    const c = await PgCatalog.create({ url, host: 'host-a' });
    try {
      const d = randomBytes(32);
      await c.registerBlocks([{ digest: d, length: 1, storedLength: 1 }]);
      const db = new URL(url).pathname.slice(1);
      await server.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`, 'postgres');
      expect(await c.touchBlock(d)).toBe(0);
      const lock = await c.acquireLock({ resource: 'image:vm1', mode: 'exclusive', operation: 'backup' });
      await server.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`, 'postgres');
      expect(await c.heartbeat([lock.id])).toEqual([]);
      expect((await c.listLocks()).length).toBe(1);
    } finally {
      await c.close();
    }
  });

  it('a connection lost while a cleanup mark waits fails its next statement and leaves the process and the catalog working', async () => {
    const url = await server.createDatabase();
    const c = await PgCatalog.create({ url, host: 'host-a' });
    try {
      await c.beginMark();
      const db = new URL(url).pathname.slice(1);
      await server.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`, 'postgres');
      await new Promise((r) => setTimeout(r, 300));
      await expect(c.markLive(randomBytes(32))).rejects.toMatchObject({ code: 'E_STORE' });
      await c.endMark();
      const d = randomBytes(32);
      await c.registerBlocks([{ digest: d, length: 1, storedLength: 1 }]);
      expect(await c.touchBlock(d)).toBe(0);
    } finally {
      await c.close();
    }
  });
});
