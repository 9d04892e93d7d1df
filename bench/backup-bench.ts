/**
 * Backup benchmark: backy2 against restic and borg (Debian packages; borg also with fixed 4 MiB
 * chunks, backy2's unit of work) on the same images, in the same run, plus `cp --sparse=always`
 * as the physical reference for restores. backy2 runs on five
 * stores — plaintext, plaintext named by SHA-256 (as stores before BLAKE3), zstd, AES-256-GCM,
 * both — next to restic, which always encrypts (and, with
 * repository version 2, compresses). Prints times, peak RSS and bytes stored; it asserts nothing.
 *
 *   npm run bench                 # 4 GiB image, results on stdout
 *   BENCH_DIR=/mnt/x BENCH_GIB=8 npm run bench
 *   BENCH_MODES=plain,zstd+aes BENCH_PEERS=0 npm run bench   # a subset, no peers
 *
 * The image is about 40% zeros (holes), 40% ext4 file system with real files, 20% random data.
 * A second image has 2% of its blocks changed, with an `rbd diff`-style hints file naming them.
 * Before every backup the page cache is dropped and the source image read once (every tool
 * starts from a warm source); before every restore the page cache is dropped (every tool reads
 * its repository cold). backy2 and borg with fixed chunks also make a "cold full backup" with the
 * source not read first, into a new store: what a nightly backup of a volume meets.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { GiB, MiB, bench, buildImages, dropCaches, sh, warm } from './images.js';

const { dir, size, baseImage, changedImage, hintsFile } = bench;
const imageGiB = bench.gib;
const repoRoot = path.resolve(import.meta.dirname, '..');
const backy2 = path.join(repoRoot, 'bin/backy2');
/** The peers, as their results are named: borg-fixed is borg with fixed 4 MiB chunks. */
const PEERS = ['restic', 'borg', 'borg-fixed'] as const;

interface Timing {
  seconds: number;
  peakRssMiB: number;
  /** CPU seconds (user + system) of the command and its children. */
  cpuSeconds: number;
  stdout: string;
}

/** Runs a command (in `cwd`, if given) under GNU time: wall seconds, CPU seconds and peak RSS. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Timing {
  const r = spawnSync('/usr/bin/time', ['-f', '@@TIME %e %M %U %S', cmd, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * MiB, ...(cwd ? { cwd } : {}) });
  const m = /@@TIME ([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return { seconds: Number(m[1]), peakRssMiB: Number(m[2]) / 1024, cpuSeconds: Number(m[3]) + Number(m[4]), stdout: r.stdout };
}

interface Row {
  tool: string;
  op: string;
  t: Timing;
}

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const rows: Row[] = [];
function record(tool: string, op: string, t: Timing): void {
  rows.push({ tool, op, t });
  if (process.env.BENCH_VERBOSE) console.log(`  ${tool} ${op} ${t.seconds.toFixed(2)} s`);
}

/** The median run of each (tool, operation), by seconds. */
function medians(): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) groups.set(`${r.tool}\u0000${r.op}`, [...(groups.get(`${r.tool}\u0000${r.op}`) ?? []), r]);
  return [...groups.values()].map((g) => [...g].sort((a, b) => a.t.seconds - b.t.seconds)[Math.floor(g.length / 2)] as Row);
}

/** The kinds of store backy2 is measured on: `backy2 init` flags. */
const MODES: Record<string, string[]> = {
  plain: [],
  /** A plaintext store named by SHA-256, as stores before BLAKE3 were (and `--digest sha256` makes). */
  sha256: ['--digest', 'sha256'],
  zstd: ['--compression', 'zstd'],
  aes: ['--encryption', 'aes-256-gcm'],
  'zstd+aes': ['--compression', 'zstd', '--encryption', 'aes-256-gcm'],
};
const modes = (process.env.BENCH_MODES ?? Object.keys(MODES).join(',')).split(',');
/** Encrypted stores are opened with a passphrase, as restic's repository is (scrypt on every command). */
const passwordFile = path.join(dir, 'bench.pass');
const toolName = (mode: string) => (mode === 'plain' ? 'backy2' : `backy2 ${mode}`);

/** Bytes a store or repository takes on disk. */
function bytesStored(at: string): number {
  return Number(sh('du', ['-s', '--block-size=1', at]).split('\t')[0]);
}
const stored = new Map<string, number>();

function backupRun(source: string, extra: string[], store: string): Timing {
  dropCaches();
  warm(source);
  return timed(backy2, ['--store', store, '--password-file', passwordFile, 'backup', source, 'bench', '--json', ...extra]);
}

function benchBackup2(mode: string): void {
  const tool = toolName(mode);
  const store = path.join(dir, `store-backy2-${mode}`);
  rmSync(store, { recursive: true, force: true });
  sh(backy2, ['--password-file', passwordFile, 'init', store, ...(MODES[mode] ?? [])]);
  const full = backupRun(baseImage, [], store);
  record(tool, 'full backup', full);
  stored.set(tool, bytesStored(store));
  const fullUid = (JSON.parse(full.stdout) as { uid: string }).uid;
  // Each incremental starts from a copy of the store holding only the full backup.
  const storeB = `${store}-b`;
  rmSync(storeB, { recursive: true, force: true });
  sh('cp', ['-a', store, storeB]);
  record(tool, 'incremental, hints', backupRun(changedImage, ['-f', fullUid, '-r', hintsFile], store));
  record(tool, 'incremental, no hints', backupRun(changedImage, ['-f', fullUid], storeB));
  rmSync(storeB, { recursive: true, force: true });
  const storeCold = `${store}-cold`;
  rmSync(storeCold, { recursive: true, force: true });
  sh(backy2, ['--password-file', passwordFile, 'init', storeCold, ...(MODES[mode] ?? [])]);
  dropCaches();
  record(tool, 'cold full backup', timed(backy2, ['--store', storeCold, '--password-file', passwordFile, 'backup', baseImage, 'bench']));
  rmSync(storeCold, { recursive: true, force: true });
  const out = path.join(dir, 'restore-backy2.img');
  rmSync(out, { force: true });
  dropCaches();
  record(tool, 'restore (sparse)', timed(backy2, ['--store', store, '--password-file', passwordFile, 'restore', fullUid, out, '--sparse']));
  if (sh('cmp', [baseImage, out]) !== '') throw new Error('restore differs');
  rmSync(out, { force: true });
  rmSync(store, { recursive: true, force: true });
}

function benchCp(): void {
  const out = path.join(dir, 'cp.img');
  rmSync(out, { force: true });
  dropCaches();
  const copy = timed('cp', ['--sparse=always', baseImage, out]);
  record('cp', 'copy --sparse=always', copy);
  const flush = timed('sync', []);
  record('cp', 'copy + sync', { ...copy, seconds: copy.seconds + flush.seconds, cpuSeconds: copy.cpuSeconds + flush.cpuSeconds });
  rmSync(out, { force: true });
}

function benchRestic(): void {
  const repo = path.join(dir, 'restic');
  rmSync(repo, { recursive: true, force: true });
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(dir, 'restic-cache') };
  // Repository version 2 compresses (zstd, "auto"); version 1 cannot.
  sh('restic', ['init', '-q', '--repository-version', '2'], env);
  dropCaches();
  warm(baseImage);
  record('restic', 'full backup', timed('restic', ['backup', '-q', baseImage], env));
  stored.set('restic', bytesStored(repo));
  dropCaches();
  warm(changedImage);
  record('restic', 'incremental', timed('restic', ['backup', '-q', changedImage], env));
  const out = path.join(dir, 'restic-out');
  rmSync(out, { recursive: true, force: true });
  dropCaches();
  const snap = JSON.parse(sh('restic', ['snapshots', '--json', '--path', baseImage], env)) as { short_id: string }[];
  record('restic', 'restore', timed('restic', ['restore', '-q', snap[0]?.short_id ?? 'latest', '--target', out], env));
  rmSync(out, { recursive: true, force: true });
}

/**
 * borg as Debian ships it (content-defined chunks), and with fixed 4 MiB chunks like backy2's
 * blocks (`--chunker-params fixed,4194304`: the same work per byte, without the chunk search), each
 * in a repository of its own; no compression, no encryption.
 */
function benchBorg(tool: 'borg' | 'borg-fixed'): void {
  const repo = path.join(dir, tool);
  rmSync(repo, { recursive: true, force: true });
  const env = { BORG_REPO: repo, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
  const chunker = tool === 'borg-fixed' ? ['--chunker-params', 'fixed,4194304'] : [];
  sh('borg', ['init', '--encryption=none', repo], env);
  dropCaches();
  warm(baseImage);
  record(tool, 'full backup', timed('borg', ['create', '--compression', 'none', ...chunker, '::base', baseImage], env));
  stored.set(tool, bytesStored(repo));
  dropCaches();
  warm(changedImage);
  record(tool, 'incremental', timed('borg', ['create', '--compression', 'none', ...chunker, '::changed', changedImage], env));
  if (tool === 'borg-fixed') {
    const cold = `${repo}-cold`;
    rmSync(cold, { recursive: true, force: true });
    sh('borg', ['init', '--encryption=none', cold], env);
    dropCaches();
    record(tool, 'cold full backup', timed('borg', ['create', '--compression', 'none', ...chunker, `${cold}::base`, baseImage], env));
    rmSync(cold, { recursive: true, force: true });
    return; // extraction does not depend on the chunker
  }
  const out = path.join(dir, 'borg-out');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  dropCaches();
  record('borg', 'restore (sparse)', timed('borg', ['extract', '--sparse', '::base'], env, out));
  rmSync(out, { recursive: true, force: true });
}

function benchHugeSparse(): void {
  const huge = path.join(dir, 'huge.img');
  const store = path.join(dir, 'store-huge');
  rmSync(store, { recursive: true, force: true });
  rmSync(huge, { force: true });
  sh('truncate', ['-s', '4T', huge]);
  const fd = openSync(huge, 'r+');
  for (let i = 0; i < 16; i++) writeSync(fd, randomBytes(MiB), 0, MiB, Math.floor(Math.random() * 4 * 1024 ** 4 / MiB) * MiB);
  closeSync(fd);
  const empty = path.join(dir, 'empty-hints.json');
  writeFileSync(empty, '[]');
  sh(backy2, ['init', store]);
  const first = timed(backy2, ['--store', store, 'backup', huge, 'huge', '--json']);
  console.log(`backy2   4 TiB sparse, first backup (holes skipped) ${first.seconds.toFixed(2)} s, peak RSS ${first.peakRssMiB.toFixed(0)} MiB`);
  const firstUid = (JSON.parse(first.stdout) as { uid: string }).uid;
  const t = timed(backy2, ['--store', store, 'backup', huge, 'huge', '-r', empty, '-f', firstUid, '--json']);
  console.log(`backy2   4 TiB sparse, no-change incremental with empty hints ${t.seconds.toFixed(2)} s, peak RSS ${t.peakRssMiB.toFixed(0)} MiB`);
  rmSync(huge, { force: true });
  rmSync(store, { recursive: true, force: true });
}

function summary(): void {
  const table = medians();
  console.log(`\n# medians of ${RUNS} runs`);
  for (const r of table) {
    const cpu = `${(r.t.cpuSeconds / (size / 1e9)).toFixed(2).padStart(5)} CPU-s/GB`;
    console.log(`${r.tool.padEnd(16)} ${r.op.padEnd(22)} ${r.t.seconds.toFixed(2).padStart(7)} s ${(size / r.t.seconds / 1e6).toFixed(0).padStart(6)} MB/s  ${cpu}  peak RSS ${r.t.peakRssMiB.toFixed(0).padStart(5)} MiB`);
  }
  const get = (tool: string, op: string) => table.find((r) => r.tool === tool && r.op.startsWith(op))?.t;
  const ours = { full: get('backy2', 'full'), cold: get('backy2', 'cold full'), inc: get('backy2', 'incremental, no'), restore: get('backy2', 'restore') };
  console.log('\n# ratios (peer seconds / backy2 seconds; > 1 means backy2 is faster)');
  for (const peer of PEERS) {
    const full = get(peer, 'full');
    const inc = get(peer, 'incremental');
    const res = get(peer, 'restore');
    const cold = get(peer, 'cold full');
    const coldRatio = cold && ours.cold ? `, cold full ${(cold.seconds / ours.cold.seconds).toFixed(1)}x` : '';
    if (full && ours.full) console.log(`${peer.padEnd(8)} full ${(full.seconds / ours.full.seconds).toFixed(1)}x${coldRatio}, incremental ${inc && ours.inc ? (inc.seconds / ours.inc.seconds).toFixed(1) : '-'}x, restore ${res && ours.restore ? (res.seconds / ours.restore.seconds).toFixed(1) : '-'}x`);
  }
  const cp = get('cp', 'copy --sparse');
  const cpSync = get('cp', 'copy + sync');
  if (cp && cpSync && ours.restore) {
    console.log(`backy2 restore / cp --sparse=always: ${(ours.restore.seconds / cp.seconds).toFixed(2)}; / (cp + sync): ${(ours.restore.seconds / cpSync.seconds).toFixed(2)}`);
  }
  const restic = { full: get('restic', 'full'), restore: get('restic', 'restore') };
  const plainBytes = stored.get('backy2');
  console.log('\n# stores (bytes on disk after the full backup; ratios against restic, > 1 means backy2 is faster)');
  for (const mode of modes) {
    const tool = toolName(mode);
    const bytes = stored.get(tool);
    const full = get(tool, 'full');
    const restore = get(tool, 'restore');
    const vsRestic = restic.full && full && restic.restore && restore ? `; restic full ${(restic.full.seconds / full.seconds).toFixed(1)}x, restore ${(restic.restore.seconds / restore.seconds).toFixed(1)}x` : '';
    const vsPlain = bytes !== undefined && plainBytes ? ` (${((100 * bytes) / plainBytes).toFixed(0)}% of plaintext)` : '';
    console.log(`${tool.padEnd(16)} ${bytes === undefined ? '-' : (bytes / 1e6).toFixed(0).padStart(6)} MB${vsPlain}${vsRestic}`);
  }
  for (const peer of PEERS) {
    const bytes = stored.get(peer);
    if (bytes !== undefined) console.log(`${peer.padEnd(16)} ${(bytes / 1e6).toFixed(0).padStart(6)} MB${plainBytes ? ` (${((100 * bytes) / plainBytes).toFixed(0)}% of backy2 plaintext)` : ''}`);
  }
}

mkdirSync(dir, { recursive: true });
buildImages();
const used = statSync(baseImage).blocks * 512;
console.log(`# image ${imageGiB} GiB (${(used / GiB).toFixed(2)} GiB allocated), ${readFileSync(hintsFile, 'utf8').split('offset').length - 1} changed blocks; dir ${dir}`);
console.log(`# ${sh('restic', ['version']).trim()}; ${sh('borg', ['--version']).trim()}; node ${process.version}`);
writeFileSync(passwordFile, 'bench passphrase\n', { mode: 0o600 });
for (let run = 0; run < RUNS; run++) {
  for (const mode of modes) benchBackup2(mode);
  benchCp();
  if (process.env.BENCH_PEERS !== '0') {
    benchRestic();
    benchBorg('borg');
    benchBorg('borg-fixed');
  }
}
benchHugeSparse();
summary();
