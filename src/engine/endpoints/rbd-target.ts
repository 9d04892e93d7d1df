import type { Writable } from 'node:stream';
import { ConflictError, IoError, UsageError, isBackyError } from '../errors.js';
import type { RestoreTarget, TargetOptions } from './file-target.js';
import { exitOf, rbdError, runRbd, spawnRbd, type RbdSpec } from './rbd-cli.js';
import { DIFF_END, encodeDiffRecord, encodeDiffStart } from './rbd-diff-format.js';

/**
 * Restores into an RBD image through one `rbd import-diff` stream: data blocks as `w` records,
 * and, when the image existed (`force`), zero ranges as `z` records so no stale data remains.
 * A new image is created first (and removed again when the restore fails).
 * @throws {ConflictError} when the image exists without `force`, or is smaller than the version
 * @throws {UsageError} when a snapshot is named (restores go to an image head)
 */
export async function openRbdTarget(spec: RbdSpec, options: TargetOptions): Promise<RestoreTarget> {
  if (spec.snapshot) throw new UsageError(`Cannot restore into the snapshot ${spec.location}: name the image (rbd:POOL/IMAGE)`);
  const name = `${spec.pool}/${spec.image}`;
  let existing: number | undefined;
  try {
    existing = (JSON.parse(await runRbd(['info', '--format', 'json', name], spec.ceph, spec.location)) as { size: number }).size;
  } catch (err) {
    if (!isBackyError(err) || err.code !== 'E_NOT_FOUND') throw err;
  }
  if (existing !== undefined) {
    if (!options.force) throw new ConflictError(`Target ${spec.location} exists`, { hint: 'use --force to overwrite it' });
    if (existing < options.size) throw new ConflictError(`Target ${spec.location} is too small: ${existing} bytes, the version has ${options.size}`);
  } else {
    await runRbd(['create', '--size', `${options.size}B`, name], spec.ceph, spec.location);
  }
  const child = spawnRbd(['import-diff', '--no-progress', '-', name], spec.ceph, 'pipe');
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = exitOf(child, spec.location);
  const stdin = child.stdin as Writable;
  stdin.on('error', () => undefined); // reported through the exit status
  const send = (chunk: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      // Resolves once rbd has taken the bytes: the caller may reuse its buffer then.
      stdin.write(chunk, (err) => (err ? reject(new IoError(`Cannot write to rbd import-diff for ${spec.location}: ${err.message}`)) : resolve()));
    });
  // import-diff resizes the image to this size: keep a larger existing image as it is.
  await send(encodeDiffStart(existing ?? options.size));
  const created = existing === undefined;
  return {
    location: spec.location,
    zeroed: created,
    created,
    write: async (offset, data) => {
      const head = send(encodeDiffRecord('w', offset, data.length));
      await Promise.all([head, send(data)]);
    },
    zero: async (offset, length) => send(encodeDiffRecord('z', offset, length)),
    finish: async () => {
      await send(DIFF_END);
      stdin.end();
      const code = await exited;
      if (code !== 0) throw rbdError(stderr, code, spec.location, 'import-diff');
    },
    abort: async () => {
      stdin.destroy();
      child.kill();
      await exited.catch(() => undefined);
      if (created) await runRbd(['rm', name], spec.ceph, spec.location).catch(() => undefined);
    },
  };
}
