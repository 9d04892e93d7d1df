/**
 * Many versions of one image: a 1 TiB sparse image (SCALE_TIB) with about 1,000 scattered 4 MiB
 * blocks of data, backed up once, then versions piled up to 100, 1,000 and SCALE_MAX. At each
 * count it prints: a no-change hinted incremental (`backup -r hints.json -f <base>`, the median of
 * 3), `backy2 ls`, `ls -la` of the image directory through `backy2 mount`, and `backy2 scrub --all
 * -p 10` (time, overhead per version, distinct blocks read, coverage); at the end `backy2 rm` of
 * all but the newest 100 versions in one command. On SQLite, and on PostgreSQL too when
 * scripts/pg-dev finds a server to start (SCALE_PG=0 skips it; SCALE_SQLITE=0 skips SQLite). Prints
 * figures; asserts nothing.
 *
 * The versions between the counts are made the way a no-change backup makes them, without
 * reading the source: each is published with its base's map (create, manifest, commit), which
 * is what a hinted backup that finds no change stores. The hinted incrementals at each count are
 * real backups of the image.
 *
 *   npm run bench:scale                      SQLite and PostgreSQL up to SCALE_MAX versions
 *   SCALE_MAX=10000 npm run bench:scale      (default 1000; 10,000 take about 10 minutes for both
 *                                            catalogs here: piling up a version costs 5-12 ms)
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildVersion } from '../src/engine/objects/publish.js';
import { initStore } from '../src/engine/operations/init-store.js';
import { backup } from '../src/engine/operations/backup.js';
import { openStore, type Store } from '../src/engine/store.js';
import { loadConfig } from '../src/engine/support/config.js';
import { lockNewVersion } from '../src/engine/catalog/locking.js';
import { isMounted } from '../src/fs/mount.js';
import { bench, makeSparseImage } from './images.js';
import { startPostgres, writePgConfig } from './postgres.js';

const MiB = 1024 ** 2;
const TiB = 1024 ** 4;
const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
const imageSize = Number(process.env.SCALE_TIB ?? 1) * TiB;
const maxVersions = Number(process.env.SCALE_MAX ?? 1000);
const counts = [100, 1000, 10_000, 100_000].filter((n) => n < maxVersions).concat(maxVersions);
const dir = path.join(bench.dir, 'scale');
const image = path.join(dir, 'disk.img');
const hints = path.join(dir, 'hints.json');

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

function cli(env: NodeJS.ProcessEnv, args: string[]): { seconds: number; stdout: string } {
  const t = performance.now();
  const r = spawnSync(backy2, args, { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 * MiB });
  if (r.status !== 0 && r.status !== 3) throw new Error(`backy2 ${args[0] ?? ''} failed (${r.status}): ${r.stderr}`);
  return { seconds: seconds(t), stdout: r.stdout };
}

/** `ls -la` of the image directory through a fresh mount (first listing, nothing cached). */
async function mountListing(env: NodeJS.ProcessEnv): Promise<{ seconds: number; files: number; again: number }> {
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const child: ChildProcess = spawn(backy2, ['mount', mnt], { env: { ...process.env, ...env }, stdio: 'ignore' });
  try {
    for (let i = 0; !isMounted(mnt); i++) {
      if (i > 600) throw new Error('the mount did not come up');
      await new Promise((r) => setTimeout(r, 50));
    }
    let t = performance.now();
    const out = execFileSync('ls', ['-la', path.join(mnt, 'vm1')], { encoding: 'utf8', maxBuffer: 256 * MiB });
    const first = seconds(t);
    t = performance.now();
    execFileSync('ls', ['-la', path.join(mnt, 'vm1')], { encoding: 'utf8', maxBuffer: 256 * MiB });
    return { seconds: first, files: out.split('\n').length - 4, again: seconds(t) };
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

/** Versions like a no-change backup's: the base's map published as a new version. */
async function pileUp(store: Store, base: string, n: number): Promise<string> {
  const record = await store.catalog.getVersion(base);
  if (!record) throw new Error(`no version ${base}`);
  const segments = await store.catalog.versionSegments(base);
  let uid = base;
  for (let i = 0; i < n; i++) {
    const { uid: next, locks } = await lockNewVersion(store.catalog, Date.now(), [], { operation: 'bench' });
    const draft = { uid: next, image: 'vm1', createdAt: Date.now(), size: record.size, blockSize: record.blockSize, snapshot: null, snapshotId: null, baseUid: uid, source: image, kind: 'backup' as const, expiresAt: null };
    if (!record.stats) throw new Error(`version ${base} has no figures`);
    const stats = { ...record.stats, bytesRead: 0, bytesWritten: 0, bytesStored: 0, durationSeconds: 0 };
    await buildVersion(store, draft, async () => ({ segments, stats, tags: [] }));
    await locks.release();
    uid = draft.uid;
  }
  return uid;
}

async function run(label: string, env: NodeJS.ProcessEnv): Promise<void> {
  console.log(`\n== ${label}: ${imageSize / TiB} TiB sparse image, about 1,000 blocks of data ==`);
  console.log('versions | hinted incr s | ls s | mount ls -la s (again) | scrub -p 10 s | per version ms | blocks read | coverage | build s');
  const config = await loadConfig({ env });
  await initStore(config);
  let store = await openStore(config);
  let t = performance.now();
  let newest = (await backup(store, { source: image, image: 'vm1' })).uid;
  console.log(`(first full backup ${seconds(t).toFixed(1)} s)`);
  let have = 1;
  try {
    for (const count of counts) {
      t = performance.now();
      newest = await pileUp(store, newest, count - 3 - have);
      const built = seconds(t);
      const incr: number[] = [];
      for (let i = 0; i < 3; i++) {
        t = performance.now();
        newest = (await backup(store, { source: image, image: 'vm1', hintsFile: hints, baseUid: newest })).uid;
        incr.push(seconds(t));
      }
      have = count;
      await store.close();
      const ls = cli(env, ['ls', 'vm1']);
      const mount = await mountListing(env);
      const scrub = cli(env, ['scrub', '--all', '-p', '10', '--json']);
      const figures = JSON.parse(scrub.stdout) as { blocksChecked: number; blocksInScope?: number };
      const coverage = figures.blocksInScope === undefined ? '-' : `${figures.blocksChecked} of ${figures.blocksInScope}`;
      const median = incr.sort((a, b) => a - b)[1] ?? 0;
      console.log(
        `${count} | ${median.toFixed(2)} | ${ls.seconds.toFixed(2)} | ${mount.seconds.toFixed(2)} (${mount.again.toFixed(2)}), ${mount.files} files | ` +
          `${scrub.seconds.toFixed(1)} | ${((scrub.seconds * 1000) / count).toFixed(2)} | ${figures.blocksChecked} | ${coverage} | ${built.toFixed(0)}`,
      );
      store = await openStore(config);
    }
    const uids = (await store.catalog.listVersions({ image: 'vm1' })).map((v) => v.uid).slice(0, -100);
    await store.close();
    const rm = cli(env, ['rm', '--force', ...uids]);
    console.log(`rm of ${uids.length} versions in one command: ${rm.seconds.toFixed(2)} s`);
  } finally {
    await store.close().catch(() => undefined);
  }
}

makeSparseImage(image, imageSize, hints);
const sqliteStore = path.join(dir, 'store-sqlite');
rmSync(sqliteStore, { recursive: true, force: true });
if (process.env.SCALE_SQLITE !== '0') await run('SQLite', { BACKY2_STORE: sqliteStore, BACKY2_CONFIG: '' });

if (process.env.SCALE_PG !== '0') {
  const server = startPostgres(path.join(dir, 'pg'), process.env.SCALE_PG_PORT ?? '5439');
  if (server) {
    try {
      const storeDir = path.join(dir, 'store-pg');
      rmSync(storeDir, { recursive: true, force: true });
      mkdirSync(storeDir, { recursive: true });
      const configFile = writePgConfig(path.join(dir, 'pg.yaml'), { store: storeDir, url: server.url() });
      await run('PostgreSQL', { BACKY2_CONFIG: configFile, BACKY2_STORE: '' });
    } finally {
      server.down();
    }
  }
}
rmSync(dir, { recursive: true, force: true });
