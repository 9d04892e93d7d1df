/**
 * The benchmark images, built once and kept in BENCH_DIR: a realistic disk image of BENCH_GIB
 * GiB (about 40% zeros as holes, 40% ext4 with real files, 20% random data) and a copy with 2% of
 * its 4 MiB blocks changed, plus an `rbd diff`-style hints file naming the changes. The helpers
 * that make them (and a huge sparse image) serve the other benchmarks too.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, ftruncateSync, linkSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
const BLOCK = 4 * MiB;

/** Where the images live and how big they are. */
export const bench = {
  dir: path.resolve(process.env.BENCH_DIR ?? '/var/tmp/backy2-bench'),
  gib: Number(process.env.BENCH_GIB ?? 4),
  get size(): number {
    return this.gib * GiB;
  },
  get baseImage(): string {
    return path.join(this.dir, 'base.img');
  },
  get changedImage(): string {
    return path.join(this.dir, 'changed.img');
  },
  get hintsFile(): string {
    return path.join(this.dir, 'hints.json');
  },
};

/** Runs a command and returns its stdout. */
export function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * MiB });
}

/** Reads a file once, so the next read comes from the page cache. */
export function warm(file: string): void {
  sh('dd', [`if=${file}`, 'of=/dev/null', 'bs=4M', 'status=none']);
}

/** Drops the page cache (root only), so the next read comes from the disk. */
export function dropCaches(): void {
  sh('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '1');
}

/** Hard-links (or copies) files from system directories until `budget` bytes are collected. */
function collectFiles(into: string, budget: number): number {
  let total = 0;
  let n = 0;
  const walk = (from: string): void => {
    let entries;
    try {
      entries = readdirSync(from, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (total >= budget) return;
      const p = path.join(from, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = statSync(p);
        if (st.size === 0) continue;
        const target = path.join(into, String(n++ % 256), `${n}-${e.name}`);
        mkdirSync(path.dirname(target), { recursive: true });
        try {
          linkSync(p, target);
        } catch {
          copyFileSync(p, target);
        }
        total += st.size;
      }
    }
  };
  for (const root of ['/usr/share', '/usr/lib', '/usr/bin', '/usr/libexec']) walk(root);
  return total;
}

/** Where the parts of an image made by {@link makeDiskImage} lie, in bytes: [ext4][zeros][random][zeros]. */
export interface DiskLayout {
  /** The ext4 file system starts at 0 and ends here. */
  readonly fsEnd: number;
  readonly randomStart: number;
  readonly randomEnd: number;
}

/**
 * A realistic disk image of `size` bytes: 45% ext4 with real files (from /usr), 15% zeros, 20%
 * random data, 20% zeros (holes). `work` is a scratch directory for the file system.
 */
export function makeDiskImage(file: string, size: number, work: string): DiskLayout {
  const fsSize = Math.floor(size * 0.45 / MiB) * MiB;
  const files = path.join(work, 'files');
  // Leave ext4 room for its metadata and the last file's overshoot: 0.38 did not fit at 2 GiB.
  const collected = collectFiles(files, Math.floor(size * 0.33));
  console.log(`# building ${size / GiB} GiB image: ext4 of ${fsSize / MiB} MiB with ${(collected / MiB).toFixed(0)} MiB of files, 20% random`);
  const fsImage = path.join(work, 'fs.img');
  sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', files, fsImage, `${fsSize / MiB}M`]);
  rmSync(files, { recursive: true, force: true });
  // Layout: [ext4 45%][zeros 15%][random 20%][zeros 20%]
  sh('cp', ['--sparse=always', fsImage, file]);
  rmSync(fsImage);
  sh('truncate', ['-s', String(size), file]);
  const fd = openSync(file, 'r+');
  const randomStart = Math.floor(size * 0.6 / BLOCK) * BLOCK;
  const chunk = 64 * MiB;
  let at = randomStart;
  for (; at < randomStart + size * 0.2; at += chunk) writeSync(fd, randomBytes(chunk), 0, Math.min(chunk, size - at), at);
  closeSync(fd);
  return { fsEnd: fsSize, randomStart, randomEnd: Math.min(at, size) };
}

/**
 * A copy of `from` with 2% of its 4 MiB blocks changed (64 KiB of new data each), and an
 * `rbd diff`-style hints file naming the changes.
 */
export function makeChangedImage(from: string, to: string, hintsFile: string): void {
  sh('cp', ['--sparse=always', from, to]);
  const blocks = statSync(from).size / BLOCK;
  const changed = new Set<number>();
  while (changed.size < Math.round(blocks * 0.02)) changed.add(Math.floor(Math.random() * blocks));
  const fd = openSync(to, 'r+');
  const hints: { offset: number; length: number; exists: string }[] = [];
  for (const b of [...changed].sort((x, y) => x - y)) {
    const offset = b * BLOCK + 1 * MiB;
    writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, offset);
    hints.push({ offset, length: 64 * 1024, exists: 'true' });
  }
  closeSync(fd);
  writeFileSync(hintsFile, JSON.stringify(hints));
}

/**
 * A sparse image of `size` bytes (ftruncate) with one 4 KiB random write into each of about
 * 1,000 blocks spread over it, and a hints file naming one block, which does not change: what a
 * no-change hinted incremental (`backup -r hints -f <base>`) of a huge, mostly empty disk reads.
 */
export function makeSparseImage(file: string, size: number, hintsFile: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const fd = openSync(file, 'w');
  ftruncateSync(fd, size);
  const blocks = size / BLOCK;
  for (let i = 0; i < 1000; i++) writeSync(fd, randomBytes(4096), 0, 4096, Math.floor((i * blocks) / 1000) * BLOCK);
  closeSync(fd);
  writeFileSync(hintsFile, JSON.stringify([{ offset: 0, length: BLOCK, exists: 'true' }]));
}

/** Builds the images unless BENCH_DIR already has them. */
export function buildImages(): void {
  const { dir, size, baseImage, changedImage, hintsFile } = bench;
  const stamp = path.join(dir, `images-${bench.gib}.done`);
  if (existsSync(stamp)) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  makeDiskImage(baseImage, size, dir);
  makeChangedImage(baseImage, changedImage, hintsFile);
  writeFileSync(stamp, '');
}
