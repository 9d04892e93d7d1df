/**
 * A real PostgreSQL for tests: scripts/pg-dev in a temp directory on a free port of 127.0.0.1,
 * one database per catalog, stopped and deleted at the end.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import pg from 'pg';

const script = path.resolve(import.meta.dirname, '../../scripts/pg-dev');

/** A running test server. */
export interface TestPostgres {
  readonly dir: string;
  readonly port: number;
  /** The URL of `database` as the trusted superuser backy2. */
  url(database?: string): string;
  /** The URL of `database` as backy2_pw, who needs {@link password}. */
  passwordUrl(database?: string): string;
  readonly password: string;
  /** A new, empty database; returns its URL. */
  createDatabase(): Promise<string>;
  /** Runs SQL as the superuser in `database` (default backy2). */
  sql(text: string, database?: string): Promise<Record<string, unknown>[]>;
  /** Stops the server (`immediate` is a crash), keeping its data. */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  /** Stops it and deletes everything. */
  down(): void;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = await new Promise<Server>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

let databases = 0;

/** Starts a PostgreSQL of its own (about 2 s). */
export async function startPostgres(): Promise<TestPostgres> {
  const port = await freePort();
  const dir = `/tmp/backy2-pg-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const env = { ...process.env, PG_DIR: dir, PG_PORT: String(port), PG_PASSWORD: password };
  const run = (...args: string[]) => execFileSync(script, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  run('up');
  const url = (database = 'backy2') => `postgresql://backy2@127.0.0.1:${port}/${database}`;
  const sql = async (text: string, database = 'backy2') => {
    const client = new pg.Client({ connectionString: url(database) });
    await client.connect();
    try {
      return (await client.query(text)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  };
  return {
    dir,
    port,
    url,
    passwordUrl: (database = 'backy2') => `postgresql://backy2_pw@127.0.0.1:${port}/${database}`,
    password,
    createDatabase: async () => {
      const name = `t${process.pid}_${++databases}`;
      await sql(`CREATE DATABASE ${name} OWNER backy2`, 'postgres');
      await sql(`GRANT ALL ON DATABASE ${name} TO backy2_pw`, 'postgres');
      return url(name);
    },
    sql,
    stop: (mode = 'fast') => void run('stop', mode),
    start: () => void run('start'),
    down: () => void run('down'),
  };
}
