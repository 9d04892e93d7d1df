/**
 * The storage interface behind every backend (file, memory, S3): a flat key → bytes object store.
 *
 * It knows nothing of blocks, versions or the catalog; the engine encodes objects with
 * `object-codec.ts` and chooses the keys (`formats.ts`, ObjectKeys). Keep it small: add
 * capabilities as `properties`, not as new required methods.
 */

/** Static facts about a store that callers tune themselves by. */
export interface BlockStoreProperties {
  /** Human-readable location without credentials, used in messages (`file:/srv/backy2`). */
  readonly location: string;
  /** Parallel requests this store serves well. */
  readonly maxConnections: number;
  /** True when `put` atomically replaces an existing object (readers see old or new, never a mix). */
  readonly atomicOverwrite: boolean;
  /** True when the store can only be read (read-only media, another user's files): puts and deletes fail. */
  readonly readOnly: boolean;
}

/** What `stat` and `list` report about one object. */
export interface ObjectInfo {
  readonly key: string;
  /** Stored size in bytes. */
  readonly size: number;
  /** Last modification (write) time in ms since the epoch. */
  readonly mtimeMs: number;
}

export interface PutOptions {
  /** Cancels the write; the object is then not created and no temp data remains. */
  readonly signal?: AbortSignal;
}

export interface GetOptions {
  /** First byte to read. @default 0 */
  readonly offset?: number;
  /** Bytes to read; reading past the end of the object throws. @default the rest of the object */
  readonly length?: number;
  /** Read into this buffer (from its start) instead of allocating. A whole object (no `length`) larger than it is corrupt (CorruptBlockError). */
  readonly into?: Uint8Array;
  /**
   * Read around caches where the store can (O_DIRECT on a local file system): for data read
   * once. Applies to reads from offset 0 with `into` and `length`; `into` must then be
   * page-aligned with room for `length` rounded up to 4 KiB. @default false
   */
  readonly direct?: boolean;
  readonly signal?: AbortSignal;
}

/**
 * A flat object store.
 *
 * Keys are `/`-separated lowercase paths of `[0-9a-z._-]` segments (`blocks/ab/ab12…`); callers
 * never pass user input as a key.
 */
export interface BlockStore {
  readonly properties: BlockStoreProperties;

  /**
   * Stores the concatenation of `body` under `key`, replacing any existing object.
   * Resolves only once the object is durable (survives a crash or power loss). The body is
   * rewindable (plain buffers), so implementations may retry. A failed or aborted put leaves
   * either the previous object or none, never a partial one, and no temp data.
   * @throws {StoreFullError} when the store has no space left
   * @throws {StoreUnavailableError} when the store cannot be written
   */
  put(key: string, body: readonly Uint8Array[], options?: PutOptions): Promise<void>;

  /**
   * Reads an object or a byte range of it.
   * @returns the bytes read (a view of `options.into` when given)
   * @throws {ObjectMissingError} when there is no object under `key`
   * @throws {CorruptBlockError} when the range reaches past the end of the object
   * @throws {StoreUnavailableError} when the store cannot be read
   */
  get(key: string, options?: GetOptions): Promise<Uint8Array>;

  /** Size and mtime of an object, or undefined when it does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;

  /**
   * Every object whose key starts with `prefix`, in no particular order. Objects created or
   * deleted while listing may or may not appear; temp data of unfinished puts never does.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Deletes an object; deleting a missing object succeeds. */
  delete(key: string): Promise<void>;

  /**
   * Checks that the store as a whole is there: its directory is the one opened (not an empty
   * mount point after an unmount), the bucket answers. Callers ask when one object cannot be
   * read, to tell a bad object (the rest goes on) from a store that is gone (stop).
   * @throws {StoreUnavailableError} when it is not
   */
  probe(): Promise<void>;

  /** Releases resources; idempotent. Later calls on the store throw. */
  close(): Promise<void>;
}

const KEY_PATTERN = /^[0-9a-z._-]+(\/[0-9a-z._-]+)*$/;

/**
 * Throws a TypeError for a key that is not a valid object key (a programmer error).
 * @param key the key to check
 */
export function assertValidKey(key: string): void {
  if (!KEY_PATTERN.test(key) || key.split('/').some((part) => part === '.' || part === '..' || part.startsWith('.tmp'))) {
    throw new TypeError(`Invalid object key "${key}"`);
  }
}

/** Total length of a body given as parts. */
export function bodyLength(body: readonly Uint8Array[]): number {
  let n = 0;
  for (const part of body) n += part.length;
  return n;
}
