// Child process for crash tests: writes random data into copy-on-write sessions of the newest
// version of an image and commits them, in a loop, until killed. argv: store dir, image.
import { randomBytes, randomInt } from 'node:crypto';
import { BlockCache } from '../../src/engine/live/block-cache.js';
import { defaultConfig } from '../../src/engine/support/config.js';
import { CowSession } from '../../src/engine/live/cow-session.js';
import { openStore } from '../../src/engine/store.js';
import { fetchContextOf } from '../../src/engine/objects/block-reader.js';

const [storeDir, image] = process.argv.slice(2);
const config = { ...defaultConfig(storeDir ?? ''), spillDir: storeDir ?? '/tmp' };
const store = await openStore(config);
const cache = new BlockCache(fetchContextOf(store), { maxBytes: 16 << 20 });
process.stdout.write('ready\n');
for (;;) {
  const base = await store.catalog.latestValidVersion(image ?? '');
  if (!base) break;
  const session = await CowSession.open(store, base, { spillDir: config.spillDir, cache, origin: 'crash test' });
  for (let i = 0; i < 8; i++) await session.write(randomInt(Math.max(1, base.size - 65536)), randomBytes(65536));
  const version = await session.commit();
  await session.close();
  process.stdout.write(`committed ${version?.uid ?? '-'}\n`);
}
await store.close();
