import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeDiskImage, makeImage, sha256File } from '../helpers/image.js';
import { attachLoop, mount, run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
let dir: string;
let env: NodeJS.ProcessEnv;
let image: string;
let filesDir: string;

beforeEach(async () => {
  dir = makeTempDir('backy2-rt-');
  env = { BACKY2_STORE: path.join(dir, 'store') };
  await initStoreFor(env);
  ({ image, files: filesDir } = makeDiskImage(dir, { fs: 48, zeros: 16, random: 8 }));
});

async function backupImage(name = 'vm1'): Promise<string> {
  const r = await spawnCli(['backup', image, name], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('backup and restore round trip (real ext4 image)', () => {
  it('restores byte-identical to a file, with and without --sparse, and the file system checks clean', async () => {
    const uid = await backupImage();
    const expected = await sha256File(image);
    for (const sparse of [false, true]) {
      const out = path.join(dir, `out-${sparse}.img`);
      const r = await spawnCli(['restore', uid, out, ...(sparse ? ['--sparse'] : [])], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await sha256File(out)).toBe(expected);
      const allocated = statSync(out).blocks * 512;
      if (sparse) expect(allocated).toBeLessThan(statSync(out).size - 15 * MiB);
      else expect(allocated).toBeGreaterThanOrEqual(statSync(out).size);
      run('e2fsck', ['-fn', out]);
    }
    // file-level recovery from the restored image
    const mnt = path.join(dir, 'mnt');
    mount(attachLoop(path.join(dir, 'out-true.img'), { readOnly: true }), mnt, ['ro']);
    expect(readFileSync(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(readdirSync(path.join(mnt, 'licenses')).sort()).toEqual(readdirSync(path.join(filesDir, 'licenses')).sort());
    run('diff', ['-r', filesDir, mnt, '--exclude=lost+found']);
  });

  it('restores byte-identical to a loop device full of old data, with and without --sparse', async () => {
    const uid = await backupImage();
    const expected = await sha256File(image);
    const size = statSync(image).size;
    const backing = path.join(dir, 'device.img');
    for (const sparse of [false, true]) {
      makeImage(backing, [{ kind: 'fill', length: size, byte: 0xaa }]);
      const device = attachLoop(backing);
      const refused = await spawnCli(['restore', uid, device], env);
      expect(refused.code).toBe(5);
      const r = await spawnCli(['restore', uid, device, '--force', ...(sparse ? ['--sparse'] : [])], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await sha256File(device)).toBe(expected);
      run('losetup', ['-d', device]);
    }
  });

  it('refuses a loop device smaller than the version even with --force', async () => {
    const uid = await backupImage();
    const backing = path.join(dir, 'small.img');
    makeImage(backing, [{ kind: 'zero', length: 8 * MiB }]);
    const device = attachLoop(backing);
    const r = await spawnCli(['restore', uid, device, '--force'], env);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^backy2: Target ".*" is too small/);
  });

  it('backs up a block device, taking its size from the device', async () => {
    const device = attachLoop(image, { readOnly: true });
    const r = await spawnCli(['backup', device, 'dev1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { uid: string; size: number };
    expect(result.size).toBe(statSync(image).size);
    const out = path.join(dir, 'dev.img');
    expect((await spawnCli(['restore', result.uid, out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(image));
  });

  it('stores the same image under a second name with less than 1% more bytes', async () => {
    await backupImage('vm1');
    const du = () => Number(run('du', ['-sb', path.join(dir, 'store/blocks')]).split('\t')[0]);
    const before = du();
    const second = JSON.parse((await spawnCli(['backup', image, 'vm2', '--json'], env)).stdout) as { bytesWritten: number };
    expect(second.bytesWritten).toBe(0);
    expect(du() - before).toBeLessThan(before * 0.01);
  });
});
