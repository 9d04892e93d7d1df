import type { VersionRecord } from '../engine/catalog/catalog.js';
import { OpenVersions } from '../engine/live/open-versions.js';
import type { Store } from '../engine/store.js';
import { listVersions } from '../engine/operations/versions.js';
import { Errno } from './protocol.js';
import { NbdError, type NbdBackend, type NbdExport, type NbdExtent } from './backend.js';

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
/** Written for WRITE_ZEROES with NO_HOLE (never modified). */
const ZEROS = Buffer.alloc(4 << 20);

/**
 * Versions as NBD exports (name = uid). All connections to one export share a reader and, once
 * somebody writes, one copy-on-write session; when the last writing connection of an export
 * disconnects, the session is committed as a new version (base = the served version).
 */
export class VersionExports implements NbdBackend {
  readonly #store: Store;
  readonly #options: VersionExportsOptions;
  readonly #versions: OpenVersions;

  constructor(store: Store, options: VersionExportsOptions) {
    this.#store = store;
    this.#options = options;
    this.#versions = new OpenVersions(store, { origin: options.origin, log: options.log });
  }

  async list(): Promise<{ name: string; description: string }[]> {
    const all = (await listVersions(this.#store)).filter((v) => v.status !== 'incomplete' && (this.#options.uid === undefined || v.uid === this.#options.uid));
    return all.map((v) => ({ name: v.uid, description: describe(v) }));
  }

  async open(name: string): Promise<NbdExport | undefined> {
    const uid = name === '' ? this.#options.uid : name;
    if (uid === undefined || (this.#options.uid !== undefined && uid !== this.#options.uid)) return undefined;
    const version = await this.#store.catalog.getVersion(uid);
    if (!version || version.status === 'incomplete') return undefined;
    return this.#connection(version);
  }

  /**
   * Commits open sessions and releases everything (server shutdown).
   * @returns one line per session whose writes could not be committed (and are lost)
   */
  shutdown(): Promise<string[]> {
    return this.#versions.shutdown();
  }

  async #connection(version: VersionRecord): Promise<NbdExport> {
    const user = await this.#versions.open(version);
    const bs = version.blockSize;
    return {
      name: version.uid,
      description: describe(version),
      size: version.size,
      readOnly: this.#options.readOnly,
      read: async (offset, into) => {
        await user.read(offset, into);
      },
      write: (offset, data) => user.write(offset, data),
      zero: async (offset, length, { noHole, fast }) => {
        const aligned = offset % bs === 0 && ((offset + length) % bs === 0 || offset + length === version.size);
        if (fast && (noHole || !aligned)) throw new NbdError(Errno.NBD_ENOTSUP, 'zeroing this range is not faster than writing it');
        if (!noHole) return user.zero(offset, length);
        for (let at = 0; at < length; at += ZEROS.length) await user.write(offset + at, ZEROS.subarray(0, Math.min(ZEROS.length, length - at)));
      },
      trim: async (offset, length) => {
        // A hint: discard the whole blocks inside the range.
        const from = Math.ceil(offset / bs) * bs;
        const to = offset + length === version.size ? version.size : Math.floor((offset + length) / bs) * bs;
        if (to > from) await user.zero(from, to - from);
      },
      // Writes live in the session's spill file until a commit: FLUSH and FUA commit (a later
      // commit of the session replaces the version, so a session still leaves one version).
      flush: async () => {
        await user.commit('flush');
      },
      extents: async (offset, length): Promise<NbdExtent[]> => {
        const capped = Math.min(length, MAX_EXTENT_BLOCKS * bs - (offset % bs));
        return (await user.extents(offset, capped)).map((r) => ({ length: r.length, hole: r.sparse }));
      },
      close: () => user.close(),
    };
  }
}

function describe(v: VersionRecord): string {
  return `${v.image} ${new Date(v.createdAt).toISOString()}${v.status === 'invalid' ? ' INVALID' : ''}`;
}
