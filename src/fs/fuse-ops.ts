import type { FuseOperations, FuseStat } from 'fuse-native';
import { constants as osConstants } from 'node:os';
import { FsError, type Attributes, type VersionFs } from './version-fs.js';

const E = osConstants.errno;

function errno(err: unknown): number {
  return err instanceof FsError ? -err.errno : -E.EIO;
}

/**
 * The I/O size a file advertises (st_blksize). cp sizes its buffer by it: with 128 KiB, `cp
 * latest.img /dev/loop0` wrote the device in 128 KiB pieces and took twice as long as with 4 MiB.
 */
const PREFERRED_IO_SIZE = 4 * 1024 * 1024;

function toStat(a: Attributes, ids: { uid: number; gid: number }): FuseStat {
  const perm = a.kind === 'dir' ? 0o40555 : a.kind === 'symlink' ? 0o120777 : a.writable ? 0o100644 : 0o100444;
  return {
    mode: perm,
    uid: ids.uid,
    gid: ids.gid,
    size: a.size,
    nlink: a.kind === 'dir' ? 2 : 1,
    blocks: Math.ceil(a.allocated / 512),
    blksize: PREFERRED_IO_SIZE,
    mtime: a.mtime,
    atime: a.mtime,
    ctime: a.mtime,
  };
}

/**
 * The kernel-facing callbacks of the mount: each one calls a VersionFs method and turns its
 * result or error into what fuse-native expects (a value, or a negative errno).
 */
export function fuseOperations(fs: VersionFs): FuseOperations {
  const ids = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  return {
    getattr: (path, cb) => void fs.getattr(path).then((a) => cb(0, toStat(a, ids)), (err: unknown) => cb(errno(err))),
    fgetattr: (path, _fd, cb) => void fs.getattr(path).then((a) => cb(0, toStat(a, ids)), (err: unknown) => cb(errno(err))),
    readdir: (path, cb) => void fs.readdir(path).then((names) => cb(0, names), (err: unknown) => cb(errno(err))),
    readlink: (path, cb) => void fs.readlink(path).then((target) => cb(0, target), (err: unknown) => cb(errno(err))),
    open: (path, flags, cb) => void fs.open(path, flags).then((fd) => cb(0, fd), (err: unknown) => cb(errno(err))),
    read: (_path, fd, buffer, length, position, cb) => {
      // Most reads hit a cached or sparse block: answered at once, without promises.
      const into = buffer.subarray(0, length);
      const n = fs.readCached(fd, into, position);
      if (n !== undefined) return cb(n);
      void fs.read(fd, into, position).then(cb, (err: unknown) => cb(errno(err)));
    },
    write: (_path, fd, buffer, length, position, cb) =>
      void fs.write(fd, buffer.subarray(0, length), position).then(cb, (err: unknown) => cb(errno(err))),
    release: (_path, fd, cb) => void fs.release(fd).then(() => cb(0), (err: unknown) => cb(errno(err))),
    flush: (_path, _fd, cb) => cb(0),
    fsync: (_path, _datasync, fd, cb) => void fs.fsync(fd).then(() => cb(0), (err: unknown) => cb(errno(err))),
    truncate: (path, size, cb) => void fs.truncate(path, size).then(() => cb(0), (err: unknown) => cb(errno(err))),
    ftruncate: (path, _fd, size, cb) => void fs.truncate(path, size).then(() => cb(0), (err: unknown) => cb(errno(err))),
    statfs: (_path, cb) =>
      void fs.statfs().then(
        (s) => cb(0, { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: 0, favail: 0, fsid: 0x6b3279, flag: 0, namemax: 255 }),
        (err: unknown) => cb(errno(err)),
      ),
    // Only user.* attributes exist here. ENOTSUP (not ENODATA) for the others tells `ls -l`
    // that this file system has no ACLs or SELinux labels, and it stops asking for each file.
    getxattr: (path, name, _position, cb) =>
      !name.startsWith('user.') ? cb(-E.EOPNOTSUPP) : void fs.xattrs(path).then((all) => {
        const value = all[name];
        cb(0, value === undefined ? null : Buffer.from(value));
      }, (err: unknown) => cb(errno(err))),
    listxattr: (path, cb) => void fs.xattrs(path).then((all) => cb(0, Object.keys(all)), (err: unknown) => cb(errno(err))),
    // The tree is fixed: everything that would change it is refused.
    create: (_path, _mode, cb) => cb(-E.EROFS),
    unlink: (_path, cb) => cb(-E.EROFS),
    rename: (_src, _dest, cb) => cb(-E.EROFS),
    mkdir: (_path, _mode, cb) => cb(-E.EROFS),
    rmdir: (_path, cb) => cb(-E.EROFS),
    chmod: (_path, _mode, cb) => cb(-E.EROFS),
    chown: (_path, _uid, _gid, cb) => cb(-E.EROFS),
    utimens: (_path, _atime, _mtime, cb) => cb(0),
  };
}
