import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from '../../../../src/engine/operations/backup.js';
import { rebuildCatalogAt, openWithoutCatalog } from '../../../../src/engine/operations/catalog-rebuild.js';
import { restore } from '../../../../src/engine/operations/restore.js';
import { StoreKeys } from '../../../../src/engine/objects/store-keys.js';
import { openStore, type Store } from '../../../../src/engine/store.js';
import { makeImage } from '../../../helpers/image.js';
import { runScrub } from '../../../helpers/scrub.js';
import { TEST_BLOCK_SIZE as B, makeTempStore } from '../../../helpers/store.js';
import { makeTempDir } from '../../../helpers/temp.js';

let stores: Store[] = [];
afterEach(async () => {
  for (const s of stores) await s.close();
  stores = [];
});


const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** A file store with one version of two map segments, and that version's parts. */
async function setup() {
  const { store: s, dir } = await makeTempStore();
  stores.push(s);
  const image = path.join(makeTempDir(), 'img');
  // Two segments (1024 + 6 blocks); the same fill repeated is stored once, which keeps this fast.
  makeImage(image, [{ kind: 'random', length: B }, { kind: 'fill', length: 1028 * B, byte: 7 }, { kind: 'random', length: B }]);
  const v = await backup(s, { source: image, image: 'vm1', snapshot: 's1' });
  const segments = await s.catalog.versionSegments(v.uid);
  const file = (key: string) => path.join(dir, key);
  const flip = (key: string, at = 100) => {
    const bytes = readFileSync(file(key));
    bytes[at] = (bytes[at] ?? 0) ^ 0x10;
    writeFileSync(file(key), bytes);
  };
  return { s, dir, image, v, segments, file, flip };
}

async function restoresLike(s: Store, uid: string, image: string): Promise<void> {
  const out = path.join(makeTempDir(), 'out');
  expect((await restore(s, { uid, target: out })).badBlockCount).toBe(0);
  expect(sha(out)).toBe(sha(image));
}

describe('scrub() of manifests and map segments', () => {
  it('repairs a flipped byte in a segment object from the catalog; restore --no-catalog and db rebuild work after', async () => {
    const { s, image, v, segments, flip } = await setup();
    flip(StoreKeys.segment(segments[0]!), 2000);
    const { findings, result } = await runScrub(s, { all: true, percent: 100 });
    expect(findings).toContainEqual(expect.objectContaining({ type: 'segment-repaired', digest: segments[0]!.toString('hex'), where: 'block store' }));
    expect(result).toMatchObject({ segmentsChecked: 2, manifestsChecked: 1, metadataRepaired: 1, badSegments: 0, versionsInvalidated: 0 });
    const without = await openWithoutCatalog(s.config, v.uid);
    stores.push(without);
    await restoresLike(without, v.uid, image);
    await s.close();
    stores = [];
    const rebuilt = await rebuildCatalogAt(s.config, { force: true });
    expect(rebuilt).toMatchObject({ versions: 1, incompleteVersions: 0 });
    const again = await openStore(s.config);
    stores.push(again);
    expect((await again.catalog.getVersion(v.uid))?.status).toBe('valid');
  });

  it('repairs a flipped byte in a manifest from the catalog; db rebuild finds the version', async () => {
    const { s, v, flip } = await setup();
    flip(StoreKeys.manifest(v.uid), 90);
    const { findings, result } = await runScrub(s, { uids: [v.uid], percent: 100 });
    expect(findings).toContainEqual(expect.objectContaining({ type: 'manifest-repaired', uid: v.uid }));
    expect(result.metadataRepaired).toBe(1);
    await s.close();
    stores = [];
    expect(await rebuildCatalogAt(s.config, { force: true })).toMatchObject({ versions: 1, badManifests: [] });
  });

  it("repairs the catalog's copy of a segment from the block store", async () => {
    const { s, dir, v, segments, image } = await setup();
    await s.close();
    stores = [];
    const db = new Database(path.join(dir, 'catalog.sqlite'));
    const row = db.prepare('SELECT data FROM segments WHERE digest = ?').get(segments[1]) as { data: Buffer };
    row.data[20] = (row.data[20] ?? 0) ^ 1;
    db.prepare('UPDATE segments SET data = ? WHERE digest = ?').run(row.data, segments[1]);
    db.close();
    const s2 = await openStore(s.config);
    stores.push(s2);
    await restoresLike(s2, v.uid, image); // reads fall back to the good copy meanwhile
    const { findings } = await runScrub(s2, { all: true, percent: 100 });
    expect(findings).toContainEqual(expect.objectContaining({ type: 'segment-repaired', where: 'catalog' }));
    expect((await runScrub(s2, { all: true, percent: 100 })).result.metadataRepaired).toBe(0);
  });

  it('a segment bad in both places makes its versions invalid, and the next backup does not build on it', async () => {
    const { s, dir, v, segments, image, flip } = await setup();
    flip(StoreKeys.segment(segments[0]!), 2000);
    const db = new Database(path.join(dir, 'catalog.sqlite'));
    db.prepare('UPDATE segments SET data = ? WHERE digest = ?').run(randomBytes(64), segments[0]);
    db.close();
    // Found also when -p leaves the segment out of the day's window.
    const { findings, result } = await runScrub(s, { all: true, percent: 1 });
    expect(findings).toContainEqual(expect.objectContaining({ type: 'bad-segment', digest: segments[0]!.toString('hex') }));
    expect(findings).toContainEqual(expect.objectContaining({ type: 'version-invalid', uid: v.uid }));
    expect(result).toMatchObject({ badSegments: 1, versionsInvalidated: 1 });
    // Even named as the base with hints that leave the damaged part out, its segment is not reused.
    const hints = path.join(makeTempDir(), 'h.json');
    writeFileSync(hints, '[]');
    const next = await backup(s, { source: image, image: 'vm1', hintsFile: hints, baseUid: v.uid });
    expect(next.bytesRead).toBeGreaterThanOrEqual(1024 * B);
    await restoresLike(s, next.uid, image);
  });
});
