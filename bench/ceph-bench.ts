/**
 * Ceph benchmark: backups of an RBD image into S3 (radosgw) on a one-node test cluster started
 * here by scripts/ceph-dev: full and incremental (2% of the blocks changed; three in a row, the
 * median) backup MB/s, S3 requests per stored block, bytes stored, and restore MB/s into a new RBD image — into a
 * plaintext store, a compressed one and a compressed, encrypted one (each its own bucket).
 * Prints figures; asserts nothing.
 *
 *   npm run bench:ceph
 *   BENCH_MODES=plain,zstd npm run bench:ceph
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { backup } from '../src/engine/operations/backup.js';
import type { BlockStore } from '../src/engine/blockstore/block-store.js';
import { defaultConfig } from '../src/engine/support/config.js';
import { restore } from '../src/engine/operations/restore.js';
import { Semaphore } from '../src/engine/pipeline/semaphore.js';
import { initStore } from '../src/engine/operations/init-store.js';
import { openStore } from '../src/engine/store.js';
import { DIFF_END, encodeDiffRecord, encodeDiffStart } from '../src/engine/endpoints/rbd-diff-format.js';
import { bench, buildImages, sh } from './images.js';
import { median } from './measure.js';

const cephDir = path.join(bench.dir, 'ceph');
const script = path.resolve(import.meta.dirname, '../scripts/ceph-dev');
const env = { ...process.env, CEPH_DIR: cephDir, WITH_MGR: '0', MON_V2_PORT: '23300', MON_V1_PORT: '26789', RGW_PORT: '27480', MEMSTORE_BYTES: String(16 * 1024 ** 3) };

/** Counts block-store operations: the S3 store sends one request per operation (plus retries). */
function counting(store: BlockStore, counts: Record<string, number>): BlockStore {
  const count = (op: string) => (counts[op] = (counts[op] ?? 0) + 1);
  return {
    properties: store.properties,
    put: (k, b, o) => (count('put'), store.put(k, b, o)),
    get: (k, o) => (count('get'), store.get(k, o)),
    stat: (k) => (count('stat'), store.stat(k)),
    list: (p) => (count('list'), store.list(p)),
    delete: (k) => (count('delete'), store.delete(k)),
    probe: () => store.probe(),
    close: () => store.close(),
  };
}

/** The snapshots backed up incrementally, each after the one before (s1 is the full backup's). */
const INCREMENTALS = ['s2', 's3', 's4'];

async function main(): Promise<void> {
  buildImages();
  execFileSync(script, ['down'], { env: { ...env, GRACE: '0' } });
  const out = execFileSync(script, ['up'], { env, encoding: 'utf8' });
  const conf = /CEPH_CONF=(\S+)/.exec(out)?.[1] ?? '';
  const endpoint = /BACKY2_S3_ENDPOINT=(\S+)/.exec(out)?.[1] ?? '';
  const rbd = (...args: string[]) => sh('rbd', ['--conf', conf, ...args]);
  try {
    rbd('import', '--no-progress', bench.baseImage, 'rbd/bench');
    rbd('snap', 'create', 'rbd/bench@s1');
    // The hinted ranges (2% of the blocks) written as an import-diff stream, then snapshotted:
    // first the changed image's data, then twice more fresh random data in the same ranges
    // (three incrementals per store, each storing as many new blocks, for a median).
    const hints = JSON.parse(readFileSync(bench.hintsFile, 'utf8')) as { offset: number; length: number }[];
    const changed = openSync(bench.changedImage, 'r');
    const fromChanged = (h: { offset: number; length: number }) => {
      const data = Buffer.alloc(h.length);
      readSync(changed, data, 0, h.length, h.offset);
      return data;
    };
    for (const snap of INCREMENTALS) {
      const parts = [encodeDiffStart(bench.size)];
      for (const h of hints) parts.push(encodeDiffRecord('w', h.offset, h.length), snap === INCREMENTALS[0] ? fromChanged(h) : randomBytes(h.length));
      parts.push(DIFF_END);
      execFileSync('rbd', ['--conf', conf, 'import-diff', '--no-progress', '-', 'rbd/bench'], { input: Buffer.concat(parts) });
      rbd('snap', 'create', `rbd/bench@${snap}`);
    }
    closeSync(changed);
    warmUp(rbd);

    console.log(`# RBD (${bench.gib} GiB image, ${(statSync(bench.baseImage).blocks * 512 / 1e9).toFixed(1)} GB allocated) into S3 on radosgw, memstore OSD, one node; node ${process.version}`);
    const modes = (process.env.BENCH_MODES ?? 'plain,zstd,zstd+aes').split(',');
    for (const mode of modes) {
      const storeDir = path.join(bench.dir, `store-ceph-${mode}`);
      rmSync(storeDir, { recursive: true, force: true });
      const config = {
        ...defaultConfig(storeDir),
        ceph: { conf, timeoutMs: 120_000 },
        store: {
          ...defaultConfig(storeDir).store,
          blockStore: { type: 's3' as const, endpoint, bucket: `bench-${mode.replace('+', '-')}`, accessKeyId: /AWS_ACCESS_KEY_ID=(\S+)/.exec(out)?.[1], secretAccessKey: /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(out)?.[1] },
        },
      };
      const counts: Record<string, number> = {};
      const passphrase = 'bench passphrase';
      // Every mode names its compression: a store on S3 is compressed unless told otherwise.
      await initStore(config, {
        compression: mode.includes('zstd') ? ('zstd' as const) : ('none' as const),
        ...(mode.includes('aes') ? { encryption: 'aes-256-gcm' as const, passphrase } : {}),
      });
      const store = await openStore(config, { wrapBlockStore: (s) => counting(s, counts), keys: () => Promise.resolve({ kind: 'passphrase' as const, passphrase }) });
      const restored = `rbd/restored-${mode.replace('+', '-')}`;
      try {
        console.log(`\n## ${mode} store`);
        let t = Date.now();
        const full = await backup(store, { source: 'rbd:rbd/bench@s1', image: 'bench' });
        let s = (Date.now() - t) / 1000;
        console.log(`full backup          ${s.toFixed(2)} s  ${(bench.size / s / 1e6).toFixed(0)} MB/s of image, ${(full.bytesRead / s / 1e6).toFixed(0)} MB/s of data read; ${full.blocksWritten} blocks stored, ${((full.bytesStored ?? 0) / 1e6).toFixed(0)} MB sent (${((100 * (full.bytesStored ?? 0)) / full.bytesWritten).toFixed(0)}% of the data)`);
        console.log(`S3 requests per stored block (full): ${((Object.values(counts).reduce((a, b) => a + b, 0)) / Math.max(1, full.blocksWritten)).toFixed(2)} (${JSON.stringify(counts)})`);
        for (const k of Object.keys(counts)) delete counts[k];
        const runs: number[] = [];
        let inc = full;
        for (const snap of INCREMENTALS) {
          t = Date.now();
          inc = await backup(store, { source: `rbd:rbd/bench@${snap}`, image: 'bench' });
          runs.push((Date.now() - t) / 1000);
        }
        s = median(runs);
        console.log(`incremental backup   ${s.toFixed(2)} s  ${(bench.size / s / 1e6).toFixed(0)} MB/s of image (median of ${runs.map((r) => r.toFixed(2)).join(', ')} s); each read ${(inc.bytesRead / 1e6).toFixed(0)} MB, stored ${inc.blocksWritten} blocks`);
        console.log(`S3 requests per stored block (incremental): ${((Object.values(counts).reduce((a, b) => a + b, 0)) / Math.max(1, runs.length * inc.blocksWritten)).toFixed(2)}`);
        console.log(`  its floor here: ${await putFloor(store.blocks, inc.blocksWritten, store.config.writers)}`);
        t = Date.now();
        await restore(store, { uid: full.uid, target: `rbd:${restored}` });
        s = (Date.now() - t) / 1000;
        console.log(`restore to RBD       ${s.toFixed(2)} s  ${(bench.size / s / 1e6).toFixed(0)} MB/s of image`);
        const a = execFileSync('sh', ['-c', `rbd --conf ${conf} export --no-progress rbd/bench@s1 - | sha256sum`], { encoding: 'utf8' });
        const b = execFileSync('sh', ['-c', `rbd --conf ${conf} export --no-progress ${restored} - | sha256sum`], { encoding: 'utf8' });
        console.log(`restored image identical: ${a === b}`);
      } finally {
        await emptyStore(store.blocks);
        await store.close();
        // Frees the memstore for the next store (absent when the restore failed).
        try {
          rbd('rm', '--no-progress', restored);
        } catch {
          // nothing to free
        }
      }
    }
  } finally {
    execFileSync(script, ['down'], { env: { ...env, GRACE: '0' } });
  }
}

/**
 * A memstore OSD writes two to four times slower where it takes memory for the first time (a
 * 4 GiB import took 7.9 and 9.0 s into a fresh cluster, 2.4 and 4.2 s once two such images had
 * been removed), so whichever store came first measured that. Two images of the bench image's
 * size are written and removed before anything is measured, and each store's objects are
 * deleted after it (emptyStore): every store then writes into memory the OSD already has.
 */
function warmUp(rbd: (...args: string[]) => string): void {
  const t = Date.now();
  for (const name of ['warm-1', 'warm-2']) rbd('import', '--no-progress', bench.baseImage, `rbd/${name}`);
  for (const name of ['warm-1', 'warm-2']) rbd('rm', '--no-progress', `rbd/${name}`);
  console.log(`# OSD warmed up: two copies of the image written and removed (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

/** Deletes every object of a store's bucket, giving its memory back to the OSD for the next store. */
async function emptyStore(blocks: BlockStore): Promise<void> {
  const keys: string[] = [];
  for await (const o of blocks.list('')) keys.push(o.key);
  const deletes = new Semaphore(8);
  await Promise.all(keys.map((k) => deletes.run(() => blocks.delete(k))));
}

/**
 * The incremental's share that is radosgw's: as many PUTs of 4 MiB of fresh data as it stored,
 * as many at a time as a backup writes, through the same block store (the objects are deleted
 * again). radosgw and the OSD share the two cores with the backup.
 */
async function putFloor(blocks: BlockStore, count: number, parallel: number): Promise<string> {
  const keys = Array.from({ length: count }, (_, i) => `bench-floor/${i}`);
  const body = [randomBytes(4 << 20)];
  const t = Date.now();
  const puts = new Semaphore(parallel);
  await Promise.all(keys.map((k) => puts.run(() => blocks.put(k, body))));
  const s = (Date.now() - t) / 1000;
  await Promise.all(keys.map((k) => blocks.delete(k)));
  return `${count} PUTs of 4 MiB alone, ${parallel} at a time, take ${s.toFixed(2)} s`;
}

await main();
