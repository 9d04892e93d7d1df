import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { deferCleanup } from './cleanup.js';

/** Runs a system command and returns its stdout; throws with stderr on failure. */
export function run(cmd: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...options });
}

/** Attaches a loop device to a file (detached after the test). */
export function attachLoop(file: string, options: { readOnly?: boolean } = {}): string {
  const device = run('losetup', ['--find', '--show', ...(options.readOnly ? ['--read-only'] : []), file]).trim();
  deferCleanup(() => {
    // Already detached by the test is fine.
    if (run('losetup', ['-j', file]).includes(device)) run('losetup', ['-d', device]);
  });
  return device;
}

/** Mounts a device or image file (unmounted after the test, before loop devices are detached). */
export function mount(source: string, dir: string, options: readonly string[] = []): void {
  mkdirSync(dir, { recursive: true });
  run('mount', [...(options.length ? ['-o', options.join(',')] : []), source, dir]);
  deferCleanup(() => {
    run('umount', [dir]);
  });
}

/**
 * Mounts an image file with `mount -o loop` as a user would; after the test it is unmounted and
 * any loop device left on the file (mount normally frees it) is detached.
 */
export function mountLoop(file: string, dir: string, options: readonly string[] = []): void {
  deferCleanup(() => {
    for (const line of run('losetup', ['-j', file]).split('\n')) {
      const device = line.split(':')[0];
      if (device) run('losetup', ['-d', device]);
    }
  });
  mount(file, dir, ['loop', ...options]);
}

/** Makes an ext4 file system image of `sizeMiB`, optionally filled from a directory. */
export function makeExt4(file: string, sizeMiB: number, fromDir?: string): void {
  run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', ...(fromDir ? ['-d', fromDir] : []), file, `${sizeMiB}M`]);
}

/** A small ext4 file system mounted at `dir` (for disk-full and read-only tests). */
export function mountedScratchFs(image: string, dir: string, sizeMiB: number): void {
  makeExt4(image, sizeMiB);
  mount(attachLoop(image), dir);
}

