/**
 * Many backup hosts on one PostgreSQL catalog, against one host on SQLite. Prints:
 *
 * 1. Four `backy2 backup` processes at once, each of an image of its own of HOSTS_GIB GiB (made
 *    like bench/images.ts makes its image; the four share about half of their data blocks, like
 *    machines cloned from one template), into one file block store: with a SQLite catalog (one
 *    host), then with a PostgreSQL catalog where each process is a host of its own (`host:` in its
 *    config file). Wall time until the last one ends, aggregate MB/s (the four images' bytes / wall
 *    time), MB the four wrote (a block two hosts write at once is written twice) and MB the
 *    blocks take in the store, and PostgreSQL's throughput as a % of SQLite's. The median of
 *    HOSTS_RUNS runs, each into a fresh store and catalog; before each, the page cache is dropped
 *    (as root) and the images are read once, so every run reads its sources warm.
 * 2. Catalog round trips (statements sent to PostgreSQL) per block read: of a full backup of one
 *    image, and of a hinted incremental of a copy with 2% of its blocks changed. The CLI does not
 *    report them, so these two backups run in this process (the engine's backup(), as the CLI
 *    calls it) and read PgCatalog.roundTrips; below each, its most frequent statements.
 * 3. A no-change hinted incremental (`backup -r hints.json -f <base>`, the hints naming one block,
 *    which did not change) of a HOSTS_SPARSE_TIB TiB sparse image with about 1,000 blocks of data,
 *    on PostgreSQL, after a full backup of it: the median of 3 wall times of the command (the
 *    goal is under 2 s), and its round trips (one more, in this process).
 *
 * `ls` of 10,000 versions is bench:scale's (SCALE_MAX=10000). PostgreSQL is a throw-away server of
 * scripts/pg-dev on port HOSTS_PG_PORT in BENCH_DIR/hosts/pg; everything goes at the end. Prints
 * figures; asserts nothing.
 *
 *   npm run bench:hosts                                      4 × 1 GiB, 4 TiB sparse, 3 runs
 *   HOSTS_GIB=0.25 HOSTS_SPARSE_TIB=1 npm run bench:hosts    a quick look (1.5 minutes on 2 cores)
 *
 * Knobs: HOSTS_GIB (1), HOSTS_SPARSE_TIB (4), HOSTS_RUNS (3), HOSTS_PG_PORT (5441), BENCH_DIR,
 * HOSTS_DROP_CACHES=0 (keep the page cache, e.g. while something else runs on the machine).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PgCatalog } from '../src/engine/catalog/pg-catalog.js';
import { backup, type BackupOptions, type BackupResult } from '../src/engine/operations/backup.js';
import { openStore, type Store } from '../src/engine/store.js';
import { loadConfig } from '../src/engine/support/config.js';
import { GiB, MiB, bench, dropCaches, makeChangedImage, makeDiskImage, makeSparseImage, sh, warm } from './images.js';
import { startPostgres, writePgConfig, type BenchPostgres } from './postgres.js';
import { median } from './measure.js';

const BLOCK = 4 * MiB;
const TiB = 1024 * GiB;
const HOSTS = 4;
const size = Math.round(Number(process.env.HOSTS_GIB ?? 1) * 1024) * MiB;
const sparseSize = Number(process.env.HOSTS_SPARSE_TIB ?? 4) * TiB;
const runs = Number(process.env.HOSTS_RUNS ?? 3);
const backy2 = path.resolve(import.meta.dirname, '../bin/backy2');
const dir = path.join(bench.dir, 'hosts');
/** The page cache is dropped before each round as root, unless HOSTS_DROP_CACHES=0 (a machine others measure on too). */
const dropping = process.getuid?.() === 0 && process.env.HOSTS_DROP_CACHES !== '0';

/**
 * The environment of backy2 for a store named by BACKY2_STORE (SQLite) or by a config file
 * (PostgreSQL), without the caller's: an empty BACKY2_STORE would name the current directory.
 */
function storeEnv(vars: { BACKY2_STORE: string } | { BACKY2_CONFIG: string }): NodeJS.ProcessEnv {
  const { BACKY2_STORE: _store, BACKY2_CONFIG: _config, ...env } = process.env;
  return { ...env, ...vars };
}
const sqliteEnv = (store: string) => storeEnv({ BACKY2_STORE: store });
const configEnv = (file: string) => storeEnv({ BACKY2_CONFIG: file });

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

/**
 * The hosts' images: copies of one disk image (bench/images.ts), each with the second half of its
 * ext4 part and of its random part overwritten with random data of its own.
 */
function makeHostImages(): string[] {
  const base = path.join(dir, 'base.img');
  const layout = makeDiskImage(base, size, dir);
  const halves = [
    [0, layout.fsEnd],
    [layout.randomStart, layout.randomEnd],
  ] as const;
  const images = Array.from({ length: HOSTS }, (_, i) => {
    const file = path.join(dir, `vm${i + 1}.img`);
    sh('cp', ['--sparse=always', base, file]);
    const fd = openSync(file, 'r+');
    for (const [start, end] of halves) {
      for (let at = Math.ceil((start + end) / 2 / BLOCK) * BLOCK; at < end; at += BLOCK) writeSync(fd, randomBytes(BLOCK), 0, Math.min(BLOCK, end - at), at);
    }
    closeSync(fd);
    return file;
  });
  rmSync(base);
  return images;
}

/** Runs backy2 in environment `env` (all of it) and resolves with its stdout; rejects when it fails. */
function backy2Async(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(backy2, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`backy2 ${args.join(' ')} failed (${code}): ${stderr}`))));
  });
}

interface Round {
  seconds: number;
  /** Bytes the four backups wrote to the store (new blocks). */
  written: number;
  /** Bytes the block objects take on disk afterwards (a block two hosts wrote at once is there once). */
  stored: number;
}

/** The four backups at once into `store`; `envOf(n)` is the environment of host n (1-based). */
async function fourAtOnce(images: readonly string[], store: string, envOf: (n: number) => NodeJS.ProcessEnv): Promise<Round> {
  // The previous round's writes go to disk first, so that they do not slow this one down.
  if (dropping) dropCaches();
  else sh('sync', []);
  for (const file of images) warm(file);
  const t = performance.now();
  const outputs = await Promise.all(images.map((file, i) => backy2Async(envOf(i + 1), ['backup', file, `vm${i + 1}`, '--json'])));
  const wall = seconds(t);
  const results = outputs.map((out) => JSON.parse(out) as BackupResult);
  const stored = Number(sh('du', ['-s', '--block-size=1', path.join(store, 'blocks')]).split('\t')[0]);
  return { seconds: wall, written: results.reduce((n, r) => n + r.bytesWritten, 0), stored };
}

/** Prints the median round of one catalog and returns its wall time. */
function report(label: string, rounds: readonly Round[]): number {
  const wall = median(rounds.map((r) => r.seconds));
  const mid = rounds.find((r) => r.seconds === wall)!;
  const all = rounds.map((r) => r.seconds.toFixed(2)).join(' ');
  console.log(`${label.padEnd(11)} | ${wall.toFixed(2).padStart(6)} | ${((HOSTS * size) / wall / 1e6).toFixed(0).padStart(9)} | ${(mid.written / 1e6).toFixed(0).padStart(10)} | ${(mid.stored / 1e6).toFixed(0).padStart(11)} | ${all}`);
  return wall;
}

async function sqliteRounds(images: readonly string[]): Promise<Round[]> {
  const rounds: Round[] = [];
  for (let i = 0; i < runs; i++) {
    const store = path.join(dir, 'store-sqlite');
    rmSync(store, { recursive: true, force: true });
    await backy2Async(sqliteEnv(store), ['init', store]);
    rounds.push(await fourAtOnce(images, store, () => sqliteEnv(store)));
  }
  rmSync(path.join(dir, 'store-sqlite'), { recursive: true, force: true });
  return rounds;
}

/** A fresh store whose catalog is a new database `name`: its directory, and the config file of host n. */
async function pgStore(server: BenchPostgres, name: string): Promise<{ store: string; configOf: (n: number) => string }> {
  const store = path.join(dir, `store-${name}`);
  rmSync(store, { recursive: true, force: true });
  mkdirSync(store, { recursive: true });
  const url = await server.createDatabase(name);
  const configOf = (n: number) => writePgConfig(path.join(dir, `${name}-host-${n}.yaml`), { store, url, host: `host-${n}` });
  await backy2Async(configEnv(configOf(1)), ['init']);
  return { store, configOf };
}

async function pgRounds(server: BenchPostgres, images: readonly string[]): Promise<Round[]> {
  const rounds: Round[] = [];
  for (let i = 0; i < runs; i++) {
    const { store, configOf } = await pgStore(server, `run${i + 1}`);
    rounds.push(await fourAtOnce(images, store, (n) => configEnv(configOf(n))));
    rmSync(store, { recursive: true, force: true });
  }
  return rounds;
}

/** Statements this process sent to PostgreSQL, by their first words (what the round trips are). */
const statements = new Map<string, number>();
const clientQuery = pg.Client.prototype.query;
(pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
  const sql = typeof args[0] === 'string' ? args[0] : ((args[0] as { text?: string } | undefined)?.text ?? '?');
  const label = sql.replace(/\s+/g, ' ').trim().slice(0, 90);
  statements.set(label, (statements.get(label) ?? 0) + 1);
  return (clientQuery as (...a: unknown[]) => unknown).apply(this, args);
};

/** One backup in this process, with the catalog round trips it took. */
async function counted(store: Store, options: BackupOptions): Promise<{ result: BackupResult; trips: number; seconds: number }> {
  const catalog = store.catalog;
  if (!(catalog instanceof PgCatalog)) throw new Error('not a PostgreSQL catalog');
  const before = catalog.roundTrips;
  statements.clear();
  const t = performance.now();
  const result = await backup(store, options);
  return { result, trips: catalog.roundTrips - before, seconds: seconds(t) };
}

function printTrips(label: string, m: { result: BackupResult; trips: number; seconds: number }): void {
  const { blocksRead, blocksWritten } = m.result;
  const perBlock = blocksRead > 0 ? (m.trips / blocksRead).toFixed(2) : '-';
  console.log(`${label}: ${m.trips} round trips, ${blocksRead} blocks read (${blocksWritten} written): ${perBlock} per block read (${m.seconds.toFixed(2)} s)`);
  const top = [...statements].sort((a, b) => b[1] - a[1]).slice(0, 8);
  for (const [sql, n] of top) console.log(`  ${String(n).padStart(6)}  ${sql}`);
}

/** Item 2: round trips of a full and a 2%-changed hinted backup of host 1's image. */
async function roundTrips(server: BenchPostgres, image: string): Promise<void> {
  console.log('\n== catalog round trips on PostgreSQL (one backup in this process; below: the most frequent statements)');
  const { configOf } = await pgStore(server, 'trips');
  const store = await openStore(await loadConfig({ env: configEnv(configOf(1)) }));
  try {
    const full = await counted(store, { source: image, image: 'vm1' });
    printTrips('full backup', full);
    const changed = path.join(dir, 'changed.img');
    const hints = path.join(dir, 'changed-hints.json');
    makeChangedImage(image, changed, hints);
    printTrips('hinted incremental, 2% changed', await counted(store, { source: changed, image: 'vm1', hintsFile: hints, baseUid: full.result.uid }));
  } finally {
    await store.close();
  }
}

/** Item 3: a no-change hinted incremental of a huge sparse image. */
async function hugeSparse(server: BenchPostgres): Promise<void> {
  console.log(`\n== no-change hinted incremental of a ${sparseSize / TiB} TiB sparse image (about 1,000 blocks of data) on PostgreSQL`);
  const image = path.join(dir, 'sparse.img');
  const hints = path.join(dir, 'sparse-hints.json');
  makeSparseImage(image, sparseSize, hints);
  const env = configEnv((await pgStore(server, 'sparse')).configOf(1));
  let t = performance.now();
  const base = (JSON.parse(await backy2Async(env, ['backup', image, 'huge', '--json'])) as BackupResult).uid;
  console.log(`first full backup ${seconds(t).toFixed(2)} s`);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    t = performance.now();
    await backy2Async(env, ['backup', image, 'huge', '-r', hints, '-f', base, '--json']);
    times.push(seconds(t));
  }
  console.log(`backy2 backup -r hints -f <base>: median ${median(times).toFixed(2)} s of ${times.map((s) => s.toFixed(2)).join(' ')} (goal < 2 s)`);
  const store = await openStore(await loadConfig({ env }));
  try {
    printTrips('the same in this process', await counted(store, { source: image, image: 'huge', hintsFile: hints, baseUid: base }));
  } finally {
    await store.close();
  }
}

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const images = makeHostImages();
const data = images.reduce((n, f) => n + statSync(f).blocks * 512, 0) / HOSTS;
console.log(`# ${HOSTS} images of ${size / GiB} GiB, ${(data / MiB).toFixed(0)} MiB of data each, about half of it the same in all; ${cpus().length} CPUs, node ${process.version}${dropping ? '' : '; page cache not dropped'}`);
console.log(`\n== ${HOSTS} backups at once into one file block store, median of ${runs}`);
console.log('catalog     | wall s | agg. MB/s | MB written | MB in store | runs s');
const sqlite = report('SQLite', await sqliteRounds(images));
const server = startPostgres(path.join(dir, 'pg'), process.env.HOSTS_PG_PORT ?? '5441');
if (server) {
  try {
    const postgres = report('PostgreSQL', await pgRounds(server, images));
    console.log(`PostgreSQL (${HOSTS} hosts) throughput: ${((100 * sqlite) / postgres).toFixed(0)}% of SQLite's (one host)`);
    await roundTrips(server, images[0]!);
    await hugeSparse(server);
  } finally {
    server.down();
  }
}
rmSync(dir, { recursive: true, force: true });
