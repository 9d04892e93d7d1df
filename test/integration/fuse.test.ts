import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeDiskImage, makePartitionedImage, sha256File } from '../helpers/image.js';
import { namingDigest } from '../../src/engine/objects/naming-digest.js';
import { mountInfo } from '../../src/fs/mount.js';
import { eventually, isMountPoint, startMount } from '../helpers/mount.js';
import { attachLoop, mount, mountLoop, run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
let dir: string;
let env: NodeJS.ProcessEnv;
let mnt: string;
let image: string;
let filesDir: string;

beforeEach(async () => {
  dir = makeTempDir('backy2-fuse-');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, `backup:\n  blockSize: 1MiB\nmount:\n  spillDir: ${dir}\n`);
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
  mnt = path.join(dir, 'mnt');
  ({ image, files: filesDir } = makeDiskImage(dir, { fs: 32, zeros: 8, random: 4 }));
});

async function backupOf(file: string, name = 'vm1'): Promise<string> {
  const r = await spawnCli(['backup', file, name], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

async function listed(): Promise<{ uid: string; status: string; tags: string[]; baseUid: string | null }[]> {
  return JSON.parse((await spawnCli(['ls', '--json'], env)).stdout) as { uid: string; status: string; tags: string[]; baseUid: string | null }[];
}

function readRange(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

describe('backy2 mount (read-only)', () => {
  it('shows every version as a file with exact size, sparse allocation, date, xattrs and latest.img', async () => {
    const first = await backupOf(image);
    const original = readFileSync(image);
    const changed = Buffer.from(original);
    randomBytes(MiB).copy(changed, 3 * MiB);
    const image2 = path.join(dir, 'disk2.img');
    writeFileSync(image2, changed);
    const second = await backupOf(image2);
    await startMount(mnt, env);

    expect(readdirSync(mnt)).toEqual(['vm1']);
    expect(readdirSync(path.join(mnt, 'vm1')).sort()).toEqual([`${first}.img`, `${second}.img`, 'latest.img', 'versions.txt'].sort());
    expect(readlinkSync(path.join(mnt, 'vm1', 'latest.img'))).toBe(`${second}.img`);
    expect(lstatSync(path.join(mnt, 'vm1', 'latest.img')).isSymbolicLink()).toBe(true);
    const st = statSync(path.join(mnt, 'vm1', `${first}.img`));
    expect(st.size).toBe(original.length);
    expect(st.blocks * 512).toBeLessThan(st.size - 7 * MiB);
    expect(Math.abs(st.mtimeMs - Date.now())).toBeLessThan(5 * 60_000);
    expect(readFileSync(path.join(mnt, 'vm1', 'versions.txt'), 'utf8')).toContain(`${first}\t`);
    const xattr = run('python3', ['-c', `import os; print(os.getxattr(${JSON.stringify(path.join(mnt, 'vm1', `${first}.img`))}, 'user.backy2.status').decode())`]);
    expect(xattr.trim()).toBe('valid');
    // No ACLs or SELinux labels: "not supported" (not "no such attribute"), so `ls -l` stops asking per file.
    const others = run('python3', ['-c', `import os, errno
for name in ('system.posix_acl_access', 'security.selinux', 'user.nope'):
    try: os.getxattr(${JSON.stringify(path.join(mnt, 'vm1', `${first}.img`))}, name)
    except OSError as e: print(name, errno.errorcode[e.errno])`]);
    expect(others.trim().split('\n')).toEqual(['system.posix_acl_access ENOTSUP', 'security.selinux ENOTSUP', 'user.nope ENODATA']);

    run('cmp', [image, path.join(mnt, 'vm1', `${first}.img`)]);
    run('cmp', [image2, path.join(mnt, 'vm1', 'latest.img')]);
    for (let i = 0; i < 20; i++) {
      const offset = Math.floor(Math.random() * (original.length - 300_000));
      const length = 1 + Math.floor(Math.random() * 300_000);
      expect(readRange(path.join(mnt, 'vm1', `${first}.img`), offset, length).equals(original.subarray(offset, offset + length))).toBe(true);
    }
    const dd = run('sh', ['-c', `dd if=${path.join(mnt, 'vm1', `${first}.img`)} bs=4096 skip=777 count=300 status=none | sha256sum`]);
    expect(dd.split(' ')[0]).toBe((await import('node:crypto')).createHash('sha256').update(original.subarray(777 * 4096, 1077 * 4096)).digest('hex'));
  });

  it('loop-mounts the ext4 inside a version: same files, e2fsck clean', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env);
    const device = attachLoop(path.join(mnt, 'vm1', `${uid}.img`), { readOnly: true });
    run('e2fsck', ['-fn', device]);
    const inner = path.join(dir, 'inner');
    mount(device, inner, ['ro']);
    run('diff', ['-r', '--exclude=lost+found', filesDir, inner]);
  });

  it.each([
    ['gpt', [1, 2]],
    ['dos', [1, 5, 6]],
  ] as const)('shows each partition of a %s disk as a file; the ext4 in one loop-mounts with the same files', async (label, numbers) => {
    const disk = makePartitionedImage(path.join(dir, label), label);
    const uid = await backupOf(disk.image);
    await startMount(mnt, env);
    const names = readdirSync(path.join(mnt, 'vm1'));
    // The extended partition (2) of the MBR gets no file.
    expect(names.filter((n) => n.startsWith(`${uid}-part`))).toEqual(numbers.map((n) => `${uid}-part${n}.img`));
    expect(names.filter((n) => n.startsWith('latest-part'))).toEqual(numbers.map((n) => `latest-part${n}.img`));
    const n = disk.partition;
    const file = path.join(mnt, 'vm1', `latest-part${n}.img`);
    expect(readlinkSync(file)).toBe(`${uid}-part${n}.img`);
    expect(statSync(file).size).toBe(disk.length);
    const xattrs = run('python3', ['-c', `import os, sys; f = sys.argv[1]; print(os.getxattr(f, 'user.backy2.partition').decode(), os.getxattr(f, 'user.backy2.offset').decode())`, file]);
    expect(xattrs.trim()).toBe(`${n} ${disk.offset}`);
    expect(readRange(file, 0, 2 * MiB).equals(readRange(disk.image, disk.offset, 2 * MiB))).toBe(true);
    run('e2fsck', ['-fn', file]);
    const inner = path.join(dir, 'inner');
    mountLoop(file, inner, ['ro']);
    run('diff', ['-r', '--exclude=lost+found', disk.files, inner]);
  });

  it('shows versions made or removed while mounted, and refuses to remove one that is open', async () => {
    const first = await backupOf(image);
    await startMount(mnt, env);
    const second = await backupOf(image, 'vm2');
    await eventually(() => existsSync(path.join(mnt, 'vm2', `${second}.img`)), 10_000, 'the new version');
    // hold the first version open in another process
    const holder = spawn('sh', ['-c', `exec 3<${path.join(mnt, 'vm1', `${first}.img`)}; echo open; exec sleep 30`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((r) => holder.stdout.once('data', r));
    const refused = await spawnCli(['rm', '--force', first], env);
    expect(refused.code).toBe(11);
    expect(refused.stderr).toContain('mount');
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    await eventually(async () => (await spawnCli(['rm', '--force', first], env)).code === 0, 10_000, 'rm after close');
    await eventually(() => !existsSync(path.join(mnt, 'vm1')), 10_000, 'the removed version to disappear');
  });

  it('gives EIO for a bad block and a log line, and keeps serving the rest', async () => {
    const uid = await backupOf(image);
    // damage the object of the block at 33 MiB (random data)
    const offset = 40 * MiB;
    const digest = namingDigest('blake3', undefined, readFileSync(image).subarray(offset, offset + MiB)).toString('hex');
    const object = path.join(dir, 'store', 'blocks', digest.slice(0, 2), digest);
    const bytes = readFileSync(object);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(object, bytes);
    const daemon = await startMount(mnt, env);
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    expect(() => readRange(file, offset + 10, 100)).toThrow(/EIO|input\/output/i);
    expect(readRange(file, 0, 4096).equals(readFileSync(image).subarray(0, 4096))).toBe(true);
    await eventually(() => daemon.log().includes('is corrupt'), 5000, 'the log line');
    expect(isMountPoint(mnt)).toBe(true);
  });

  it('a read-only mount reads ahead 512 KiB (the kernel gives FUSE 128), a writable one is left as it is', async () => {
    await backupOf(image);
    const readAhead = () => Number(readFileSync(`/sys/class/bdi/${mountInfo(mnt)?.[2]}/read_ahead_kb`, 'utf8'));
    const daemon = await startMount(mnt, env);
    expect(readAhead()).toBe(512);
    await daemon.stop();
    await startMount(mnt, env, ['--writable']);
    expect(readAhead()).toBe(128);
  });

  it('version files advertise 4 MiB as their I/O size, so cp copies them in whole blocks', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env);
    expect(statSync(path.join(mnt, 'vm1', `${uid}.img`)).blksize).toBe(4 * 1024 * 1024);
  });

  it('refuses writes on a read-only mount', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env);
    expect(() => openSync(path.join(mnt, 'vm1', `${uid}.img`), 'r+')).toThrow(/EROFS|read-only/i);
  });

  it('clears a stale mount left by a killed daemon, also right after its root was looked at', async () => {
    await backupOf(image);
    const first = await startMount(mnt, env);
    // The kernel now caches the root's attributes: a stat alone would not tell the daemon died.
    statSync(mnt);
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    expect(() => readdirSync(mnt)).toThrow(/ENOTCONN|not connected/i);
    const second = await startMount(mnt, env);
    expect(readdirSync(mnt)).toEqual(['vm1']);
    expect(second.log()).toContain('stale');
  });

  it('backy2 umount stops a --daemon mount, whichever path names the mount point', async () => {
    await backupOf(image);
    mkdirSync(mnt);
    const link = path.join(dir, 'link');
    symlinkSync(mnt, link);
    const r = await spawnCli(['mount', link, '--daemon', '--log', path.join(dir, 'mount.log')], env);
    expect(r.code, r.stderr).toBe(0);
    expect(isMountPoint(mnt)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 2500)); // past the daemon's first unmounted-from-outside check
    expect(isMountPoint(mnt)).toBe(true);
    const u = await spawnCli(['umount', mnt], env);
    expect(u.code, u.stderr).toBe(0);
    expect(isMountPoint(mnt)).toBe(false);
  });
});

describe('backy2 mount --writable (copy-on-write)', () => {
  it('ext4 changes through a loop device become a new version; the original stays byte-identical', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env, ['--writable']);
    const device = attachLoop(path.join(mnt, 'vm1', `${uid}.img`));
    const inner = path.join(dir, 'inner');
    mkdirSync(inner);
    run('mount', [device, inner]);
    writeFileSync(path.join(inner, 'new-file.txt'), 'written through FUSE\n');
    run('rm', ['-r', path.join(inner, 'licenses')]);
    run('umount', [inner]);
    run('losetup', ['-d', device]);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 30_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    expect(cow.baseUid).toBe(uid);
    expect(cow.status).toBe('valid');

    const restored = path.join(dir, 'cow.img');
    expect((await spawnCli(['restore', cow.uid, restored], env)).code).toBe(0);
    run('e2fsck', ['-fn', restored]);
    const check = path.join(dir, 'check');
    mount(attachLoop(restored, { readOnly: true }), check, ['ro']);
    expect(readFileSync(path.join(check, 'new-file.txt'), 'utf8')).toBe('written through FUSE\n');
    expect(existsSync(path.join(check, 'licenses'))).toBe(false);
    expect(readFileSync(path.join(check, 'hello.txt'), 'utf8')).toBe('hello\n');

    const original = path.join(dir, 'orig.img');
    expect((await spawnCli(['restore', uid, original], env)).code).toBe(0);
    expect(await sha256File(original)).toBe(await sha256File(image));
  });

  it('a version file reads exactly its committed content after each session, with the kernel page cache in place', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env, ['--writable']);
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    const original = await sha256File(image);
    const sum = () => run('sha256sum', [file]).split(' ')[0];
    expect(sum()).toBe(original);
    const committed = async (count: number) => {
      await eventually(async () => (await listed()).filter((v) => v.tags.includes('cow')).length === count, 30_000, `copy-on-write version ${count}`);
      // The session closes right after its commit; from then on the file is the version again.
      await eventually(() => sum() === original, 10_000, 'the version file to read as committed');
    };
    // Session 1: dd into it; while a writer holds it open, every reader sees the session.
    const patch = path.join(dir, 'patch');
    writeFileSync(patch, randomBytes(4 * MiB));
    const expected = readFileSync(image);
    readFileSync(patch).copy(expected, 6 * MiB);
    const during = run('sh', ['-c', `exec 3<>${file}; dd if=${patch} of=${file} bs=1M seek=6 conv=notrunc status=none; sha256sum ${file}; exec 3>&-`]);
    expect(during.split(' ')[0]).toBe(createHash('sha256').update(expected).digest('hex'));
    await committed(1);
    expect(sum()).toBe(original);
    // Session 2: an ext4 edit through a loop device, unmounted; the version file reads as before.
    const device = attachLoop(file);
    const inner = path.join(dir, 'inner');
    mkdirSync(inner);
    run('mount', [device, inner]);
    writeFileSync(path.join(inner, 'second.txt'), 'second session\n');
    run('umount', [inner]);
    run('losetup', ['-d', device]);
    await committed(2);
    expect(run('cmp', [file, image])).toBe('');
    // The second session started from the version, not from pages of the first one.
    const cows = (await listed()).filter((v) => v.tags.includes('cow'));
    const restored = path.join(dir, 'second.img');
    expect((await spawnCli(['restore', cows[1]!.uid, restored], env)).code).toBe(0);
    const check = path.join(dir, 'check');
    mount(attachLoop(restored, { readOnly: true }), check, ['ro']);
    expect(readFileSync(path.join(check, 'second.txt'), 'utf8')).toBe('second session\n');
    expect(readRange(restored, 6 * MiB, 4 * MiB).equals(readFileSync(patch))).toBe(false);
  });

  it('a version written through the mount is never latest.img nor the base of the next backup, which equals its source', async () => {
    const first = JSON.parse((await spawnCli(['backup', image, 'vm1', '-s', 's1', '--json'], env)).stdout) as { uid: string };
    const daemon = await startMount(mnt, env, ['--writable']);
    const patch = path.join(dir, 'patch');
    writeFileSync(patch, randomBytes(MiB));
    run('dd', [`if=${patch}`, `of=${path.join(mnt, 'vm1', `${first.uid}.img`)}`, 'bs=1M', 'seek=2', 'conv=notrunc', 'status=none']);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 30_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    await eventually(() => readlinkSync(path.join(mnt, 'vm1', 'latest.img')) === `${first.uid}.img`, 5000, 'latest.img');
    expect(readFileSync(path.join(mnt, 'vm1', 'versions.txt'), 'utf8')).toMatch(new RegExp(`${cow.uid}\\t\\S+\\tvalid\\tcow\\t.*\\t${first.uid}\\n`));
    expect(await daemon.stop()).toBe(0);
    const data = readFileSync(image);
    randomBytes(MiB).copy(data, 40 * MiB);
    writeFileSync(image, data);
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, JSON.stringify([{ offset: 40 * MiB, length: MiB, exists: 'true' }]));
    const inc = await spawnCli(['backup', image, 'vm1', '-r', hints, '--hints-from', 's1', '--json'], env);
    expect(inc.code, inc.stderr).toBe(0);
    const result = JSON.parse(inc.stdout) as { uid: string; baseUid: string };
    expect(result.baseUid).toBe(first.uid);
    const plain = JSON.parse((await spawnCli(['backup', image, 'vm1', '--json'], env)).stdout) as { uid: string; baseUid: string };
    expect(plain.baseUid).toBe(result.uid);
    for (const uid of [result.uid, plain.uid]) {
      const out = path.join(dir, `${uid}.img`);
      expect((await spawnCli(['restore', uid, out], env)).code).toBe(0);
      expect(await sha256File(out)).toBe(await sha256File(image));
    }
  });

  it('two writers one after the other: each write is in a committed version, and the file reads as the version again', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env, ['--writable']);
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    const first = path.join(dir, 'first');
    const second = path.join(dir, 'second');
    writeFileSync(first, randomBytes(MiB));
    writeFileSync(second, randomBytes(MiB));
    // The second dd starts while the first one's commit is under way (as it did in the report).
    run('sh', ['-c', `dd if=${first} of=${file} bs=1M seek=10 conv=notrunc status=none; dd if=${second} of=${file} bs=1M seek=11 conv=notrunc status=none`]);
    const original = await sha256File(image);
    await eventually(() => run('sha256sum', [file]).split(' ')[0] === original, 30_000, 'the version file to read as the version again');
    const cows = (await listed()).filter((v) => v.tags.includes('cow'));
    const contents: Buffer[] = [];
    for (const v of cows) {
      const out = path.join(dir, `${v.uid}.img`);
      expect((await spawnCli(['restore', v.uid, out], env)).code).toBe(0);
      contents.push(readFileSync(out));
    }
    expect(contents.some((c) => c.subarray(10 * MiB, 11 * MiB).equals(readFileSync(first)))).toBe(true);
    expect(contents.some((c) => c.subarray(11 * MiB, 12 * MiB).equals(readFileSync(second)))).toBe(true);
  });

  it('dd conv=notrunc writes at offsets; O_TRUNC is refused', async () => {
    const uid = await backupOf(image);
    const daemon = await startMount(mnt, env, ['--writable']);
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    const patch = path.join(dir, 'patch');
    writeFileSync(patch, randomBytes(3 * 4096));
    // One session: fd 3 keeps a writer open across both dd runs (the second writes into zeros).
    run('sh', ['-c', `exec 3<>${file}; dd if=${patch} of=${file} bs=4096 seek=2500 conv=notrunc status=none; dd if=${patch} of=${file} bs=4096 seek=9000 conv=notrunc status=none; exec 3>&-`]);
    expect(() => writeFileSync(file, 'truncated')).toThrow(/EPERM|not permitted/i);
    await eventually(() => daemon.log().includes('refused'), 5000, 'the log line');
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 30_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    const expected = readFileSync(image);
    readFileSync(patch).copy(expected, 2500 * 4096);
    readFileSync(patch).copy(expected, 9000 * 4096);
    const restored = path.join(dir, 'cow.img');
    expect((await spawnCli(['restore', cow.uid, restored], env)).code).toBe(0);
    expect(readFileSync(restored).equals(expected)).toBe(true);
    const original = path.join(dir, 'orig.img');
    await spawnCli(['restore', uid, original], env);
    expect(readFileSync(original).equals(readFileSync(image))).toBe(true);
  });

  it('SIGHUP (a closing SSH session) commits the acknowledged writes of a foreground mount and unmounts', async () => {
    const uid = await backupOf(image);
    const daemon = await startMount(mnt, env, ['--writable']);
    const patch = randomBytes(MiB);
    // The writer keeps the file open: only the signal's clean path commits the session.
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    const fd = openSync(file, 'r+');
    writeSync(fd, patch, 0, patch.length, 5 * MiB);
    const exited = new Promise<number | null>((resolve) => daemon.child.once('exit', (code) => resolve(code)));
    daemon.child.kill('SIGHUP');
    await eventually(() => !isMountPoint(mnt), 30_000, 'the unmount');
    // The daemon may have unmounted lazily under the open file: then its close finds no daemon.
    try {
      closeSync(fd);
    } catch (err) {
      expect(String(err)).toMatch(/ENOTCONN|ECONNABORTED/);
    }
    expect(await exited).toBe(0);
    expect(daemon.log()).toContain('committed copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    const expected = readFileSync(image);
    patch.copy(expected, 5 * MiB);
    const out = path.join(dir, 'cow.img');
    expect((await spawnCli(['restore', cow.uid, out], env)).code).toBe(0);
    expect(readFileSync(out).equals(expected)).toBe(true);
  });

  it('a daemon whose mount is unmounted from outside (fusermount -u) commits and exits', async () => {
    const uid = await backupOf(image);
    const daemon = await startMount(mnt, env, ['--writable']);
    const exited = new Promise<number | null>((resolve) => daemon.child.once('exit', (code) => resolve(code)));
    run('dd', ['if=/dev/zero', `of=${path.join(mnt, 'vm1', `${uid}.img`)}`, 'bs=64k', 'count=4', 'conv=notrunc', 'status=none']);
    run('fusermount', ['-u', mnt]);
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))])).toBe(0);
    expect(daemon.log()).toContain('was unmounted from outside');
    expect((await listed()).some((v) => v.tags.includes('cow'))).toBe(true);
  });

  it('kill -9 of the daemon mid-write leaves no broken valid version, and the next mount works', async () => {
    const uid = await backupOf(image);
    const daemon = await startMount(mnt, env, ['--writable']);
    const writer = spawn('dd', ['if=/dev/urandom', `of=${path.join(mnt, 'vm1', `${uid}.img`)}`, 'bs=64k', 'count=400', 'conv=notrunc,fsync'], { stdio: 'ignore' });
    // Listen before the kill: a writer done within the 300 ms would never be heard of again.
    const written = new Promise((r) => writer.once('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    daemon.child.kill('SIGKILL');
    await written;
    for (const v of (await listed()).filter((x) => x.status === 'valid')) {
      const out = path.join(dir, `check-${v.uid}.img`);
      const r = await spawnCli(['restore', v.uid, out], env);
      expect(r.code, r.stderr).toBe(0);
      // Every valid version restores with all digests verified; the original is unchanged.
      if (v.uid === uid) expect(await sha256File(out)).toBe(await sha256File(image));
    }
    await startMount(mnt, env);
    run('cmp', [image, path.join(mnt, 'vm1', `${uid}.img`)]);
  });

  it('a backup runs while the store is mounted and read', async () => {
    const uid = await backupOf(image);
    await startMount(mnt, env);
    const reading = new Promise<void>((resolve, reject) => {
      const cmp = spawn('cmp', [image, path.join(mnt, 'vm1', `${uid}.img`)]);
      cmp.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cmp exited ${code}`))));
    });
    const [second] = await Promise.all([backupOf(image, 'vm1'), reading]);
    await eventually(() => existsSync(path.join(mnt, 'vm1', `${second}.img`)), 10_000, 'the new version');
  });
});

