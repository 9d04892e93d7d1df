/**
 * NBD benchmark: `nbdcopy` of a whole version over loopback from `backy2 nbd` (cold block cache,
 * cold page cache), against `qemu-nbd` serving the raw image file (its page cache dropped too), in
 * the same run; the same with every block in the server's block cache (what serving costs without
 * fetching); then the same version from an encrypted store and from a compressed and encrypted
 * one. Prints medians, with the CPU seconds per GB of the whole machine and of the server, and the
 * server's peak RSS; asserts nothing.
 *
 *   npm run bench:nbd
 *   BENCH_DIR=/dev/shm/backy2-bench BENCH_GIB=2 npm run bench:nbd   # both served from RAM
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bench, buildImages, dropCaches, sh } from './images.js';
import { describeCost, measure, medianCost, peakRssMiB, type Cost } from './measure.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
const store = path.join(bench.dir, 'store-nbd');
const passwordFile = path.join(bench.dir, 'bench.pass');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (spawnSync('nbdinfo', ['--list', `nbd://127.0.0.1:${port}`], { stdio: 'ignore' }).status === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no NBD server on port ${port}`);
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}

/** nbdcopy of a URI to null:, page cache dropped first. */
async function copy(uri: string, serverPid: number | undefined): Promise<Cost> {
  dropCaches();
  return measure(() => sh('nbdcopy', [uri, 'null:']), serverPid);
}

/** The stores the version is served from: `backy2 init` flags. */
const STORES: [string, string[]][] = [
  ['plaintext', []],
  ['aes-256-gcm', ['--encryption', 'aes-256-gcm']],
  ['zstd + aes-256-gcm', ['--compression', 'zstd', '--encryption', 'aes-256-gcm']],
];

/** nbdcopy of a version from a fresh server per run (a cold block cache): the median run, and the largest peak RSS. */
async function backy2Copy(uid: string): Promise<{ cost: Cost; rssMiB: number }> {
  const costs: Cost[] = [];
  let rssMiB = 0;
  for (let i = 0; i < RUNS; i++) {
    const server = spawn(backy2, ['--store', store, '--password-file', passwordFile, 'nbd', '-r', '-p', '10812'], { stdio: 'ignore' });
    await waitPort(10812);
    costs.push(await copy(`nbd://127.0.0.1:10812/${uid}`, server.pid));
    rssMiB = Math.max(rssMiB, peakRssMiB(server.pid ?? 0));
    await stop(server);
  }
  return { cost: medianCost(costs), rssMiB };
}

/**
 * nbdcopy of a version from one server whose block cache holds every block (read once before):
 * what serving NBD costs without fetching blocks from the store. The page cache is dropped
 * before each run as for the others.
 */
async function backy2WarmCopy(uid: string): Promise<Cost> {
  const config = path.join(bench.dir, 'nbd-bench-cache.yaml');
  writeFileSync(config, `mount:\n  cacheSize: ${2 * bench.size}\n`);
  const server = spawn(backy2, ['--config', config, '--store', store, '--password-file', passwordFile, 'nbd', '-r', '-p', '10812'], { stdio: 'ignore' });
  try {
    await waitPort(10812);
    sh('nbdcopy', [`nbd://127.0.0.1:10812/${uid}`, 'null:']);
    const costs: Cost[] = [];
    for (let i = 0; i < RUNS; i++) costs.push(await copy(`nbd://127.0.0.1:10812/${uid}`, server.pid));
    return medianCost(costs);
  } finally {
    await stop(server);
    rmSync(config, { force: true });
  }
}

async function main(): Promise<void> {
  buildImages();
  writeFileSync(passwordFile, 'bench passphrase\n', { mode: 0o600 });
  const fsType = sh('stat', ['-f', '-c', '%T', bench.dir]).trim();
  console.log(`# NBD: nbdcopy of a ${bench.gib} GiB version to null: from ${bench.dir} (${fsType}), page cache dropped, median of ${RUNS}; ${sh('qemu-nbd', ['--version']).split('\n')[0]}`);

  const qemu = spawn('qemu-nbd', ['-r', '-f', 'raw', '-t', '-b', '127.0.0.1', '-p', '10811', '-x', 'raw', bench.baseImage], { stdio: 'ignore' });
  await waitPort(10811);
  const qemuCosts: Cost[] = [];
  for (let i = 0; i < RUNS; i++) qemuCosts.push(await copy('nbd://127.0.0.1:10811/raw', qemu.pid));
  const qemuCost = medianCost(qemuCosts);
  const qemuRss = peakRssMiB(qemu.pid ?? 0);
  await stop(qemu);
  const qemuRate = bench.size / qemuCost.seconds / 1e6;
  console.log(`qemu-nbd (raw file)                  ${describeCost(bench.size, qemuCost)}; peak RSS ${qemuRss.toFixed(0)} MiB`);

  let plaintext = 0;
  for (const [name, flags] of STORES) {
    rmSync(store, { recursive: true, force: true });
    sh(backy2, ['--password-file', passwordFile, 'init', store, ...flags]);
    const uid = sh(backy2, ['--store', store, '--password-file', passwordFile, 'backup', bench.baseImage, 'vm1']).trim();
    const { cost, rssMiB } = await backy2Copy(uid);
    const rate = bench.size / cost.seconds / 1e6;
    if (plaintext === 0) plaintext = rate;
    const vsPlain = rate === plaintext ? '' : `, ${((100 * rate) / plaintext).toFixed(0)}% of plaintext`;
    console.log(`backy2 nbd, ${name.padEnd(24)} ${describeCost(bench.size, cost)} (${(rate / qemuRate).toFixed(2)}x qemu-nbd${vsPlain}); peak RSS ${rssMiB.toFixed(0)} MiB`);
    if (name === 'plaintext') {
      const warm = await backy2WarmCopy(uid);
      console.log(`backy2 nbd, all blocks cached       ${describeCost(bench.size, warm)} (${(bench.size / warm.seconds / 1e6 / qemuRate).toFixed(2)}x qemu-nbd; no fetching from the store)`);
    }
  }
  rmSync(store, { recursive: true, force: true });
}

await main();
