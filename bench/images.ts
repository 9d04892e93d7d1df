/**
 * The benchmark images, built once and kept in BENCH_DIR: a realistic disk image of BENCH_GIB
 * GiB (about 40% zeros as holes, 40% ext4 with real files, 20% random data) and a copy with 2% of
 * its 4 MiB blocks changed, plus an `rbd diff`-style hints file naming the changes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
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

/** Builds the images unless BENCH_DIR already has them. */
export function buildImages(): void {
  const { dir, size, baseImage, changedImage, hintsFile } = bench;
  const imageGiB = bench.gib;
  const stamp = path.join(dir, `images-${imageGiB}.done`);
  if (existsSync(stamp)) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const fsSize = Math.floor(size * 0.45 / MiB) * MiB;
  const files = path.join(dir, 'files');
  const collected = collectFiles(files, Math.floor(size * 0.38));
  console.log(`# building ${imageGiB} GiB image: ext4 of ${fsSize / MiB} MiB with ${(collected / MiB).toFixed(0)} MiB of files, 20% random`);
  const fsImage = path.join(dir, 'fs.img');
  sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', files, fsImage, `${fsSize / MiB}M`]);
  rmSync(files, { recursive: true, force: true });
  // Layout: [ext4 45%][zeros 15%][random 20%][zeros 20%]
  sh('cp', ['--sparse=always', fsImage, baseImage]);
  rmSync(fsImage);
  sh('truncate', ['-s', String(size), baseImage]);
  const fd = openSync(baseImage, 'r+');
  const randomStart = Math.floor(size * 0.6 / BLOCK) * BLOCK;
  const chunk = 64 * MiB;
  for (let at = randomStart; at < randomStart + size * 0.2; at += chunk) writeSync(fd, randomBytes(chunk), 0, chunk, at);
  closeSync(fd);
  // The changed image: 2% of the blocks get 64 KiB of new data each.
  sh('cp', ['--sparse=always', baseImage, changedImage]);
  const blocks = size / BLOCK;
  const changed = new Set<number>();
  while (changed.size < Math.round(blocks * 0.02)) changed.add(Math.floor(Math.random() * blocks));
  const cfd = openSync(changedImage, 'r+');
  const hints: { offset: number; length: number; exists: string }[] = [];
  for (const b of [...changed].sort((x, y) => x - y)) {
    const offset = b * BLOCK + 1 * MiB;
    writeSync(cfd, randomBytes(64 * 1024), 0, 64 * 1024, offset);
    hints.push({ offset, length: 64 * 1024, exists: 'true' });
  }
  closeSync(cfd);
  writeFileSync(hintsFile, JSON.stringify(hints));
  writeFileSync(stamp, '');
}

