/**
 * NBD over TLS against plaintext: `nbdcopy` of a whole version to null: from `backy2 nbd`, once
 * in plaintext and once with TLS (PSK), alternating, a fresh server per run (cold block cache;
 * the page cache is left warm, so that the store's disk does not hide the cost of TLS). Two
 * versions: the benchmark image (40% holes, which nbdcopy skips) and one of random data only.
 * Prints medians of the rate and of the CPU time of server and client (on a machine where both
 * share the cores, the rate follows the sum); asserts nothing.
 *
 *   npm run bench:nbd-tls                 # BENCH_GIB=1 by default, BENCH_RUNS=3
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { cpuSeconds, median } from './measure.js';

// Its own directory and size unless told otherwise: images.ts rebuilds a directory made for another size.
process.env.BENCH_DIR ??= '/var/tmp/backy2-bench-nbd-tls';
process.env.BENCH_GIB ??= '1';
const { bench, buildImages, sh } = await import('./images.js');

const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
const store = path.join(bench.dir, 'store-nbd-tls');
const pskFile = path.join(bench.dir, 'bench.psk');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PORT = 10813;

/** Starts `backy2 nbd` and resolves once its start-up line is out. */
async function startServer(tls: boolean): Promise<ChildProcess> {
  const args = ['--store', store, 'nbd', '-r', '-p', String(PORT), ...(tls ? ['--tls-psk', pskFile] : [])];
  const child = spawn(backy2, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes(' serving ')) resolve();
    });
    child.once('exit', () => reject(new Error(`backy2 nbd exited: ${log}`)));
  });
  child.stderr?.resume();
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}

interface Run {
  /** MB/s of the export size. */
  readonly rate: number;
  /** CPU seconds of the server and of nbdcopy. */
  readonly server: number;
  readonly client: number;
}

/** `nbdcopy URI null:` under /usr/bin/time, with the server's CPU time around it. */
function copy(uri: string, server: ChildProcess, size: number): Run {
  const before = cpuSeconds(server.pid ?? 0);
  const t = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', 'nbdcopy', uri, 'null:'], { encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`nbdcopy failed: ${r.stderr}`);
  const [user, sys] = (r.stderr.trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { rate: size / seconds / 1e6, server: cpuSeconds(server.pid ?? 0) - before, client: (user ?? 0) + (sys ?? 0) };
}

/** Plaintext and TLS alternating, RUNS each: medians of rate and CPU. */
async function compare(uid: string, size: number): Promise<{ plain: Run; tls: Run }> {
  const runs = { plain: [] as Run[], tls: [] as Run[] };
  for (let i = 0; i < RUNS; i++) {
    for (const tls of [false, true]) {
      const server = await startServer(tls);
      const uri = tls ? `nbds://alice@127.0.0.1:${PORT}/${uid}?tls-psk-file=${encodeURIComponent(pskFile)}` : `nbd://127.0.0.1:${PORT}/${uid}`;
      (tls ? runs.tls : runs.plain).push(copy(uri, server, size));
      await stop(server);
    }
  }
  const summary = (rs: Run[]): Run => ({ rate: median(rs.map((r) => r.rate)), server: median(rs.map((r) => r.server)), client: median(rs.map((r) => r.client)) });
  return { plain: summary(runs.plain), tls: summary(runs.tls) };
}

function randomImage(file: string, size: number): void {
  const fd = openSync(file, 'w');
  const chunk = 64 << 20;
  for (let at = 0; at < size; at += chunk) writeSync(fd, randomBytes(Math.min(chunk, size - at)), 0, Math.min(chunk, size - at), at);
  closeSync(fd);
}

async function main(): Promise<void> {
  buildImages();
  mkdirSync(bench.dir, { recursive: true });
  rmSync(store, { recursive: true, force: true });
  writeFileSync(pskFile, `alice:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  sh(backy2, ['--store', store, 'init']);
  const random = path.join(bench.dir, 'random.img');
  randomImage(random, bench.size);
  const versions = [
    { name: `${bench.gib} GiB image (40% holes)`, uid: sh(backy2, ['--store', store, 'backup', bench.baseImage, 'vm1']).trim() },
    { name: `${bench.gib} GiB of random data`, uid: sh(backy2, ['--store', store, 'backup', random, 'random']).trim() },
  ];
  rmSync(random);
  console.log(
    `# NBD over TLS (PSK, TLS 1.3 AES-128-GCM) against plaintext: nbdcopy to null:, fresh server per run, page cache warm, median of ${RUNS}; ` +
      `${sh('nbdcopy', ['--version']).split('\n')[0]}, node ${process.version}`,
  );
  const cpu = (r: Run) => `CPU ${r.server.toFixed(1)} s server + ${r.client.toFixed(1)} s nbdcopy`;
  for (const v of versions) {
    const { plain, tls } = await compare(v.uid, bench.size);
    console.log(
      `${v.name.padEnd(30)} plaintext ${plain.rate.toFixed(0).padStart(5)} MB/s (${cpu(plain)})   TLS ${tls.rate.toFixed(0).padStart(5)} MB/s (${cpu(tls)})   TLS/plaintext ${((tls.rate / plain.rate) * 100).toFixed(0)}%`,
    );
  }
  rmSync(store, { recursive: true, force: true });
}

await main();
