/**
 * The raw ceiling of fuse-native on this machine: a read-only file system with one file whose
 * reads copy from a prebuilt 4 MiB buffer. Started by fuse-bench.ts with the same mount options
 * as `backy2 mount` (read-only, auto_cache) and the same read-ahead; prints "ready" once mounted,
 * unmounts on SIGTERM.
 *
 *   tsx bench/fuse-ceiling.ts MOUNTPOINT SIZE_BYTES
 */
import { stat } from 'node:fs/promises';
import Fuse from 'fuse-native';
import { raiseReadAhead } from '../src/fs/mount.js';

const [mountpoint, sizeArg] = process.argv.slice(2);
const size = Number(sizeArg ?? 4 * 1024 ** 3);
const pattern = Buffer.alloc(4 << 20);
for (let i = 0; i < pattern.length; i += 4096) pattern[i] = (i >> 12) & 0xff;
const now = new Date();

const fuse = new Fuse(mountpoint ?? '/mnt', {
  getattr: (path, cb) => {
    if (path === '/') return cb(0, { mode: 0o40555, size: 4096, mtime: now, atime: now, ctime: now });
    if (path === '/disk.img') return cb(0, { mode: 0o100444, size, mtime: now, atime: now, ctime: now });
    return cb(Fuse.ENOENT);
  },
  readdir: (_path, cb) => cb(0, ['disk.img']),
  open: (_path, _flags, cb) => cb(0, 42),
  release: (_path, _fd, cb) => cb(0),
  read: (_path, _fd, buffer, length, position, cb) => {
    const n = Math.max(0, Math.min(length, size - position));
    const at = position % pattern.length;
    const first = Math.min(n, pattern.length - at);
    pattern.copy(buffer, 0, at, at + first);
    if (first < n) pattern.copy(buffer, first, 0, n - first);
    cb(n);
  },
}, { fsname: 'ceiling,ro', autoCache: true });

fuse.mount((err) => {
  if (err) {
    console.error(err.message);
    process.exitCode = 1;
    return;
  }
  // After INIT is answered (a first request waits for it), as backy2 mount does.
  void stat(mountpoint ?? '/mnt').finally(() => {
    raiseReadAhead(mountpoint ?? '/mnt');
    console.log('ready');
  });
});
process.on('SIGTERM', () => fuse.unmount(() => process.exit(0)));
