import { BlockCache } from './block-cache.js';
import type { VersionRecord } from '../catalog/catalog.js';
import { CowSession } from './cow-session.js';
import { acquireLocks, versionResource, type HeldLocks } from '../catalog/locking.js';
import type { Store } from '../store.js';
import { VersionReader, type Extent } from './version-reader.js';
import { fetchContextOf } from '../objects/block-reader.js';

/** Options of {@link OpenVersions}. */
export interface OpenVersionsOptions {
  /** Names the front end in locks and as the source of copy-on-write versions, e.g. `mount /backy`. */
  readonly origin: string;
  /** One line per commit or failed commit. */
  readonly log: (line: string) => void;
  /** Called after each commit (the new version exists). */
  readonly onCommit?: (version: VersionRecord) => void;
}

/** One version as all its users share it (internal to this module and its users). */
export interface Shared {
  readonly version: VersionRecord;
  readonly reader: VersionReader;
  readonly lock: HeldLocks;
  users: number;
  writers: number;
  session: CowSession | undefined;
  opening: Promise<CowSession> | undefined;
}

/**
 * Versions opened by the mount and the NBD server. All users of a version (file handles, NBD
 * connections) share its lock, its reader and, once somebody writes, one copy-on-write session
 * and one block cache. When the last writer leaves, the session is committed as a new version
 * (base = the opened version); a failed commit keeps the writes in the session for the next try.
 *
 * @example
 * const versions = new OpenVersions(store, { origin: 'nbd :10809', log: console.error });
 * const user = await versions.open(version);
 * await user.write(0, data);
 * await user.close(); // commits: the last writer left
 * const lost = await versions.shutdown();
 */
export class OpenVersions {
  readonly #store: Store;
  readonly #options: OpenVersionsOptions;
  readonly #shared = new Map<string, Promise<Shared>>();
  readonly #sessions = new Set<string>();
  /** Shared by every reader and session. */
  readonly cache: BlockCache;

  constructor(store: Store, options: OpenVersionsOptions) {
    this.#store = store;
    this.#options = options;
    this.cache = new BlockCache(fetchContextOf(store), {
      maxBytes: store.config.cacheBytes,
      fetchers: store.config.readers * 4,
    });
  }

  /**
   * Opens `version` for one user; `writer` counts it as a writer at once (a file opened for
   * writing), else it becomes one with its first write.
   * @throws {LockedError} when the version is being removed
   */
  async open(version: VersionRecord, options: { writer?: boolean } = {}): Promise<VersionUser> {
    let pending = this.#shared.get(version.uid);
    if (!pending) {
      pending = this.#openShared(version);
      pending.catch(() => this.#shared.delete(version.uid));
      this.#shared.set(version.uid, pending);
    }
    const shared = await pending;
    shared.users++;
    const user = new VersionUser(shared, this);
    if (options.writer) user.becomeWriter();
    return user;
  }

  /** True while a version has a copy-on-write session (its content differs from the version). */
  hasSession(uid: string): boolean {
    return this.#sessions.has(uid);
  }

  /**
   * Commits every session and releases everything (unmount, server stop).
   * @returns one line per session whose writes could not be committed (and are lost)
   */
  async shutdown(): Promise<string[]> {
    const lost: string[] = [];
    for (const pending of this.#shared.values()) {
      const shared = await pending.catch(() => undefined);
      if (!shared) continue;
      const session = shared.session;
      if (session) {
        this.#drop(shared);
        await this.commit(shared, session, 'shutdown').catch(() => lost.push(`the writes to ${shared.version.image} version ${shared.version.uid}`));
        await session.close();
      }
      await shared.lock.release();
    }
    this.#shared.clear();
    return lost;
  }

  /** @internal Opens the session of a version, once. */
  async session(shared: Shared): Promise<CowSession> {
    if (shared.session) return shared.session;
    shared.opening ??= CowSession.open(this.#store, shared.version, { spillDir: this.#store.config.spillDir, cache: this.cache, origin: this.#options.origin }).finally(
      () => (shared.opening = undefined),
    );
    shared.session = await shared.opening;
    this.#sessions.add(shared.version.uid);
    return shared.session;
  }

  /** @internal Commits a session, logging the outcome. */
  async commit(shared: Shared, session: CowSession, why: string): Promise<VersionRecord | undefined> {
    try {
      const committed = await session.commit();
      if (committed) {
        this.#options.log(`committed copy-on-write version ${committed.uid} of ${committed.image} (base ${shared.version.uid}, ${why})`);
        this.#options.onCommit?.(committed);
      }
      return committed;
    } catch (err) {
      this.#options.log(`cannot commit the writes to ${shared.version.uid} (${why}): ${err instanceof Error ? err.message : String(err)}`);
      throw err;
    }
  }

  /** @internal A user left: the last writer commits, the last user releases the version. */
  async leave(shared: Shared, wasWriter: boolean): Promise<void> {
    shared.users--;
    if (wasWriter) shared.writers--;
    const session = shared.session;
    if (shared.writers === 0 && session) {
      // A failed commit keeps the session (and its writes) for the next writer, fsync or shutdown.
      await this.commit(shared, session, 'last writer left').catch(() => undefined);
      // Another writer may have come and written during the commit: then the session lives on.
      if (!session.dirty && shared.writers === 0 && shared.session === session) {
        this.#drop(shared);
        await session.close();
      }
    }
    if (shared.users === 0 && !shared.session && this.#shared.get(shared.version.uid)) {
      this.#shared.delete(shared.version.uid);
      await shared.lock.release();
    }
  }

  /** Forgets the session: reads go to the version again (and in-flight ones finish before it closes). */
  #drop(shared: Shared): void {
    shared.session = undefined;
    this.#sessions.delete(shared.version.uid);
  }

  async #openShared(version: VersionRecord): Promise<Shared> {
    const lock = await acquireLocks(this.#store.catalog, [{ resource: versionResource(version.uid), mode: 'shared', operation: this.#options.origin }]);
    try {
      const reader = await VersionReader.open(this.#store, version, this.cache, { readAhead: this.#store.config.readAhead });
      return { version, reader, lock, users: 0, writers: 0, session: undefined, opening: undefined };
    } catch (err) {
      await lock.release();
      throw err;
    }
  }
}

/** One user of an opened version: reads see the session's writes; close exactly once. */
export class VersionUser {
  readonly #shared: Shared;
  readonly #versions: OpenVersions;
  #writer = false;
  #closed = false;

  /** @internal Made by {@link OpenVersions.open}. */
  constructor(shared: Shared, versions: OpenVersions) {
    this.#shared = shared;
    this.#versions = versions;
  }

  get version(): VersionRecord {
    return this.#shared.version;
  }

  /** The reader of the version as committed (for allocation figures). */
  get reader(): VersionReader {
    return this.#shared.reader;
  }

  /** @internal Counts this user as a writer. */
  becomeWriter(): void {
    if (this.#writer) return;
    this.#writer = true;
    this.#shared.writers++;
  }

  /** Reads like {@link VersionReader.read}, the session's writes included. */
  async read(offset: number, into: Uint8Array): Promise<number> {
    const session = this.#shared.session;
    return session ? session.read(offset, into) : this.#shared.reader.read(offset, into);
  }

  /** Reads like {@link VersionReader.readCached}: undefined when the read has to wait, or the version has a session. */
  readCached(offset: number, into: Uint8Array): number | undefined {
    return this.#shared.session ? undefined : this.#shared.reader.readCached(offset, into);
  }

  /** Allocation as block-granular runs, the session's writes included. */
  async extents(offset: number, length: number): Promise<Extent[]> {
    const session = this.#shared.session;
    return session ? session.extents(offset, length) : this.#shared.reader.extents(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await (await this.#session()).write(offset, data);
  }

  /** Zeroes a range; whole blocks become sparse. */
  async zero(offset: number, length: number): Promise<void> {
    await (await this.#session()).zero(offset, length);
  }

  /** Commits the writes so far (fsync, NBD FLUSH); a later commit of the session replaces it. */
  async commit(why: string): Promise<VersionRecord | undefined> {
    const session = this.#shared.session;
    return session ? this.#versions.commit(this.#shared, session, why) : undefined;
  }

  /** Leaves the version; the last writer commits its session. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#versions.leave(this.#shared, this.#writer);
  }

  async #session(): Promise<CowSession> {
    this.becomeWriter();
    return this.#versions.session(this.#shared);
  }
}
