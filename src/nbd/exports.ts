import { BlockCache } from '../engine/block-cache.js';
import type { VersionRecord } from '../engine/catalog/catalog.js';
import { CowSession } from '../engine/cow-session.js';
import { acquireLocks, versionResource, type HeldLocks } from '../engine/locking.js';
import type { Store } from '../engine/store.js';
import { VersionReader } from '../engine/version-reader.js';
import { listVersions } from '../engine/versions.js';
import { Errno } from './protocol.js';
import { NbdError, type NbdBackend, type NbdExport, type NbdExtent } from './session.js';

/** Options of {@link VersionExports}. */
export interface VersionExportsOptions {
  /** No writes at all (READ_ONLY exports). */
  readonly readOnly: boolean;
  /** Serve only this version (also as the default export ''). */
  readonly uid?: string | undefined;
  /** Names the server in locks and in the source of copy-on-write versions. */
  readonly origin: string;
  readonly log: (line: string) => void;
}

/** Most blocks described by one extents call; block status may cover less than asked. */
const MAX_EXTENT_BLOCKS = 65536;

interface Shared {
  readonly version: VersionRecord;
  readonly reader: VersionReader;
  readonly lock: HeldLocks;
  connections: number;
  writers: number;
  session: CowSession | undefined;
  opening: Promise<CowSession> | undefined;
}

/**
 * Versions as NBD exports (name = uid). All connections to one export share a reader and, once
 * somebody writes, one copy-on-write session; when the last writing connection of an export
 * disconnects, the session is committed as a new version (base = the served version).
 */
export class VersionExports implements NbdBackend {
  readonly #store: Store;
  readonly #options: VersionExportsOptions;
  readonly #cache: BlockCache;
  readonly #shared = new Map<string, Promise<Shared>>();

  constructor(store: Store, options: VersionExportsOptions) {
    this.#store = store;
    this.#options = options;
    this.#cache = new BlockCache({ blocks: store.blocks, hasher: store.hasher() }, {
      maxBytes: store.config.cacheBytes,
      fetchers: store.config.readers * 4,
      maxBlockSize: 64 << 20,
    });
  }

  async list(): Promise<{ name: string; description: string }[]> {
    return (await this.#versions()).map((v) => ({ name: v.uid, description: describe(v) }));
  }

  async open(name: string): Promise<NbdExport | undefined> {
    const uid = name === '' ? this.#options.uid : name;
    const version = (await this.#versions()).find((v) => v.uid === uid);
    if (!version) return undefined;
    let shared = this.#shared.get(version.uid);
    if (!shared) {
      shared = this.#openShared(version);
      shared.catch(() => this.#shared.delete(version.uid));
      this.#shared.set(version.uid, shared);
    }
    const state = await shared;
    state.connections++;
    return this.#connection(state);
  }

  /** Commits open sessions and releases everything (server shutdown). */
  async shutdown(): Promise<void> {
    for (const pending of this.#shared.values()) {
      const state = await pending.catch(() => undefined);
      if (!state) continue;
      await this.#finishSession(state, 'server shutdown');
      await state.lock.release();
    }
    this.#shared.clear();
  }

  async #versions(): Promise<VersionRecord[]> {
    const all = (await listVersions(this.#store)).filter((v) => v.status !== 'incomplete');
    return this.#options.uid === undefined ? all : all.filter((v) => v.uid === this.#options.uid);
  }

  async #openShared(version: VersionRecord): Promise<Shared> {
    const lock = await acquireLocks(this.#store.catalog, [{ resource: versionResource(version.uid), mode: 'shared', operation: this.#options.origin }]);
    try {
      const reader = await VersionReader.open(this.#store, version, this.#cache, { readAhead: this.#store.config.readAhead });
      return { version, reader, lock, connections: 0, writers: 0, session: undefined, opening: undefined };
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  #connection(state: Shared): NbdExport {
    const { version, reader } = state;
    const readOnly = this.#options.readOnly;
    let wrote = false;
    const session = async (): Promise<CowSession> => {
      if (!wrote) {
        wrote = true;
        state.writers++;
      }
      if (state.session) return state.session;
      state.opening ??= CowSession.open(this.#store, version, { spillDir: this.#store.config.spillDir, cache: this.#cache, origin: this.#options.origin }).finally(
        () => (state.opening = undefined),
      );
      state.session = await state.opening;
      return state.session;
    };
    const bs = version.blockSize;
    return {
      name: version.uid,
      description: describe(version),
      size: version.size,
      readOnly,
      read: async (offset, into) => {
        await (state.session ? state.session.read(offset, into) : reader.read(offset, into));
      },
      write: async (offset, data) => (await session()).write(offset, data),
      zero: async (offset, length, { noHole, fast }) => {
        const aligned = offset % bs === 0 && ((offset + length) % bs === 0 || offset + length === version.size);
        if (fast && (noHole || !aligned)) throw new NbdError(Errno.NBD_ENOTSUP, 'zeroing this range is not faster than writing it');
        const s = await session();
        if (!noHole) return s.zero(offset, length);
        const zeros = Buffer.alloc(Math.min(length, 4 << 20));
        for (let at = 0; at < length; at += zeros.length) await s.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)));
      },
      trim: async (offset, length) => {
        // A hint: discard the whole blocks inside the range.
        const from = Math.ceil(offset / bs) * bs;
        const to = offset + length === version.size ? version.size : Math.floor((offset + length) / bs) * bs;
        if (to > from) await (await session()).zero(from, to - from);
      },
      // Writes live in the session's spill file until a commit: FLUSH and FUA commit (a later
      // commit of the session replaces the version, so a session still leaves one version).
      flush: async () => {
        await state.session?.commit();
      },
      extents: async (offset, length): Promise<NbdExtent[]> => {
        const capped = Math.min(length, MAX_EXTENT_BLOCKS * bs - (offset % bs));
        const runs = state.session ? await state.session.extents(offset, capped) : await reader.extents(offset, capped);
        return runs.map((r) => ({ length: r.length, hole: r.sparse }));
      },
      close: async () => {
        state.connections--;
        if (wrote) state.writers--;
        if (state.writers === 0 && state.session) await this.#finishSession(state, 'last writer disconnected');
        if (state.connections === 0 && !state.session) {
          this.#shared.delete(version.uid);
          await state.lock.release();
        }
      },
    };
  }

  async #finishSession(state: Shared, why: string): Promise<void> {
    const session = state.session;
    if (!session) return;
    try {
      // The last commit may have come from a FLUSH already; report the version the session leaves.
      const committed = (await session.commit())?.uid ?? session.lastCommit;
      if (committed) this.#options.log(`committed copy-on-write version ${committed} of ${state.version.image} (base ${state.version.uid}, ${why})`);
      // Another connection may have written during the commit: then the session lives on.
      if (session.dirty || state.writers > 0) return;
      await session.close();
      state.session = undefined;
    } catch (err) {
      this.#options.log(`cannot commit the writes to ${state.version.uid} (${why}): ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

function describe(v: VersionRecord): string {
  return `${v.image} ${new Date(v.createdAt).toISOString()}${v.status === 'invalid' ? ' INVALID' : ''}`;
}
