/**
 * Catalog schema migrations, applied in order. The catalog's `PRAGMA user_version` holds the
 * number of migrations applied. NEVER edit a released migration; append a new one.
 *
 * Times are integers in ms since the epoch; digests are 32-byte BLOBs.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: initial schema
  `
  CREATE TABLE images (
    name TEXT PRIMARY KEY,
    block_size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE versions (
    uid TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(name),
    created_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('incomplete', 'valid', 'invalid')),
    protected INTEGER NOT NULL DEFAULT 0,
    snapshot TEXT,
    base_uid TEXT,
    source TEXT,
    segments BLOB,
    stats TEXT
  ) WITHOUT ROWID;
  CREATE INDEX versions_by_image ON versions(image, created_at);

  CREATE TABLE tags (
    uid TEXT NOT NULL REFERENCES versions(uid) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (uid, tag)
  ) WITHOUT ROWID;
  CREATE INDEX tags_by_tag ON tags(tag);

  -- state: 0 valid, 1 invalid (failed a check), 2 being deleted by cleanup
  CREATE TABLE blocks (
    digest BLOB PRIMARY KEY,
    length INTEGER NOT NULL,
    stored_length INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    last_ref INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX blocks_not_valid ON blocks(state) WHERE state <> 0;

  CREATE TABLE segments (
    digest BLOB PRIMARY KEY,
    entries INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE locks (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('shared', 'exclusive')),
    operation TEXT NOT NULL,
    writer INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    stamp TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
  );
  CREATE INDEX locks_by_resource ON locks(resource);
  `,
  // 2: catalog identity (which store it belongs to); what made each version
  `
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('catalog_id', lower(hex(randomblob(16))));

  ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'backup' CHECK (kind IN ('backup', 'cow'));
  -- Copy-on-write versions were told apart by their tag.
  UPDATE versions SET kind = 'cow' WHERE uid IN (SELECT uid FROM tags WHERE tag = 'cow');
  CREATE INDEX versions_by_kind ON versions(image, kind, status, created_at);
  `,
  // 3: bytes of each version's data blocks (what du shows), recorded at commit; NULL for older
  // versions until first computed
  `
  ALTER TABLE versions ADD COLUMN allocated INTEGER;
  `,
  // 4: the identity of the snapshot a version was read from (RBD image and snapshot ids)
  `
  ALTER TABLE versions ADD COLUMN snapshot_id TEXT;
  `,
  // 5: version expiry dates (backup -e, backy2 expire), honoured by forget; NULL for none
  `
  ALTER TABLE versions ADD COLUMN expires_at INTEGER;
  `,
  // 6: the last run of cleanup, scrub and forget with its figures, and their running totals (JSON
  // objects of numbers), for check and metrics
  `
  CREATE TABLE runs (
    operation TEXT PRIMARY KEY,
    finished_at INTEGER NOT NULL,
    last TEXT NOT NULL,
    totals TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 7: the backup host that made each version (config `host`); NULL for older versions
  `
  ALTER TABLE versions ADD COLUMN host TEXT;
  `,
  // 8: a covering index of what a listing of versions reads. A version's row holds its block map
  // (8 KiB per TiB of image) in overflow pages that a listing had to step over to reach the
  // columns after it: 10,000 versions of 1 TiB images took 0.3 s, now 0.1 s. It also orders
  // the versions of an image, as the index it replaces did.
  `
  CREATE INDEX versions_listing ON versions(image, created_at, uid, size, block_size, status, protected, snapshot, snapshot_id, base_uid, source, kind, allocated, expires_at, host, stats);
  DROP INDEX versions_by_image;
  `,
];
