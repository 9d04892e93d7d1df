import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { spawnCli } from '../helpers/cli.js';
import { makeImage, sha256File } from '../helpers/image.js';
import { mountedScratchFs, run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
let dir: string;
let mnt: string;
let env: NodeJS.ProcessEnv;

beforeEach(() => {
  dir = makeTempDir('backy2-fail-');
  mnt = path.join(dir, 'mnt');
  mountedScratchFs(path.join(dir, 'fs.img'), mnt, 48);
  env = { BACKY2_STORE: path.join(mnt, 'store') };
});

async function listJson(): Promise<string> {
  const r = await spawnCli(['ls', '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe('store failures', () => {
  it('disk full while writing blocks: one clear line, exit 10, nothing committed, earlier versions intact', async () => {
    const small = path.join(dir, 'small.img');
    makeImage(small, [{ kind: 'random', length: 8 * MiB }]);
    const first = await spawnCli(['backup', small, 'vm1'], env);
    expect(first.code, first.stderr).toBe(0);
    const before = await listJson();

    const big = path.join(dir, 'big.img');
    makeImage(big, [{ kind: 'random', length: 96 * MiB }]);
    const r = await spawnCli(['backup', big, 'vm2'], env);
    expect(r.code).toBe(10);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^backy2: Cannot (write object|create directory) ".*: no space left on device \(free space, or run `backy2 cleanup` to delete blocks no version uses\)\n$/);
    expect(await listJson()).toBe(before);

    const out = path.join(dir, 'out.img');
    const restored = await spawnCli(['restore', first.stdout.trim(), out], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(small));
  });

  it('an unwritable (read-only) store: one clear line, exit 10', async () => {
    const small = path.join(dir, 'small.img');
    makeImage(small, [{ kind: 'random', length: 2 * MiB }]);
    expect((await spawnCli(['backup', small, 'vm1'], env)).code).toBe(0);
    run('mount', ['-o', 'remount,ro', mnt]);
    const r = await spawnCli(['backup', small, 'vm1'], env);
    expect(r.code).toBe(10);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^backy2: Cannot open block store ".*": read-only file system\n$/);
    run('mount', ['-o', 'remount,rw', mnt]);
  });
});
