import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCatalog } from '../../../../src/engine/catalog/pg-catalog.js';
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
