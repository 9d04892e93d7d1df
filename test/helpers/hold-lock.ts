// Child process for lock tests: takes a lock in the catalog given as argv[2] (a SQLite file or a
// postgresql:// URL, then argv[5] is the host name to use), says so, and waits to be killed.
import type { Catalog } from '../../src/engine/catalog/catalog.js';
import { PgCatalog } from '../../src/engine/catalog/pg-catalog.js';
import { SqliteCatalog } from '../../src/engine/catalog/sqlite-catalog.js';

const [where, resource, mode, host] = process.argv.slice(2);
const catalog: Catalog = where?.startsWith('postgresql://') ? await PgCatalog.open({ url: where, host }) : SqliteCatalog.open(where ?? '');
await catalog.acquireLock({ resource: resource ?? 'image:x', mode: mode === 'shared' ? 'shared' : 'exclusive', operation: 'test holder', writer: true });
process.stdout.write('locked\n');
setInterval(() => undefined, 1000);
