import { randomBytes } from 'node:crypto';
import { constants as fsConstants, readFileSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { VersionRecord } from '../../../src/engine/catalog/catalog.js';
import { backup } from '../../../src/engine/operations/backup.js';
import type { Store } from '../../../src/engine/store.js';
import { parsePath } from '../../../src/fs/paths.js';
import { VersionIndex, latestVersion } from '../../../src/fs/version-index.js';
import { VersionFs } from '../../../src/fs/version-fs.js';
import { makeImage } from '../../helpers/image.js';
import { makeMemoryStore } from '../../helpers/store.js';
import { run } from '../../helpers/system.js';
import { makeTempDir } from '../../helpers/temp.js';

const E = osConstants.errno;
const MiB = 1024 * 1024;
let store: Store | undefined;
let vfs: VersionFs | undefined;
afterEach(async () => {
  await vfs?.shutdown();
  await store?.close();
  vfs = store = undefined;
});

/**
 * An 8 MiB GPT image: partition 1 (1-3 MiB) and 2 (an odd offset and size, across blocks) hold
 * random data, partition 3 (5-6 MiB) zeros; and a store with its backup, mounted as a VersionFs.
 */
async function setup(options: { writable?: boolean } = {}) {
  const dir = makeTempDir();
  const s = (store = makeMemoryStore({ spillDir: dir }));
  const file = path.join(dir, 'disk.img');
  makeImage(file, [{ kind: 'zero', length: 8 * MiB }]);
  run('sfdisk', ['-q', file], { input: 'label: gpt\nstart=2048, size=2M\nstart=6201, size=1999\nstart=10240, size=1M\n' });
  const image = readFileSync(file);
  randomBytes(2 * MiB).copy(image, 2048 * 512);
  randomBytes(1999 * 512).copy(image, 6201 * 512);
  writeFileSync(file, image);
  const { uid } = await backup(s, { source: file, image: 'vm1' });
  const plain = path.join(dir, 'plain.img');
  makeImage(plain, [{ kind: 'random', length: MiB }]);
  await backup(s, { source: plain, image: 'vm2' });
  const log: string[] = [];
  const fs = (vfs = new VersionFs(s, { origin: 'test', log: (line) => log.push(line), writable: options.writable === true, refreshMs: 0 }));
  return { fs, uid, image, log };
}

async function readAll(fs: VersionFs, file: string, position = 0, length = 16 * MiB): Promise<Buffer> {
  const fd = await fs.open(file, fsConstants.O_RDONLY);
  try {
    const into = Buffer.alloc(length);
    return into.subarray(0, await fs.read(fd, into, position));
  } finally {
    await fs.release(fd);
  }
}

const part2 = { offset: 6201 * 512, length: 1999 * 512 };

describe('VersionFs partition files', () => {
  it('readdir() lists a file per partition and latest-part<N>.img links; an image without a table has none', async () => {
    const { fs, uid } = await setup();
    expect(await fs.readdir('/vm1')).toEqual([`${uid}.img`, `${uid}-part1.img`, `${uid}-part2.img`, `${uid}-part3.img`, 'latest.img', 'latest-part1.img', 'latest-part2.img', 'latest-part3.img', 'versions.txt']);
    expect((await fs.readdir('/vm2')).filter((n) => n.includes('part'))).toEqual([]);
    expect(await fs.readlink('/vm1/latest-part2.img')).toBe(`${uid}-part2.img`);
    expect(await fs.getattr('/vm1/latest-part2.img')).toMatchObject({ kind: 'symlink' });
  });

  it('getattr() gives the partition length and the allocation inside it; xattrs name the partition', async () => {
    const { fs, uid } = await setup();
    expect(await fs.getattr(`/vm1/${uid}-part1.img`)).toMatchObject({ kind: 'file', size: 2 * MiB, allocated: 2 * MiB, writable: false });
    expect(await fs.getattr(`/vm1/${uid}-part2.img`)).toMatchObject({ size: part2.length, allocated: part2.length });
    expect(await fs.getattr(`/vm1/${uid}-part3.img`)).toMatchObject({ size: MiB, allocated: 0 });
    expect(await fs.xattrs(`/vm1/${uid}-part2.img`)).toMatchObject({ 'user.backy2.uid': uid, 'user.backy2.partition': '2', 'user.backy2.offset': String(part2.offset) });
    expect(await fs.xattrs(`/vm1/${uid}.img`)).not.toHaveProperty('user.backy2.partition');
  });

  it.each(['/vm1/$-part4.img', '/vm1/latest-part4.img', '/vm1/$-part01.img', '/vm1/$-part0.img', '/vm2/latest-part1.img', '/vm1/vnone-part1.img'])(
    'getattr() of %s is ENOENT',
    async (name) => {
      const { fs, uid } = await setup();
      await expect(fs.getattr(name.replace('$', uid))).rejects.toMatchObject({ errno: E.ENOENT });
    },
  );

  it('read() returns the partition bytes and stops at its end', async () => {
    const { fs, uid, image } = await setup();
    const whole = image.subarray(part2.offset, part2.offset + part2.length);
    expect((await readAll(fs, `/vm1/${uid}-part2.img`)).equals(whole)).toBe(true);
    expect((await readAll(fs, `/vm1/${uid}-part2.img`, part2.length - 10)).equals(whole.subarray(part2.length - 10))).toBe(true);
    expect((await readAll(fs, `/vm1/${uid}-part2.img`, part2.length)).length).toBe(0);
    expect((await readAll(fs, `/vm1/${uid}-part1.img`, 1000, 5000)).equals(image.subarray(MiB + 1000, MiB + 6000))).toBe(true);
  });

  it('write() goes into the version\'s copy-on-write session at the partition offset; past its end is ENOSPC', async () => {
    const { fs, uid, image } = await setup({ writable: true });
    const partFd = await fs.open(`/vm1/${uid}-part2.img`, fsConstants.O_RDWR);
    const wholeFd = await fs.open(`/vm1/${uid}.img`, fsConstants.O_RDONLY);
    const data = randomBytes(3000);
    expect(await fs.write(partFd, data, 100)).toBe(3000);
    await expect(fs.write(partFd, data, part2.length - 2999)).rejects.toMatchObject({ errno: E.ENOSPC });
    await expect(fs.truncate(`/vm1/${uid}-part2.img`, part2.length + 1)).rejects.toMatchObject({ errno: E.EPERM });
    await fs.truncate(`/vm1/${uid}-part2.img`, part2.length);
    const seen = Buffer.alloc(3000);
    await fs.read(wholeFd, seen, part2.offset + 100);
    expect(seen.equals(data)).toBe(true);
    await fs.release(partFd);
    await fs.release(wholeFd);

    const versions = await fs.versions();
    const cow = versions.find((v) => v.baseUid === uid)!;
    expect(cow.tags).toContain('cow');
    const expected = Buffer.from(image);
    data.copy(expected, part2.offset + 100);
    expect((await readAll(fs, `/vm1/${cow.uid}.img`)).equals(expected)).toBe(true);
    // A copy-on-write version is an experiment: latest stays the newest backup.
    expect(cow.kind).toBe('cow');
    expect(await fs.readlink('/vm1/latest-part2.img')).toBe(`${uid}-part2.img`);
    expect(await fs.readlink('/vm1/latest.img')).toBe(`${uid}.img`);
    expect((await readAll(fs, `/vm1/${uid}-part2.img`, 100, 3000)).equals(image.subarray(part2.offset + 100, part2.offset + 3100))).toBe(true);
  });
});

describe('latestVersion()', () => {
  it('is the newest valid backup version, never a copy-on-write one, for latest.img and latest-part<N>.img alike', () => {
    const v = (uid: string, status: VersionRecord['status'], kind: VersionRecord['kind'] = 'backup') => ({ uid, image: 'vm1', status, createdAt: 0, kind }) as VersionRecord;
    const versions = [v('va', 'valid'), v('vb', 'valid'), v('vc', 'invalid'), v('vd', 'valid', 'cow')];
    expect(latestVersion(versions)?.uid).toBe('vb');
    expect(parsePath('/vm1/latest.img', new VersionIndex(versions))).toMatchObject({ kind: 'latest', target: 'vb' });
    expect(parsePath('/vm1/latest-part3.img', new VersionIndex(versions))).toMatchObject({ kind: 'latest-partition', number: 3, version: { uid: 'vb' } });
    expect(parsePath('/vm1/latest-part3.img', new VersionIndex([v('vc', 'invalid')]))).toBeUndefined();
  });
});

describe('parsePath()', () => {
  const v = (uid: string, image: string, createdAt: number) => ({ uid, image, status: 'valid', createdAt, kind: 'backup' }) as VersionRecord;

  it('gives the root and each directory the mtime of their newest version, also with 200,000 versions', () => {
    // Math.max(...versions) overflowed the stack near 150,000.
    const versions = Array.from({ length: 200_000 }, (_, i) => v(`v${i}`, i % 2 ? 'vm1' : 'vm2', i));
    const index = new VersionIndex(versions);
    expect(parsePath('/', index)?.mtime.getTime()).toBe(199_999);
    expect(parsePath('/vm2', index)?.mtime.getTime()).toBe(199_998);
    expect(index.images).toEqual(['vm1', 'vm2']);
  });

  it('finds a version only under its own image, and nothing for names it does not know', () => {
    const index = new VersionIndex([v('va', 'vm1', 1), v('vb', 'vm2', 2)]);
    expect(parsePath('/vm1/va.img', index)).toMatchObject({ kind: 'version', version: { uid: 'va' } });
    expect(parsePath('/vm1/va-part2.img', index)).toMatchObject({ kind: 'partition', number: 2, version: { uid: 'va' } });
    expect(parsePath('/vm1/vb.img', index)).toBeUndefined();
    expect(parsePath('/vm1/vb-part1.img', index)).toBeUndefined();
    expect(parsePath('/vm1/va', index)).toBeUndefined();
    expect(parsePath('/vm3', index)).toBeUndefined();
    expect(parsePath('/vm1/va.img/x', index)).toBeUndefined();
  });
});

describe('VersionFs allocation figures', () => {
  it('getattr() of a version file takes its allocated bytes from the catalog without reading its block map', async () => {
    const { fs, uid } = await setup();
    const catalog = store!.catalog;
    const segments = vi.spyOn(catalog, 'versionSegments');
    const expected = (await catalog.getVersion(uid))?.allocated;
    expect(expected).toBeGreaterThan(0);
    expect(await fs.getattr(`/vm1/${uid}.img`)).toMatchObject({ kind: 'file', size: 8 * MiB, allocated: expected });
    expect(segments).not.toHaveBeenCalled();
  });

  it('getattr() computes the figure of a version from before it was recorded once, and records it in the catalog', async () => {
    const { fs, uid } = await setup();
    const catalog = store!.catalog;
    const recorded = (await catalog.getVersion(uid))?.allocated;
    // What the catalog gives for a version committed before the figure was recorded.
    const list = catalog.listVersions.bind(catalog);
    vi.spyOn(catalog, 'listVersions').mockImplementation(async (filter) => (await list(filter)).map((x) => (x.uid === uid ? { ...x, allocated: null } : x)));
    const set = vi.spyOn(catalog, 'setAllocated');
    const segments = vi.spyOn(catalog, 'versionSegments');
    expect(await fs.getattr(`/vm1/${uid}.img`)).toMatchObject({ allocated: recorded });
    expect(await fs.getattr(`/vm1/${uid}.img`)).toMatchObject({ allocated: recorded });
    expect(segments).toHaveBeenCalledTimes(1);
    expect(set).toHaveBeenCalledWith(uid, recorded);
  });
});
