import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { namingDigest } from '../../../src/engine/objects/naming-digest.js';
import { runCli, spawnCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';

const B = 64 * 1024;
const FIXTURE = path.resolve(import.meta.dirname, '../../fixtures/store-before-init.tar.gz');
let dir: string;
let config: string;
let image: string;

beforeEach(() => {
  dir = makeTempDir();
  config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 64KiB\n');
  image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 3 * B }]);
});

const at = (store: string, ...rest: string[]) => ['--store', store, '--config', config, ...rest];
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('backy2 init: stores are created explicitly', () => {
  it('a mistyped store path is an error with exit status 4, and nothing is created', async () => {
    const typo = path.join(dir, 'bakcup');
    for (const command of [['backup', image, 'vm1'], ['ls'], ['restore', 'v1kx3f9qm7wz', path.join(dir, 'out')], ['scrub', '--all'], ['cleanup']]) {
      const r = await runCli(at(typo, ...command));
      expect(r.code, command[0]).toBe(4);
      expect(r.stderr).toMatch(/^backy2: No store at "[^"]*bakcup".*\(create one with `backy2 init`.*\)\n$/);
    }
    expect(existsSync(typo)).toBe(false);
    expect(existsSync(path.join(dir, 'out'))).toBe(false);
  });

  it('an empty BACKY2_STORE counts as unset and an empty --store is refused: neither names the current directory', async () => {
    const saved = process.env.BACKY2_STORE;
    process.env.BACKY2_STORE = '';
    try {
      const r = await runCli(['--config', config, 'ls'], { BACKY2_STORE: '' });
      expect(r.stderr).not.toContain(`"${process.cwd()}"`);
    } finally {
      if (saved === undefined) delete process.env.BACKY2_STORE;
      else process.env.BACKY2_STORE = saved;
    }
    const empty = await runCli(['--store', '', '--config', config, 'init']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/^backy2: The store path is empty \(name a store directory with --store, or leave it out\)\n$/);
  });

  it('creates a store once; a second init, or two at once, get one clear line', async () => {
    const store = path.join(dir, 'store');
    const first = await runCli(at(store, 'init', '--json'));
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ path: store, catalog: path.join(store, 'catalog.sqlite'), storeId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(readdirSync(store).sort()).toEqual(['catalog.sqlite', 'owner', 'settings']);
    const again = await runCli(['--config', config, 'init', store]);
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/^backy2: A store exists at ".*" already .*\n$/);
    expect((await runCli(at(store, 'backup', image, 'vm1'))).code).toBe(0);

    const racing = path.join(dir, 'racing');
    const both = await Promise.all([runCli(at(racing, 'init')), runCli(at(racing, 'init'))]);
    expect(both.map((r) => r.code).sort()).toEqual([0, 5]);
    expect(both.find((r) => r.code === 5)?.stderr.trim().split('\n')).toHaveLength(1);
    expect((await runCli(at(racing, 'backup', image, 'vm1'))).code).toBe(0);
  });

  it('a damaged or missing catalog is refused, pointing at db rebuild, which brings the versions back', async () => {
    const store = path.join(dir, 'store');
    expect((await runCli(at(store, 'init'))).code).toBe(0);
    const uid = (await runCli(at(store, 'backup', image, 'vm1'))).stdout.trim();
    const catalog = path.join(store, 'catalog.sqlite');
    renameSync(catalog, `${catalog}.saved`);
    writeFileSync(catalog, '');
    const empty = await runCli(at(store, 'ls'));
    expect(empty.code).toBe(10);
    expect(empty.stderr).toMatch(/the file is empty \(0 bytes\), so the catalog is damaged \(run `backy2 db rebuild --force`/);
    rmSync(catalog);
    const missing = await runCli(at(store, 'backup', image, 'vm1'));
    expect(missing.code).toBe(10);
    expect(missing.stderr).toMatch(/^backy2: The catalog of store file:.* is missing: ".*catalog.sqlite" \(run `backy2 db rebuild`/);
    expect(existsSync(catalog)).toBe(false);
    expect((await runCli(at(store, 'db', 'rebuild'))).code).toBe(0);
    const out = path.join(dir, 'out');
    expect((await runCli(at(store, 'restore', uid, out))).code).toBe(0);
    expect(sha(out)).toBe(sha(image));
  });

  it('a catalog of another store is refused', async () => {
    const one = path.join(dir, 'one');
    const two = path.join(dir, 'two');
    for (const store of [one, two]) expect((await runCli(at(store, 'init'))).code).toBe(0);
    rmSync(path.join(two, 'catalog.sqlite'));
    execFileSync('cp', [path.join(one, 'catalog.sqlite'), path.join(two, 'catalog.sqlite')]);
    const r = await runCli(at(two, 'ls'));
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(/^backy2: Catalog ".*two\/catalog.sqlite" belongs to another store \([0-9a-f]{32}\) than file:.*two \([0-9a-f]{32}\)/);
  });

  it('a store made before init existed keeps working: it restores, and describes itself from then on', async () => {
    execFileSync('tar', ['-xzf', FIXTURE, '-C', dir]);
    const store = path.join(dir, 'store');
    const listed = await runCli(at(store, 'ls', '--json'));
    expect(listed.code, listed.stderr).toBe(0);
    const versions = JSON.parse(listed.stdout) as { uid: string; kind: string; tags: string[] }[];
    expect(versions.map((v) => [v.uid, v.kind])).toEqual([
      ['v1ngkhkkp38f', 'backup'],
      ['v1ngkhksfnq2', 'cow'],
    ]);
    expect(readdirSync(store)).toEqual(expect.arrayContaining(['settings', 'owner']));
    // See test/fixtures/README.md for how the fixture was made and what its versions hold.
    const expected: Record<string, string> = {
      v1ngkhkkp38f: '27e99f61375224ec2220a2b871abeae04006907b9ecd11140b70771092711d67',
      v1ngkhksfnq2: '8d2c37e1afe46ce6801af9a23b64461a31233ad468f138bae0f123cf62e6d133',
    };
    for (const [uid, digest] of Object.entries(expected)) {
      const out = path.join(dir, uid);
      const r = await runCli(at(store, 'restore', uid, out));
      expect(r.code, r.stderr).toBe(0);
      expect(sha(out)).toBe(digest);
    }
    const scrub = await runCli(at(store, 'scrub', '--all'));
    expect(scrub.code, scrub.stderr).toBe(0);
  });

  describe('block objects carry a CRC in new stores; stores made before keep format 1', () => {
    /** The block objects of a file store: path → bytes. */
    const blockObjects = (store: string) =>
      readdirSync(path.join(store, 'blocks'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.join(e.parentPath, e.name));

    it('a new store writes format 2 blocks; a flipped byte fails restore by its checksum, and scrub marks it', async () => {
      const store = path.join(dir, 'store');
      expect((await runCli(at(store, 'init'))).code).toBe(0);
      expect(JSON.parse(readFileSync(path.join(store, 'settings')).subarray(64).toString())).toMatchObject({ checksum: 'crc32' });
      expect((await runCli(at(store, 'backup', image, 'vm1'))).code).toBe(0);
      const objects = blockObjects(store);
      expect(objects).toHaveLength(3);
      for (const file of objects) expect(readFileSync(file)[4]).toBe(2);
      const victim = objects[0]!;
      const bytes = readFileSync(victim);
      bytes[64 + 1000]! ^= 0x20;
      writeFileSync(victim, bytes);
      const r = await runCli(at(store, 'restore', 'vm1', path.join(dir, 'out')));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/do not match their checksum/);
      const scrub = await runCli(at(store, 'scrub', '--all'));
      expect(scrub.code).not.toBe(0);
      expect(scrub.stdout + scrub.stderr).toMatch(/1 bad block/);
    });

    it('a store made before settings existed stays format 1 (no CRC): new blocks too, and a flipped byte fails restore by its digest', async () => {
      execFileSync('tar', ['-xzf', FIXTURE, '-C', dir]);
      const store = path.join(dir, 'store');
      const before = new Set(blockObjects(store));
      expect((await runCli(at(store, 'backup', image, 'vm9'))).code).toBe(0);
      const settings = JSON.parse(readFileSync(path.join(store, 'settings')).subarray(64).toString()) as object;
      expect(settings).not.toHaveProperty('checksum');
      expect(settings).toMatchObject({ format: 1, digest: 'sha256' });
      const added = blockObjects(store).filter((f) => !before.has(f));
      expect(added).toHaveLength(3);
      for (const file of added) expect(readFileSync(file)[4]).toBe(1);
      const bytes = readFileSync(added[0]!);
      bytes[64 + 1000]! ^= 0x20;
      writeFileSync(added[0]!, bytes);
      const r = await runCli(at(store, 'restore', 'vm9', path.join(dir, 'out')));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/does not match its digest/);
      // Named by SHA-256 still: the new blocks dedup against the old ones.
      const chunks = [0, 1, 2].map((i) => createHash('sha256').update(readFileSync(image).subarray(i * B, (i + 1) * B)).digest('hex'));
      expect(added.map((f) => path.basename(f)).sort()).toEqual(chunks.sort());
    });
  });

  describe('what names blocks: BLAKE3 in new stores, SHA-256 when asked or in older stores', () => {
    const chunkNames = (hash: (data: Buffer) => string) => [0, 1, 2].map((i) => hash(readFileSync(image).subarray(i * B, (i + 1) * B))).sort();
    const blockNames = (store: string) => readdirSync(path.join(store, 'blocks'), { recursive: true }).map(String).filter((f) => f.includes('/')).map((f) => path.basename(f)).sort();

    it('a new store is format 2 and names blocks by BLAKE3; a full scrub re-derives it, so a block forged with a matching CRC is found', async () => {
      const store = path.join(dir, 'store');
      const init = await runCli(at(store, 'init', '--json'));
      expect(init.code, init.stderr).toBe(0);
      expect(JSON.parse(init.stdout)).toMatchObject({ digest: 'blake3' });
      expect((await runCli(at(path.join(dir, 'human'), 'init'))).stderr).toMatch(/, blocks named by BLAKE3 \(catalog /);
      expect(JSON.parse(readFileSync(path.join(store, 'settings')).subarray(64).toString())).toMatchObject({ format: 2, digest: 'blake3' });
      expect((await runCli(at(store, 'backup', image, 'vm1'))).code).toBe(0);
      expect(blockNames(store)).toEqual(chunkNames((d) => namingDigest('blake3', undefined, d).toString('hex')));
      expect((await runCli(at(store, 'scrub', '--all'))).code).toBe(0);

      // Another plaintext in a block's object, with the CRC a careful forger would write.
      const victim = path.join(store, 'blocks', readdirSync(path.join(store, 'blocks'), { recursive: true }).map(String).find((f) => f.includes('/'))!);
      const bytes = readFileSync(victim);
      bytes[64 + 7]! ^= 0x01;
      bytes.writeUInt32LE(crc32(bytes.subarray(64)), 56);
      writeFileSync(victim, bytes);
      const scrub = await runCli(at(store, 'scrub', '--all'));
      expect(scrub.code).not.toBe(0);
      expect(scrub.stdout + scrub.stderr).toMatch(/1 bad block/);
    });

    it('where the native BLAKE3 has no build, the portable one restores, scrubs and dedups against the same store', async () => {
      const store = path.join(dir, 'store');
      expect((await runCli(at(store, 'init'))).code).toBe(0);
      expect((await runCli(at(store, 'backup', image, 'vm1'))).code).toBe(0);
      const portable = { BACKY2_BLAKE3: 'portable' };
      const out = path.join(dir, 'out');
      const restored = await spawnCli(at(store, 'restore', 'vm1', out), portable);
      expect(restored.code, restored.stderr).toBe(0);
      expect(sha(out)).toBe(sha(image));
      const scrub = await spawnCli(at(store, 'scrub', '--all'), portable);
      expect(scrub.code, scrub.stderr).toBe(0);
      const again = await spawnCli(at(store, 'backup', image, 'vm1', '--json'), portable);
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ bytesWritten: 0 });
    });

    it('init --digest sha256 makes a format 1 store named by SHA-256, which backs up and restores', async () => {
      const store = path.join(dir, 'store');
      const init = await runCli(at(store, 'init', '--digest', 'sha256'));
      expect(init.code).toBe(0);
      expect(init.stderr).toMatch(/^Created store [0-9a-f]{32} at .*, blocks named by SHA-256 \(catalog /);
      expect(JSON.parse(readFileSync(path.join(store, 'settings')).subarray(64).toString())).toMatchObject({ format: 1, digest: 'sha256', checksum: 'crc32' });
      expect((await runCli(at(store, 'backup', image, 'vm1'))).code).toBe(0);
      expect(blockNames(store)).toEqual(chunkNames((d) => createHash('sha256').update(d).digest('hex')));
      const out = path.join(dir, 'out');
      expect((await runCli(at(store, 'restore', 'vm1', out))).code).toBe(0);
      expect(sha(out)).toBe(sha(image));
      const typo = await runCli(at(path.join(dir, 'other'), 'init', '--digest', 'sha1'));
      expect(typo.code).toBe(2);
      expect(typo.stderr).toMatch(/Allowed choices are blake3, sha256/);
    });
  });
});
