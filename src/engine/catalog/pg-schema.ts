/**
 * Schema migrations of the PostgreSQL catalog, applied in order by `backy2 init` (all of them)
 * and `backy2 db migrate` (the missing ones; never implicitly, since other hosts may still run an
 * older program). Table `backy2.schema_version` records each applied migration. A program refuses a
 * catalog whose schema is newer than it knows, and one that needs `db migrate`.
 * NEVER edit a released migration; append a new one.
 *
 * Everything lives in the schema `backy2` of the database the URL names. Times are bigint ms since
 * the epoch from the database's clock (`backy2.now_ms()`), never from a host's; digests are
 * 32-byte bytea. The tables mirror the SQLite catalog's (migrations.ts), plus lock leases.
 */
export const PG_SCHEMA = 'backy2';

export const PG_MIGRATIONS: readonly string[] = [
  // 1: the catalog as SQLite schema 7 has it, with locks as leases
  `
  CREATE FUNCTION backy2.now_ms() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

  CREATE TABLE backy2.meta (
    key text PRIMARY KEY,
    value text NOT NULL
  );
  INSERT INTO backy2.meta (key, value) VALUES ('catalog_id', replace(gen_random_uuid()::text, '-', ''));

  CREATE TABLE backy2.images (
    name text PRIMARY KEY,
    block_size integer NOT NULL,
    created_at bigint NOT NULL
  );

  CREATE TABLE backy2.versions (
    uid text PRIMARY KEY,
    image text NOT NULL REFERENCES backy2.images(name),
    created_at bigint NOT NULL,
    size bigint NOT NULL,
    block_size integer NOT NULL,
    status text NOT NULL CHECK (status IN ('incomplete', 'valid', 'invalid')),
    protected boolean NOT NULL DEFAULT false,
    snapshot text,
    snapshot_id text,
    base_uid text,
    source text,
    segments bytea,
    stats text,
    kind text NOT NULL DEFAULT 'backup' CHECK (kind IN ('backup', 'cow')),
    allocated bigint,
    expires_at bigint,
    host text
  );
  CREATE INDEX versions_by_image ON backy2.versions (image, created_at);
  CREATE INDEX versions_by_kind ON backy2.versions (image, kind, status, created_at);
  CREATE INDEX versions_by_time ON backy2.versions (created_at, uid);

  CREATE TABLE backy2.tags (
    uid text NOT NULL REFERENCES backy2.versions(uid) ON DELETE CASCADE,
    tag text NOT NULL,
    PRIMARY KEY (uid, tag)
  );
  CREATE INDEX tags_by_tag ON backy2.tags (tag);

  -- state: 0 valid, 1 invalid (failed a check), 2 being deleted by cleanup
  CREATE TABLE backy2.blocks (
    digest bytea PRIMARY KEY,
    length integer NOT NULL,
    stored_length integer NOT NULL,
    state smallint NOT NULL DEFAULT 0,
    last_ref bigint NOT NULL
  );
  CREATE INDEX blocks_not_valid ON backy2.blocks (state) WHERE state <> 0;

  CREATE TABLE backy2.segments (
    digest bytea PRIMARY KEY,
    entries integer NOT NULL,
    data bytea NOT NULL,
    created_at bigint NOT NULL
  );

  -- A lock is a lease: valid until expires_at (the database's clock) unless renewed. token makes
  -- a retried grant idempotent; pid_namespace tells whether a pid can be checked on a host.
  CREATE TABLE backy2.locks (
    id bigserial PRIMARY KEY,
    token uuid NOT NULL UNIQUE,
    resource text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('shared', 'exclusive')),
    operation text NOT NULL,
    writer boolean NOT NULL DEFAULT false,
    pid integer NOT NULL,
    host text NOT NULL,
    stamp text NOT NULL,
    pid_namespace text NOT NULL,
    acquired_at bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    expires_at bigint NOT NULL
  );
  CREATE INDEX locks_by_resource ON backy2.locks (resource);

  CREATE TABLE backy2.runs (
    operation text PRIMARY KEY,
    finished_at bigint NOT NULL,
    last text NOT NULL,
    totals text NOT NULL
  );
  `,
];
