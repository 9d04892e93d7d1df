// The part of fuse-native's API that src/fs uses (the package ships no types).
declare module 'fuse-native' {
  type Callback<T = undefined> = T extends undefined ? (code: number) => void : (code: number, value?: T) => void;

  export interface FuseStat {
    mode: number;
    uid?: number;
    gid?: number;
    size?: number;
    nlink?: number;
    blocks?: number;
    blksize?: number;
    ino?: number;
    mtime?: Date;
    atime?: Date;
    ctime?: Date;
  }

  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }

  export interface FuseOperations {
    init?(cb: (code: number) => void): void;
    getattr?(path: string, cb: (code: number, stat?: FuseStat) => void): void;
    fgetattr?(path: string, fd: number, cb: (code: number, stat?: FuseStat) => void): void;
    readdir?(path: string, cb: (code: number, names?: string[]) => void): void;
    readlink?(path: string, cb: (code: number, target?: string) => void): void;
    open?(path: string, flags: number, cb: (code: number, fd?: number) => void): void;
    read?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrCode: number) => void): void;
    write?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrCode: number) => void): void;
    release?(path: string, fd: number, cb: (code: number) => void): void;
    flush?(path: string, fd: number, cb: (code: number) => void): void;
    fsync?(path: string, datasync: number, fd: number, cb: (code: number) => void): void;
    truncate?(path: string, size: number, cb: (code: number) => void): void;
    ftruncate?(path: string, fd: number, size: number, cb: (code: number) => void): void;
    statfs?(path: string, cb: (code: number, statfs?: FuseStatfs) => void): void;
    getxattr?(path: string, name: string, position: number, cb: (code: number, value?: Buffer | null) => void): void;
    listxattr?(path: string, cb: (code: number, names?: string[]) => void): void;
    access?(path: string, mode: number, cb: (code: number) => void): void;
    create?(path: string, mode: number, cb: (code: number, fd?: number) => void): void;
    unlink?(path: string, cb: (code: number) => void): void;
    rename?(src: string, dest: string, cb: (code: number) => void): void;
    mkdir?(path: string, mode: number, cb: (code: number) => void): void;
    rmdir?(path: string, cb: (code: number) => void): void;
    chmod?(path: string, mode: number, cb: (code: number) => void): void;
    chown?(path: string, uid: number, gid: number, cb: (code: number) => void): void;
    utimens?(path: string, atime: Date, mtime: Date, cb: (code: number) => void): void;
  }

  export interface FuseOptions {
    debug?: boolean;
    force?: boolean;
    mkdir?: boolean;
    allowOther?: boolean;
    autoUnmount?: boolean;
    defaultPermissions?: boolean;
    kernelCache?: boolean;
    autoCache?: boolean;
    fsname?: string;
    subtype?: string;
    maxRead?: number;
    attrTimeout?: number;
    entryTimeout?: number;
    timeout?: number | false | Record<string, number | false>;
  }

  export default class Fuse {
    constructor(mountpoint: string, ops: FuseOperations, options?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
    static readonly ENOENT: number;
    static readonly EIO: number;
  }
  export type { Callback };
}
