/**
 * Ceph RBD through the `rbd` command line (and `qemu-img` for random reads): no kernel module,
 * no native binding. Errors become one clear BackyError each.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { IoError, NotFoundError, UsageError } from '../errors.js';

/** How to reach the cluster; undefined fields use Ceph's own defaults (CEPH_CONF, client.admin). */
export interface CephOptions {
  readonly conf?: string | undefined;
  readonly id?: string | undefined;
  readonly keyring?: string | undefined;
  /** Seconds after which a stuck RADOS operation fails instead of blocking. @default 120 s */
  readonly timeoutMs?: number | undefined;
}

/** An RBD image (and snapshot) named by `rbd:POOL/IMAGE[@SNAP][?conf=…&id=…&keyring=…]`. */
export interface RbdSpec {
  readonly pool: string;
  readonly image: string;
  readonly snapshot: string | undefined;
  readonly ceph: CephOptions;
  /** `rbd:pool/image[@snap]`, for messages. */
  readonly location: string;
}

const NAME = /^[A-Za-z0-9_.+-][A-Za-z0-9_.+:=-]*$/;

/**
 * Parses an `rbd:` URL.
 * @param defaults Ceph options from the configuration; the URL's query overrides them
 * @throws {UsageError} when it is malformed
 */
export function parseRbdSpec(spec: string, defaults: CephOptions): RbdSpec {
  const m = /^rbd:([^/@?]+)\/([^@?]+)(?:@([^?]+))?(?:\?(.*))?$/.exec(spec);
  if (!m) throw new UsageError(`Invalid RBD name "${spec}": use rbd:POOL/IMAGE[@SNAPSHOT]`);
  const [, pool = '', image = '', snapshot, query] = m;
  for (const part of [pool, image, snapshot ?? 'x']) {
    if (!NAME.test(part)) throw new UsageError(`Invalid RBD name "${spec}": "${part}" has characters rbd names do not use`);
  }
  const params = new URLSearchParams(query ?? '');
  for (const key of params.keys()) {
    if (!['conf', 'id', 'keyring'].includes(key)) throw new UsageError(`Invalid RBD name "${spec}": unknown option "${key}" (use conf, id, keyring)`);
  }
  return {
    pool,
    image,
    snapshot,
    ceph: { ...defaults, conf: params.get('conf') ?? defaults.conf, id: params.get('id') ?? defaults.id, keyring: params.get('keyring') ?? defaults.keyring },
    location: `rbd:${pool}/${image}${snapshot ? `@${snapshot}` : ''}`,
  };
}

/** The options every rbd command gets. */
export function rbdArgs(ceph: CephOptions): string[] {
  const seconds = String(Math.round((ceph.timeoutMs ?? 120_000) / 1000));
  // An unreachable cluster fails after the timeout too (rbd waits 300 s for monitors by default).
  const args = ['--rados-osd-op-timeout', seconds, '--client-mount-timeout', seconds];
  if (ceph.conf) args.push('--conf', ceph.conf);
  if (ceph.id) args.push('--id', ceph.id);
  if (ceph.keyring) args.push('--keyring', ceph.keyring);
  return args;
}

/** Starts `rbd ARGS` with the Ceph options. */
export function spawnRbd(args: readonly string[], ceph: CephOptions, stdin: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  return spawn('rbd', [...rbdArgs(ceph), ...args], { stdio: [stdin, 'pipe', 'pipe'] });
}

/**
 * Runs `rbd ARGS` and returns its standard output.
 * @param what names the image in errors
 * @throws {NotFoundError} when the image, snapshot or pool does not exist
 * @throws {IoError} when rbd fails otherwise (cluster unreachable, permission)
 */
export async function runRbd(args: readonly string[], ceph: CephOptions, what: string): Promise<string> {
  const child = spawnRbd(args, ceph);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await exitOf(child, what);
  if (code !== 0) throw rbdError(stderr, code, what, args[0] ?? 'rbd');
  return stdout;
}

/** The exit code of a child, or a clear error when the program is missing. */
export function exitOf(child: ChildProcess, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new UsageError(`Cannot reach ${what}: the rbd command is not installed (Debian package ceph-common)`, { cause: err })
          : new IoError(`Cannot run rbd for ${what}: ${err.message}`, { cause: err }),
      );
    });
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** Turns rbd's stderr into one clear error. */
export function rbdError(stderr: string, code: number, what: string, verb: string): Error {
  // Ceph's log lines (timestamped: keyrings it did not find, monitors it hunted) are not the error.
  const line = stderr.split('\n').map((l) => l.replace(/^rbd: /, '').trim()).filter((l) => l && !/^\d{4}-\d\d-\d\d/.test(l)).pop() ?? `exit status ${code}`;
  if (/couldn't connect to the cluster|authenticate timed out|error connecting to the cluster/i.test(stderr)) {
    return new IoError(`Cannot reach the Ceph cluster for ${what}`, { hint: 'check mon_host in ceph.conf, the keyring (ceph.keyring in the config) and the network' });
  }
  if (/No such file or directory|does not exist|error opening (image|pool)|not found/i.test(line)) {
    return new NotFoundError(`RBD ${what} not found: ${line}`);
  }
  return new IoError(`rbd ${verb} failed for ${what}: ${line}`);
}
