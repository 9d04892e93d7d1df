/**
 * A throw-away PostgreSQL for the benchmarks: scripts/pg-dev in a directory and on a port of its
 * own (nothing of the system's cluster touched), and the config files of stores whose catalog
 * lives in it.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const pgDev = path.resolve(import.meta.dirname, '../scripts/pg-dev');

/** A running server (user backy2, trusted from 127.0.0.1). */
export interface BenchPostgres {
  /** The URL of `database`. @default backy2, which `scripts/pg-dev up` creates */
  url(database?: string): string;
  /** A new, empty database (for a fresh catalog); returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server and deletes its directory. */
  down(): void;
}

/**
 * Starts a server in `dir` on `port` (PG_DIR, PG_PORT of scripts/pg-dev), deleting whatever
 * `dir` held; undefined, with a line on stdout, when it cannot be started (no PostgreSQL installed).
 */
export function startPostgres(dir: string, port: string): BenchPostgres | undefined {
  const env = { ...process.env, PG_DIR: dir, PG_PORT: port };
  try {
    rmSync(dir, { recursive: true, force: true });
    execFileSync(pgDev, ['up'], { env, stdio: 'ignore' });
  } catch {
    console.log('\n(PostgreSQL skipped: scripts/pg-dev up failed)');
    return undefined;
  }
  const url = (database = 'backy2') => `postgresql://backy2@127.0.0.1:${port}/${database}`;
  return {
    url,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name} OWNER backy2`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    down: () => execFileSync(pgDev, ['down'], { env, stdio: 'ignore' }),
  };
}

/** Writes the config of a store whose catalog is the PostgreSQL database `url`; `host` names the backup host. */
export function writePgConfig(file: string, options: { store: string; url: string; host?: string }): string {
  writeFileSync(file, `store: ${options.store}\ncatalog:\n  url: ${options.url}\n${options.host === undefined ? '' : `host: ${options.host}\n`}`);
  return file;
}
