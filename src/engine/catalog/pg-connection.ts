/**
 * Connections to a PostgreSQL catalog: a pool of node-postgres clients, short transactions with
 * retries, and the one place where PostgreSQL and connection errors become BackyErrors.
 *
 * A transaction is retried (with backoff, for a quarter of the lease) when PostgreSQL rolled it
 * back (serialization failure, deadlock), when no connection could be had (PostgreSQL restarting,
 * unreachable), and, for work that is safe to repeat, when the connection was lost without an
 * answer (the commit may or may not have happened). Passwords never reach a message: the URL
 * shown is stripped of it.
 */
import { readFileSync, statSync } from 'node:fs';
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import { redactUrl } from '../support/names.js';
import { ConflictError, LockedError, StoreFullError, StoreUnavailableError, UsageError, isBackyError } from '../errors.js';

/** How to reach the database. */
export interface PgTarget {
  /** `postgresql://user[:password]@host[:port]/database[?…]`. */
  readonly url: string;
  /** A file holding the password (must not be readable by group or others). */
  readonly passwordFile?: string | undefined;
  /** Connections in the pool. @default 4 */
  readonly poolSize?: number | undefined;
  /** How long failed transactions are retried, ms. @default 30 s */
  readonly retryMs?: number | undefined;
  /** Names the client in pg_stat_activity. @default 'backy2' */
  readonly applicationName?: string | undefined;
}

/** Runs statements in a transaction (or a session). */
export type Query = <R = QueryResultRow>(sql: string, params?: readonly unknown[]) => Promise<R[]>;

/** SQLSTATEs after which PostgreSQL has rolled the transaction back: always safe to retry. */
const ROLLED_BACK = new Set(['40001', '40P01']);
/** SQLSTATEs of a server going away or not accepting connections yet. */
const SERVER_GONE = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300']);
const NETWORK_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOENT']);

// bigint (int8) and numeric come back as strings by default: every value we store fits a double.
const INT8 = 20;
const NUMERIC = 1700;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8 || oid === NUMERIC ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

/**
 * A pool of connections to one PostgreSQL database, for the catalog.
 * @example
 * const db = PgDatabase.connect({ url: 'postgresql://backup@db/backy2' });
 * const rows = await db.query('SELECT 1 AS one');
 */
export class PgDatabase {
  /** The URL without its password, for messages. */
  readonly location: string;
  /** Statements sent so far (benchmarks report catalog round trips). */
  roundTrips = 0;
  readonly #pool: pg.Pool;
  readonly #retryMs: number;

  private constructor(location: string, pool: pg.Pool, retryMs: number) {
    this.location = location;
    this.#pool = pool;
    this.#retryMs = retryMs;
  }

  /**
   * Makes the pool (connections open on first use).
   * @throws {UsageError} when the URL is malformed
   * @throws {StoreUnavailableError} when the password file cannot be read or is not private
   */
  static connect(target: PgTarget): PgDatabase {
    let url: URL;
    try {
      url = new URL(target.url);
    } catch (err) {
      throw new UsageError(`Bad catalog URL "${redactUrl(target.url)}": not a URL`, { cause: err });
    }
    const location = redactUrl(target.url);
    // node-postgres lets the connection string override a separate password, so the one from the
    // file goes into it; without either, PGPASSWORD or ~/.pgpass apply. Never shown: see location.
    if (target.passwordFile !== undefined) url.password = encodeURIComponent(readPasswordFile(target.passwordFile));
    const pool = new pg.Pool({
      connectionString: url.toString(),
      max: target.poolSize ?? 4,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: target.applicationName ?? 'backy2',
      // A client that stops mid-transaction must not keep rows locked for long.
      idle_in_transaction_session_timeout: 60_000,
      types,
    });
    // Idle clients whose server went away emit errors; the next query reconnects.
    pool.on('error', () => undefined);
    return new PgDatabase(location, pool, target.retryMs ?? 30_000);
  }

  /** One statement on its own (its own transaction), retried when that is safe. */
  async query<R = QueryResultRow>(sql: string, params: readonly unknown[] = [], options: { idempotent?: boolean } = {}): Promise<R[]> {
    return this.transaction((q) => q<R>(sql, params), { ...options, single: true });
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED; statements that must see each other lock rows
   * or advisory locks), retried as the module header says.
   * @param options.idempotent true when running `fn` twice is harmless (retried after a lost answer)
   * @param options.what names the work in messages
   */
  async transaction<T>(fn: (q: Query, attempt: number) => Promise<T>, options: { idempotent?: boolean; what?: string; single?: boolean } = {}): Promise<T> {
    const deadline = Date.now() + this.#retryMs;
    for (let attempt = 0, delay = 50; ; attempt++, delay = Math.min(delay * 2, 1000)) {
      let client: PoolClient | undefined;
      let sent = false;
      try {
        client = await this.#pool.connect();
        // A connection that dies between statements is an 'error' event of the checked-out client
        // (the pool listens only to idle ones): unheard, it would end the process. The next
        // statement fails on it and is retried like any lost connection.
        client.on('error', ignore);
        const c = client;
        const q: Query = async <R,>(sql: string, params: readonly unknown[] = []) => {
          sent = true;
          this.roundTrips++;
          return (await c.query(sql, params as unknown[])).rows as R[];
        };
        if (options.single) {
          const out = await fn(q, attempt);
          client.removeListener('error', ignore);
          client.release();
          return out;
        }
        await q('BEGIN');
        const out = await fn(q, attempt);
        await q('COMMIT');
        client.removeListener('error', ignore);
        client.release();
        return out;
      } catch (err) {
        const code = errorCode(err);
        const broken = isConnectionError(err);
        if (client) {
          if (!broken) await client.query('ROLLBACK').catch(() => undefined);
          client.removeListener('error', ignore);
          client.release(broken ? asError(err) : undefined);
        }
        const retry = (ROLLED_BACK.has(code ?? '') || (broken && (!sent || options.idempotent === true))) && Date.now() + delay < deadline;
        if (!retry) throw mapPgError(err, `${options.what ?? 'Catalog'} ${this.location}`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * A connection of its own for work that spans calls (temporary tables). Not retried: a lost
   * connection loses its temporary tables.
   */
  async session(): Promise<PgSession> {
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw mapPgError(err, `Catalog ${this.location}`);
    }
    return new PgSession(client, this);
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => undefined);
  }
}

/** One connection kept for a while (see {@link PgDatabase.session}). */
export class PgSession {
  readonly #client: PoolClient;
  readonly #db: PgDatabase;
  #broken = false;

  constructor(client: PoolClient, db: PgDatabase) {
    this.#client = client;
    this.#db = db;
    // See transaction(): a connection lost while this session waits must not end the process.
    client.on('error', this.#lost);
  }

  readonly #lost = (): void => {
    this.#broken = true;
  };

  /** Runs a statement on this connection. */
  readonly query: Query = async <R,>(sql: string, params: readonly unknown[] = []) => {
    try {
      this.#db.roundTrips++;
      return (await this.#client.query(sql, params as unknown[])).rows as R[];
    } catch (err) {
      if (isConnectionError(err)) this.#broken = true;
      throw mapPgError(err, `Catalog ${this.#db.location}`);
    }
  };

  /** Gives the connection back (or drops it when it broke). */
  release(): void {
    this.#client.removeListener('error', this.#lost);
    this.#client.release(this.#broken ? new Error('connection broken') : undefined);
  }
}

function ignore(): void {
  // handled where the connection is used next
}

function readPasswordFile(file: string): string {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StoreUnavailableError(`Cannot read the catalog password file "${file}": ${errnoOf(err) ?? String(err)}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    throw new StoreUnavailableError(`The catalog password file "${file}" can be read by others: refused`, { hint: `chmod 600 ${file}` });
  }
  return text.replace(/\r?\n$/, '');
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function errorCode(err: unknown): string | undefined {
  return errnoOf(err);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** True when the connection is gone or could not be made (the outcome of a sent statement is unknown). */
function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined && (SERVER_GONE.has(code) || NETWORK_ERRNO.has(code))) return true;
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed/i.test(message);
}

/** True for errors that a retry may get past (used by callers that retry whole operations). */
export function isTransientPgError(err: unknown): boolean {
  const cause = isBackyError(err) ? err.cause : err;
  return ROLLED_BACK.has(errorCode(cause) ?? '') || isConnectionError(cause);
}

/** The one place where PostgreSQL errors become BackyErrors. */
export function mapPgError(err: unknown, what: string): Error {
  if (isBackyError(err)) return err;
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case '28P01':
    case '28000':
      return new StoreUnavailableError(`${what}: ${message}`, { cause: err, hint: 'check catalog.passwordFile, PGPASSWORD or ~/.pgpass, and pg_hba.conf' });
    case '3D000':
      return new StoreUnavailableError(`${what}: ${message}`, { cause: err, hint: 'create the database (createdb -O USER NAME), then run `backy2 init`' });
    case '53100':
      return new StoreFullError(`${what}: the database server is out of disk space`, { cause: err });
    case '23505':
      return new ConflictError(`${what}: ${message}`, { cause: err });
    case '40001':
    case '40P01':
      return new LockedError(`${what}: the catalog is busy (${message})`, { cause: err, hint: 'try again' });
    case '42501':
      return new StoreUnavailableError(`${what}: permission denied (${message})`, { cause: err, hint: 'the user needs to own the database, or CREATE on it' });
    case 'ECONNREFUSED':
      return new StoreUnavailableError(`${what}: connection refused`, { cause: err, hint: 'is PostgreSQL running and listening there?' });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StoreUnavailableError(`${what}: unknown host`, { cause: err });
    default:
      if (isConnectionError(err)) return new StoreUnavailableError(`${what}: the connection was lost or could not be made (${message})`, { cause: err, hint: 'is PostgreSQL running and reachable? run the command again' });
      return new StoreUnavailableError(`${what}: ${message}`, { cause: err });
  }
}
