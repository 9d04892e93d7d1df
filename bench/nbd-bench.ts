/**
 * NBD benchmark: `nbdcopy` of a whole version over loopback from `backy2 nbd` (cold block cache,
 * cold page cache), against `qemu-nbd` serving the raw image file, in the same run; then the same
 * version from an encrypted store and from a compressed and encrypted one. Prints medians;
 * asserts nothing.
 *
 *   npm run bench:nbd
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bench, buildImages, dropCaches, sh } from './images.js';

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

/** nbdcopy of a URI to /dev/null: MB/s of the export size, median of RUNS, page cache dropped first. */
function copyRate(uri: string): number {
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    dropCaches();
    const t = process.hrtime.bigint();
    sh('nbdcopy', [uri, 'null:']);
    rates.push(bench.size / (Number(process.hrtime.bigint() - t) / 1e9) / 1e6);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)] ?? 0;
}

/** The stores the version is served from: `backy2 init` flags. */
const STORES: [string, string[]][] = [
  ['plaintext', []],
  ['aes-256-gcm', ['--encryption', 'aes-256-gcm']],
  ['zstd + aes-256-gcm', ['--compression', 'zstd', '--encryption', 'aes-256-gcm']],
];

/** nbdcopy of a version from a fresh server per run (a cold block cache): median MB/s. */
async function backy2Rate(uid: string): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const server = spawn(backy2, ['--store', store, '--password-file', passwordFile, 'nbd', '-r', '-p', '10812'], { stdio: 'ignore' });
    await waitPort(10812);
    dropCaches();
    const t = process.hrtime.bigint();
    sh('nbdcopy', [`nbd://127.0.0.1:10812/${uid}`, 'null:']);
    rates.push(bench.size / (Number(process.hrtime.bigint() - t) / 1e9) / 1e6);
    await stop(server);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)] ?? 0;
}

async function main(): Promise<void> {
  buildImages();
  writeFileSync(passwordFile, 'bench passphrase\n', { mode: 0o600 });
  console.log(`# NBD: nbdcopy of a ${bench.gib} GiB version to null:, page cache dropped, median of ${RUNS}; ${sh('qemu-nbd', ['--version']).split('\n')[0]}`);

  const qemu = spawn('qemu-nbd', ['-r', '-f', 'raw', '-t', '-b', '127.0.0.1', '-p', '10811', '-x', 'raw', bench.baseImage], { stdio: 'ignore' });
  await waitPort(10811);
  const qemuRate = copyRate('nbd://127.0.0.1:10811/raw');
  await stop(qemu);
  console.log(`qemu-nbd (raw file)                  ${qemuRate.toFixed(0)} MB/s`);

  let plaintext = 0;
  for (const [name, flags] of STORES) {
    rmSync(store, { recursive: true, force: true });
    sh(backy2, ['--password-file', passwordFile, 'init', store, ...flags]);
    const uid = sh(backy2, ['--store', store, '--password-file', passwordFile, 'backup', bench.baseImage, 'vm1']).trim();
    const rate = await backy2Rate(uid);
    if (plaintext === 0) plaintext = rate;
    const vsPlain = rate === plaintext ? '' : `, ${((100 * rate) / plaintext).toFixed(0)}% of plaintext`;
    console.log(`backy2 nbd, ${name.padEnd(24)} ${rate.toFixed(0)} MB/s (${(rate / qemuRate).toFixed(2)}x qemu-nbd${vsPlain})`);
  }
  rmSync(store, { recursive: true, force: true });
}

await main();
