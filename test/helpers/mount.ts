import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { isMounted as isMountPoint } from '../../src/fs/mount.js';
import { BIN } from './cli.js';
import { deferCleanup } from './cleanup.js';
import { run } from './system.js';

// Whether a directory is a mount point now: the daemon's own check, from /proc/self/mountinfo.
export { isMountPoint };

/** Polls until `check` holds (or throws after `ms`). */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A running `backy2 mount` daemon started by a test. */
export interface MountDaemon {
  readonly child: ChildProcess;
  /** What the daemon logged so far. */
  log(): string;
  /** SIGINT and wait for a clean exit; returns its exit code. */
  stop(): Promise<number | null>;
}

/** Starts `backy2 mount` in the foreground and waits until the mount point is mounted. */
export async function startMount(mountpoint: string, env: NodeJS.ProcessEnv, extra: readonly string[] = []): Promise<MountDaemon> {
  try {
    mkdirSync(mountpoint, { recursive: true });
  } catch (err) {
    // A stale mount point of a killed daemon: the daemon clears it.
    if ((err as { code?: string }).code !== 'ENOTCONN') throw err;
  }
  const child = spawn(BIN, ['mount', mountpoint, ...extra], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  deferCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (isMountPoint(mountpoint)) run('fusermount', ['-uz', mountpoint]);
  });
  // The daemon logs "mounted read-only at …" once serving (a stale mount point is a mount point
  // too; "something is already mounted there" is an error).
  await eventually(() => / mounted read-(only|write)/.test(log) || child.exitCode !== null, 15_000, 'the mount');
  if (!isMountPoint(mountpoint) || child.exitCode !== null) throw new Error(`backy2 mount failed: ${log}`);
  return {
    child,
    log: () => log,
    stop: async () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}
