import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { MemoryStore } from '../../../../src/engine/blockstore/memory-store.js';
import { SqliteCatalog } from '../../../../src/engine/catalog/sqlite-catalog.js';
import { StoreUnavailableError } from '../../../../src/engine/errors.js';
import { OpenVersions } from '../../../../src/engine/live/open-versions.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import { assembleStore, type Store } from '../../../../src/engine/store.js';
import { removeVersions } from '../../../../src/engine/operations/versions.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, testConfig } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

/** A memory block store whose puts can be made to fail (a narrow stand-in for a broken store). */
class FlakyStore extends MemoryStore {
  failPuts = false;
  override async put(...args: Parameters<MemoryStore['put']>): Promise<void> {
    if (this.failPuts) throw new StoreUnavailableError('Store is down (test)');
    return super.put(...args);
  }
}

async function setup() {
  const dir = makeTempDir();
  const blocks = new FlakyStore();
  const s = (store = assembleStore(testConfig(path.join(dir, 'store'), { spillDir: dir }), SqliteCatalog.open(':memory:'), blocks));
  const image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 4 * B }]);
  const version = (await s.catalog.getVersion((await backup(s, { source: image, image: 'vm1' })).uid))!;
  const log: string[] = [];
  const versions = new OpenVersions(s, { origin: 'test', log: (line) => log.push(line) });
  return { s, dir, blocks, version, versions, log, data: readFileSync(image) };
}

describe('OpenVersions', () => {
  it('shares one session: readers see writes, the last writer to leave commits, the base stays', async () => {
    const { s, dir, version, versions, data } = await setup();
    const writer = await versions.open(version);
    const reader = await versions.open(version);
    const written = randomBytes(100);
    await writer.write(B + 10, written);
    expect(versions.hasSession(version.uid)).toBe(true);
    const seen = Buffer.alloc(100);
    await reader.read(B + 10, seen);
    expect(seen.equals(written)).toBe(true);
    // rm must wait while the version is open
    await expect(removeVersions(s, [version.uid], { force: true })).rejects.toMatchObject({ code: 'E_LOCKED' });

    await writer.close();
    expect(versions.hasSession(version.uid)).toBe(false);
    const all = await s.catalog.listVersions();
    expect(all).toHaveLength(2);
    const cow = all.find((v) => v.uid !== version.uid)!;
    expect(cow.baseUid).toBe(version.uid);
    // the remaining reader sees the version as committed, not the writes
    await reader.read(B + 10, seen);
    expect(seen.equals(data.subarray(B + 10, B + 110))).toBe(true);
    const out = path.join(dir, 'cow.img');
    await restore(s, { uid: cow.uid, target: out });
    const expected = Buffer.from(data);
    written.copy(expected, B + 10);
    expect(readFileSync(out).equals(expected)).toBe(true);
    await reader.close();
    expect(await versions.shutdown()).toEqual([]);
  });

  it('a failed commit keeps the writes for the next try; shutdown reports what it could not commit', async () => {
    const { s, blocks, version, versions, log } = await setup();
    const user = await versions.open(version);
    await user.write(0, randomBytes(B));
    blocks.failPuts = true;
    await expect(user.commit('fsync')).rejects.toMatchObject({ code: 'E_STORE' });
    await user.close();
    expect(log.some((l) => l.startsWith('cannot commit the writes'))).toBe(true);
    expect(versions.hasSession(version.uid)).toBe(true);
    expect(await versions.shutdown()).toEqual([`the writes to vm1 version ${version.uid}`]);
    expect(await s.catalog.listVersions()).toHaveLength(1);

    // and a working store commits them at shutdown
    const again = new OpenVersions(s, { origin: 'test', log: () => undefined });
    const second = await again.open(version);
    await second.write(0, randomBytes(10));
    blocks.failPuts = false;
    expect(await again.shutdown()).toEqual([]);
    expect(await s.catalog.listVersions()).toHaveLength(2);
  });
});
