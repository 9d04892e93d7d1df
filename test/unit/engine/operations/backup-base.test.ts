import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockCache } from '../../../../src/engine/live/block-cache.js';
import { CowSession } from '../../../../src/engine/live/cow-session.js';
import { backup } from '../../../../src/engine/operations/backup.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeMemoryStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';
import { fetchContextOf } from '../../../../src/engine/objects/block-reader.js';

// 256 blocks and a sample of 2: sampling cannot catch a wrong base (about 1 in 128).
const BLOCKS = 256;
let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

async function setup() {
  const s = (store = makeMemoryStore({ hintSample: 2 }));
  const dir = makeTempDir();
  const image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: BLOCKS * B }]);
  const v1 = await backup(s, { source: image, image: 'vm1', snapshot: 's1' });
  // A copy-on-write write at block 2 (what a writable mount or an NBD client does).
  const base = (await s.catalog.getVersion(v1.uid))!;
  const session = await CowSession.open(s, base, { spillDir: dir, cache: new BlockCache(fetchContextOf(s), { maxBytes: 8 * B }), origin: 'test' });
  await session.write(2 * B, randomBytes(B));
  const cow = (await session.commit())!;
  await session.close();
  // The source changes block 5 only; these hints say exactly that (rbd diff --from-snap s1).
  const data = readFileSync(image);
  randomBytes(B).copy(data, 5 * B);
  writeFileSync(image, data);
  const hints = path.join(dir, 'hints.json');
  writeFileSync(hints, JSON.stringify([{ offset: 5 * B, length: B, exists: 'true' }]));
  return { s, dir, image, hints, v1, cow };
}

async function restoresLike(s: Store, uid: string, image: string, dir: string): Promise<void> {
  const out = path.join(dir, `out-${uid}`);
  expect((await restore(s, { uid, target: out })).badBlockCount).toBe(0);
  expect(sha(out), `${uid} restores like the source`).toBe(sha(image));
}

describe('backup() bases: backups are the lineage, copy-on-write versions are experiments', () => {
  it('hints apply to the backup they start from, never to a newer copy-on-write version', async () => {
    const { s, dir, image, hints, v1, cow } = await setup();
    expect(cow.kind).toBe('cow');
    const inc = await backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's1', snapshot: 's2' });
    expect(inc.baseUid).toBe(v1.uid);
    expect(inc.bytesRead).toBe(B + 2 * B); // the hinted block and the sample
    await restoresLike(s, inc.uid, image, dir);
  });

  it('refuses hints whose base cannot be proven, and a copy-on-write base with hints, in one line', async () => {
    const { s, image, hints, v1, cow } = await setup();
    await expect(backup(s, { source: image, image: 'vm1', hintsFile: hints })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: 'Hints need the version they start from: name the snapshot `rbd diff --from-snap` started from with --hints-from',
      hint: expect.stringContaining(`the newest backup of "vm1" is ${v1.uid}, snapshot "s1"`),
    });
    await expect(backup(s, { source: image, image: 'vm1', hintsFile: hints, baseUid: cow.uid })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: `Base version "${cow.uid}" is a copy-on-write version: hints describe changes of the source since a backup, so they cannot apply to it`,
    });
    await expect(backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's0' })).rejects.toMatchObject({ code: 'E_CONFLICT' });
    await expect(backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's0', baseUid: v1.uid })).rejects.toMatchObject({ code: 'E_CONFLICT' });
    expect((await s.catalog.listVersions()).map((v) => v.uid)).toEqual([v1.uid, cow.uid]);
  });

  it('without hints the default base is the newest backup; a copy-on-write base only when named, and then every block is compared', async () => {
    const { s, dir, image, v1, cow } = await setup();
    const plain = await backup(s, { source: image, image: 'vm1' });
    expect(plain.baseUid).toBe(v1.uid);
    await restoresLike(s, plain.uid, image, dir);
    const fromCow = await backup(s, { source: image, image: 'vm1', baseUid: cow.uid });
    expect(fromCow.baseUid).toBe(cow.uid);
    expect(fromCow.bytesRead).toBe(BLOCKS * B);
    await restoresLike(s, fromCow.uid, image, dir);
  });

  it('a hinted chain uses the right base each time and restores like the source', async () => {
    const { s, dir, image, hints, v1 } = await setup();
    const v2 = await backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's1', snapshot: 's2' });
    const data = readFileSync(image);
    randomBytes(100).copy(data, 77 * B + 3);
    writeFileSync(image, data);
    writeFileSync(hints, JSON.stringify([{ offset: 77 * B + 3, length: 100, exists: true }]));
    const v3 = await backup(s, { source: image, image: 'vm1', hintsFile: hints, hintsFrom: 's2', snapshot: 's3' });
    expect([v2.baseUid, v3.baseUid]).toEqual([v1.uid, v2.uid]);
    await restoresLike(s, v3.uid, image, dir);
  });
});
