/**
 * FUSE benchmark, every figure next to its reference from the same run:
 * - sequential `dd bs=1M` of a whole version through `backy2 mount` (page cache and block cache
 *   cold), against the raw ceiling of fuse-native here (bench/fuse-ceiling.ts: a trivial file
 *   system serving a prebuilt buffer) and a cold `dd` of the raw image from the same file system;
 * - the same with every block of the version in the mount's block cache (read once before): what
 *   the FUSE path costs without fetching blocks from the store;
 * - the same with O_DIRECT, and random 4 KiB O_DIRECT reads at depth 1 and 8;
 * - `cp` of the version file to a loop device (+ sync) against `backy2 restore --force` to it, and
 *   `cp` of the raw image to it (what cp and the device cost without FUSE in between);
 * - the sequential read from an encrypted store and from a compressed and encrypted one.
 * Each figure comes with the CPU seconds per GB of the whole machine and of the server, and the
 * mount daemon's peak RSS. Prints figures; asserts nothing.
 *
 *   npm run bench:fuse
 *   BENCH_DIR=/dev/shm/backy2-bench BENCH_GIB=2 npm run bench:fuse   # store in RAM: CPU and copies only
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants, mkdirSync, promises as fsp, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isMounted } from '../src/fs/mount.js';
import { bench, buildImages, dropCaches, sh } from './images.js';
import { describeCost, measure, medianCost, peakRssMiB, type Cost } from './measure.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
const store = path.join(bench.dir, 'store-fuse');
const mnt = path.join(bench.dir, 'mnt');
const passwordFile = path.join(bench.dir, 'bench.pass');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

/** `dd` of a file to /dev/null. */
function dd(file: string, extra: string[] = []): void {
  const out = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none', ...extra], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`dd failed: ${out.stderr}`);
}

/** The median of RUNS measurements of `work`, each after dropping the page cache. */
async function cold(work: () => unknown, serverPid?: number): Promise<Cost> {
  const costs: Cost[] = [];
  for (let i = 0; i < RUNS; i++) {
    dropCaches();
    costs.push(await measure(work, serverPid));
  }
  if (process.env.BENCH_VERBOSE) console.log(`  runs: ${costs.map((c) => `${c.seconds.toFixed(2)} s`).join(', ')}`);
  return medianCost(costs);
}

/** Random 4 KiB O_DIRECT reads for `seconds` with `depth` in flight: reads per second. */
async function randomIops(file: string, size: number, depth: number, seconds = 5): Promise<number> {
  const handle = await fsp.open(file, constants.O_RDONLY | constants.O_DIRECT);
  const buffers = Array.from({ length: depth }, () => Buffer.from(new WebAssembly.Memory({ initial: 1, maximum: 1 }).buffer, 0, 4096));
  const pages = Math.floor(size / 4096);
  const until = Date.now() + seconds * 1000;
  let reads = 0;
  await Promise.all(
    buffers.map(async (buf) => {
      while (Date.now() < until) {
        await handle.read(buf, 0, 4096, Math.floor(Math.random() * pages) * 4096);
        reads++;
      }
    }),
  );
  await handle.close();
  return reads / seconds;
}

const fsType = (dir: string) => sh('stat', ['-f', '-c', '%T', dir]).trim();
const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(0)}%`;
const rate = (c: Cost) => bench.size / c.seconds / 1e6;

async function main(): Promise<void> {
  buildImages();
  mkdirSync(mnt, { recursive: true });
  if (isMounted(mnt)) sh('fusermount', ['-uz', mnt]);
  console.log(`# FUSE: ${bench.gib} GiB version in ${bench.dir} (${fsType(bench.dir)}), dd bs=1M, page cache and block cache cold, median of ${RUNS}; node ${process.version}`);

  const raw = await cold(() => dd(bench.baseImage));
  console.log(`raw image, cold dd                 ${describeCost(bench.size, raw)}`);

  const ceiling = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench/fuse-ceiling.ts'), mnt, String(bench.size)], { stdio: ['ignore', 'pipe', 'inherit'] });
  // "ready" comes once it is mounted and its read-ahead set.
  await new Promise((resolve) => ceiling.stdout?.once('data', resolve));
  await waitFor(() => isMounted(mnt), 'the ceiling mount');
  const ceilingFile = path.join(mnt, 'disk.img');
  const ceilingSeq = await cold(() => dd(ceilingFile), ceiling.pid);
  const ceilingDirect = await cold(() => dd(ceilingFile, ['iflag=direct']), ceiling.pid);
  const ceilingIops = await randomIops(ceilingFile, bench.size, 8);
  await stop(ceiling, 'SIGTERM');
  await waitFor(() => !isMounted(mnt), 'the ceiling unmount');
  console.log(`fuse-native ceiling, sequential    ${describeCost(bench.size, ceilingSeq)}`);
  console.log(`fuse-native ceiling, O_DIRECT      ${describeCost(bench.size, ceilingDirect)}; random 4 KiB depth 8: ${ceilingIops.toFixed(0)} IOPS`);

  writeFileSync(passwordFile, 'bench passphrase\n', { mode: 0o600 });
  const makeStore = (flags: string[]) => {
    rmSync(store, { recursive: true, force: true });
    sh(backy2, ['--password-file', passwordFile, 'init', store, ...flags]);
    sh(backy2, ['--store', store, '--password-file', passwordFile, 'backup', bench.baseImage, 'vm1']);
  };
  const withMount = async (work: (pid: number) => Promise<string>, global: string[] = []): Promise<void> => {
    const daemon = spawn(backy2, [...global, '--store', store, '--password-file', passwordFile, 'mount', mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
    // Its "mounted" line comes once the mount is ready, read-ahead included.
    let log = '';
    daemon.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      process.stderr.write(chunk);
    });
    await waitFor(() => isMounted(mnt) && log.includes('mounted'), 'backy2 mount');
    const pid = daemon.pid ?? 0;
    const figures = await work(pid);
    console.log(`${figures}; mount daemon peak RSS ${peakRssMiB(pid).toFixed(0)} MiB`);
    await stop(daemon, 'SIGINT');
    await waitFor(() => !isMounted(mnt), 'backy2 unmount');
  };
  const file = path.join(mnt, 'vm1', 'latest.img');
  makeStore([]);
  let plaintext = 0;
  await withMount(async (pid) => {
    const seq = await cold(() => dd(file), pid);
    plaintext = rate(seq);
    const again = await measure(() => dd(file), pid);
    return `backy2 mount, sequential          ${describeCost(bench.size, seq)}: ${pct(rate(seq), rate(ceilingSeq))} of the ceiling, ${pct(rate(seq), rate(raw))} of the raw image; re-read from the page cache ${rate(again).toFixed(0)} MB/s`;
  });
  // A block cache larger than the version: once read, no block is fetched from the store again.
  const bigCache = path.join(bench.dir, 'fuse-bench-cache.yaml');
  writeFileSync(bigCache, `mount:\n  cacheSize: ${bench.size + (256 << 20)}\n`);
  await withMount(async (pid) => {
    dd(file);
    const cached = await cold(() => dd(file), pid);
    return `backy2 mount, all blocks cached    ${describeCost(bench.size, cached)}: ${pct(rate(cached), rate(ceilingSeq))} of the ceiling (no fetching from the store)`;
  }, ['--config', bigCache]);
  rmSync(bigCache, { force: true });
  await withMount(async (pid) => {
    const direct = await cold(() => dd(file, ['iflag=direct']), pid);
    return `backy2 mount, O_DIRECT            ${describeCost(bench.size, direct)}: ${pct(rate(direct), rate(ceilingDirect))} of the ceiling`;
  });
  await withMount(async () => {
    dropCaches();
    const one = await randomIops(file, bench.size, 1);
    const eight = await randomIops(file, bench.size, 8);
    return `backy2 mount, random 4 KiB O_DIRECT: ${one.toFixed(0)} IOPS at depth 1, ${eight.toFixed(0)} at depth 8 (ceiling ${ceilingIops.toFixed(0)} at depth 8)`;
  });
  await loopDevice(file, withMount);

  for (const [name, flags] of [
    ['aes-256-gcm', ['--encryption', 'aes-256-gcm']],
    ['zstd + aes-256-gcm', ['--compression', 'zstd', '--encryption', 'aes-256-gcm']],
  ] as const) {
    makeStore([...flags]);
    await withMount(async (pid) => {
      const seq = await cold(() => dd(file), pid);
      return `backy2 mount, ${name.padEnd(19)} ${describeCost(bench.size, seq)}: ${pct(rate(seq), plaintext)} of plaintext`;
    });
  }
  rmSync(store, { recursive: true, force: true });
}

/**
 * `cp` of the version file to a loop device (what a user's restore through the mount is) against
 * `backy2 restore --force` to the same device, both cold and both until the data is on the device.
 */
async function loopDevice(file: string, withMount: (work: (pid: number) => Promise<string>) => Promise<void>): Promise<void> {
  const backing = path.join(bench.dir, 'loop-target.img');
  sh('truncate', ['-s', String(bench.size), backing]);
  const device = sh('losetup', ['-f', '--show', backing]).trim();
  try {
    // The first buffered write through a new loop device is several times slower than the next
    // ones (here 3.1 against 0.55 s for 2 GiB of zeros), and the first run is a cp: written once first.
    sh('dd', ['if=/dev/zero', `of=${device}`, 'bs=4M', `count=${Math.ceil(bench.size / (4 << 20))}`, 'status=none']);
    sh('sync', []);
    // The floor of any file system's cp to the device: cp of the raw image, read from where the
    // store is, through the same buffered writes and sync.
    const raw = await cold(() => {
      sh('cp', [bench.baseImage, device]);
      sh('sync', []);
    });
    await withMount(async (pid) => {
      const cp = await cold(() => {
        sh('cp', [file, device]);
        sh('sync', []);
      }, pid);
      const restore = await cold(() => sh(backy2, ['--store', store, '--password-file', passwordFile, 'restore', 'vm1', device, '--force']));
      return (
        `cp latest.img to ${device} + sync      ${describeCost(bench.size, cp)}; backy2 restore --force to it ${describeCost(bench.size, restore)}: cp takes ${(cp.seconds / restore.seconds).toFixed(2)}x the restore's time\n` +
        `  reference: cp of the raw image to it + sync ${describeCost(bench.size, raw)}: ${(raw.seconds / restore.seconds).toFixed(2)}x the restore's time, cp through the mount ${(cp.seconds / raw.seconds).toFixed(2)}x that`
      );
    });
  } finally {
    sh('losetup', ['-d', device]);
    rmSync(backing, { force: true });
  }
}

await main();
