import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { BIN, initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeImage, sha256File } from '../helpers/image.js';
import { eventually, isMountPoint, startMount } from '../helpers/mount.js';
import { mountedScratchFs, run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
let dir: string;
let mnt: string;
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = makeTempDir('backy2-fail-');
  mnt = path.join(dir, 'mnt');
  mountedScratchFs(path.join(dir, 'fs.img'), mnt, 48);
  env = { BACKY2_STORE: path.join(mnt, 'store') };
  await initStoreFor(env);
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

  it('a store on read-only media: ls, restore (also without the catalog) and a read-only mount work; changes get one clear line, exit 10', async () => {
    const small = path.join(dir, 'small.img');
    makeImage(small, [{ kind: 'random', length: 2 * MiB }, { kind: 'zero', length: 2 * MiB }]);
    const uid = (await spawnCli(['backup', small, 'vm1'], env)).stdout.trim();
    run('mount', ['-o', 'remount,ro', mnt]);
    try {
      expect(JSON.parse(await listJson())).toHaveLength(1);
      for (const extra of [[], ['--no-catalog']]) {
        const out = path.join(dir, `out${extra.length}.img`);
        const r = await spawnCli(['restore', uid, out, ...extra], env);
        expect(r.code, r.stderr).toBe(0);
        expect(await sha256File(out)).toBe(await sha256File(small));
      }
      const daemon = await startMount(path.join(dir, 'view'), env);
      try {
        expect(await sha256File(path.join(dir, 'view', 'vm1', 'latest.img'))).toBe(await sha256File(small));
      } finally {
        expect(await daemon.stop()).toBe(0);
      }
      // As a daemon too: its log goes to a private temp directory instead of the store.
      const view = path.join(dir, 'view');
      const started = await spawnCli(['mount', '--daemon', view, '--json'], env);
      expect(started.code, started.stderr).toBe(0);
      const log = (JSON.parse(started.stdout) as { log: string }).log;
      expect(log.startsWith(path.join(dir, 'store'))).toBe(false);
      expect(await sha256File(path.join(view, 'vm1', 'latest.img'))).toBe(await sha256File(small));
      const stopped = await spawnCli(['umount', view], env);
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(stopped.stderr).not.toMatch(/stale/i);
      await eventually(() => !isMountPoint(view), 10_000, 'the daemon to unmount');
      for (const command of [['backup', small, 'vm1'], ['rm', '--force', uid], ['protect', uid], ['cleanup'], ['mount', '--writable', path.join(dir, 'view')]]) {
        const r = await spawnCli(command, env);
        expect(r.code, command.join(' ')).toBe(10);
        expect(r.stderr).toMatch(/^backy2: Cannot [^\n]*: the store is read-only \(.* cannot be written\) \(ls, restore and read-only mounts work; .*\)\n$/);
      }
    } finally {
      run('mount', ['-o', 'remount,rw', mnt]);
    }
  });

  it('a store is private to its owner whatever the umask: directories 0700, files 0600', async () => {
    const store = path.join(dir, 'private');
    const small = path.join(dir, 'small.img');
    makeImage(small, [{ kind: 'random', length: 2 * MiB }]);
    const umask0 = (command: string) => run('sh', ['-c', `umask 000 && ${command}`], { env: { ...process.env, BACKY2_STORE: store } });
    umask0(`${BIN} init`);
    umask0(`${BIN} backup ${small} vm1`);
    const modes = run('find', [store, '-printf', '%m %y %P\n']).trim().split('\n');
    expect(modes.length).toBeGreaterThan(8);
    for (const line of modes) {
      const [mode, type] = line.split(' ');
      expect(line).toMatch(/\S/);
      expect(mode, line).toBe(type === 'd' ? '700' : '600');
    }
  });
});
