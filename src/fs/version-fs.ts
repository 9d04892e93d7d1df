import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { BlockCache } from '../engine/block-cache.js';
import type { VersionRecord } from '../engine/catalog/catalog.js';
import { CowSession } from '../engine/cow-session.js';
import { isBackyError } from '../engine/errors.js';
import { acquireLocks, versionResource, type HeldLocks } from '../engine/locking.js';
import type { Store } from '../engine/store.js';
import { VersionReader } from '../engine/version-reader.js';
import { listVersions } from '../engine/versions.js';
import { versionsListing } from './listing.js';
import { parsePath, type FsPath } from './paths.js';

const E = osConstants.errno;
/** Version readers kept for reuse (each holds its version's block map). */
const MAX_READERS = 256;

/** An error that becomes a negative errno for the kernel. */
export class FsError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

/** What getattr reports. */
export interface Attributes {
  readonly kind: 'dir' | 'file' | 'symlink';
  readonly size: number;
  /** Bytes actually stored (st_blocks × 512). */
  readonly allocated: number;
  readonly mtime: Date;
  readonly writable: boolean;
}

/** Options of {@link VersionFs}. */
export interface VersionFsOptions {
  /** Allow writes (copy-on-write sessions). @default false */
  readonly writable?: boolean;
  /** Directory for spill files of copy-on-write sessions. */
  readonly spillDir: string;
  /** Bytes of the block cache. */
  readonly cacheBytes: number;
  /** Blocks read ahead for sequential readers. */
  readonly readAhead: number;
  /** Names the mount in locks and in the source of COW versions. */
  readonly origin: string;
  /** One line per notable event (bad block, refused truncate, commit). */
  readonly log: (message: string) => void;
  /** How long a listing of versions is reused. @default 1000 ms */
  readonly refreshMs?: number;
}

interface OpenVersion {
  readonly version: VersionRecord;
  reader: VersionReader;
  handles: number;
  writers: number;
  lock: HeldLocks;
  session: CowSession | undefined;
  sessionOpening: Promise<CowSession> | undefined;
}

interface Handle {
  readonly path: FsPath;
  readonly uid: string | undefined;
  readonly write: boolean;
}

/**
 * The file system of versions behind `backy2 mount`, as plain async methods (the kernel glue is
 * in fuse-ops.ts): `/<image>/<uid>.img` per version, `/<image>/latest.img` (a symlink to the
 * newest valid version), `/<image>/versions.txt`. Reads go through one shared block cache;
 * with `writable`, writes open a copy-on-write session per version file that is committed as a
 * new version when its last writer closes, on fsync, and at shutdown.
 */
export class VersionFs {
  readonly #store: Store;
  readonly #options: VersionFsOptions;
  readonly #cache: BlockCache;
  #listing: { at: number; versions: VersionRecord[] } | undefined;
  #refreshing: Promise<VersionRecord[]> | undefined;
  readonly #open = new Map<string, OpenVersion>();
  readonly #handles = new Map<number, Handle>();
  readonly #readers = new Map<string, Promise<VersionReader>>();
  #nextFd = 10;

  constructor(store: Store, options: VersionFsOptions) {
    this.#store = store;
    this.#options = options;
    this.#cache = new BlockCache({ blocks: store.blocks, hasher: store.hasher() }, { maxBytes: options.cacheBytes, fetchers: store.config.readers * 4, maxBlockSize: 64 << 20 });
  }

  get writable(): boolean {
    return this.#options.writable === true;
  }

  /** Versions that a mount shows (valid and invalid; not incomplete), refreshed at most every second. */
  async versions(): Promise<VersionRecord[]> {
    const now = Date.now();
    if (this.#listing && now - this.#listing.at < (this.#options.refreshMs ?? 1000)) return this.#listing.versions;
    this.#refreshing ??= listVersions(this.#store)
      .then((all) => {
        const shown = all.filter((v) => v.status !== 'incomplete');
        this.#listing = { at: Date.now(), versions: shown };
        return shown;
      })
      .finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async getattr(path: string): Promise<Attributes> {
    const p = await this.#resolve(path);
    switch (p.kind) {
      case 'root':
      case 'image':
        return { kind: 'dir', size: 4096, allocated: 4096, mtime: p.mtime, writable: false };
      case 'latest':
        return { kind: 'symlink', size: `${p.target}.img`.length, allocated: 0, mtime: p.mtime, writable: false };
      case 'listing': {
        const text = versionsListing(p.versions);
        return { kind: 'file', size: Buffer.byteLength(text), allocated: Buffer.byteLength(text), mtime: p.mtime, writable: false };
      }
      case 'version': {
        const reader = await this.#reader(p.version);
        const open = this.#open.get(p.version.uid);
        // A file with a copy-on-write session changes; its mtime tells caches so.
        const mtime = open?.session ? new Date(Math.max(Date.now(), p.version.createdAt)) : new Date(p.version.createdAt);
        return { kind: 'file', size: p.version.size, allocated: await reader.allocatedBytes(), mtime, writable: this.writable };
      }
    }
  }

  async readdir(path: string): Promise<string[]> {
    const p = await this.#resolve(path);
    if (p.kind === 'root') return [...new Set((await this.versions()).map((v) => v.image))].sort();
    if (p.kind !== 'image') throw new FsError(E.ENOTDIR, `${path} is not a directory`);
    const names = p.versions.map((v) => `${v.uid}.img`);
    if (p.versions.some((v) => v.status === 'valid')) names.push('latest.img');
    names.push('versions.txt');
    return names;
  }

  async readlink(path: string): Promise<string> {
    const p = await this.#resolve(path);
    if (p.kind !== 'latest') throw new FsError(E.EINVAL, `${path} is not a symlink`);
    return `${p.target}.img`;
  }

  /** Opens a file; returns the handle number the kernel passes back. */
  async open(path: string, flags: number): Promise<number> {
    const p = await this.#resolve(path);
    const write = (flags & 3) !== fsConstants.O_RDONLY || (flags & fsConstants.O_TRUNC) !== 0;
    if (p.kind === 'listing') {
      if (write) throw new FsError(E.EROFS, `${path} is read-only`);
      return this.#newHandle({ path: p, uid: undefined, write: false });
    }
    if (p.kind !== 'version') throw new FsError(E.EISDIR, `${path} is not a file`);
    if (write && !this.writable) throw new FsError(E.EROFS, `${path}: the mount is read-only (mount with --writable for copy-on-write)`);
    if ((flags & fsConstants.O_TRUNC) !== 0) {
      this.#options.log(`refused O_TRUNC of ${path}: version sizes are fixed`);
      throw new FsError(E.EPERM, `${path}: O_TRUNC is not supported`);
    }
    const open = await this.#openVersion(p.version);
    open.handles++;
    if (write) open.writers++;
    return this.#newHandle({ path: p, uid: p.version.uid, write });
  }

  async read(fd: number, into: Buffer, position: number): Promise<number> {
    const handle = this.#handle(fd);
    if (handle.path.kind === 'listing') {
      const current = await this.#resolve(handle.path.path);
      const text = Buffer.from(versionsListing(current.kind === 'listing' ? current.versions : []));
      if (position >= text.length) return 0;
      return text.copy(into, 0, position, Math.min(text.length, position + into.length));
    }
    const open = this.#open.get(handle.uid ?? '');
    if (!open) throw new FsError(E.EBADF, 'stale handle');
    try {
      return open.session ? await open.session.read(position, into) : await open.reader.read(position, into);
    } catch (err) {
      throw this.#ioError(err, `read of ${open.version.uid} at ${position}`);
    }
  }

  async write(fd: number, data: Buffer, position: number): Promise<number> {
    const handle = this.#handle(fd);
    const open = this.#open.get(handle.uid ?? '');
    if (!open || !handle.write) throw new FsError(E.EBADF, 'not open for writing');
    if (position + data.length > open.version.size) {
      throw new FsError(E.ENOSPC, `write past the end of ${open.version.uid}`);
    }
    try {
      const session = await this.#session(open);
      await session.write(position, data);
      return data.length;
    } catch (err) {
      throw this.#ioError(err, `write to ${open.version.uid} at ${position}`);
    }
  }

  /** fsync: commits the file's changes as a version (superseding this session's earlier commit). */
  async fsync(fd: number): Promise<void> {
    const handle = this.#handle(fd);
    const open = this.#open.get(handle.uid ?? '');
    if (!open?.session) return;
    await this.#commit(open, 'fsync');
  }

  async release(fd: number): Promise<void> {
    const handle = this.#handles.get(fd);
    this.#handles.delete(fd);
    if (!handle?.uid) return;
    const open = this.#open.get(handle.uid);
    if (!open) return;
    open.handles--;
    if (handle.write) open.writers--;
    if (open.writers === 0 && open.session) {
      await this.#commit(open, 'last writer closed').catch(() => undefined);
      if (!open.session.dirty) {
        await open.session.close();
        open.session = undefined;
      }
    }
    if (open.handles === 0 && !open.session) {
      this.#open.delete(handle.uid);
      await open.lock.release();
    }
  }

  async truncate(path: string, size: number): Promise<void> {
    const p = await this.#resolve(path);
    if (p.kind === 'version' && size === p.version.size) return;
    this.#options.log(`refused truncate of ${path} to ${size} bytes: version sizes are fixed`);
    throw new FsError(E.EPERM, 'sizes are fixed');
  }

  async statfs(): Promise<{ blocks: number; bfree: number; bavail: number; bsize: number; files: number }> {
    // The file system the store lives on (for S3 stores, the catalog's).
    const where = this.#store.config.store.blockStore;
    const st = await fsp.statfs(where.type === 'file' ? where.path : path.dirname(this.#store.config.store.catalogPath));
    return { blocks: st.blocks, bfree: st.bfree, bavail: st.bavail, bsize: st.bsize, files: (await this.versions()).length };
  }

  /** Extended attributes of version files: user.backy2.{uid,image,status,date,tags,base,protected}. */
  async xattrs(path: string): Promise<Record<string, string>> {
    const p = await this.#resolve(path);
    if (p.kind !== 'version') return {};
    const v = p.version;
    return {
      'user.backy2.uid': v.uid,
      'user.backy2.image': v.image,
      'user.backy2.status': v.status,
      'user.backy2.date': new Date(v.createdAt).toISOString(),
      'user.backy2.tags': v.tags.join(','),
      'user.backy2.base': v.baseUid ?? '',
      'user.backy2.protected': v.protected ? 'yes' : 'no',
    };
  }

  /**
   * Commits every open copy-on-write session and releases everything (after unmounting).
   * @returns one line per session whose writes could not be committed (and are lost)
   */
  async shutdown(): Promise<string[]> {
    const failures: string[] = [];
    for (const open of this.#open.values()) {
      if (open.session) {
        const session = open.session;
        await this.#commit(open, 'unmount').catch(() => failures.push(`the writes to ${open.version.image} version ${session.base.uid}`));
        await session.close().catch(() => undefined);
        open.session = undefined;
      }
      await open.lock.release().catch(() => undefined);
    }
    this.#open.clear();
    this.#handles.clear();
    return failures;
  }

  async #commit(open: OpenVersion, why: string): Promise<void> {
    const session = open.session;
    if (!session?.dirty) return;
    try {
      const version = await session.commit();
      if (version) {
        this.#options.log(`committed copy-on-write version ${version.uid} of ${version.image} (base ${session.base.uid}, ${why})`);
        this.#listing = undefined;
      }
    } catch (err) {
      this.#options.log(`cannot commit the changes to ${session.base.uid} (${why}): ${err instanceof Error ? err.message : String(err)}; they stay in the session`);
      throw new FsError(E.EIO, 'commit failed');
    }
  }

  async #session(open: OpenVersion): Promise<CowSession> {
    if (open.session) return open.session;
    open.sessionOpening ??= CowSession.open(this.#store, open.version, {
      spillDir: this.#options.spillDir,
      cache: this.#cache,
      origin: this.#options.origin,
    }).finally(() => (open.sessionOpening = undefined));
    open.session = await open.sessionOpening;
    return open.session;
  }

  async #openVersion(version: VersionRecord): Promise<OpenVersion> {
    const existing = this.#open.get(version.uid);
    if (existing) return existing;
    const lock = await acquireLocks(this.#store.catalog, [{ resource: versionResource(version.uid), mode: 'shared', operation: this.#options.origin }]).catch((err: unknown) => {
      throw this.#ioError(err, `open of ${version.uid}`);
    });
    const again = this.#open.get(version.uid);
    if (again) {
      await lock.release();
      return again;
    }
    let reader: VersionReader;
    try {
      reader = await this.#reader(version);
    } catch (err) {
      await lock.release();
      throw this.#ioError(err, `open of ${version.uid}`);
    }
    const open: OpenVersion = { version, reader, handles: 0, writers: 0, lock, session: undefined, sessionOpening: undefined };
    this.#open.set(version.uid, open);
    return open;
  }

  async #reader(version: VersionRecord): Promise<VersionReader> {
    let reader = this.#readers.get(version.uid);
    if (!reader) {
      reader = VersionReader.open(this.#store, version, this.#cache, { readAhead: this.#options.readAhead });
      reader.catch(() => this.#readers.delete(version.uid));
      this.#readers.set(version.uid, reader);
      // Forget the oldest readers not in use.
      for (const uid of this.#readers.keys()) {
        if (this.#readers.size <= MAX_READERS) break;
        if (!this.#open.has(uid)) this.#readers.delete(uid);
      }
    }
    return reader;
  }

  async #resolve(path: string): Promise<FsPath & { mtime: Date }> {
    const resolved = parsePath(path, await this.versions());
    if (!resolved) throw new FsError(E.ENOENT, `${path} does not exist`);
    return resolved;
  }

  #newHandle(handle: Handle): number {
    const fd = this.#nextFd++;
    this.#handles.set(fd, handle);
    return fd;
  }

  #handle(fd: number): Handle {
    const handle = this.#handles.get(fd);
    if (!handle) throw new FsError(E.EBADF, `bad handle ${fd}`);
    return handle;
  }

  #ioError(err: unknown, what: string): FsError {
    if (err instanceof FsError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (isBackyError(err)) {
      if (err.code === 'E_LOCKED') return new FsError(E.EBUSY, message);
      if (err.code === 'E_NO_SPACE') {
        this.#options.log(`${what}: ${message}`);
        return new FsError(E.ENOSPC, message);
      }
    }
    this.#options.log(`${what} failed: ${message}`);
    return new FsError(E.EIO, message);
  }
}
