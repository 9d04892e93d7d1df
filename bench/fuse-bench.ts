/**
 * FUSE benchmark: sequential `dd bs=1M` of a whole version through `backy2 mount` (cold block
 * cache, cold page cache, file block store on the same disk), against the raw ceiling of
 * fuse-native here (bench/fuse-ceiling.ts: a trivial file system serving a prebuilt buffer), in
 * the same run; then random 4 KiB O_DIRECT read IOPS; then the sequential read from an encrypted
 * store and from a compressed and encrypted one. Prints figures; asserts nothing.
 *
 *   npm run bench:fuse
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants, mkdirSync, promises as fsp, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bench, buildImages, dropCaches, sh } from './images.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
const store = path.join(bench.dir, 'store-fuse');
const mnt = path.join(bench.dir, 'mnt');
const passwordFile = path.join(bench.dir, 'bench.pass');

function mounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

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

/** `dd` of a file to /dev/null, in MB/s. */
function ddMBps(file: string, extra: string[] = []): number {
  const out = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', ...extra], { encoding: 'utf8' });
  const r = `${out.stdout}${out.stderr}`;
  const m = /([\d.]+) s, /.exec(r);
  const bytes = /^(\d+) bytes/m.exec(r);
  if (!m || !bytes) throw new Error(`dd failed: ${r}`);
  return Number(bytes[1]) / Number(m[1]) / 1e6;
}

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** Median of `RUNS` measurements, each after dropping the page cache. */
function median(measure: () => number): number {
  const values: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    dropCaches();
    values.push(measure());
  }
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)] ?? 0;
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

async function main(): Promise<void> {
  buildImages();
  mkdirSync(mnt, { recursive: true });
  if (mounted(mnt)) sh('fusermount', ['-uz', mnt]);
  console.log(`# FUSE: ${bench.gib} GiB version, dd bs=1M, page cache and block cache cold, median of ${RUNS}; node ${process.version}`);

  // Ceiling
  const ceiling = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench/fuse-ceiling.ts'), mnt, String(bench.size)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitFor(() => mounted(mnt), 'the ceiling mount');
  const ceilingRate = median(() => ddMBps(path.join(mnt, 'disk.img')));
  const ceilingDirect = median(() => ddMBps(path.join(mnt, 'disk.img'), ['iflag=direct']));
  const ceilingIops = await randomIops(path.join(mnt, 'disk.img'), bench.size, 1);
  await stop(ceiling, 'SIGTERM');
  await waitFor(() => !mounted(mnt), 'the ceiling unmount');
  console.log(`ceiling  sequential ${ceilingRate.toFixed(0)} MB/s, O_DIRECT ${ceilingDirect.toFixed(0)} MB/s, random 4 KiB ${ceilingIops.toFixed(0)} IOPS`);

  // backy2 mount
  writeFileSync(passwordFile, 'bench passphrase\n', { mode: 0o600 });
  const makeStore = (flags: string[]) => {
    rmSync(store, { recursive: true, force: true });
    sh(backy2, ['--password-file', passwordFile, 'init', store, ...flags]);
    sh(backy2, ['--store', store, '--password-file', passwordFile, 'backup', bench.baseImage, 'vm1']);
  };
  makeStore([]);
  const run = async (label: string, work: () => Promise<string>): Promise<void> => {
    const daemon = spawn(backy2, ['--store', store, '--password-file', passwordFile, 'mount', mnt], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor(() => mounted(mnt), 'backy2 mount');
    console.log(`backy2   ${label}: ${await work()}`);
    await stop(daemon, 'SIGINT');
    await waitFor(() => !mounted(mnt), 'backy2 unmount');
  };
  const file = path.join(mnt, 'vm1', 'latest.img');
  let plaintext = 0;
  await run('sequential, cold', async () => {
    // The block cache keeps only the end of the previous pass, so each pass reads the store cold.
    const cold = median(() => ddMBps(file));
    plaintext = cold;
    const again = ddMBps(file);
    return `${cold.toFixed(0)} MB/s (${((cold / ceilingRate) * 100).toFixed(0)}% of the ceiling); re-read from the page cache ${again.toFixed(0)} MB/s`;
  });
  await run('sequential O_DIRECT, cold', async () => {
    const rate = median(() => ddMBps(file, ['iflag=direct']));
    return `${rate.toFixed(0)} MB/s (${((rate / ceilingDirect) * 100).toFixed(0)}% of the ceiling)`;
  });
  await run('random 4 KiB O_DIRECT', async () => {
    dropCaches();
    const one = await randomIops(file, bench.size, 1);
    const eight = await randomIops(file, bench.size, 8);
    return `${one.toFixed(0)} IOPS at depth 1, ${eight.toFixed(0)} IOPS at depth 8 (ceiling ${ceilingIops.toFixed(0)} at depth 1)`;
  });
  for (const [name, flags] of [
    ['aes-256-gcm', ['--encryption', 'aes-256-gcm']],
    ['zstd + aes-256-gcm', ['--compression', 'zstd', '--encryption', 'aes-256-gcm']],
  ] as const) {
    makeStore([...flags]);
    await run(`sequential, cold, ${name}`, async () => {
      const cold = median(() => ddMBps(file));
      return `${cold.toFixed(0)} MB/s (${((cold / plaintext) * 100).toFixed(0)}% of plaintext)`;
    });
  }
  rmSync(store, { recursive: true, force: true });
}

await main();
