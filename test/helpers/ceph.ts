import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { inject } from 'vitest';
import { DIFF_END, encodeDiffRecord, encodeDiffStart } from '../../src/engine/endpoints/rbd-diff-format.js';

/** The cluster the global setup started. */
export function ceph() {
  return inject('ceph');
}

/** Runs rbd against the test cluster and returns stdout. */
export function rbd(args: readonly string[], input?: Buffer): string {
  const r = spawnSync('rbd', ['--conf', ceph().conf, ...args], { input, encoding: 'buffer', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`rbd ${args.join(' ')} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** Writes data at offsets into an existing image (a hand-made import-diff stream). */
export function writeRbd(image: string, size: number, writes: readonly { offset: number; data: Buffer }[]): void {
  const parts = [encodeDiffStart(size)];
  for (const w of writes) parts.push(encodeDiffRecord('w', w.offset, w.data.length), w.data);
  parts.push(DIFF_END);
  rbd(['import-diff', '--no-progress', '-', image], Buffer.concat(parts));
}

/** sha256 of `rbd export` of an image or snapshot. */
export function rbdSha(name: string): string {
  const out = execFileSync('rbd', ['--conf', ceph().conf, 'export', '--no-progress', name, '-'], { maxBuffer: 1 << 30 });
  return createHash('sha256').update(out).digest('hex');
}

/** The directory of the test cluster (pid files, logs). */
export function cephDir(): string {
  return path.dirname(ceph().conf);
}
