import Database from 'better-sqlite3';
import { accessSync, closeSync, constants as fsc, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConflictError,
  isBackyError,
  LockedError,
  NotFoundError,
  StoreFullError,
  StoreUnavailableError,
  UsageError,
} from '../errors.js';
import { DIGEST_LENGTH, SPARSE_ENTRY } from '../objects/formats.js';
import {
  BlockState,
  CLEANUP_RESOURCE,
  type BlockRecord,
  type BlockStateValue,
  type Catalog,
  type LockRecord,
  type LockRequest,
  type NewVersion,
  type RunRecord,
  type TransferTable,
  type TransferValue,
  type VersionFilter,
  type VersionKind,
  type VersionCommit,
  type VersionRecord,
  type VersionStats,
  type VersionStatus,
  splitDigests,
} from './catalog.js';
import { currentHolder, isHolderAlive, REMOTE_HOLDER_TIMEOUT_MS, type Holder } from './holder.js';
import { MIGRATIONS } from './migrations.js';
import { listingClauses } from './listing-sql.js';
import { insertQuery, pageParams, pageQuery, rowValues, type SqlDialect } from './transfer-sql.js';

interface VersionRow {
  uid: string;
  image: string;
  created_at: number;
  size: number;
  block_size: number;
  status: VersionStatus;
  protected: number;
  snapshot: string | null;
  snapshot_id: string | null;
  base_uid: string | null;
  source: string | null;
  stats: string | null;
  tags: string | null;
  kind: VersionKind;
  allocated: number | null;
  expires_at: number | null;
  host: string | null;
}

interface BlockRow {
  digest: Buffer;
  length: number;
  stored_length: number;
  state: BlockStateValue;
  last_ref: number;
}


function toBlock(row: BlockRow): BlockRecord {
  return { digest: row.digest, length: row.length, storedLength: row.stored_length, state: row.state, lastRef: row.last_ref };
}

interface LockRow {
  id: number;
  resource: string;
  mode: 'shared' | 'exclusive';
  operation: string;
  writer: number;
  pid: number;
  host: string;
  stamp: string;
  acquired_at: number;
  heartbeat_at: number;
}

const TAG_SEPARATOR = '\u001f';
/** What a version record is read from (the listing index, migration 8, covers every column of `v`). */
export const VERSION_COLUMNS = `v.uid, v.image, v.created_at, v.size, v.block_size, v.status, v.protected, v.snapshot, v.snapshot_id,
  v.base_uid, v.source, v.stats, v.kind, v.allocated, v.expires_at, v.host,
  (SELECT group_concat(t.tag, char(31)) FROM tags t WHERE t.uid = v.uid) AS tags`;

/**
 * The embedded catalog: one SQLite file in WAL mode, shared safely by concurrent processes.
 *
 * Ordinary writes commit with synchronous=NORMAL (ordered, not flushed); the commits that
 * publish or remove data (version commit, deletion) are flushed to disk before returning.
 *
 * @example
 * const catalog = SqliteCatalog.open('/srv/backy2/catalog.sqlite');
 */
export class SqliteCatalog implements Catalog {
  readonly location: string;
  readonly readOnly: boolean;
  /** Locks of processes on this host live as long as their process; those of other hosts this long without a heartbeat. */
  readonly leaseMs = REMOTE_HOLDER_TIMEOUT_MS;
  readonly #db: Database.Database;
  readonly #holder: Holder;
  readonly #statements = new Map<string, Database.Statement>();
  /** The private copy a read-only catalog is read from, removed on close. */
  readonly #copyDir: string | undefined;
  #nextLocalLock = -1;

  private constructor(file: string, db: Database.Database, copyDir: string | undefined, host: string | undefined) {
    this.location = file;
    this.#holder = currentHolder(host);
    this.#db = db;
    this.readOnly = copyDir !== undefined;
    this.#copyDir = copyDir;
  }

  /**
   * Opens (and migrates when needed) the existing catalog at `file`. A catalog that this process
   * cannot write (read-only media, another user's files) is read from a private copy: everything
   * but writes works.
   * @param options.host this backup host's name in locks and versions @default the host name
   * @throws {StoreUnavailableError} when the file is missing, empty, not a backy2 catalog, or newer than this program
   */
  static open(file: string, options: { host?: string | undefined } = {}): SqliteCatalog {
    const host = options.host;
    if (file === ':memory:') return SqliteCatalog.#openFile(file, file, undefined, host);
    const abs = path.resolve(file);
    let size: number;
    try {
      size = statSync(abs).size;
    } catch (err) {
      throw mapSqliteError(err, `Cannot open catalog "${abs}"`);
    }
    if (size === 0) {
      throw new StoreUnavailableError(`Cannot open catalog "${abs}": the file is empty (0 bytes), so the catalog is damaged`, {
        hint: 'run `backy2 db rebuild --force` to recreate it from the block store',
      });
    }
    if (isWritable(abs)) return SqliteCatalog.#openFile(abs, abs, undefined, host);
    // SQLite cannot read a WAL-mode database it cannot write unless its -shm file exists.
    const copyDir = mkdtempSync(path.join(tmpdir(), 'backy2-catalog-'));
    try {
      const copy = path.join(copyDir, 'catalog.sqlite');
      copyFileSync(abs, copy);
      if (existsSync(`${abs}-wal`)) copyFileSync(`${abs}-wal`, `${copy}-wal`);
      return SqliteCatalog.#openFile(abs, copy, copyDir, host);
    } catch (err) {
      rmSync(copyDir, { recursive: true, force: true });
      throw mapSqliteError(err, `Cannot open catalog "${abs}"`);
    }
  }

  /**
   * Creates a new, empty catalog at `file`, private to the owner (0600), its directory (0700)
   * when missing.
   * @throws {ConflictError} when the file exists (another `init` or rebuild may be creating it)
   * @throws {StoreUnavailableError} when it cannot be created
   */
  static create(file: string, options: { host?: string | undefined } = {}): SqliteCatalog {
    const abs = path.resolve(file);
    try {
      mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 });
      closeSync(openSync(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600));
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') throw new ConflictError(`Catalog "${abs}" exists already`);
      throw mapSqliteError(err, `Cannot create catalog "${abs}"`);
    }
    try {
      return SqliteCatalog.#openFile(abs, abs, undefined, options.host);
    } catch (err) {
      rmSync(abs, { force: true });
      throw err;
    }
  }

  /**
   * Applies the migrations the catalog at `file` lacks (opening it does the same).
   * @returns the schema version before and after
   */
  static migrate(file: string): { from: number; to: number } {
    let from: number;
    try {
      const db = new Database(file, { fileMustExist: true, readonly: true });
      from = db.pragma('user_version', { simple: true }) as number;
      db.close();
    } catch (err) {
      throw mapSqliteError(err, `Cannot open catalog "${file}"`);
    }
    SqliteCatalog.open(file).#db.close();
    return { from, to: MIGRATIONS.length };
  }

  static #openFile(location: string, file: string, copyDir: string | undefined, host: string | undefined): SqliteCatalog {
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { fileMustExist: file !== ':memory:' });
      db.pragma('busy_timeout = 30000');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      migrate(db, location);
    } catch (err) {
      db?.close();
      throw mapSqliteError(err, `Cannot open catalog "${location}"`);
    }
    return new SqliteCatalog(location, db, copyDir, host);
  }

  async identity(): Promise<{ catalogId: string; storeId: string | null; storeSettings: string | null }> {
    const rows = this.#all<{ key: string; value: string }>("SELECT key, value FROM meta WHERE key IN ('catalog_id', 'store_id', 'store_settings')");
    const get = (key: string) => rows.find((r) => r.key === key)?.value ?? null;
    return { catalogId: get('catalog_id') ?? '', storeId: get('store_id'), storeSettings: get('store_settings') };
  }

  async bindToStore(storeId: string, storeSettings: string): Promise<void> {
    const set = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    this.#write(() => {
      this.#run(set, 'store_id', storeId);
      this.#run(set, 'store_settings', storeSettings);
    }, true);
  }

  async imageBlockSize(image: string): Promise<number | undefined> {
    const row = this.#get<{ block_size: number }>('SELECT block_size FROM images WHERE name = ?', image);
    return row?.block_size;
  }

  async createVersion(v: NewVersion): Promise<void> {
    this.#write(() => {
      this.#run('INSERT OR IGNORE INTO images (name, block_size, created_at) VALUES (?, ?, ?)', v.image, v.blockSize, v.createdAt);
      this.#run(
        `INSERT INTO versions (uid, image, created_at, size, block_size, status, snapshot, snapshot_id, base_uid, source, kind, expires_at, host)
         VALUES (?, ?, ?, ?, ?, 'incomplete', ?, ?, ?, ?, ?, ?, ?)`,
        v.uid, v.image, v.createdAt, v.size, v.blockSize, v.snapshot, v.snapshotId ?? null, v.baseUid, v.source, v.kind, v.expiresAt ?? null, this.#holder.host,
      );
    });
  }

  async commitVersion(uid: string, commit: VersionCommit): Promise<void> {
    this.#write(() => {
      for (const id of commit.leases ?? []) {
        if (!this.#get('SELECT 1 FROM locks WHERE id = ?', id)) throw new LockedError(`Cannot commit version "${uid}": its lock ${id} is no longer held`, { hint: 'it stays incomplete; run the backup again' });
      }
      const changed = this.#run(
        `UPDATE versions SET status = 'valid', segments = ?, stats = ?, allocated = ? WHERE uid = ? AND status = 'incomplete'`,
        Buffer.concat(commit.segments), JSON.stringify(commit.stats), commit.allocated, uid,
      );
      if (changed === 0) throw new NotFoundError(`Version "${uid}" is not an incomplete version`);
      for (const tag of commit.tags) this.#run('INSERT OR IGNORE INTO tags (uid, tag) VALUES (?, ?)', uid, tag);
    }, true);
  }

  async importVersion(v: VersionRecord, segments: readonly Buffer[]): Promise<void> {
    this.#write(() => {
      if (this.#get('SELECT 1 FROM versions WHERE uid = ?', v.uid)) throw new ConflictError(`Version "${v.uid}" exists already`);
      const image = this.#get<{ block_size: number }>('SELECT block_size FROM images WHERE name = ?', v.image);
      if (image && image.block_size !== v.blockSize) {
        throw new ConflictError(`Version "${v.uid}" has block size ${v.blockSize}, image "${v.image}" uses ${image.block_size}`);
      }
      this.#run('INSERT OR IGNORE INTO images (name, block_size, created_at) VALUES (?, ?, ?)', v.image, v.blockSize, v.createdAt);
      this.#run(
        `INSERT INTO versions (uid, image, created_at, size, block_size, status, protected, snapshot, snapshot_id, base_uid, source, segments, stats, kind, expires_at, host)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        v.uid, v.image, v.createdAt, v.size, v.blockSize, v.status, v.protected ? 1 : 0, v.snapshot, v.snapshotId, v.baseUid, v.source,
        Buffer.concat(segments), v.stats ? JSON.stringify(v.stats) : null, v.kind, v.expiresAt, v.host ?? null,
      );
      for (const tag of v.tags) this.#run('INSERT OR IGNORE INTO tags (uid, tag) VALUES (?, ?)', v.uid, tag);
    }, true);
  }

  async getVersion(uid: string): Promise<VersionRecord | undefined> {
    const row = this.#get<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.uid = ?`, uid);
    return row && toVersion(row);
  }

  async listVersions(filter: VersionFilter = {}): Promise<VersionRecord[]> {
    const { sql, params } = listingClauses(filter, SQLITE_DIALECT);
    return this.#all<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM versions v ${sql}`, ...params).map(toVersion);
  }

  async latestValidVersion(image: string, kind?: VersionKind): Promise<VersionRecord | undefined> {
    const row = this.#get<VersionRow>(
      `SELECT ${VERSION_COLUMNS} FROM versions v WHERE v.image = ? AND v.status = 'valid' AND (? IS NULL OR v.kind = ?)
       ORDER BY v.created_at DESC, v.uid DESC LIMIT 1`,
      image,
      kind ?? null,
      kind ?? null,
    );
    return row && toVersion(row);
  }

  async versionSegmentsOf(uids: readonly string[]): Promise<Map<string, Buffer[]>> {
    const found = new Map<string, Buffer[]>();
    // In-process: one prepared statement per version costs about what one query of many does.
    for (const uid of uids) {
      const row = this.#get<{ segments: Buffer | null }>('SELECT segments FROM versions WHERE uid = ?', uid);
      if (row) found.set(uid, splitDigests(row.segments));
    }
    return found;
  }

  async firstSegments(image: string): Promise<Map<string, Buffer>> {
    const rows = this.#all<{ uid: string; first: Buffer }>('SELECT uid, substr(segments, 1, ?) AS first FROM versions WHERE image = ? AND length(segments) >= ?', DIGEST_LENGTH, image, DIGEST_LENGTH);
    return new Map(rows.map((r) => [r.uid, r.first]));
  }

  async versionSegments(uid: string): Promise<Buffer[]> {
    const row = this.#get<{ segments: Buffer | null }>('SELECT segments FROM versions WHERE uid = ?', uid);
    if (!row) throw new NotFoundError(`Version "${uid}" not found`);
    return splitDigests(row.segments);
  }

  async deleteVersion(uid: string): Promise<void> {
    this.#write(() => {
      const row = this.#get<{ image: string }>('SELECT image FROM versions WHERE uid = ?', uid);
      if (!row) throw new NotFoundError(`Version "${uid}" not found`);
      this.#run('DELETE FROM versions WHERE uid = ?', uid);
      this.#run('DELETE FROM images WHERE name = ? AND NOT EXISTS (SELECT 1 FROM versions WHERE image = ?)', row.image, row.image);
    }, true);
  }

  async setAllocated(uid: string, bytes: number): Promise<void> {
    this.#run('UPDATE versions SET allocated = ? WHERE uid = ?', bytes, uid);
  }

  async setProtected(uid: string, value: boolean): Promise<void> {
    this.#updateVersion('UPDATE versions SET protected = ? WHERE uid = ?', uid, value ? 1 : 0);
  }

  async setStatus(uid: string, status: VersionStatus): Promise<void> {
    this.#updateVersion('UPDATE versions SET status = ? WHERE uid = ?', uid, status);
  }

  async addTags(uid: string, tags: readonly string[]): Promise<void> {
    this.#write(() => {
      this.#requireVersion(uid);
      for (const tag of tags) this.#run('INSERT OR IGNORE INTO tags (uid, tag) VALUES (?, ?)', uid, tag);
    });
  }

  async removeTags(uid: string, tags: readonly string[]): Promise<void> {
    this.#write(() => {
      this.#requireVersion(uid);
      for (const tag of tags) this.#run('DELETE FROM tags WHERE uid = ? AND tag = ?', uid, tag);
    });
  }

  async getBlock(digest: Uint8Array): Promise<BlockRecord | undefined> {
    const row = this.#get<BlockRow>('SELECT digest, length, stored_length, state, last_ref FROM blocks WHERE digest = ?', digest);
    return row && toBlock(row);
  }

  async touchBlock(digest: Uint8Array): Promise<BlockStateValue | undefined> {
    const touched = this.#get<{ state: BlockStateValue }>('UPDATE blocks SET last_ref = ? WHERE digest = ? AND state <> 2 RETURNING state', Date.now(), digest);
    return touched?.state ?? (this.#get('SELECT 1 FROM blocks WHERE digest = ? AND state = 2', digest) ? BlockState.deleting : undefined);
  }

  async registerBlocks(blocks: readonly { digest: Uint8Array; length: number; storedLength: number }[]): Promise<void> {
    if (blocks.length === 0) return;
    const now = Date.now();
    this.#write(() => {
      for (const b of blocks) {
        this.#run(
          `INSERT INTO blocks (digest, length, stored_length, state, last_ref) VALUES (?, ?, ?, 0, ?)
           ON CONFLICT (digest) DO UPDATE SET state = 0, last_ref = excluded.last_ref,
             length = excluded.length, stored_length = excluded.stored_length
           WHERE blocks.state <> 2`,
          b.digest, b.length, b.storedLength, now,
        );
      }
    });
  }

  async setBlockState(digests: readonly Uint8Array[], state: 0 | 1): Promise<void> {
    this.#write(() => {
      for (const d of digests) this.#run('UPDATE blocks SET state = ? WHERE digest = ? AND state <> 2', state, d);
    }, true);
  }

  async invalidBlocks(): Promise<Buffer[]> {
    return this.#all<{ digest: Buffer }>('SELECT digest FROM blocks WHERE state = 1').map((r) => r.digest);
  }

  async blockTotals(): Promise<{ blocks: number; bytes: number; invalid: number }> {
    const row = this.#get<{ blocks: number; bytes: number | null; invalid: number | null }>(
      'SELECT count(*) AS blocks, sum(stored_length) AS bytes, sum(state = 1) AS invalid FROM blocks',
    );
    return { blocks: row?.blocks ?? 0, bytes: row?.bytes ?? 0, invalid: row?.invalid ?? 0 };
  }

  async putSegment(digest: Uint8Array, entries: number, data: Uint8Array): Promise<void> {
    // Content-addressed: a row that exists holds the same payload, unless it rotted (scrub repairs).
    this.#run(
      `INSERT INTO segments (digest, entries, data, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (digest) DO UPDATE SET entries = excluded.entries, data = excluded.data WHERE data <> excluded.data`,
      digest, entries, data, Date.now(),
    );
  }

  async getSegment(digest: Uint8Array): Promise<Buffer | undefined> {
    return this.#get<{ data: Buffer }>('SELECT data FROM segments WHERE digest = ?', digest)?.data;
  }

  async getSegments(digests: readonly Uint8Array[]): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    // In-process: one prepared statement per digest costs about what one query of many does.
    for (const d of digests) {
      const data = this.#get<{ data: Buffer }>('SELECT data FROM segments WHERE digest = ?', d)?.data;
      if (data) found.set(Buffer.from(d).toString('hex'), data);
    }
    return found;
  }

  async beginScrubList(): Promise<void> {
    this.#guard(() => {
      this.#db.exec('CREATE TEMP TABLE IF NOT EXISTS scrub_list (position INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, length INTEGER NOT NULL)');
      this.#db.exec('DELETE FROM temp.scrub_list');
    });
  }

  async addToScrubList(blocks: readonly { readonly digest: Uint8Array; readonly length: number }[]): Promise<{ blocks: number; bytes: number }> {
    return this.#guard(() =>
      this.#db.transaction(() => {
        const insert = this.#statement('INSERT OR IGNORE INTO temp.scrub_list (digest, length) VALUES (?, ?)');
        const added = { blocks: 0, bytes: 0 };
        for (const b of blocks) {
          if (insert.run(b.digest, b.length).changes === 0) continue;
          added.blocks++;
          added.bytes += b.length;
        }
        return added;
      })(),
    );
  }

  async scrubListBatch(after: number, limit: number): Promise<{ position: number; digest: Buffer; length: number }[]> {
    return this.#all<{ position: number; digest: Buffer; length: number }>(
      'SELECT position, digest, length FROM temp.scrub_list WHERE position > ? ORDER BY position LIMIT ?',
      after,
      limit,
    );
  }

  async endScrubList(): Promise<void> {
    this.#guard(() => this.#db.exec('DROP TABLE IF EXISTS temp.scrub_list'));
    for (const sql of [...this.#statements.keys()]) if (sql.includes('temp.scrub_list')) this.#statements.delete(sql);
  }

  async beginMark(): Promise<void> {
    this.#guard(() => {
      this.#db.exec('CREATE TEMP TABLE IF NOT EXISTS live (digest BLOB PRIMARY KEY) WITHOUT ROWID');
      this.#db.exec('DELETE FROM temp.live');
    });
  }

  async markLive(entries: Uint8Array): Promise<void> {
    const all = Buffer.from(entries.buffer, entries.byteOffset, entries.byteLength);
    this.#guard(() =>
      this.#db.transaction(() => {
        const insert = this.#statement('INSERT OR IGNORE INTO temp.live (digest) VALUES (?)');
        for (let at = 0; at + DIGEST_LENGTH <= all.length; at += DIGEST_LENGTH) {
          const digest = all.subarray(at, at + DIGEST_LENGTH);
          if (!digest.equals(SPARSE_ENTRY)) insert.run(digest);
        }
      })(),
    );
  }

  async endMark(): Promise<void> {
    this.#guard(() => this.#db.exec('DROP TABLE IF EXISTS temp.live'));
    for (const sql of [...this.#statements.keys()]) if (sql.includes('temp.live')) this.#statements.delete(sql);
  }

  async garbageTotals(before: number): Promise<{ old: { blocks: number; bytes: number }; young: { blocks: number; bytes: number } }> {
    const rows = this.#all<{ old: number; blocks: number; bytes: number | null }>(
      `SELECT last_ref < ? AS old, count(*) AS blocks, sum(stored_length) AS bytes FROM blocks
       WHERE state <> 2 AND digest NOT IN (SELECT digest FROM temp.live) GROUP BY last_ref < ?`,
      before,
      before,
    );
    const pick = (old: number) => {
      const row = rows.find((r) => r.old === old);
      return { blocks: row?.blocks ?? 0, bytes: row?.bytes ?? 0 };
    };
    return { old: pick(1), young: pick(0) };
  }

  async claimGarbageBlocks(before: number, limit: number): Promise<BlockRecord[]> {
    return this.#write(() =>
      this.#all<BlockRow>(
        `UPDATE blocks SET state = 2 WHERE digest IN (
           SELECT digest FROM blocks WHERE state <> 2 AND last_ref < ? AND digest NOT IN (SELECT digest FROM temp.live) LIMIT ?)
         RETURNING digest, length, stored_length, state, last_ref`,
        before,
        limit,
      ).map(toBlock),
    true);
  }

  async deletingBlocks(limit: number): Promise<BlockRecord[]> {
    return this.#all<BlockRow>('SELECT digest, length, stored_length, state, last_ref FROM blocks WHERE state = 2 LIMIT ?', limit).map(toBlock);
  }

  async forgetDeletedBlocks(digests: readonly Uint8Array[]): Promise<void> {
    this.#write(() => {
      for (const d of digests) this.#run('DELETE FROM blocks WHERE digest = ? AND state = 2', d);
    }, true);
  }

  async takeOverDeleting(digest: Uint8Array): Promise<'taken' | 'busy' | 'gone'> {
    const now = Date.now();
    return this.#write(() => {
      const cleanups = this.#all<LockRow>('SELECT * FROM locks WHERE resource = ?', CLEANUP_RESOURCE);
      if (cleanups.some((row) => isHolderAlive(row, row.heartbeat_at, now, this.#holder))) return 'busy';
      const changed = this.#run('UPDATE blocks SET state = 1, last_ref = ? WHERE digest = ? AND state = 2', now, digest);
      if (changed === 1) return 'taken';
      return this.#get('SELECT 1 FROM blocks WHERE digest = ?', digest) ? 'taken' : 'gone';
    });
  }

  async listSegments(): Promise<{ digest: Buffer; touchedAt: number }[]> {
    return this.#all<{ digest: Buffer; created_at: number }>('SELECT digest, created_at FROM segments').map((r) => ({ digest: r.digest, touchedAt: r.created_at }));
  }

  async touchSegment(digest: Uint8Array): Promise<boolean> {
    return this.#run('UPDATE segments SET created_at = ? WHERE digest = ?', Date.now(), digest) === 1;
  }

  async deleteSegments(digests: readonly Uint8Array[], before: number): Promise<Buffer[]> {
    return this.#write(() => {
      const deleted: Buffer[] = [];
      for (const d of digests) if (this.#run('DELETE FROM segments WHERE digest = ? AND created_at < ?', d, before) === 1) deleted.push(Buffer.from(d));
      return deleted;
    }, true);
  }

  async acquireLock(request: LockRequest): Promise<LockRecord> {
    return (await this.acquireLocks([request]))[0] as LockRecord;
  }

  async acquireLocks(requests: readonly LockRequest[]): Promise<LockRecord[]> {
    const now = Date.now();
    const holder = this.#holder;
    const record = (request: LockRequest, id: number): LockRecord => ({
      id,
      resource: request.resource,
      mode: request.mode,
      operation: request.operation,
      writer: request.writer ?? false,
      pid: holder.pid,
      host: holder.host,
      acquiredAt: now,
      heartbeatAt: now,
      expiresAt: null,
    });
    // Nobody can change a store on read-only media: a lock protects nothing and cannot be written.
    if (this.readOnly) return requests.map((request) => record(request, this.#nextLocalLock--));
    return this.#write(() =>
      requests.map((request) => {
        for (const row of this.#all<LockRow>('SELECT * FROM locks WHERE resource = ?', request.resource)) {
          if (!isHolderAlive(row, row.heartbeat_at, now, holder)) {
            this.#run('DELETE FROM locks WHERE id = ?', row.id);
            continue;
          }
          if (request.mode === 'exclusive' || row.mode === 'exclusive') {
            const what = request.resource.replace(/^(\w+):/, '$1 ');
            throw new LockedError(
              `Cannot lock ${what} for ${request.operation}: ${row.operation} by process ${row.pid} on ${row.host} holds it since ${new Date(row.acquired_at).toISOString()}`,
              { hint: 'wait for it to finish; a lock of a dead process is released automatically' },
            );
          }
        }
        const inserted = this.#statement(
          `INSERT INTO locks (resource, mode, operation, writer, pid, host, stamp, acquired_at, heartbeat_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(request.resource, request.mode, request.operation, request.writer ? 1 : 0, holder.pid, holder.host, holder.stamp, now, now);
        return record(request, Number(inserted.lastInsertRowid));
      }),
    );
  }

  async releaseLock(id: number): Promise<void> {
    await this.releaseLocks([id]);
  }

  async releaseLocks(ids: readonly number[]): Promise<void> {
    const stored = ids.filter((id) => id >= 0); // negative: locks of a read-only catalog
    if (stored.length === 0) return;
    this.#write(() => {
      for (const id of stored) this.#run('DELETE FROM locks WHERE id = ?', id);
    });
  }

  async listLocks(resource?: string): Promise<LockRecord[]> {
    const now = Date.now();
    const rows = resource === undefined
      ? this.#all<LockRow>('SELECT * FROM locks ORDER BY id')
      : this.#all<LockRow>('SELECT * FROM locks WHERE resource = ? ORDER BY id', resource);
    return rows
      .filter((row) => isHolderAlive(row, row.heartbeat_at, now, this.#holder))
      .map((row) => ({
        id: row.id,
        resource: row.resource,
        mode: row.mode,
        operation: row.operation,
        writer: row.writer === 1,
        pid: row.pid,
        host: row.host,
        acquiredAt: row.acquired_at,
        heartbeatAt: row.heartbeat_at,
        expiresAt: null,
      }));
  }

  async heartbeat(ids: readonly number[]): Promise<number[]> {
    if (this.readOnly) return [];
    const now = Date.now();
    return this.#write(() => ids.filter((id) => id >= 0 && this.#run('UPDATE locks SET heartbeat_at = ? WHERE id = ?', now, id) === 0));
  }

  async now(): Promise<number> {
    return Date.now();
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
    if (this.#copyDir) rmSync(this.#copyDir, { recursive: true, force: true });
  }

  async setExpiry(uid: string, expiresAt: number | null): Promise<void> {
    this.#updateVersion('UPDATE versions SET expires_at = ? WHERE uid = ?', uid, expiresAt);
  }

  async recordRun(operation: string, finishedAt: number, figures: Readonly<Record<string, number>>): Promise<void> {
    this.#write(() => {
      const row = this.#get<{ totals: string }>('SELECT totals FROM runs WHERE operation = ?', operation);
      const totals = { ...(row ? (JSON.parse(row.totals) as Record<string, number>) : {}) };
      for (const [key, value] of Object.entries(figures)) if (Number.isFinite(value)) totals[key] = (totals[key] ?? 0) + value;
      totals.runs = (totals.runs ?? 0) + 1;
      this.#run(
        `INSERT INTO runs (operation, finished_at, last, totals) VALUES (?, ?, ?, ?)
         ON CONFLICT (operation) DO UPDATE SET finished_at = excluded.finished_at, last = excluded.last, totals = excluded.totals`,
        operation, finishedAt, JSON.stringify(figures), JSON.stringify(totals),
      );
    });
  }

  async *exportRows(table: TransferTable, batch: number): AsyncIterable<TransferValue[][]> {
    let last: TransferValue[] | undefined;
    for (;;) {
      const rows = this.#all<Record<string, unknown>>(pageQuery(SQLITE_DIALECT, table, last === undefined), ...pageParams(table, last, batch)).map((r) => rowValues(table, r));
      if (rows.length === 0) return;
      yield rows;
      last = rows[rows.length - 1];
      if (rows.length < batch) return;
    }
  }

  async importRows(table: TransferTable, rows: readonly (readonly TransferValue[])[]): Promise<void> {
    const insert = insertQuery(SQLITE_DIALECT, table, 1, 'or-ignore');
    this.#write(() => {
      for (const row of rows) this.#run(insert, ...row);
    }, true);
  }

  async listRuns(): Promise<RunRecord[]> {
    return this.#all<{ operation: string; finished_at: number; last: string; totals: string }>('SELECT * FROM runs ORDER BY operation').map((r) => ({
      operation: r.operation,
      finishedAt: r.finished_at,
      last: JSON.parse(r.last) as Record<string, number>,
      totals: JSON.parse(r.totals) as Record<string, number>,
    }));
  }

  #requireVersion(uid: string): void {
    if (!this.#get('SELECT 1 FROM versions WHERE uid = ?', uid)) throw new NotFoundError(`Version "${uid}" not found`);
  }

  #updateVersion(sql: string, uid: string, value: unknown): void {
    if (this.#run(sql, value, uid) === 0) throw new NotFoundError(`Version "${uid}" not found`);
  }

  /** Runs `fn` in an IMMEDIATE transaction; `durable` flushes the commit to disk. */
  #write<T>(fn: () => T, durable = false): T {
    this.#checkWritable();
    return this.#guard(() => {
      if (!durable) return this.#db.transaction(fn).immediate();
      this.#db.pragma('synchronous = FULL');
      try {
        return this.#db.transaction(fn).immediate();
      } finally {
        this.#db.pragma('synchronous = NORMAL');
      }
    });
  }

  #run(sql: string, ...params: unknown[]): number {
    this.#checkWritable();
    return this.#guard(() => this.#statement(sql).run(...params).changes);
  }

  #checkWritable(): void {
    if (this.readOnly) throw new StoreUnavailableError(`Catalog "${this.location}" is read-only: it cannot be changed`, { hint: 'restore, ls and read-only mounts work; copy the store to writable media to change it' });
  }

  #get<T>(sql: string, ...params: unknown[]): T | undefined {
    return this.#guard(() => this.#statement(sql).get(...params) as T | undefined);
  }

  #all<T>(sql: string, ...params: unknown[]): T[] {
    return this.#guard(() => this.#statement(sql).all(...params) as T[]);
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw mapSqliteError(err, `Catalog "${this.location}" failed`);
    }
  }
}

const SQLITE_DIALECT: SqlDialect = { table: (t) => t, param: () => '?' };

function migrate(db: Database.Database, file: string): void {
  const applied = db.pragma('user_version', { simple: true }) as number;
  if (applied > MIGRATIONS.length) {
    throw new StoreUnavailableError(
      `Cannot open catalog "${file}": it has schema version ${applied}, newer than this backy2 understands (${MIGRATIONS.length})`,
      { hint: 'upgrade backy2' },
    );
  }
  if (applied === MIGRATIONS.length) return;
  db.transaction(() => {
    for (let i = applied; i < MIGRATIONS.length; i++) db.exec(MIGRATIONS[i] ?? '');
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).exclusive();
}

function toVersion(row: VersionRow): VersionRecord {
  return {
    uid: row.uid,
    image: row.image,
    createdAt: row.created_at,
    size: row.size,
    blockSize: row.block_size,
    status: row.status,
    protected: row.protected === 1,
    tags: row.tags ? row.tags.split(TAG_SEPARATOR).sort() : [],
    snapshot: row.snapshot,
    snapshotId: row.snapshot_id,
    baseUid: row.base_uid,
    source: row.source,
    stats: row.stats ? (JSON.parse(row.stats) as VersionStats) : null,
    kind: row.kind,
    allocated: row.allocated,
    expiresAt: row.expires_at,
    host: row.host,
  };
}

/** True when this process may write the catalog file and create its -wal and -shm files. */
function isWritable(file: string): boolean {
  try {
    accessSync(file, fsc.W_OK);
    accessSync(path.dirname(file), fsc.W_OK);
    return true;
  } catch {
    return false;
  }
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** The one place where SQLite errors become BackyErrors. */
function mapSqliteError(err: unknown, what: string): Error {
  if (isBackyError(err)) return err;
  if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('SQLITE_')) {
    const code = err.code;
    if (code === 'SQLITE_FULL') return new StoreFullError(`${what}: no space left on device`, { cause: err });
    if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
      return new LockedError(`${what}: the catalog is busy`, { cause: err, hint: 'another backy2 process holds it too long; try again' });
    }
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      return new StoreUnavailableError(`${what}: the file is not a valid catalog (${err.message})`, { cause: err });
    }
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return new UsageError(`${what}: ${err.message}`, { cause: err });
    }
    return new StoreUnavailableError(`${what}: ${err.message}`, { cause: err });
  }
  const errno = errnoOf(err);
  if (errno === 'ENOENT') return new StoreUnavailableError(`${what}: no such file`, { cause: err });
  if (errno === 'EACCES' || errno === 'EPERM') return new StoreUnavailableError(`${what}: permission denied`, { cause: err });
  if (errno === 'ENOSPC') return new StoreFullError(`${what}: no space left on device`, { cause: err });
  if (errno !== undefined) return new StoreUnavailableError(`${what}: ${errno}`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
