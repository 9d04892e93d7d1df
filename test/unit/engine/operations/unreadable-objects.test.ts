import { mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import { scrub, type ScrubResult } from '../../../../src/engine/operations/scrub.js';
import { StoreKeys } from '../../../../src/engine/objects/store-keys.js';
import type { Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { TEST_BLOCK_SIZE as B, makeTempStore, nameOf } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

async function scrubAll(s: Store): Promise<ScrubResult> {
  const run = scrub(s, { all: true });
  let step = await run.next();
  while (!step.done) step = await run.next();
  return step.value;
}

describe('an object that cannot be read is a bad block; a store that is gone stops the operation', () => {
  it('a directory in place of a block object (EISDIR): restore goes on, zero-fills it and reports it; scrub marks it', async () => {
    const { store: s, dir } = await makeTempStore();
    store = s;
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 6 * B }]);
    const v = await backup(s, { source: image, image: 'vm1' });
    const block2 = nameOf(s, readFileSync(image).subarray(2 * B, 3 * B));
    const object = path.join(dir, StoreKeys.block(block2));
    rmSync(object);
    mkdirSync(object);
    const out = path.join(makeTempDir(), 'out');
    const result = await restore(s, { uid: v.uid, target: out });
    expect(result.badBlockCount).toBe(1);
    expect(result.badBlocks[0]).toMatchObject({ index: 2, code: 'E_CORRUPT', message: expect.stringContaining('EISDIR') });
    const expected = readFileSync(image);
    expected.fill(0, 2 * B, 3 * B);
    expect(readFileSync(out).equals(expected)).toBe(true);
    expect(await scrubAll(s)).toMatchObject({ badBlocks: 1, versionsInvalidated: 1 });
  });

  it('a store whose directory went away (an unmount) is not a store of bad blocks: restore and scrub stop with E_STORE', async () => {
    const { store: s, dir } = await makeTempStore();
    store = s;
    const image = path.join(makeTempDir(), 'img');
    makeImage(image, [{ kind: 'random', length: 6 * B }]);
    const v = await backup(s, { source: image, image: 'vm1' });
    renameSync(dir, `${dir}.gone`);
    mkdirSync(dir); // the empty mount point left behind
    const out = path.join(makeTempDir(), 'out');
    await expect(restore(s, { uid: v.uid, target: out })).rejects.toMatchObject({ code: 'E_STORE', message: expect.stringContaining('is gone') });
    await expect(scrubAll(s)).rejects.toMatchObject({ code: 'E_STORE' });
    rmSync(dir, { recursive: true });
    renameSync(`${dir}.gone`, dir);
  });
});
