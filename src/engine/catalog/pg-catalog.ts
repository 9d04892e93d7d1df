import { randomUUID } from 'node:crypto';
import { ConflictError, LockedError, NotFoundError, StoreUnavailableError } from '../errors.js';
import { RequestBatcher } from '../support/request-batcher.js';
import { DIGEST_LENGTH, SPARSE_ENTRY } from '../objects/formats.js';
import {
  BlockState,
  CLEANUP_RESOURCE,
  TRANSFER_TABLES,
  type BlockRecord,
  type BlockStateValue,
  type Catalog,
  type LockRecord,
  type LockRequest,
  type NewVersion,
  type RunRecord,
  type TransferTable,
  type TransferValue,
  type VersionCommit,
  type VersionFilter,
  type VersionKind,
  type VersionRecord,
  type VersionStats,
  type VersionStatus,
  splitDigests,
} from './catalog.js';
import { currentHolder, currentPidNamespace, isLocalHolderGone, type Holder } from './holder.js';
import { PgDatabase, type PgSession, type PgTarget, type Query } from './pg-connection.js';
import { PG_MIGRATIONS } from './pg-schema.js';
import { listingClauses } from './listing-sql.js';
import { insertQuery, pageParams, pageQuery, rowValues, type SqlDialect } from './transfer-sql.js';

/** Options of {@link PgCatalog.open} and {@link PgCatalog.create}. */
export interface PgCatalogOptions extends PgTarget {
  /** This backup host's name in locks and versions. @default the host name */
  readonly host?: string | undefined;
  /** How long a lock stays valid without a heartbeat, ms. @default 120 s */
  readonly leaseMs?: number | undefined;
  /** Where lock takeovers are told (a dead holder's lock released, with the reason). @default nowhere */
  readonly log?: ((line: string) => void) | undefined;
  /** The migrations this program knows (tests pose as a newer program). @default PG_MIGRATIONS */
  readonly migrations?: readonly string[] | undefined;
}

interface VersionRow {
  uid: string;
  image: string;
  created_at: number;
  size: number;
  block_size: number;
  status: VersionStatus;
  protected: boolean;
  snapshot: string | null;
  snapshot_id: string | null;
  base_uid: string | null;
  source: string | null;
  stats: string | null;
  tags: string[] | null;
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

interface LockRow {
  id: number;
  token: string;
  resource: string;
  mode: 'shared' | 'exclusive';
  operation: string;
  writer: boolean;
  pid: number;
  host: string;
  stamp: string;
  pid_namespace: string;
  acquired_at: number;
  heartbeat_at: number;
  expires_at: number;
  now: number;
}

const VERSION_COLUMNS = `v.uid, v.image, v.created_at, v.size, v.block_size, v.status, v.protected, v.snapshot, v.snapshot_id,
  v.base_uid, v.source, v.stats, v.kind, v.allocated, v.expires_at, v.host,
  (SELECT array_agg(t.tag ORDER BY t.tag COLLATE "C") FROM backy2.tags t WHERE t.uid = v.uid) AS tags`;
const BLOCK_COLUMNS = 'digest, length, stored_length, state, last_ref';
const NOW = 'backy2.now_ms()';

/** Blocks touched per statement at most. */
const TOUCH_BATCH = 256;

/**
 * The shared catalog: one PostgreSQL database for many backup hosts.
 *
 * Concurrency across hosts is the database's: every safety time (lock leases, writers' starts,
 * blocks' last references) is its clock; a block's state changes (live → being deleted → gone)
 * are single conditional UPDATEs on its row, so a writer's touch and a cleanup's claim are
 * serialised by the row lock and each sees the other's result; locks of one resource are
 * granted under a transaction-scoped advisory lock of that resource. Transactions are short and
 * retried (pg-connection.ts); the mark and scrub lists of one run live in temporary tables of a
 * connection of their own.
 *
 * @example
 * const catalog = await PgCatalog.open({ url: 'postgresql://backup@db/backy2', host: 'backup-1' });
 */
export class PgCatalog implements Catalog {
  readonly location: string;
  readonly readOnly = false;
  readonly leaseMs: number;
  readonly #db: PgDatabase;
  readonly #holder: Holder;
  readonly #log: (line: string) => void;
  #mark: PgSession | undefined;
  /** Where the claims of this mark phase go on (digest order): each block is looked at once. */
  #claimAfter: Buffer = Buffer.alloc(0);
  #scrub: PgSession | undefined;
  /** A backup's blocks in flight ask about themselves together: one round trip for many. */
  readonly #touches = new RequestBatcher((digests: Buffer[]) => this.#touchBlocks(digests), TOUCH_BATCH);

  private constructor(db: PgDatabase, options: PgCatalogOptions) {
    this.#db = db;
    this.location = db.location;
    this.leaseMs = options.leaseMs ?? 120_000;
    this.#holder = currentHolder(options.host);
    this.#log = options.log ?? (() => undefined);
  }

  /** Statements sent to the database so far. */
  get roundTrips(): number {
    return this.#db.roundTrips;
  }

  static #connect(options: PgCatalogOptions): PgDatabase {
    const leaseMs = options.leaseMs ?? 120_000;
    return PgDatabase.connect({
      ...options,
      retryMs: options.retryMs ?? leaseMs / 4,
      applicationName: options.applicationName ?? `backy2 on ${options.host ?? currentHolder().host}`,
    });
  }

  /**
   * Opens the catalog in the database `options.url` names.
   * @throws {NotFoundError} when the database holds no catalog (`backy2 init` creates one)
   * @throws {StoreUnavailableError} when it cannot be reached, or its schema is newer than this
   *   program or older (run `backy2 db migrate`)
   */
  static async open(options: PgCatalogOptions): Promise<PgCatalog> {
    const db = PgCatalog.#connect(options);
    try {
      const version = await schemaVersion(db);
      if (version === 0) {
        throw new NotFoundError(`No catalog in database ${db.location}`, { hint: 'create one with `backy2 init`, or copy a SQLite catalog with `backy2 db copy --to URL`' });
      }
      checkSchema(version, migrationsOf(options).length, db.location);
      return new PgCatalog(db, options);
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /**
   * Creates a new, empty catalog (every migration) in the database `options.url` names.
   * @throws {ConflictError} when the database holds a catalog already
   */
  static async create(options: PgCatalogOptions): Promise<PgCatalog> {
    const db = PgCatalog.#connect(options);
    try {
      await db.transaction(async (q) => {
        await q('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['backy2 schema']);
        if ((await q(`SELECT 1 FROM pg_namespace WHERE nspname = 'backy2'`)).length > 0) {
          throw new ConflictError(`Database ${db.location} holds a backy2 catalog already`, { hint: 'use it as it is; a store is created once' });
        }
        await q('CREATE SCHEMA backy2');
        await q('CREATE TABLE backy2.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), program text NOT NULL)');
        await applyMigrations(q, 0, migrationsOf(options));
      }, { what: 'Creating catalog in' });
      return new PgCatalog(db, options);
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /**
   * Applies the migrations the catalog lacks, in one transaction.
   * @returns the schema version before and after
   * @throws {NotFoundError} when the database holds no catalog
   * @throws {StoreUnavailableError} when its schema is newer than this program
   */
  static async migrate(options: PgCatalogOptions): Promise<{ from: number; to: number }> {
    const db = PgCatalog.#connect(options);
    try {
      return await db.transaction(async (q) => {
        await q('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['backy2 schema']);
        const from = await schemaVersion(db, q);
        if (from === 0) throw new NotFoundError(`No catalog in database ${db.location}`, { hint: 'create one with `backy2 init`' });
        const migrations = migrationsOf(options);
        if (from > migrations.length) checkSchema(from, migrations.length, db.location);
        await applyMigrations(q, from, migrations);
        return { from, to: Math.max(from, migrations.length) };
      }, { what: 'Migrating catalog' });
    } finally {
      await db.close();
    }
  }

  /**
   * Renames the catalog's schema to `backy2_old_<time>` (db rebuild --force keeps the old catalog).
   * @returns the new schema name, or undefined when there was no catalog
   */
  static async moveAside(options: PgCatalogOptions): Promise<string | undefined> {
    const db = PgCatalog.#connect(options);
    try {
      return await db.transaction(async (q) => {
        await q('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['backy2 schema']);
        if ((await q(`SELECT 1 FROM pg_namespace WHERE nspname = 'backy2'`)).length === 0) return undefined;
        const name = `backy2_old_${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}`;
        await q(`ALTER SCHEMA backy2 RENAME TO ${name}`);
        return `schema ${name} of ${db.location}`;
      }, { what: 'Moving aside catalog' });
    } finally {
      await db.close();
    }
  }

  /** Drops the catalog this process just created (a failed `init` leaves nothing behind). */
  async discard(): Promise<void> {
    await this.#db.transaction(async (q) => {
      await q('DROP SCHEMA IF EXISTS backy2 CASCADE');
    });
    await this.close();
  }

  async identity(): Promise<{ catalogId: string; storeId: string | null; storeSettings: string | null }> {
    const rows = await this.#read<{ key: string; value: string }>("SELECT key, value FROM backy2.meta WHERE key IN ('catalog_id', 'store_id', 'store_settings')");
    const get = (key: string) => rows.find((r) => r.key === key)?.value ?? null;
    return { catalogId: get('catalog_id') ?? '', storeId: get('store_id'), storeSettings: get('store_settings') };
  }

  async bindToStore(storeId: string, storeSettings: string): Promise<void> {
    await this.#db.query(
      "INSERT INTO backy2.meta (key, value) VALUES ('store_id', $1), ('store_settings', $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [storeId, storeSettings],
      { idempotent: true },
    );
  }

  async imageBlockSize(image: string): Promise<number | undefined> {
    return (await this.#read<{ block_size: number }>('SELECT block_size FROM backy2.images WHERE name = $1', [image]))[0]?.block_size;
  }

  async createVersion(v: NewVersion): Promise<void> {
    await this.#db.transaction(async (q, attempt) => {
      // Locks the image row: a removal of the image's last version waits and then sees this one.
      await q('INSERT INTO backy2.images (name, block_size, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET name = excluded.name', [v.image, v.blockSize, v.createdAt]);
      const inserted = await q(
        `INSERT INTO backy2.versions (uid, image, created_at, size, block_size, status, snapshot, snapshot_id, base_uid, source, kind, expires_at, host)
         VALUES ($1, $2, $3, $4, $5, 'incomplete', $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (uid) DO NOTHING RETURNING uid`,
        [v.uid, v.image, v.createdAt, v.size, v.blockSize, v.snapshot, v.snapshotId ?? null, v.baseUid, v.source, v.kind, v.expiresAt ?? null, this.#holder.host],
      );
      // A retry after a lost answer finds its own row.
      if (inserted.length === 0 && attempt === 0) throw new ConflictError(`Version "${v.uid}" exists already`);
    }, { idempotent: true });
  }

  async commitVersion(uid: string, commit: VersionCommit): Promise<void> {
    const segments = Buffer.concat(commit.segments);
    await this.#db.transaction(async (q, attempt) => {
      const leases = commit.leases ?? [];
      if (leases.length > 0) {
        // FOR SHARE: no takeover can delete them while this commits.
        const held = await q(`SELECT id FROM backy2.locks WHERE id = ANY($1::bigint[]) AND expires_at > ${NOW} FOR SHARE`, [leases]);
        if (held.length !== new Set(leases).size) {
          throw new LockedError(`Cannot commit version "${uid}": its locks are no longer held (their lease expired)`, { hint: 'it stays incomplete; run the backup again' });
        }
      }
      const changed = await q(`UPDATE backy2.versions SET status = 'valid', segments = $1, stats = $2, allocated = $3 WHERE uid = $4 AND status = 'incomplete' RETURNING uid`, [
        segments,
        JSON.stringify(commit.stats),
        commit.allocated,
        uid,
      ]);
      if (changed.length === 0) {
        // A retry whose first attempt committed (its answer was lost) finds it done.
        const done = attempt > 0 && (await q<{ ok: boolean }>(`SELECT status = 'valid' AND segments = $2 AS ok FROM backy2.versions WHERE uid = $1`, [uid, segments]))[0]?.ok;
        if (!done) throw new NotFoundError(`Version "${uid}" is not an incomplete version`);
        return;
      }
      if (commit.tags.length > 0) await q('INSERT INTO backy2.tags (uid, tag) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING', [uid, [...commit.tags]]);
    }, { idempotent: true });
  }

  async importVersion(v: VersionRecord, segments: readonly Buffer[]): Promise<void> {
    await this.#db.transaction(async (q, attempt) => {
      const image = (await q<{ block_size: number }>('SELECT block_size FROM backy2.images WHERE name = $1 FOR UPDATE', [v.image]))[0];
      if (image && image.block_size !== v.blockSize) {
        throw new ConflictError(`Version "${v.uid}" has block size ${v.blockSize}, image "${v.image}" uses ${image.block_size}`);
      }
      await q('INSERT INTO backy2.images (name, block_size, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [v.image, v.blockSize, v.createdAt]);
      const inserted = await q(
        `INSERT INTO backy2.versions (uid, image, created_at, size, block_size, status, protected, snapshot, snapshot_id, base_uid, source, segments, stats, kind, expires_at, host)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (uid) DO NOTHING RETURNING uid`,
        [v.uid, v.image, v.createdAt, v.size, v.blockSize, v.status, v.protected, v.snapshot, v.snapshotId, v.baseUid, v.source, Buffer.concat(segments), v.stats ? JSON.stringify(v.stats) : null, v.kind, v.expiresAt, v.host ?? null],
      );
      if (inserted.length === 0 && attempt === 0) throw new ConflictError(`Version "${v.uid}" exists already`);
      if (v.tags.length > 0) await q('INSERT INTO backy2.tags (uid, tag) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING', [v.uid, [...v.tags]]);
    }, { idempotent: true });
  }

  async getVersion(uid: string): Promise<VersionRecord | undefined> {
    const row = (await this.#read<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM backy2.versions v WHERE v.uid = $1`, [uid]))[0];
    return row && toVersion(row);
  }

  async listVersions(filter: VersionFilter = {}): Promise<VersionRecord[]> {
    const { sql, params } = listingClauses(filter, PG_DIALECT);
    return (await this.#read<VersionRow>(`SELECT ${VERSION_COLUMNS} FROM backy2.versions v ${sql}`, params)).map(toVersion);
  }

  async latestValidVersion(image: string, kind?: VersionKind): Promise<VersionRecord | undefined> {
    const row = (
      await this.#read<VersionRow>(
        `SELECT ${VERSION_COLUMNS} FROM backy2.versions v WHERE v.image = $1 AND v.status = 'valid' AND ($2::text IS NULL OR v.kind = $2)
         ORDER BY v.created_at DESC, v.uid DESC LIMIT 1`,
        [image, kind ?? null],
      )
    )[0];
    return row && toVersion(row);
  }

  async versionSegmentsOf(uids: readonly string[]): Promise<Map<string, Buffer[]>> {
    if (uids.length === 0) return new Map();
    const rows = await this.#read<{ uid: string; segments: Buffer | null }>('SELECT uid, segments FROM backy2.versions WHERE uid = ANY($1::text[])', [[...uids]]);
    return new Map(rows.map((r) => [r.uid, splitDigests(r.segments)]));
  }

  async firstSegments(image: string): Promise<Map<string, Buffer>> {
    const rows = await this.#read<{ uid: string; first: Buffer }>(
      'SELECT uid, substring(segments from 1 for $2) AS first FROM backy2.versions WHERE image = $1 AND octet_length(segments) >= $2',
      [image, DIGEST_LENGTH],
    );
    return new Map(rows.map((r) => [r.uid, r.first]));
  }

  async versionSegments(uid: string): Promise<Buffer[]> {
    const row = (await this.#read<{ segments: Buffer | null }>('SELECT segments FROM backy2.versions WHERE uid = $1', [uid]))[0];
    if (!row) throw new NotFoundError(`Version "${uid}" not found`);
    return splitDigests(row.segments);
  }

  async deleteVersion(uid: string): Promise<void> {
    await this.#db.transaction(async (q, attempt) => {
      const row = (await q<{ image: string }>('DELETE FROM backy2.versions WHERE uid = $1 RETURNING image', [uid]))[0];
      if (!row) {
        if (attempt > 0) return; // the first attempt did it
        throw new NotFoundError(`Version "${uid}" not found`);
      }
      await q('DELETE FROM backy2.images i WHERE i.name = $1 AND NOT EXISTS (SELECT 1 FROM backy2.versions v WHERE v.image = i.name)', [row.image]);
    }, { idempotent: true });
  }

  async setAllocated(uid: string, bytes: number): Promise<void> {
    await this.#db.query('UPDATE backy2.versions SET allocated = $1 WHERE uid = $2', [bytes, uid], { idempotent: true });
  }

  async setProtected(uid: string, value: boolean): Promise<void> {
    await this.#updateVersion('UPDATE backy2.versions SET protected = $2 WHERE uid = $1 RETURNING uid', uid, value);
  }

  async setStatus(uid: string, status: VersionStatus): Promise<void> {
    await this.#updateVersion('UPDATE backy2.versions SET status = $2 WHERE uid = $1 RETURNING uid', uid, status);
  }

  async setExpiry(uid: string, expiresAt: number | null): Promise<void> {
    await this.#updateVersion('UPDATE backy2.versions SET expires_at = $2 WHERE uid = $1 RETURNING uid', uid, expiresAt);
  }

  async addTags(uid: string, tags: readonly string[]): Promise<void> {
    await this.#db.transaction(async (q) => {
      await this.#requireVersion(q, uid);
      await q('INSERT INTO backy2.tags (uid, tag) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING', [uid, [...tags]]);
    }, { idempotent: true });
  }

  async removeTags(uid: string, tags: readonly string[]): Promise<void> {
    await this.#db.transaction(async (q) => {
      await this.#requireVersion(q, uid);
      await q('DELETE FROM backy2.tags WHERE uid = $1 AND tag = ANY($2::text[])', [uid, [...tags]]);
    }, { idempotent: true });
  }

  async getBlock(digest: Uint8Array): Promise<BlockRecord | undefined> {
    const row = (await this.#read<BlockRow>(`SELECT ${BLOCK_COLUMNS} FROM backy2.blocks WHERE digest = $1`, [Buffer.from(digest)]))[0];
    return row && toBlock(row);
  }

  async touchBlock(digest: Uint8Array): Promise<BlockStateValue | undefined> {
    return this.#touches.request(Buffer.from(digest));
  }

  /**
   * Touches blocks in one statement. Rows are locked in digest order (two hosts touching
   * overlapping blocks never wait on each other in a cycle), and each row lock orders its touch
   * against a cleanup's claim: the state reported is the one after whichever came first.
   */
  async #touchBlocks(digests: Buffer[]): Promise<(BlockStateValue | undefined)[]> {
    const rows = await this.#db.query<{ digest: Buffer; state: BlockStateValue; touched: boolean }>(
      `WITH locked AS (SELECT digest FROM backy2.blocks WHERE digest = ANY($1::bytea[]) AND state <> 2 ORDER BY digest FOR UPDATE),
            t AS (UPDATE backy2.blocks b SET last_ref = ${NOW} FROM locked WHERE b.digest = locked.digest RETURNING b.digest, b.state)
       SELECT digest, state, true AS touched FROM t
       UNION ALL SELECT b.digest, b.state, false FROM backy2.blocks b WHERE b.digest = ANY($1::bytea[]) AND NOT EXISTS (SELECT 1 FROM t WHERE t.digest = b.digest)`,
      [digests],
      { idempotent: true },
    );
    const found = new Map(rows.map((r) => [r.digest.toString('hex'), r.touched ? r.state : BlockState.deleting]));
    return digests.map((d) => found.get(d.toString('hex')));
  }

  async registerBlocks(blocks: readonly { digest: Uint8Array; length: number; storedLength: number }[]): Promise<void> {
    if (blocks.length === 0) return;
    // In digest order, so two hosts registering overlapping blocks never wait on each other in a cycle.
    const sorted = [...blocks].sort((a, b) => Buffer.compare(Buffer.from(a.digest), Buffer.from(b.digest)));
    const unique = sorted.filter((b, i) => i === 0 || Buffer.compare(Buffer.from(b.digest), Buffer.from(sorted[i - 1]!.digest)) !== 0);
    await this.#db.query(
      `INSERT INTO backy2.blocks (digest, length, stored_length, state, last_ref)
       SELECT d, l, s, 0, ${NOW} FROM unnest($1::bytea[], $2::int[], $3::int[]) AS x(d, l, s)
       ON CONFLICT (digest) DO UPDATE SET state = 0, last_ref = excluded.last_ref, length = excluded.length, stored_length = excluded.stored_length
       WHERE backy2.blocks.state <> 2`,
      [unique.map((b) => Buffer.from(b.digest)), unique.map((b) => b.length), unique.map((b) => b.storedLength)],
      { idempotent: true },
    );
  }

  async setBlockState(digests: readonly Uint8Array[], state: 0 | 1): Promise<void> {
    if (digests.length === 0) return;
    await this.#db.query('UPDATE backy2.blocks SET state = $1 WHERE digest = ANY($2::bytea[]) AND state <> 2', [state, sortedDigests(digests)], { idempotent: true });
  }

  async invalidBlocks(): Promise<Buffer[]> {
    return (await this.#read<{ digest: Buffer }>('SELECT digest FROM backy2.blocks WHERE state = 1')).map((r) => r.digest);
  }

  async blockTotals(): Promise<{ blocks: number; bytes: number; invalid: number }> {
    const row = (
      await this.#read<{ blocks: number; bytes: number | null; invalid: number | null }>(
        'SELECT count(*) AS blocks, sum(stored_length) AS bytes, count(*) FILTER (WHERE state = 1) AS invalid FROM backy2.blocks',
      )
    )[0];
    return { blocks: row?.blocks ?? 0, bytes: row?.bytes ?? 0, invalid: row?.invalid ?? 0 };
  }

  async takeOverDeleting(digest: Uint8Array): Promise<'taken' | 'busy' | 'gone'> {
    return this.#db.transaction(async (q) => {
      // The lock key of the cleanup resource: a cleanup that starts now waits for this decision,
      // and then finds the block no longer being deleted.
      await q('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [CLEANUP_RESOURCE]);
      const cleanups = await q<LockRow>(`SELECT *, ${NOW} AS now FROM backy2.locks WHERE resource = $1`, [CLEANUP_RESOURCE]);
      if (cleanups.some((row) => this.#alive(row))) return 'busy';
      const changed = await q(`UPDATE backy2.blocks SET state = 1, last_ref = ${NOW} WHERE digest = $1 AND state = 2 RETURNING digest`, [Buffer.from(digest)]);
      if (changed.length === 1) return 'taken';
      return (await q('SELECT 1 FROM backy2.blocks WHERE digest = $1', [Buffer.from(digest)])).length > 0 ? 'taken' : 'gone';
    }, { idempotent: true });
  }

  async putSegment(digest: Uint8Array, entries: number, data: Uint8Array): Promise<void> {
    await this.#db.query(
      `INSERT INTO backy2.segments (digest, entries, data, created_at) VALUES ($1, $2, $3, ${NOW})
       ON CONFLICT (digest) DO UPDATE SET entries = excluded.entries, data = excluded.data WHERE backy2.segments.data <> excluded.data`,
      [Buffer.from(digest), entries, Buffer.from(data)],
      { idempotent: true },
    );
  }

  async getSegment(digest: Uint8Array): Promise<Buffer | undefined> {
    return (await this.#read<{ data: Buffer }>('SELECT data FROM backy2.segments WHERE digest = $1', [Buffer.from(digest)]))[0]?.data;
  }

  async getSegments(digests: readonly Uint8Array[]): Promise<Map<string, Buffer>> {
    if (digests.length === 0) return new Map();
    const rows = await this.#read<{ digest: Buffer; data: Buffer }>('SELECT digest, data FROM backy2.segments WHERE digest = ANY($1::bytea[])', [digests.map((d) => Buffer.from(d))]);
    return new Map(rows.map((r) => [r.digest.toString('hex'), r.data]));
  }

  async listSegments(): Promise<{ digest: Buffer; touchedAt: number }[]> {
    return (await this.#read<{ digest: Buffer; created_at: number }>('SELECT digest, created_at FROM backy2.segments')).map((r) => ({ digest: r.digest, touchedAt: r.created_at }));
  }

  async touchSegment(digest: Uint8Array): Promise<boolean> {
    return (await this.#db.query(`UPDATE backy2.segments SET created_at = ${NOW} WHERE digest = $1 RETURNING digest`, [Buffer.from(digest)], { idempotent: true })).length === 1;
  }

  async deleteSegments(digests: readonly Uint8Array[], before: number): Promise<Buffer[]> {
    if (digests.length === 0) return [];
    const rows = await this.#db.query<{ digest: Buffer }>('DELETE FROM backy2.segments WHERE digest = ANY($1::bytea[]) AND created_at < $2 RETURNING digest', [sortedDigests(digests), before], {
      idempotent: true,
    });
    return rows.map((r) => r.digest);
  }

  async beginScrubList(): Promise<void> {
    await this.endScrubList();
    this.#scrub = await this.#db.session();
    await this.#scrub.query('CREATE TEMP TABLE scrub_list (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, digest bytea NOT NULL UNIQUE, length integer NOT NULL)');
  }

  async addToScrubList(blocks: readonly { readonly digest: Uint8Array; readonly length: number }[]): Promise<{ blocks: number; bytes: number }> {
    if (blocks.length === 0) return { blocks: 0, bytes: 0 };
    const rows = await this.#scrubSession().query<{ blocks: number | string; bytes: number | string | null }>(
      `WITH i AS (INSERT INTO scrub_list (digest, length) SELECT d, l FROM unnest($1::bytea[], $2::int[]) WITH ORDINALITY AS x(d, l, n) ORDER BY n
         ON CONFLICT (digest) DO NOTHING RETURNING length)
       SELECT count(*) AS blocks, sum(length) AS bytes FROM i`,
      [blocks.map((b) => Buffer.from(b.digest)), blocks.map((b) => b.length)],
    );
    return { blocks: Number(rows[0]?.blocks ?? 0), bytes: Number(rows[0]?.bytes ?? 0) };
  }

  async scrubListBatch(after: number, limit: number): Promise<{ position: number; digest: Buffer; length: number }[]> {
    return this.#scrubSession().query('SELECT position, digest, length FROM scrub_list WHERE position > $1 ORDER BY position LIMIT $2', [after, limit]);
  }

  async endScrubList(): Promise<void> {
    const session = this.#scrub;
    this.#scrub = undefined;
    if (!session) return;
    await session.query('DROP TABLE IF EXISTS scrub_list').catch(() => undefined);
    session.release();
  }

  async beginMark(): Promise<void> {
    await this.endMark();
    this.#mark = await this.#db.session();
    this.#claimAfter = Buffer.alloc(0);
    await this.#mark.query('CREATE TEMP TABLE live (digest bytea PRIMARY KEY)');
  }

  async markLive(entries: Uint8Array): Promise<void> {
    const all = Buffer.from(entries.buffer, entries.byteOffset, entries.byteLength);
    const digests: Buffer[] = [];
    for (let at = 0; at + DIGEST_LENGTH <= all.length; at += DIGEST_LENGTH) {
      const digest = all.subarray(at, at + DIGEST_LENGTH);
      if (!digest.equals(SPARSE_ENTRY)) digests.push(digest);
    }
    if (digests.length > 0) await this.#markSession().query('INSERT INTO live (digest) SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING', [digests]);
  }

  async endMark(): Promise<void> {
    const session = this.#mark;
    this.#mark = undefined;
    if (!session) return;
    await session.query('DROP TABLE IF EXISTS live').catch(() => undefined);
    session.release();
  }

  async garbageTotals(before: number): Promise<{ old: { blocks: number; bytes: number }; young: { blocks: number; bytes: number } }> {
    const q = this.#markSession().query;
    await q('ANALYZE live');
    const rows = await q<{ old: boolean; blocks: number; bytes: number | null }>(
      `SELECT b.last_ref < $1 AS old, count(*) AS blocks, sum(b.stored_length) AS bytes FROM backy2.blocks b
       WHERE b.state <> 2 AND NOT EXISTS (SELECT 1 FROM live l WHERE l.digest = b.digest) GROUP BY 1`,
      [before],
    );
    const pick = (old: boolean) => {
      const row = rows.find((r) => r.old === old);
      return { blocks: row?.blocks ?? 0, bytes: row?.bytes ?? 0 };
    };
    return { old: pick(true), young: pick(false) };
  }

  async claimGarbageBlocks(before: number, limit: number): Promise<BlockRecord[]> {
    // The outer conditions are checked again on the row as it is once its lock is ours: a block a
    // writer touched meanwhile is younger and stays. Rows locked by a writer right now are skipped.
    const rows = await this.#markSession().query<BlockRow>(
      `WITH c AS (SELECT b.digest FROM backy2.blocks b WHERE b.digest > $3 AND b.state <> 2 AND b.last_ref < $1
                    AND NOT EXISTS (SELECT 1 FROM live l WHERE l.digest = b.digest)
                  ORDER BY b.digest LIMIT $2 FOR UPDATE SKIP LOCKED)
       UPDATE backy2.blocks b SET state = 2 FROM c WHERE b.digest = c.digest AND b.state <> 2 AND b.last_ref < $1
       RETURNING b.digest, b.length, b.stored_length, b.state, b.last_ref`,
      [before, limit, this.#claimAfter],
    );
    const blocks = rows.map(toBlock).sort((a, b) => Buffer.compare(a.digest, b.digest));
    const last = blocks[blocks.length - 1];
    if (last) this.#claimAfter = last.digest;
    return blocks;
  }

  async deletingBlocks(limit: number): Promise<BlockRecord[]> {
    return (await this.#read<BlockRow>(`SELECT ${BLOCK_COLUMNS} FROM backy2.blocks WHERE state = 2 LIMIT $1`, [limit])).map(toBlock);
  }

  async forgetDeletedBlocks(digests: readonly Uint8Array[]): Promise<void> {
    if (digests.length === 0) return;
    await this.#db.query('DELETE FROM backy2.blocks WHERE digest = ANY($1::bytea[]) AND state = 2', [sortedDigests(digests)], { idempotent: true });
  }

  async acquireLock(request: LockRequest): Promise<LockRecord> {
    return (await this.acquireLocks([request]))[0] as LockRecord;
  }

  async acquireLocks(requests: readonly LockRequest[]): Promise<LockRecord[]> {
    if (requests.length === 0) return [];
    const tokens = requests.map(() => randomUUID());
    const holder = this.#holder;
    const rows = await this.#db.transaction(async (q, attempt) => {
      if (attempt > 0) {
        const mine = await q<LockRow>(`SELECT *, ${NOW} AS now FROM backy2.locks WHERE token = ANY($1::uuid[])`, [tokens]);
        if (mine.length === tokens.length) return mine;
      }
      const resources = [...new Set(requests.map((r) => r.resource))].sort();
      // One grant per resource at a time, whatever the host; taken in name order, so two batches
      // that share resources wait for each other rather than in a cycle.
      await q('SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(r, 0) AS h FROM unnest($1::text[]) AS r ORDER BY r) AS sorted', [resources]);
      const held = await q<LockRow>(`SELECT *, ${NOW} AS now FROM backy2.locks WHERE resource = ANY($1::text[]) ORDER BY id`, [resources]);
      const live: LockRow[] = [];
      for (const r of held) {
        const why = this.#deadWhy(r);
        if (why === undefined) {
          live.push(r);
          continue;
        }
        await q('DELETE FROM backy2.locks WHERE id = $1', [r.id]);
        this.#log(`took over the lock of ${describe(r)}: ${why}`);
      }
      for (const request of requests) {
        const r = live.find((l) => l.resource === request.resource && (request.mode === 'exclusive' || l.mode === 'exclusive'));
        if (!r) continue;
        const what = request.resource.replace(/^(\w+):/, '$1 ');
        throw new LockedError(
          `Cannot lock ${what} for ${request.operation}: ${r.operation} by process ${r.pid} on ${r.host} holds it since ${new Date(r.acquired_at).toISOString()}`,
          { hint: `wait for it to finish; a lock of a dead process is released automatically (on another host once its lease of ${Math.round(this.leaseMs / 1000)} s expires)` },
        );
      }
      return q<LockRow>(
        `INSERT INTO backy2.locks (token, resource, mode, operation, writer, pid, host, stamp, pid_namespace, acquired_at, heartbeat_at, expires_at)
         SELECT t, r, m, o, w, $6, $7, $8, $9, ${NOW}, ${NOW}, ${NOW} + $10
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::boolean[]) AS x(t, r, m, o, w)
         RETURNING *, ${NOW} AS now`,
        [
          tokens,
          requests.map((r) => r.resource),
          requests.map((r) => r.mode),
          requests.map((r) => r.operation),
          requests.map((r) => r.writer ?? false),
          holder.pid,
          holder.host,
          holder.stamp,
          currentPidNamespace(),
          this.leaseMs,
        ],
      );
    }, { idempotent: true });
    const byToken = new Map(rows.map((r) => [r.token, r]));
    return tokens.map((t) => {
      const row = byToken.get(t);
      if (!row) throw new StoreUnavailableError(`Catalog ${this.location}: a lock was not recorded`);
      return toLock(row);
    });
  }

  async releaseLock(id: number): Promise<void> {
    await this.releaseLocks([id]);
  }

  async releaseLocks(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#db.query('DELETE FROM backy2.locks WHERE id = ANY($1::bigint[])', [[...ids]], { idempotent: true });
  }

  async listLocks(resource?: string): Promise<LockRecord[]> {
    const rows =
      resource === undefined
        ? await this.#read<LockRow>(`SELECT *, ${NOW} AS now FROM backy2.locks ORDER BY id`)
        : await this.#read<LockRow>(`SELECT *, ${NOW} AS now FROM backy2.locks WHERE resource = $1 ORDER BY id`, [resource]);
    return rows.filter((r) => this.#alive(r)).map(toLock);
  }

  async heartbeat(ids: readonly number[]): Promise<number[]> {
    if (ids.length === 0) return [];
    // An expired lease is never renewed: another host may have acted on its expiry.
    const renewed = await this.#db.query<{ id: number }>(
      `UPDATE backy2.locks SET heartbeat_at = ${NOW}, expires_at = ${NOW} + $2 WHERE id = ANY($1::bigint[]) AND expires_at > ${NOW} RETURNING id`,
      [[...ids], this.leaseMs],
      { idempotent: true },
    );
    const held = new Set(renewed.map((r) => r.id));
    return ids.filter((id) => !held.has(id));
  }

  async now(): Promise<number> {
    return (await this.#read<{ now: number }>(`SELECT ${NOW} AS now`))[0]?.now ?? Date.now();
  }

  async recordRun(operation: string, finishedAt: number, figures: Readonly<Record<string, number>>): Promise<void> {
    // Not retried after a lost answer: the totals would count the run twice.
    await this.#db.transaction(async (q) => {
      const row = (await q<{ totals: string }>('SELECT totals FROM backy2.runs WHERE operation = $1 FOR UPDATE', [operation]))[0];
      const totals = { ...(row ? (JSON.parse(row.totals) as Record<string, number>) : {}) };
      for (const [key, value] of Object.entries(figures)) if (Number.isFinite(value)) totals[key] = (totals[key] ?? 0) + value;
      totals.runs = (totals.runs ?? 0) + 1;
      await q(
        `INSERT INTO backy2.runs (operation, finished_at, last, totals) VALUES ($1, $2, $3, $4)
         ON CONFLICT (operation) DO UPDATE SET finished_at = excluded.finished_at, last = excluded.last, totals = excluded.totals`,
        [operation, finishedAt, JSON.stringify(figures), JSON.stringify(totals)],
      );
    });
  }

  async listRuns(): Promise<RunRecord[]> {
    return (await this.#read<{ operation: string; finished_at: number; last: string; totals: string }>('SELECT * FROM backy2.runs ORDER BY operation')).map((r) => ({
      operation: r.operation,
      finishedAt: r.finished_at,
      last: JSON.parse(r.last) as Record<string, number>,
      totals: JSON.parse(r.totals) as Record<string, number>,
    }));
  }

  async *exportRows(table: TransferTable, batch: number): AsyncIterable<TransferValue[][]> {
    let last: TransferValue[] | undefined;
    for (;;) {
      const rows = (await this.#read<Record<string, unknown>>(pageQuery(PG_DIALECT, table, last === undefined), pageParams(table, last, batch))).map((r) => rowValues(table, r));
      if (rows.length === 0) return;
      yield rows;
      last = rows[rows.length - 1];
      if (rows.length < batch) return;
    }
  }

  async importRows(table: TransferTable, rows: readonly (readonly TransferValue[])[]): Promise<void> {
    // At most 65535 parameters per statement.
    const per = Math.floor(60_000 / TRANSFER_TABLES[table].columns.length);
    for (let i = 0; i < rows.length; i += per) {
      const chunk = rows.slice(i, i + per);
      await this.#db.query(insertQuery(PG_DIALECT, table, chunk.length, 'on-conflict'), chunk.flat(), { idempotent: true });
    }
  }

  async close(): Promise<void> {
    await this.endMark().catch(() => undefined);
    await this.endScrubList().catch(() => undefined);
    await this.#db.close();
  }

  /** Why a lock's holder is dead (and its lock may be taken over), or undefined while it lives. */
  #deadWhy(row: LockRow): string | undefined {
    if (row.expires_at <= row.now) return `its lease expired ${Math.round((row.now - row.expires_at) / 1000)} s ago (last heartbeat ${new Date(row.heartbeat_at).toISOString()})`;
    if (isLocalHolderGone({ pid: row.pid, host: row.host, stamp: row.stamp, pidNamespace: row.pid_namespace }, this.#holder)) return `process ${row.pid} is gone`;
    return undefined;
  }

  #alive(row: LockRow): boolean {
    return this.#deadWhy(row) === undefined;
  }

  #read<R>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    return this.#db.query<R>(sql, params, { idempotent: true });
  }

  async #requireVersion(q: Query, uid: string): Promise<void> {
    if ((await q('SELECT 1 FROM backy2.versions WHERE uid = $1 FOR UPDATE', [uid])).length === 0) throw new NotFoundError(`Version "${uid}" not found`);
  }

  async #updateVersion(sql: string, uid: string, value: unknown): Promise<void> {
    if ((await this.#db.query(sql, [uid, value], { idempotent: true })).length === 0) throw new NotFoundError(`Version "${uid}" not found`);
  }

  #markSession(): PgSession {
    if (!this.#mark) throw new TypeError('markLive() and the claims need beginMark() first');
    return this.#mark;
  }

  #scrubSession(): PgSession {
    if (!this.#scrub) throw new TypeError('The scrub list needs beginScrubList() first');
    return this.#scrub;
  }
}

/** The schema version of the catalog in `db` (0: none). */
async function schemaVersion(db: PgDatabase, q?: Query): Promise<number> {
  const run: Query = q ?? ((sql, params) => db.query(sql, params, { idempotent: true }));
  const exists = await run(`SELECT 1 FROM pg_tables WHERE schemaname = 'backy2' AND tablename = 'schema_version'`);
  if (exists.length === 0) return 0;
  return (await run<{ version: number | null }>('SELECT max(version) AS version FROM backy2.schema_version'))[0]?.version ?? 0;
}

const PG_DIALECT: SqlDialect = { table: (t) => `backy2.${t}`, param: (n) => `$${n}` };

function migrationsOf(options: PgCatalogOptions): readonly string[] {
  return options.migrations ?? PG_MIGRATIONS;
}

function checkSchema(version: number, known: number, location: string): void {
  if (version > known) {
    throw new StoreUnavailableError(`Cannot open catalog ${location}: it has schema version ${version}, newer than this backy2 understands (${known})`, {
      hint: 'upgrade backy2 on this host',
    });
  }
  if (version < known) {
    throw new StoreUnavailableError(`Catalog ${location} has schema version ${version}; this backy2 needs ${known}`, {
      hint: 'run `backy2 db migrate` once every host runs this backy2 or newer',
    });
  }
}

async function applyMigrations(q: Query, from: number, migrations: readonly string[]): Promise<void> {
  for (let i = from; i < migrations.length; i++) {
    await q(migrations[i] ?? '');
    await q('INSERT INTO backy2.schema_version (version, program) VALUES ($1, $2)', [i + 1, 'backy2']);
  }
}

function sortedDigests(digests: readonly Uint8Array[]): Buffer[] {
  return digests.map((d) => Buffer.from(d)).sort(Buffer.compare);
}

function toBlock(row: BlockRow): BlockRecord {
  return { digest: row.digest, length: row.length, storedLength: row.stored_length, state: row.state, lastRef: row.last_ref };
}

function toLock(row: LockRow): LockRecord {
  return {
    id: row.id,
    resource: row.resource,
    mode: row.mode,
    operation: row.operation,
    writer: row.writer,
    pid: row.pid,
    host: row.host,
    acquiredAt: row.acquired_at,
    heartbeatAt: row.heartbeat_at,
    expiresAt: row.expires_at,
  };
}

function describe(row: LockRow): string {
  return `${row.resource.replace(/^(\w+):/, '$1 ')} (${row.operation} by process ${row.pid} on ${row.host})`;
}

function toVersion(row: VersionRow): VersionRecord {
  return {
    uid: row.uid,
    image: row.image,
    createdAt: row.created_at,
    size: row.size,
    blockSize: row.block_size,
    status: row.status,
    protected: row.protected,
    tags: row.tags ?? [],
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
