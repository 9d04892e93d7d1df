import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { VersionRecord } from '../engine/catalog/catalog.js';
import type { Partition } from '../engine/live/partition-table.js';
import { isBackyError } from '../engine/errors.js';
import { OpenVersions, type VersionUser } from '../engine/live/open-versions.js';
import type { Store } from '../engine/store.js';
import { VersionReader } from '../engine/live/version-reader.js';
import { listVersions, versionAllocated } from '../engine/operations/versions.js';
import { versionXattrs, versionsListing } from './listing.js';
import { PartitionTables } from './partition-tables.js';
import { LATEST_LINK, LISTING_FILE, latestPartitionLink, parsePath, partitionFile, versionFile, type FsPath } from './paths.js';
import { VersionIndex } from './version-index.js';

const E = osConstants.errno;
/** Readers kept for allocation figures and partition tables of files not open (each holds a version's block map). */
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
  /** Names the mount in locks and in the source of COW versions. */
  readonly origin: string;
  /** One line per notable event (bad block, refused truncate, commit). */
  readonly log: (message: string) => void;
  /** How long a listing of versions is reused. @default 1000 ms */
  readonly refreshMs?: number;
}

interface Handle {
  readonly path: FsPath;
  /** For version and partition files. */
  readonly user: VersionUser | undefined;
  readonly write: boolean;
  /** Where the file lies in the version (a partition file: the partition). */
  readonly start: number;
  readonly length: number;
}

/**
 * The file system of versions behind `backy2 mount`, as plain async methods (the kernel glue is
 * in fuse-ops.ts): `/<image>/<uid>.img` per version, `/<image>/latest.img` (a symlink to the
 * newest valid version), `/<image>/versions.txt`, and for versions whose image has an MBR or GPT
 * partition table `/<image>/<uid>-part<N>.img` and `latest-part<N>.img` per partition. Reads go
 * through one shared block cache; with `writable`, writes open a copy-on-write session per version
 * (shared by its whole-image and partition files) that is committed as a new version when its
 * last writer closes, on fsync, and at shutdown.
 */
export class VersionFs {
  readonly #store: Store;
  readonly #options: VersionFsOptions;
  readonly #versions: OpenVersions;
  #listing: { at: number; index: VersionIndex; validMs: number } | undefined;
  #refreshing: Promise<VersionIndex> | undefined;
  /** Allocated bytes of versions committed before the catalog recorded them, computed once each. */
  readonly #allocated = new Map<string, Promise<number>>();
  readonly #handles = new Map<number, Handle>();
  readonly #readers = new LRUCache<string, Promise<VersionReader>>({ max: MAX_READERS });
  readonly #tables: PartitionTables;
  #nextFd = 10;

  constructor(store: Store, options: VersionFsOptions) {
    this.#store = store;
    this.#options = options;
    this.#versions = new OpenVersions(store, {
      origin: options.origin,
      log: options.log,
      // A new version shows at once.
      onCommit: () => (this.#listing = undefined),
    });
    this.#tables = new PartitionTables(async (version) => this.#reader(version), options.log);
  }

  get writable(): boolean {
    return this.#options.writable === true;
  }

  /** Versions that a mount shows (valid and invalid; not incomplete), refreshed at most every second. */
  async versions(): Promise<readonly VersionRecord[]> {
    return (await this.#index()).all;
  }

  /** The versions shown, indexed by image and uid. */
  async #index(): Promise<VersionIndex> {
    if (this.#listing && Date.now() - this.#listing.at < this.#listing.validMs) return this.#listing.index;
    const started = Date.now();
    this.#refreshing ??= listVersions(this.#store)
      .then((all) => {
        const index = new VersionIndex(all.filter((v) => v.status !== 'incomplete'));
        // Re-read at most every second, and with many versions (0.2 s for 10,000) spend at most a
        // tenth of the time on it: a long `ls -l` would otherwise wait for one every second.
        const refreshMs = this.#options.refreshMs ?? 1000;
        this.#listing = { at: Date.now(), index, validMs: refreshMs === 0 ? 0 : Math.max(refreshMs, 10 * (Date.now() - started)) };
        return index;
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
        return { kind: 'symlink', size: versionFile(p.target).length, allocated: 0, mtime: p.mtime, writable: false };
      case 'latest-partition':
        await this.#partition(p.version, p.number);
        return { kind: 'symlink', size: partitionFile(p.version.uid, p.number).length, allocated: 0, mtime: p.mtime, writable: false };
      case 'listing': {
        const text = versionsListing(p.versions);
        return { kind: 'file', size: Buffer.byteLength(text), allocated: Buffer.byteLength(text), mtime: p.mtime, writable: false };
      }
      case 'version':
      case 'partition': {
        // A file with a copy-on-write session changes; its mtime tells caches so.
        const mtime = this.#versions.hasSession(p.version.uid) ? new Date(Math.max(Date.now(), p.version.createdAt)) : new Date(p.version.createdAt);
        // A whole version's figure comes from the catalog: no block map is read for `ls -l`.
        if (p.kind === 'version') return { kind: 'file', size: p.version.size, allocated: await this.#allocatedBytes(p.version), mtime, writable: this.writable };
        const { start, length } = await this.#extent(p);
        const reader = await this.#reader(p.version);
        return { kind: 'file', size: length, allocated: await reader.allocatedBytes(start, length), mtime, writable: this.writable };
      }
    }
  }

  async readdir(path: string): Promise<string[]> {
    const p = await this.#resolve(path);
    if (p.kind === 'root') return [...(await this.#index()).images];
    if (p.kind !== 'image') throw new FsError(E.ENOTDIR, `${path} is not a directory`);
    // The first listing of a directory reads the partition tables of its versions (then cached),
    // once per distinct first map segment.
    const firsts = p.versions.some((v) => !this.#tables.has(v.uid)) ? await this.#store.catalog.firstSegments(p.image) : new Map<string, Buffer>();
    const tables = await Promise.all(p.versions.map(async (v) => this.#tables.partitions(v, firsts.get(v.uid))));
    const names: string[] = [];
    p.versions.forEach((v, i) => {
      names.push(versionFile(v.uid));
      for (const part of tables[i] ?? []) names.push(partitionFile(v.uid, part.number));
    });
    const latest = (await this.#index()).image(p.image)?.latest;
    if (latest) {
      names.push(LATEST_LINK);
      for (const part of await this.#tables.partitions(latest)) names.push(latestPartitionLink(part.number));
    }
    names.push(LISTING_FILE);
    return names;
  }

  async readlink(path: string): Promise<string> {
    const p = await this.#resolve(path);
    if (p.kind === 'latest') return versionFile(p.target);
    if (p.kind !== 'latest-partition') throw new FsError(E.EINVAL, `${path} is not a symlink`);
    await this.#partition(p.version, p.number);
    return partitionFile(p.version.uid, p.number);
  }

  /** Opens a file; returns the handle number the kernel passes back. */
  async open(path: string, flags: number): Promise<number> {
    const p = await this.#resolve(path);
    const write = (flags & 3) !== fsConstants.O_RDONLY || (flags & fsConstants.O_TRUNC) !== 0;
    if (p.kind === 'listing') {
      if (write) throw new FsError(E.EROFS, `${path} is read-only`);
      return this.#newHandle({ path: p, user: undefined, write: false, start: 0, length: 0 });
    }
    if (p.kind !== 'version' && p.kind !== 'partition') throw new FsError(E.EISDIR, `${path} is not a file`);
    const { start, length } = await this.#extent(p);
    if (write && !this.writable) throw new FsError(E.EROFS, `${path}: the mount is read-only (mount with --writable for copy-on-write)`);
    if ((flags & fsConstants.O_TRUNC) !== 0) {
      this.#options.log(`refused O_TRUNC of ${path}: version sizes are fixed`);
      throw new FsError(E.EPERM, `${path}: O_TRUNC is not supported`);
    }
    const user = await this.#versions.open(p.version, { writer: write }).catch((err: unknown) => {
      throw this.#ioError(err, `open of ${p.version.uid}`);
    });
    return this.#newHandle({ path: p, user, write, start, length });
  }

  /**
   * Reads without waiting when the data is at hand (a cached or sparse block of a version file).
   * @returns bytes read, or undefined when {@link read} has to serve it
   */
  readCached(fd: number, into: Buffer, position: number): number | undefined {
    const handle = this.#handles.get(fd);
    if (!handle?.user || handle.path.kind === 'listing') return undefined;
    if (position >= handle.length) return 0;
    return handle.user.readCached(handle.start + position, into.subarray(0, Math.min(into.length, handle.length - position)));
  }

  async read(fd: number, into: Buffer, position: number): Promise<number> {
    const handle = this.#handle(fd);
    if (handle.path.kind === 'listing') {
      const current = await this.#resolve(handle.path.path);
      const text = Buffer.from(versionsListing(current.kind === 'listing' ? current.versions : []));
      if (position >= text.length) return 0;
      return text.copy(into, 0, position, Math.min(text.length, position + into.length));
    }
    const user = handle.user;
    if (!user) throw new FsError(E.EBADF, 'stale handle');
    if (position >= handle.length) return 0;
    try {
      return await user.read(handle.start + position, into.subarray(0, Math.min(into.length, handle.length - position)));
    } catch (err) {
      throw this.#ioError(err, `read of ${user.version.uid} at ${handle.start + position}`);
    }
  }

  async write(fd: number, data: Buffer, position: number): Promise<number> {
    const handle = this.#handle(fd);
    const user = handle.user;
    if (!user || !handle.write) throw new FsError(E.EBADF, 'not open for writing');
    if (position + data.length > handle.length) {
      throw new FsError(E.ENOSPC, `write past the end of ${handle.path.path}`);
    }
    try {
      await user.write(handle.start + position, data);
      return data.length;
    } catch (err) {
      throw this.#ioError(err, `write to ${user.version.uid} at ${handle.start + position}`);
    }
  }

  /** fsync: commits the file's changes as a version (superseding this session's earlier commit). */
  async fsync(fd: number): Promise<void> {
    const user = this.#handle(fd).user;
    // A failed commit was logged; its writes stay in the session.
    await user?.commit('fsync').catch((err: unknown) => {
      throw new FsError(isBackyError(err) && err.code === 'E_NO_SPACE' ? E.ENOSPC : E.EIO, 'commit failed');
    });
  }

  async release(fd: number): Promise<void> {
    const handle = this.#handles.get(fd);
    this.#handles.delete(fd);
    await handle?.user?.close();
  }

  async truncate(path: string, size: number): Promise<void> {
    const p = await this.#resolve(path);
    if ((p.kind === 'version' || p.kind === 'partition') && size === (await this.#extent(p)).length) return;
    this.#options.log(`refused truncate of ${path} to ${size} bytes: version sizes are fixed`);
    throw new FsError(E.EPERM, 'sizes are fixed');
  }

  async statfs(): Promise<{ blocks: number; bfree: number; bavail: number; bsize: number; files: number }> {
    // The file system the store lives on (for S3 stores, the catalog's).
    const where = this.#store.config.store.blockStore;
    const st = await fsp.statfs(where.type === 'file' ? where.path : path.dirname(this.#store.config.store.catalogPath));
    return { blocks: st.blocks, bfree: st.bfree, bavail: st.bavail, bsize: st.bsize, files: (await this.versions()).length };
  }

  /**
   * Extended attributes of version files: user.backy2.{uid,image,status,date,tags,base,protected};
   * partition files add user.backy2.{partition,offset}.
   */
  async xattrs(path: string): Promise<Record<string, string>> {
    const p = await this.#resolve(path);
    if (p.kind === 'version') return versionXattrs(p.version);
    if (p.kind === 'partition') return versionXattrs(p.version, await this.#partition(p.version, p.number));
    return {};
  }

  /**
   * Commits every open copy-on-write session and releases everything (after unmounting).
   * @returns one line per session whose writes could not be committed (and are lost)
   */
  async shutdown(): Promise<string[]> {
    this.#handles.clear();
    return this.#versions.shutdown();
  }

  /** Bytes of a version's data blocks: recorded at commit, or computed once (and recorded when the store is writable). */
  #allocatedBytes(version: VersionRecord): Promise<number> | number {
    if (version.allocated !== null) return version.allocated;
    let bytes = this.#allocated.get(version.uid);
    if (!bytes) {
      bytes = versionAllocated(this.#store, version);
      bytes.catch(() => this.#allocated.delete(version.uid));
      this.#allocated.set(version.uid, bytes);
    }
    return bytes;
  }

  async #reader(version: VersionRecord): Promise<VersionReader> {
    let reader = this.#readers.get(version.uid);
    if (!reader) {
      // No read-ahead: of data, these readers read only partition tables (files read through #versions).
      reader = VersionReader.open(this.#store, version, this.#versions.cache, { readAhead: 0 });
      reader.catch(() => this.#readers.delete(version.uid));
      this.#readers.set(version.uid, reader);
    }
    return reader;
  }

  /** Partition `number` of a version; ENOENT when it has none of that number. */
  async #partition(version: VersionRecord, number: number): Promise<Partition> {
    const partition = await this.#tables.find(version, number);
    if (!partition) throw new FsError(E.ENOENT, `${version.uid} has no partition ${number}`);
    return partition;
  }

  /** Where a version or partition file lies in its version. */
  async #extent(p: Extract<FsPath, { kind: 'version' | 'partition' }>): Promise<{ start: number; length: number }> {
    if (p.kind === 'version') return { start: 0, length: p.version.size };
    const partition = await this.#partition(p.version, p.number);
    return { start: partition.offset, length: partition.length };
  }

  async #resolve(path: string): Promise<FsPath & { mtime: Date }> {
    const resolved = parsePath(path, await this.#index());
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
