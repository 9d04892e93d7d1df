// Child process for lock tests: takes a lock in the catalog given as argv[2], says so, and waits
// to be killed.
import { SqliteCatalog } from '../../src/engine/catalog/sqlite-catalog.js';

const [file, resource, mode] = process.argv.slice(2);
const catalog = SqliteCatalog.open(file ?? '');
await catalog.acquireLock({ resource: resource ?? 'image:x', mode: mode === 'shared' ? 'shared' : 'exclusive', operation: 'test holder', writer: true });
process.stdout.write('locked\n');
setInterval(() => undefined, 1000);
