import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Fuse from 'fuse-native';
import { ConflictError, NotFoundError, StoreUnavailableError, UsageError, errnoCode } from '../engine/errors.js';
import { acquireLocks } from '../engine/catalog/locking.js';
import { assertWritable, type Store } from '../engine/store.js';
import { debug } from '../engine/support/debug.js';
import { fuseOperations } from './fuse-ops.js';
import { VersionFs } from './version-fs.js';

const run = promisify(execFile);

/** Lock resource of a mount point: one daemon per mount point, found by `backy2 umount`. */
export const mountResource = (mountpoint: string) => `mount:${mountpoint}`;

/** Options of {@link serveMount}. */
export interface MountOptions {
  readonly mountpoint: string;
  /** Version files accept writes (copy-on-write). */
  readonly writable: boolean;
  /** Let other users (root, for loop devices) access the mount. */
  readonly allowOther: boolean;
  readonly log: (line: string) => void;
  /** Aborting it unmounts (after committing open copy-on-write sessions). */
  readonly signal: AbortSignal;
  /** Called once the file system is mounted. */
  readonly onMounted?: () => void;
}

/** The fields of `dir`'s line in /proc/self/mountinfo (its device at index 2), or undefined when nothing is mounted there. */
export function mountInfo(dir: string): string[] | undefined {
  const escaped = dir.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[4] === escaped);
}

/** Whether `dir` is a mount point now (from /proc/self/mountinfo). */
export function isMounted(dir: string): boolean {
  return mountInfo(dir) !== undefined;
}

/**
 * Read-ahead a read-only mount asks of the kernel, in KiB. The kernel gives a FUSE file system
 * 128 KiB whatever libfuse 2 asks (its max_readahead can only lower it), so a sequential reader
 * waits for one 128 KiB request after another; 512 KiB keeps four in flight. Measured here with
 * the store in RAM, `dd` of a version: 1.2–1.4 GB/s at 128 KiB, 1.6–1.8 GB/s at 512 KiB, no
 * better at 1 MiB, slower from 2 MiB on.
 */
const MOUNT_READ_AHEAD_KIB = 512;

/**
 * Raises the read-ahead of the file system mounted at `dir` (its device's entry in
 * /sys/class/bdi) to MOUNT_READ_AHEAD_KIB. Best effort: only root may, and a failure costs only
 * speed.
 */
export function raiseReadAhead(dir: string): void {
  try {
    const device = mountInfo(dir)?.[2];
    if (!device || !/^\d+:\d+$/.test(device)) return;
    const file = `/sys/class/bdi/${device}/read_ahead_kb`;
    if (Number(readFileSync(file, 'utf8')) < MOUNT_READ_AHEAD_KIB) writeFileSync(file, String(MOUNT_READ_AHEAD_KIB));
  } catch (err) {
    debug(`read-ahead of ${dir} left as it is: ${String(err)}`);
  }
}

/** Unmounts a FUSE mount lazily (also a stale one whose daemon died). */
export async function forceUnmount(dir: string): Promise<void> {
  await run('fusermount', ['-uz', dir]);
}

/**
 * Serves the versions of a store as files at `mountpoint` until `signal` fires or the file system
 * is unmounted from outside. A stale mount left by a killed daemon is cleared first.
 * @throws {UsageError} when the mount point is not a directory or FUSE is not available
 * @throws {ConflictError} when something else is mounted there
 * @throws {LockedError} when another backy2 daemon serves that mount point
 */
export async function serveMount(store: Store, options: MountOptions): Promise<void> {
  if (options.writable) assertWritable(store, 'mount writable');
  const mountpoint = await canonical(options.mountpoint);
  await clearStaleMount(mountpoint, options.log);
  const st = await fsp.stat(mountpoint).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') throw new UsageError(`Cannot mount at "${mountpoint}": no such directory`, { hint: `create it first: mkdir ${mountpoint}` });
    throw new UsageError(`Cannot mount at "${mountpoint}": ${String(err)}`);
  });
  if (!st.isDirectory()) throw new UsageError(`Cannot mount at "${mountpoint}": not a directory`, { hint: 'mount on an empty directory, e.g. mkdir /backy' });
  if (!isMounted(mountpoint) && (await fsp.readdir(mountpoint)).length > 0) {
    // FUSE would hide the files (or libfuse refuses with a bare "fuse failed").
    throw new UsageError(`Cannot mount at "${mountpoint}": the directory is not empty`, { hint: 'mount on an empty directory, e.g. mkdir /backy' });
  }
  const lock = await acquireLocks(store.catalog, [{ resource: mountResource(mountpoint), mode: 'exclusive', operation: 'mount' }]);
  try {
    if (isMounted(mountpoint)) throw new ConflictError(`Cannot mount at "${mountpoint}": something is already mounted there`);
    const vfs = new VersionFs(store, {
      writable: options.writable,
      origin: `mount ${mountpoint}`,
      log: options.log,
    });
    // fuse-native passes fsname verbatim as one -o argument, which carries the options it lacks.
    // A writable mount keeps version data out of the kernel's page cache (direct_io): pages read
    // during a copy-on-write session would otherwise outlive it, and the version file would go on
    // showing writes that are in no version. Read-only mounts never change: they cache (auto_cache).
    const extra = options.writable ? ['big_writes', 'max_write=131072', 'direct_io'] : ['ro'];
    const fuse = new Fuse(mountpoint, fuseOperations(vfs), {
      fsname: ['backy2', ...extra].join(','),
      subtype: 'backy2',
      autoCache: !options.writable,
      allowOther: options.allowOther,
      timeout: { default: 120_000, release: false, fsync: false, flush: false },
    });
    await new Promise<void>((resolve, reject) =>
      fuse.mount((err) => (err ? reject(new UsageError(`Cannot mount at "${mountpoint}": ${err.message}`, { cause: err })) : resolve())),
    );
    // Writable mounts bypass the page cache (direct_io): read-ahead does nothing for them. The
    // kernel sets it when it has our answer to INIT, which a first request waits for (a stat in
    // the thread pool: the main thread must stay free to answer it).
    if (!options.writable) {
      await fsp.stat(mountpoint).catch(() => undefined);
      raiseReadAhead(mountpoint);
    }
    options.log(`mounted ${options.writable ? 'read-write (copy-on-write)' : 'read-only'} at ${mountpoint}`);
    options.onMounted?.();
    const how = await waitForStop(mountpoint, options.signal);
    if (how === 'unmounted from outside') {
      options.log(`${mountpoint} was unmounted from outside (fusermount -u, umount -l): committing and exiting`);
      releaseFuse(fuse);
    } else {
      options.log(`unmounting ${mountpoint}`);
      // Unmount first so that no write slips in between the last commit and the unmount.
      const failed = await new Promise<unknown>((resolve) => fuse.unmount((err) => resolve(err)));
      if (isMounted(mountpoint)) await forceUnmount(mountpoint).catch(() => undefined);
      // The mount may have vanished between the check and fusermount, which then fails and leaves
      // fuse-native holding the event loop.
      if (failed) releaseFuse(fuse);
    }
    const lost = await vfs.shutdown();
    if (lost.length > 0) {
      throw new StoreUnavailableError(`Unmounted ${mountpoint}, but could not commit ${lost.join(', ')}: those writes are lost (see the log above)`);
    }
  } finally {
    await lock.release();
  }
}

/**
 * Asks the daemon serving `mountpoint` to unmount and waits until it has (committing open
 * copy-on-write sessions may take a moment). Clears a stale mount whose daemon is gone.
 * @throws {NotFoundError} when nothing of backy2 is mounted there
 */
export async function stopMount(store: Store, mountpoint: string, timeoutMs = 120_000): Promise<'stopped' | 'cleared'> {
  const abs = await canonical(mountpoint);
  const holders = await store.catalog.listLocks(mountResource(abs));
  const holder = holders[0];
  if (!holder) {
    if (!isMounted(abs)) throw new NotFoundError(`Nothing of backy2 is mounted at "${abs}"`);
    // No lock: its daemon died (a stale mount), or it serves a store on read-only media, where
    // no locks are taken; such a daemon notices the unmount and exits by itself.
    const stale = await isStale(abs);
    await forceUnmount(abs);
    return stale ? 'cleared' : 'stopped';
  }
  if (holder.host !== hostname()) {
    throw new ConflictError(`"${abs}" is mounted by pid ${holder.pid} on host ${holder.host}: run backy2 umount there`);
  }
  try {
    process.kill(holder.pid, 'SIGTERM');
  } catch (err) {
    // ESRCH: it died just now (its lock goes with it); EPERM: another user's daemon.
    if (errnoCode(err) === 'EPERM') throw new ConflictError(`The mount daemon of "${abs}" (pid ${holder.pid}) belongs to another user`);
    if (errnoCode(err) !== 'ESRCH') throw err;
  }
  const deadline = Date.now() + timeoutMs;
  while ((await store.catalog.listLocks(mountResource(abs))).length > 0) {
    if (Date.now() > deadline) throw new ConflictError(`The mount daemon of "${abs}" (pid ${holder.pid}) did not stop within ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // A daemon that died instead of stopping leaves its mount behind.
  await clearStaleMount(abs, () => undefined);
  return 'stopped';
}

/** The mount point as the kernel lists it (symlinks resolved); a dead FUSE mount cannot be resolved. */
async function canonical(mountpoint: string): Promise<string> {
  const abs = path.resolve(mountpoint);
  return fsp.realpath(abs).catch(() => abs);
}

/**
 * Whether the FUSE mount at `mountpoint` lost its daemon. Opening the directory always asks the
 * daemon; a stat may be answered from attributes the kernel still caches (the mount stats its
 * root once mounted, so a daemon killed within a second looked alive to a stat).
 */
async function isStale(mountpoint: string): Promise<boolean> {
  const err = await fsp.opendir(mountpoint).then(
    (dir) => dir.close().then(() => undefined),
    (e: unknown) => e,
  );
  return errnoCode(err) === 'ENOTCONN';
}

async function clearStaleMount(mountpoint: string, log: (line: string) => void): Promise<void> {
  if (await isStale(mountpoint)) {
    log(`clearing the stale mount at ${mountpoint} (its daemon died)`);
    await forceUnmount(mountpoint);
  }
}

async function waitForStop(mountpoint: string, signal: AbortSignal): Promise<'signal' | 'unmounted from outside'> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      // Unmounted from outside (fusermount -u, umount -l): stop too.
      if (!isMounted(mountpoint)) done('unmounted from outside');
    }, 1000);
    const onAbort = () => done('signal');
    const done = (how: 'signal' | 'unmounted from outside') => {
      clearInterval(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(how);
    };
    if (signal.aborted) done('signal');
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Lets go of fuse-native's hold on the event loop once the kernel mount is gone. fuse-native
 * releases it only after its own fusermount succeeds, which it cannot once somebody else has
 * unmounted: the daemon then never exited. Its native binding offers the release by itself.
 */
function releaseFuse(fuse: Fuse): void {
  const main = createRequire(import.meta.url).resolve('fuse-native');
  const require = createRequire(main);
  const binding = (require('node-gyp-build') as (dir: string) => { fuse_native_unmount?: (mnt: string, thread: Buffer) => void })(path.dirname(main));
  const internals = fuse as unknown as { mnt?: string; _thread?: Buffer };
  if (typeof binding.fuse_native_unmount !== 'function' || !internals._thread || internals.mnt === undefined) return;
  // It only unreferences the handle, once per mount (a counter it keeps): guard against a second call.
  const released = fuse as unknown as { [RELEASED]?: boolean };
  if (released[RELEASED]) return;
  released[RELEASED] = true;
  binding.fuse_native_unmount(internals.mnt, internals._thread);
}

const RELEASED = Symbol('backy2 released fuse-native');
