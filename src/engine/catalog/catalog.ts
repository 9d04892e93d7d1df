/**
 * The catalog: metadata of images, versions, known blocks, block map segments and locks.
 *
 * The interface is asynchronous although the SQLite implementation is not, so that a networked
 * catalog (PostgreSQL) can slot in later without changing callers.
 */
import { DIGEST_LENGTH } from '../objects/formats.js';

export type VersionStatus = 'incomplete' | 'valid' | 'invalid';

/**
 * What made a version: `backup` read a source; `cow` is a copy-on-write commit of writes through
 * a mount or NBD. Only backups form an image's lineage: bases of backups and `latest`.
 */
export type VersionKind = 'backup' | 'cow';

/** Figures of one backup run, stored with its version. */
export interface VersionStats {
  /** Bytes read from the source. */
  readonly bytesRead: number;
  /** Payload bytes written to the block store (new blocks). */
  readonly bytesWritten: number;
  /** What those new blocks take in the store, after compression and encryption; absent in versions made before it was recorded. */
  readonly bytesStored?: number;
  /** Bytes of non-zero blocks read but already stored (in the base or elsewhere). */
  readonly bytesDeduplicated: number;
  /** Bytes of all-zero blocks, neither stored nor sent. */
  readonly bytesSparse: number;
  /** Bytes taken over from the base version without reading (hints). */
  readonly bytesSkipped: number;
  readonly blocksRead: number;
  readonly blocksWritten: number;
  readonly durationSeconds: number;
}

/** One version as the catalog knows it. */
export interface VersionRecord {
  readonly uid: string;
  readonly image: string;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  /** Image size in bytes. */
  readonly size: number;
  readonly blockSize: number;
  readonly status: VersionStatus;
  readonly protected: boolean;
  readonly tags: readonly string[];
  readonly snapshot: string | null;
  /**
   * What identifies that snapshot beyond its name (RBD: `<image id>@<snapshot id>`; ids are never
   * reused, names are), so a diff starts from the very snapshot this version was read from.
   */
  readonly snapshotId: string | null;
  readonly baseUid: string | null;
  /** Where the data came from (a path or URL without credentials). */
  readonly source: string | null;
  readonly stats: VersionStats | null;
  readonly kind: VersionKind;
  /**
   * Bytes of its data (non-sparse) blocks: what `du` shows of its file. Recorded at commit;
   * null for versions committed before it was, until first computed.
   */
  readonly allocated: number | null;
  /**
   * When the version expires (ms since the epoch): `forget` keeps it until then and removes it
   * after, whatever the rules say. Null for none.
   */
  readonly expiresAt: number | null;
  /** The backup host that made it (config `host`); null for versions made before hosts were recorded. */
  readonly host: string | null;
}

/** What makes an incomplete version valid. */
export interface VersionCommit {
  readonly segments: readonly Buffer[];
  readonly stats: VersionStats;
  readonly tags: readonly string[];
  readonly allocated: number;
  /**
   * Locks the writer holds (their ids): the commit is refused, and the version stays incomplete,
   * unless every one of them is still held (its lease not expired or taken over) when it commits.
   * @default none
   */
  readonly leases?: readonly number[] | undefined;
}

/** Fields given when a backup starts (the catalog records its own host with it). */
export interface NewVersion {
  readonly uid: string;
  readonly image: string;
  readonly createdAt: number;
  readonly size: number;
  readonly blockSize: number;
  readonly snapshot: string | null;
  readonly snapshotId?: string | null;
  readonly baseUid: string | null;
  readonly source: string | null;
  readonly kind: VersionKind;
  /** Expiry date (ms since the epoch). @default null */
  readonly expiresAt?: number | null;
}

export const BlockState = { valid: 0, invalid: 1, deleting: 2 } as const;
export type BlockStateValue = (typeof BlockState)[keyof typeof BlockState];

/** A stored block as the catalog knows it. */
export interface BlockRecord {
  readonly digest: Buffer;
  readonly length: number;
  readonly storedLength: number;
  readonly state: BlockStateValue;
  /** Last time a writer stored or referenced it, ms since the epoch. */
  readonly lastRef: number;
}

export type LockMode = 'shared' | 'exclusive';

/** A lock request. Resources are `image:<name>` or `version:<uid>`. */
export interface LockRequest {
  readonly resource: string;
  readonly mode: LockMode;
  /** What the holder does, shown to whoever is refused (`backup`, `restore`, ...). */
  readonly operation: string;
  /** Marks the holder as a writer that cleanup must respect. @default false */
  readonly writer?: boolean;
}

/** A lock as stored, with its holder. */
export interface LockRecord {
  readonly id: number;
  readonly resource: string;
  readonly mode: LockMode;
  readonly operation: string;
  readonly writer: boolean;
  readonly pid: number;
  readonly host: string;
  /** When it was granted and last renewed, ms since the epoch, on the catalog's clock. */
  readonly acquiredAt: number;
  readonly heartbeatAt: number;
  /** When its lease ends unless renewed (catalog's clock); null where the holder's process decides (SQLite). */
  readonly expiresAt: number | null;
}

/** The last run of an operation (cleanup, scrub, forget) and its running totals. */
export interface RunRecord {
  readonly operation: string;
  /** When the last run finished, ms since the epoch. */
  readonly finishedAt: number;
  /** Figures of the last run. */
  readonly last: Readonly<Record<string, number>>;
  /** Sums of the figures over every recorded run, and `runs`: how many. */
  readonly totals: Readonly<Record<string, number>>;
}

/** Selects versions in {@link Catalog.listVersions}. */
export interface VersionFilter {
  readonly image?: string;
  readonly tag?: string;
  readonly status?: VersionStatus;
  readonly kind?: VersionKind;
  /** Made at or after this time, ms since the epoch. */
  readonly since?: number;
  /** Made before this time, ms since the epoch. */
  readonly until?: number;
  /** At most this many (the oldest). */
  readonly limit?: number;
}

/**
 * The catalog, as the role interfaces below composed: each engine module takes only the roles it
 * uses, so a second implementation (a shared PostgreSQL catalog) has one contract per concern.
 */
export interface Catalog extends CatalogIdentity, VersionCatalog, BlockIndex, SegmentCatalog, LockTable, CleanupMarks, ScrubWorkList, RunRecords, CatalogTransfer {}

/** Which catalog this is, and of which store. */
export interface CatalogIdentity {
  /** Where the catalog lives, for messages. */
  readonly location: string;
  /**
   * True when the catalog cannot be written (read-only media, another user's store): it is read
   * from a private copy, locks are not taken (nobody can change the store), and writes throw.
   */
  readonly readOnly: boolean;
  /**
   * This catalog's id, and the id and settings (canonical form) of the store it belongs to (null
   * before it was bound to one; settings null in catalogs bound before they were recorded).
   */
  identity(): Promise<{ catalogId: string; storeId: string | null; storeSettings: string | null }>;
  /**
   * Binds the catalog to a store, when the store is created, adopted or rebuilt; its settings are
   * remembered, so settings changed in the store later (encryption switched off) are noticed.
   */
  bindToStore(storeId: string, storeSettings: string): Promise<void>;
  close(): Promise<void>;
}

/** Images and their versions. */
export interface VersionCatalog {
  /** Block size fixed for `image`, or undefined for a new image. */
  imageBlockSize(image: string): Promise<number | undefined>;
  /** Records a new, incomplete version (and its image when new). */
  createVersion(version: NewVersion): Promise<void>;
  /**
   * Makes an incomplete version valid with its block map and figures, durably, in one transaction.
   * @throws {NotFoundError} when the version does not exist or is not incomplete
   * @throws {LockedError} when one of `leases` is no longer held
   */
  commitVersion(uid: string, commit: VersionCommit): Promise<void>;
  /** Records a version's allocated bytes (computed late for older versions). */
  setAllocated(uid: string, bytes: number): Promise<void>;
  getVersion(uid: string): Promise<VersionRecord | undefined>;
  /**
   * Adds a committed version with its map as it is (catalog rebuilds and imports); its image is
   * created when new.
   * @throws {ConflictError} when the uid exists, or the image has another block size
   */
  importVersion(version: VersionRecord, segments: readonly Buffer[]): Promise<void>;
  /** Versions ordered by creation time, oldest first. */
  listVersions(filter?: VersionFilter): Promise<VersionRecord[]>;
  /** Newest valid version of an image, of one kind when given. */
  latestValidVersion(image: string, kind?: VersionKind): Promise<VersionRecord | undefined>;
  /** Segment digests of a committed version, in order (empty for an incomplete one). */
  versionSegments(uid: string): Promise<Buffer[]>;
  /** The segment digests of many versions in one round trip, by uid (unknown uids are missing). */
  versionSegmentsOf(uids: readonly string[]): Promise<Map<string, Buffer[]>>;
  /**
   * The digest of the first map segment of every committed version of an image, by uid, in one
   * query: versions with the same first segment start with the same bytes, so a mount reads the
   * partition table of thousands of such versions once.
   */
  firstSegments(image: string): Promise<Map<string, Buffer>>;
  /** Removes a version and its tags (blocks stay until cleanup); removes the image with its last version. */
  deleteVersion(uid: string): Promise<void>;
  setProtected(uid: string, value: boolean): Promise<void>;
  setStatus(uid: string, status: VersionStatus): Promise<void>;
  addTags(uid: string, tags: readonly string[]): Promise<void>;
  removeTags(uid: string, tags: readonly string[]): Promise<void>;
  /**
   * Sets a version's expiry date (ms since the epoch), or clears it with null.
   * @throws {NotFoundError} when the version does not exist
   */
  setExpiry(uid: string, expiresAt: number | null): Promise<void>;
}

/** The stored blocks: their state (valid, invalid, being deleted) and last reference. */
export interface BlockIndex {
  getBlock(digest: Uint8Array): Promise<BlockRecord | undefined>;
  /**
   * Marks a block as referenced now, which protects it from a concurrent cleanup (unless the
   * cleanup is deleting it already).
   * @returns its state, or undefined when unknown; anything but valid must be stored again
   */
  touchBlock(digest: Uint8Array): Promise<BlockStateValue | undefined>;
  /** Records durably stored blocks as valid (new or healed). */
  registerBlocks(blocks: readonly { digest: Uint8Array; length: number; storedLength: number }[]): Promise<void>;
  /** Marks blocks invalid (a check found them bad) or valid again; unknown digests are ignored. */
  setBlockState(digests: readonly Uint8Array[], state: typeof BlockState.valid | typeof BlockState.invalid): Promise<void>;
  /** Digests of every block in state invalid. */
  invalidBlocks(): Promise<Buffer[]>;
  /** Number and stored bytes of known blocks, and how many are invalid. */
  blockTotals(): Promise<{ blocks: number; bytes: number; invalid: number }>;
  /**
   * For a writer that met a `deleting` block: when no cleanup runs any more, turns the row into
   * `invalid` (the writer then stores the block again) and returns 'taken'; 'busy' while a cleanup
   * runs; 'gone' when the row no longer exists.
   */
  takeOverDeleting(digest: Uint8Array): Promise<'taken' | 'busy' | 'gone'>;
}

/** Block map segments (their payloads; the block store holds the durable copies). */
export interface SegmentCatalog {
  /** Stores a segment (idempotent; a damaged payload of the same digest is replaced). */
  putSegment(digest: Uint8Array, entries: number, data: Uint8Array): Promise<void>;
  /** A segment's payload, or undefined when unknown. */
  getSegment(digest: Uint8Array): Promise<Buffer | undefined>;
  /** The payloads of many segments in one round trip, by hex digest (unknown ones are missing). */
  getSegments(digests: readonly Uint8Array[]): Promise<Map<string, Buffer>>;
  /** Every segment of the catalog with its last-touch time. */
  listSegments(): Promise<{ digest: Buffer; touchedAt: number }[]>;
  /** Refreshes a segment's touch time; false when the catalog does not have it. */
  touchSegment(digest: Uint8Array): Promise<boolean>;
  /** Deletes segment rows last touched before `before`; returns the digests deleted. */
  deleteSegments(digests: readonly Uint8Array[], before: number): Promise<Buffer[]>;
}

/** A scrub's work list of distinct blocks, so memory does not grow with the versions' size. */
export interface ScrubWorkList {
  /** Starts an empty work list (temporary, this connection only). */
  beginScrubList(): Promise<void>;
  /** Adds blocks not on the list yet, in order; returns how many blocks and bytes were newly added. */
  addToScrubList(blocks: readonly { readonly digest: Uint8Array; readonly length: number }[]): Promise<{ blocks: number; bytes: number }>;
  /** Up to `limit` listed blocks after position `after` (0 for the first), in the order added. */
  scrubListBatch(after: number, limit: number): Promise<{ position: number; digest: Buffer; length: number }[]>;
  /** Drops the work list. */
  endScrubList(): Promise<void>;
}

/** Cleanup's mark and sweep (see operations/cleanup.ts). */
export interface CleanupMarks {
  /** Starts a mark phase: an empty set of live block digests (temporary, this connection only). */
  beginMark(): Promise<void>;
  /** Adds segment entries (n × 32 bytes; sparse entries are ignored) to the live set. */
  markLive(entries: Uint8Array): Promise<void>;
  /** Ends the mark phase and drops the live set. */
  endMark(): Promise<void>;
  /** Valid blocks outside the live set, split by whether they were last referenced before `before`. */
  garbageTotals(before: number): Promise<{ old: { blocks: number; bytes: number }; young: { blocks: number; bytes: number } }>;
  /**
   * Claims up to `limit` valid blocks outside the live set last referenced before `before`: they
   * become `deleting` (so no writer deduplicates against them) and are returned.
   */
  claimGarbageBlocks(before: number, limit: number): Promise<BlockRecord[]>;
  /** Blocks in state `deleting` (claimed by this cleanup, or left by a killed one). */
  deletingBlocks(limit: number): Promise<BlockRecord[]>;
  /** Removes the rows of blocks that are still `deleting` (their objects are gone). */
  forgetDeletedBlocks(digests: readonly Uint8Array[]): Promise<void>;
}

/**
 * Locks (see catalog/locking.ts for who takes which). Locks are leases: a holder renews them with
 * heartbeats, and a lock not renewed for `leaseMs` (on the catalog's clock) is dead and taken over;
 * a lock whose process is known gone (on this machine) is taken over at once.
 */
export interface LockTable {
  /** How long a lock stays valid without a heartbeat, ms. Holders stop their work well before. */
  readonly leaseMs: number;
  /**
   * Takes a lock, first releasing locks whose holder process is gone or whose lease expired.
   * @throws {LockedError} when a live holder has a conflicting lock
   */
  acquireLock(request: LockRequest): Promise<LockRecord>;
  /**
   * Takes every lock of `requests`, or none, in one transaction (a scrub of 10,000 versions takes
   * a lock on each: one round trip, not five each).
   * @returns the locks, in the order of `requests`
   * @throws {LockedError} when a live holder has a lock conflicting with one of them
   */
  acquireLocks(requests: readonly LockRequest[]): Promise<LockRecord[]>;
  releaseLock(id: number): Promise<void>;
  releaseLocks(ids: readonly number[]): Promise<void>;
  /** Live locks on a resource (all live locks when omitted). */
  listLocks(resource?: string): Promise<LockRecord[]>;
  /**
   * Renews the leases of our locks.
   * @returns the ids that are no longer held (expired and taken over, or released by force)
   */
  heartbeat(ids: readonly number[]): Promise<number[]>;
  /**
   * The catalog's clock, ms since the epoch: every time that decides safety (leases, writers'
   * starts, blocks' last references) comes from it, never from a host's clock.
   */
  now(): Promise<number>;
}

/** The last runs and running totals of cleanup, scrub and forget (for check and the metrics). */
export interface RunRecords {
  /** Records a finished run of `operation`: its figures become the last run's and add to the totals. */
  recordRun(operation: string, finishedAt: number, figures: Readonly<Record<string, number>>): Promise<void>;
  /** The last run and totals of every operation recorded so far. */
  listRuns(): Promise<RunRecord[]>;
}

/** The lock resource a running cleanup holds (writers that meet its deletes wait for it). */
export const CLEANUP_RESOURCE = 'cleanup';

/**
 * The tables a whole-catalog copy (`db copy`) moves, parents first, with their columns in the
 * order rows are given, and the columns that order them (their primary key). Locks are not
 * copied (a copy runs while nothing holds one), nor the catalog's own id.
 */
export const TRANSFER_TABLES = {
  images: { columns: ['name', 'block_size', 'created_at'], key: ['name'] },
  versions: {
    columns: ['uid', 'image', 'created_at', 'size', 'block_size', 'status', 'protected', 'snapshot', 'snapshot_id', 'base_uid', 'source', 'segments', 'stats', 'kind', 'allocated', 'expires_at', 'host'],
    key: ['uid'],
  },
  tags: { columns: ['uid', 'tag'], key: ['uid', 'tag'] },
  blocks: { columns: ['digest', 'length', 'stored_length', 'state', 'last_ref'], key: ['digest'] },
  segments: { columns: ['digest', 'entries', 'data', 'created_at'], key: ['digest'] },
  runs: { columns: ['operation', 'finished_at', 'last', 'totals'], key: ['operation'] },
} as const;
export type TransferTable = keyof typeof TRANSFER_TABLES;
/** A column's value in a copied row: booleans are 0 or 1, times and sizes numbers, digests Buffers. */
export type TransferValue = string | number | Buffer | null;

/** Row-level copy of a whole catalog into another, of either kind (`db copy`). */
export interface CatalogTransfer {
  /**
   * Every row of `table`, columns as in {@link TRANSFER_TABLES}, in key order, in batches of at
   * most `batch` rows.
   */
  exportRows(table: TransferTable, batch: number): AsyncIterable<TransferValue[][]>;
  /** Adds rows to `table` (of a catalog being filled by a copy); rows whose key exists are skipped. */
  importRows(table: TransferTable, rows: readonly (readonly TransferValue[])[]): Promise<void>;
}

/** A version's segment digests as stored (one blob of 32-byte digests, or none) in order. */
export function splitDigests(blob: Buffer | null): Buffer[] {
  const all = blob ?? Buffer.alloc(0);
  const out: Buffer[] = [];
  for (let at = 0; at < all.length; at += DIGEST_LENGTH) out.push(all.subarray(at, at + DIGEST_LENGTH));
  return out;
}
