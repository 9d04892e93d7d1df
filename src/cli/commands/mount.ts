import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError, errnoCode } from '../../engine/errors.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog, withStore } from '../context.js';
import { helpAfter } from '../help.js';
import type { CliIo, Globals } from '../io.js';
import { startMetricsServer } from '../metrics-server.js';

/** Parsed arguments of `backy2 mount`. */
export interface MountCommandOptions {
  readonly mountpoint: string;
  readonly writable?: boolean | undefined;
  readonly daemon?: boolean | undefined;
  readonly allowOther?: boolean | undefined;
  readonly log?: string | undefined;
  /** `--metrics-address`: serve the store's metrics over HTTP while mounted. */
  readonly metricsAddress?: string | undefined;
}

/** Environment variable naming the pipe on which a daemonized mount reports readiness. */
const READY_FD_ENV = 'BACKY2_READY_FD';

/** Wires `backy2 mount` and `backy2 umount` into the program. */
export function registerMount(program: Command, ctx: CommandContext): void {
  program
    .command('mount')
    .description('show every version as a file: MOUNTPOINT/<image>/<uid>.img, latest.img, versions.txt; each partition as <uid>-part<N>.img')
    .argument('<mountpoint>', 'an existing, empty directory')
    .option('-w, --writable', 'allow writes to version files; they never change the version but become a new copy-on-write version')
    .option('--daemon', 'run in the background (the log goes to --log)')
    .option('--allow-other', 'let other users access the mount (needed for loop devices opened by root when not mounting as root)')
    .option('--log <file>', 'log file of a --daemon mount (default: mount.log in the store directory, or in a new temp directory when the store is read-only)')
    .option('--json', 'once mounted, print one JSON line: {"type":"mounted","mountpoint",…}')
    .option('--metrics-address <address>', 'also serve the store\'s metrics (Prometheus) at http://ADDRESS/metrics: PORT (on 127.0.0.1) or HOST:PORT')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 mount /backy                                # foreground; Ctrl-C unmounts',
          'cp --sparse=always /backy/vm1/latest.img /tmp/vm1.img',
          'mount -o loop,ro /backy/vm1/latest-part1.img /mnt  # partition 1 of the newest version',
          'losetup -P -r -f --show /backy/vm1/latest.img      # /dev/loopNpM (needs the kernel partition scan)',
          'losetup -r -f --show /backy/vm1/latest.img && mount -o ro /dev/loop0 /mnt',
          'backy2 mount --writable --daemon /backy && backy2 umount /backy',
        ],
        'Reads are verified block by block; a bad block gives EIO for its range and a log line.\n' +
          'A version whose image has an MBR or GPT partition table also shows one file per partition,\n' +
          '<uid>-part<N>.img, and latest-part<N>.img links to those of latest.img (numbered as Linux\n' +
          'does: MBR 1-4 and logical from 5, GPT from 1; extended partitions get no file).\n' +
          'With --writable, the first write to a version file starts a copy-on-write session (data\n' +
          'spills to mount.spillDir, default /var/tmp); when the last writer closes the file, on\n' +
          'fsync and at unmount, the changes are committed as a new version tagged "cow" whose base\n' +
          'is the written version; partition files write into it at the partition offset. Sizes are\n' +
          'fixed: truncation and writes past the end are refused. SIGINT or SIGTERM commit open\n' +
          'sessions and unmount. A stale mount of a killed daemon is cleared. While a session is open\n' +
          'on a version file, its readers see the session; after the commit, the version again\n' +
          '(writable mounts bypass the page cache for that). latest.img is the newest valid backup,\n' +
          'never a copy-on-write version.',
      ),
    )
    .action(async (mountpoint: string, opts: Omit<MountCommandOptions, 'mountpoint'>, command: Command) => {
      ctx.exitCode = await runMount({ mountpoint, ...opts }, globalsOf(command), ctx.io);
    });

  program
    .command('umount')
    .description('unmount a backy2 mount, committing open copy-on-write sessions')
    .argument('<mountpoint>', 'where backy2 mount serves the versions')
    .addHelpText('after', helpAfter(['backy2 umount /backy']))
    .action(async (mountpoint: string, _opts: unknown, command: Command) => {
      ctx.exitCode = await runUmount({ mountpoint }, globalsOf(command), ctx.io);
    });
}

/**
 * Serves the mount in the foreground until a signal, or starts a daemon that does.
 * @returns the exit status
 */
export async function runMount(options: MountCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  if (options.daemon) return startDaemon(options, globals, io);
  const readyFd = io.env[READY_FD_ENV] ? Number(io.env[READY_FD_ENV]) : undefined;
  return withStore(globals, io, async (store) => {
    const signal = io.signal ?? new AbortController().signal;
    // FUSE (a native library) is loaded only by the commands that mount.
    const { serveMount } = await import('../../fs/mount.js');
    const log = (line: string) => io.stderr(`${new Date().toISOString()} ${line}\n`);
    const metrics = options.metricsAddress === undefined ? undefined : await startMetricsServer(store, options.metricsAddress, log);
    try {
      await serveMount(store, {
        mountpoint: options.mountpoint,
        writable: options.writable === true,
        allowOther: options.allowOther === true,
        signal,
        log,
        onMounted: () => {
          if (globals.json && readyFd === undefined) io.stdout(`${JSON.stringify(mountedJson(options, process.pid))}\n`);
          if (readyFd !== undefined) {
            writeSync(readyFd, 'ready\n');
            closeSync(readyFd);
          }
        },
      });
    } finally {
      await metrics?.close();
    }
    return 0;
  });
}

async function startDaemon(options: MountCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const { logFile, log } = await openDaemonLog(options, globals, io);
  const bin = process.argv[1] ?? '';
  const args = [
    ...(globals.store ? ['--store', globals.store] : []),
    ...(globals.config ? ['--config', globals.config] : []),
    'mount',
    options.mountpoint,
    ...(options.writable ? ['--writable'] : []),
    ...(options.allowOther ? ['--allow-other'] : []),
    ...(options.metricsAddress !== undefined ? ['--metrics-address', options.metricsAddress] : []),
  ];
  const child = spawn(process.execPath, [bin, ...args], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...io.env, [READY_FD_ENV]: '3' },
  });
  closeSync(log);
  const ready = await new Promise<boolean>((resolve) => {
    const pipe = child.stdio[3];
    pipe?.on('data', () => resolve(true));
    child.on('exit', () => resolve(false));
  });
  if (!ready) {
    const tail = readFileSync(logFile, 'utf8').trim().split('\n').pop() ?? '';
    throw new UsageError(`The mount daemon failed to start: ${tail.replace(/^\S+ /, '').replace(/^backy2: /, '')}`, { hint: `see ${logFile}` });
  }
  child.unref();
  (child.stdio[3] as NodeJS.ReadableStream & { destroy?: () => void } | null)?.destroy?.();
  if (globals.json) io.stdout(`${JSON.stringify({ ...mountedJson(options, child.pid ?? 0), log: logFile })}\n`);
  else io.stderr(`Mounted at ${path.resolve(options.mountpoint)} (daemon pid ${child.pid}, log ${logFile})\n`);
  return 0;
}

/**
 * The daemon's log: --log, else mount.log in the store directory, else (a store on read-only
 * media) a new private directory in the temp directory.
 */
async function openDaemonLog(options: MountCommandOptions, globals: Globals, io: CliIo): Promise<{ logFile: string; log: number }> {
  const open = (file: string) => ({ logFile: file, log: openSync(file, 'a', 0o600) });
  if (options.log !== undefined) {
    const file = path.resolve(options.log);
    try {
      return open(file);
    } catch (err) {
      throw new UsageError(`Cannot write the log file "${file}": ${errnoCode(err) ?? String(err)}`, { hint: 'name another with --log FILE' });
    }
  }
  try {
    return open(path.resolve((await storeDir(globals, io)) ?? '.', 'mount.log'));
  } catch (err) {
    if (!['EROFS', 'EACCES', 'EPERM'].includes(errnoCode(err) ?? '')) throw err;
    return open(path.join(mkdtempSync(path.join(tmpdir(), 'backy2-mount-')), 'mount.log'));
  }
}

/** The start-up line of `mount --json`. */
function mountedJson(options: MountCommandOptions, pid: number): Record<string, unknown> {
  return { type: 'mounted', mountpoint: path.resolve(options.mountpoint), writable: options.writable === true, pid };
}

async function storeDir(globals: Globals, io: CliIo): Promise<string | undefined> {
  return withCatalog(globals, io, async (store) => store.config.store.path);
}

/**
 * Stops the daemon of a mount point.
 * @returns the exit status
 */
export async function runUmount(options: { mountpoint: string }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const { stopMount } = await import('../../fs/mount.js');
    const how = await stopMount(store, options.mountpoint);
    io.stderr(how === 'stopped' ? `Unmounted ${path.resolve(options.mountpoint)}\n` : `Cleared the stale mount at ${path.resolve(options.mountpoint)}\n`);
    return 0;
  });
}
