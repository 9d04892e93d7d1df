import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, type Dir } from 'node:fs';
import path from 'node:path';
import {
  CorruptBlockError,
  NotFoundError,
  ObjectMissingError,
  StoreFullError,
  StoreUnavailableError,
  errnoCode,
  isBackyError,
  throwIfAborted,
} from '../errors.js';
import {
  assertValidKey,
  bodyLength,
  type BlockStore,
  type BlockStoreProperties,
  type GetOptions,
  type ObjectInfo,
  type PutOptions,
} from './block-store.js';
import { DIRECT_ALIGNMENT } from '../sys/direct-io.js';
import { dropCache, isCached } from '../sys/native.js';

/** Prefix of temp files of unfinished puts; `list` never shows them. */
export const TEMP_PREFIX = '.tmp-';

/** Objects and directories of a store are private to its owner (they hold raw disk data). */
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

/** Options of {@link FileStore}. */
export interface FileStoreOptions {
  /** Parallel requests to advertise in `properties.maxConnections`. @default 8 */
  readonly maxConnections?: number;
  /** Create the directory (private to the owner) when it is missing: only `backy2 init` does. @default false */
  readonly create?: boolean;
}

/**
 * A block store in a local (or NFS) directory: one file per object at `<root>/<key>`.
 *
 * Every put writes a temp file in the target directory, fsyncs it, renames it into place and
 * fsyncs the directory, so an object is either complete and durable or absent.
 *
 * @example
 * const store = await FileStore.open('/srv/backy2');
 * await store.put('blocks/ab/ab12', [header, payload]);
 */
export class FileStore implements BlockStore {
  readonly properties: BlockStoreProperties;
  readonly #root: string;
  readonly #knownDirs = new Set<string>();
  /** Device and inode of the directory opened, to notice it being unmounted (see probe). */
  readonly #identity: string;
  #closed = false;
  /**
   * Set once the file system refused an O_DIRECT open (ramfs, for one): its objects
   * are read through the page cache without asking again (a refused open costs about 60 µs here,
   * 6% of reading a 4 MiB object from RAM).
   */
  #directRefused = false;

  private constructor(root: string, options: FileStoreOptions, readOnly: boolean, identity: string) {
    this.#root = root;
    this.#identity = identity;
    this.properties = { location: `file:${root}`, maxConnections: options.maxConnections ?? 8, atomicOverwrite: true, readOnly };
  }

  /**
   * Opens a file store rooted at the directory `root`. A directory this process cannot write
   * (read-only media) opens read-only.
   * @throws {NotFoundError} when the directory does not exist (and `create` is not set)
   * @throws {StoreUnavailableError} when it cannot be created or read
   */
  static async open(root: string, options: FileStoreOptions = {}): Promise<FileStore> {
    const abs = path.resolve(root);
    let identity: string;
    try {
      // Stores hold raw disk blocks: private to the owner, whatever the umask.
      if (options.create) await fsp.mkdir(abs, { recursive: true, mode: PRIVATE_DIR_MODE });
      const st = await fsp.stat(abs);
      identity = `${st.dev}:${st.ino}`;
      if (!st.isDirectory()) throw new StoreUnavailableError(`Cannot open block store "${abs}": not a directory`);
      await fsp.access(abs, fsc.R_OK | fsc.X_OK);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new NotFoundError(`No store at "${abs}": no such directory`, { hint: 'create one with `backy2 init`' });
      throw mapFsError(err, `Cannot open block store "${abs}"`);
    }
    const readOnly = await fsp.access(abs, fsc.W_OK).then(
      () => false,
      () => true,
    );
    return new FileStore(abs, options, readOnly, identity);
  }

  async put(key: string, body: readonly Uint8Array[], options: PutOptions = {}): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    throwIfAborted(options.signal);
    const file = path.join(this.#root, key);
    const dir = path.dirname(file);
    await this.#ensureDir(dir);
    const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    let handle: fsp.FileHandle | undefined;
    try {
      handle = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, PRIVATE_FILE_MODE);
      // Buffered, then synced. Writing a block's whole pages with O_DIRECT (the tail buffered)
      // halved the system CPU of a full backup to this machine's disk, but took 8% longer: the
      // disk was busy 1.6-1.9 s instead of 1.2-1.4 s for the same 2.4 GB (5 runs each).
      await writeAll(handle, body);
      throwIfAborted(options.signal);
      await handle.datasync();
      // Stored objects are rarely read back soon; keep the page cache for the machine's work.
      await dropCache(handle.fd, 0, 0);
      await handle.close();
      handle = undefined;
      await fsp.rename(tmp, file);
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await fsp.unlink(tmp).catch(() => undefined);
      throw mapFsError(err, `Cannot write object "${key}" to ${this.properties.location}`);
    }
    await syncDir(dir).catch((err: unknown) => {
      throw mapFsError(err, `Cannot sync directory of object "${key}" in ${this.properties.location}`);
    });
  }

  /** Opens for reading, with O_DIRECT when asked and the file system supports it; says which it got. */
  async #openForRead(file: string, direct: boolean): Promise<{ handle: fsp.FileHandle; direct: boolean }> {
    if (direct && !this.#directRefused) {
      try {
        return { handle: await fsp.open(file, fsc.O_RDONLY | fsc.O_DIRECT), direct: true };
      } catch (err) {
        if (errnoCode(err) !== 'EINVAL') throw err;
        this.#directRefused = true;
      }
    }
    return { handle: await fsp.open(file, fsc.O_RDONLY), direct: false };
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array> {
    this.#checkOpen();
    assertValidKey(key);
    const offset = options.offset ?? 0;
    const wantDirect = options.direct === true && options.into !== undefined && options.length !== undefined && offset === 0 && options.into.byteOffset % DIRECT_ALIGNMENT === 0;
    let handle: fsp.FileHandle;
    // Whether this read goes around the page cache: not where the file system refused O_DIRECT.
    let direct: boolean;
    try {
      ({ handle, direct } = await this.#openForRead(path.join(this.#root, key), wantDirect));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new ObjectMissingError(`Object "${key}" is missing from ${this.properties.location}`);
      throw unreadableObject(err, key, this.properties.location);
    }
    try {
      let length = options.length;
      if (length === undefined) length = Math.max(0, (await handle.stat()).size - offset);
      const into = options.into ?? Buffer.allocUnsafe(length);
      // O_DIRECT reads whole pages: the buffer must hold the length rounded up.
      const want = direct ? Math.ceil(length / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT : length;
      if (into.length < want) {
        // A whole object larger than the room for the largest one of its kind was tampered with.
        if (options.length === undefined) throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is ${length} bytes, more than such an object can be (${into.length})`);
        throw new RangeError(`Buffer of ${into.length} bytes is too small for ${want} bytes`);
      }
      const wasCached = direct || isCached(handle.fd, offset, length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(into, done, want - done, offset + done);
        // With O_DIRECT a short read means the end of the file (a next read would be unaligned).
        if (bytesRead === 0 || (direct && bytesRead < want - done && done + bytesRead < length)) {
          done += bytesRead;
          throw new CorruptBlockError(
            `Object "${key}" in ${this.properties.location} is too short: wanted bytes ${offset}..${offset + length}, it ends at ${offset + done}`,
          );
        }
        done += bytesRead;
      }
      if (!wasCached) await dropCache(handle.fd, offset, length);
      return into.subarray(0, length);
    } catch (err) {
      if (isBackyError(err) || err instanceof RangeError) throw err;
      throw unreadableObject(err, key, this.properties.location);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.#checkOpen();
    assertValidKey(key);
    try {
      const st = await fsp.stat(path.join(this.#root, key));
      return { key, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw mapFsError(err, `Cannot stat object "${key}" in ${this.properties.location}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.#checkOpen();
    // Walk from the deepest directory that the prefix names completely.
    const slash = prefix.lastIndexOf('/');
    const startKey = slash < 0 ? '' : prefix.slice(0, slash);
    yield* this.#walk(startKey, prefix);
  }

  async *#walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let dir: Dir;
    try {
      dir = await fsp.opendir(path.join(this.#root, dirKey));
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw mapFsError(err, `Cannot list ${this.properties.location}`);
    }
    for await (const entry of dir) {
      if (entry.name.startsWith('.')) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.#walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const st = await fsp.stat(path.join(this.#root, key)).catch(() => undefined);
        if (st) yield { key, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    try {
      await fsp.unlink(path.join(this.#root, key));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw mapFsError(err, `Cannot delete object "${key}" from ${this.properties.location}`);
    }
  }

  async probe(): Promise<void> {
    this.#checkOpen();
    let st;
    try {
      st = await fsp.stat(this.#root);
    } catch (err) {
      throw mapFsError(err, `Cannot reach block store ${this.properties.location}`);
    }
    if (`${st.dev}:${st.ino}` !== this.#identity) {
      throw new StoreUnavailableError(`Block store ${this.properties.location} is gone: its directory is not the one opened (unmounted?)`);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /**
   * Removes temp files of unfinished puts (killed writers) older than `olderThan` (ms since the
   * epoch); with `dryRun` only counts them.
   */
  async sweepTemporary(olderThan: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    this.#checkOpen();
    let files = 0;
    let bytes = 0;
    const walk = async (dir: string): Promise<void> => {
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.name.startsWith(TEMP_PREFIX)) {
          const st = await fsp.stat(full).catch(() => undefined);
          if (!st || st.mtimeMs >= olderThan) continue;
          if (!dryRun) await fsp.unlink(full).catch(() => undefined);
          files++;
          bytes += st.size;
        }
      }
    };
    // Every directory: the store does not know which keys the engine uses.
    await walk(this.#root);
    return { files, bytes };
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#knownDirs.has(dir)) return;
    try {
      // Not recursive first: a recursive mkdir reports ENOSPC as ENOENT.
      await fsp.mkdir(dir, PRIVATE_DIR_MODE).catch(async (err: unknown) => {
        if (errnoCode(err) === 'EEXIST') return;
        if (errnoCode(err) !== 'ENOENT') throw err;
        await fsp.mkdir(path.dirname(dir), { recursive: true, mode: PRIVATE_DIR_MODE });
        await fsp.mkdir(dir, PRIVATE_DIR_MODE).catch((again: unknown) => {
          if (errnoCode(again) !== 'EEXIST') throw again;
        });
      });
    } catch (err) {
      throw mapFsError(err, `Cannot create directory "${dir}" in ${this.properties.location}`);
    }
    this.#knownDirs.add(dir);
  }

  #checkOpen(): void {
    if (this.#closed) throw new TypeError(`Block store ${this.properties.location} is closed`);
  }
}


async function writeAll(handle: fsp.FileHandle, body: readonly Uint8Array[]): Promise<void> {
  const total = bodyLength(body);
  let written = 0;
  let parts = body.filter((p) => p.length > 0);
  while (written < total) {
    const { bytesWritten } = await handle.writev(parts, written);
    written += bytesWritten;
    if (written < total) parts = dropPrefix(parts, bytesWritten);
  }
}

function dropPrefix(parts: readonly Uint8Array[], n: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  let skip = n;
  for (const part of parts) {
    if (skip >= part.length) {
      skip -= part.length;
    } else {
      rest.push(skip > 0 ? part.subarray(skip) : part);
      skip = 0;
    }
  }
  return rest;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Errors that concern one object, not the store: a directory where the object should be, a
 * media error under it. Such an object is a bad block (the rest of a restore or scrub goes on);
 * callers probe the store to tell a dead disk from a bad spot.
 */
const OBJECT_ERRORS = new Set(['EISDIR', 'EIO', 'ENOTDIR', 'ELOOP', 'EINVAL', 'EBADMSG', 'EUCLEAN', 'ENXIO']);

function unreadableObject(err: unknown, key: string, location: string): Error {
  const code = errnoCode(err);
  if (code !== undefined && OBJECT_ERRORS.has(code)) {
    return new CorruptBlockError(`Object "${key}" in ${location} cannot be read: ${code}`, { cause: err });
  }
  return mapFsError(err, `Cannot read object "${key}" from ${location}`);
}

/** The one place where file-store errno values become BackyErrors. */
function mapFsError(err: unknown, what: string): Error {
  if (isBackyError(err)) return err;
  const code = errnoCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new StoreFullError(`${what}: no space left on device`, { cause: err, hint: 'free space, or run `backy2 cleanup` to delete blocks no version uses' });
    case 'EACCES':
    case 'EPERM':
      return new StoreUnavailableError(`${what}: permission denied`, { cause: err });
    case 'EROFS':
      return new StoreUnavailableError(`${what}: read-only file system`, { cause: err });
    case 'ENOENT':
    case 'ENOTDIR':
      return new StoreUnavailableError(`${what}: no such directory`, { cause: err });
    case 'EIO':
      return new StoreUnavailableError(`${what}: input/output error`, { cause: err });
    default:
      return new StoreUnavailableError(`${what}: ${detail}`, { cause: err });
  }
}
