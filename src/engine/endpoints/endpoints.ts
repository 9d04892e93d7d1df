import { UsageError } from '../errors.js';
import type { Extent } from './hints.js';
import { openFileSource } from './file-source.js';
import { openFileTarget, type RestoreTarget, type TargetOptions } from './file-target.js';
import { parseRbdSpec, type CephOptions } from './rbd-cli.js';
import { openRbdSource } from './rbd-source.js';
import { openRbdTarget } from './rbd-target.js';

/**
 * Where backup data comes from. The backup issues reads in ascending offset order (several may
 * be in flight), so streaming sources can serve them from one pass.
 */
export interface BlockSource {
  /** The source as the user named it, without credentials. */
  readonly location: string;
  /** Size in bytes. */
  readonly size: number;
  /**
   * Fills `into` with the bytes at `offset`. Page-aligned memory (pool slots, `alignedBuffer`)
   * lets a file source read what is not cached around the page cache (O_DIRECT); other memory
   * reads right too, through the cache.
   * @throws {IoError} when the source cannot be read
   */
  read(offset: number, into: Uint8Array): Promise<void>;
  /**
   * False when the range is known to read as zeros without reading it (a hole of a sparse
   * file), so the backup need not read it. Sources that cannot tell return true.
   */
  mayHaveData(offset: number, length: number): boolean;
  /** The snapshot the data comes from (recorded with the version), when the source has one. */
  readonly snapshot?: string;
  /** What identifies that snapshot beyond its name (recorded too; see VersionRecord.snapshotId). */
  readonly snapshotId?: string | undefined;
  /**
   * Sources that know what changed (RBD): plans the read and returns the changed extents since
   * the base version (its snapshot, if taken of this same source), or undefined when everything
   * must be read.
   */
  changedExtents?(base: { readonly snapshot: string | null; readonly snapshotId: string | null; readonly source: string | null } | null): Promise<Extent[] | undefined>;
  /**
   * Called once the backup committed (true) or failed (false), e.g. to manage snapshots.
   * @param earlier snapshots of the image's earlier versions (those it made may go now)
   */
  finish?(committed: boolean, earlier: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link openSource}. */
export interface OpenSourceOptions {
  /** How `rbd:` sources reach Ceph. */
  readonly ceph: CephOptions;
  /** For `rbd:POOL/IMAGE` without a snapshot: create this one (`--snapshot auto`). */
  readonly createSnapshot?: string | undefined;
  /** Directory for temp files. */
  readonly tmpDir: string;
}

function schemeOf(spec: string): string | undefined {
  if (spec.startsWith('/') || spec.startsWith('.')) return undefined;
  return /^([a-z][a-z0-9+.-]*):/.exec(spec)?.[1];
}

/**
 * Opens a source given as `PATH`, `file:PATH` (a regular file or block device) or
 * `rbd:POOL/IMAGE[@SNAPSHOT]`.
 * @throws {NotFoundError} when the source does not exist
 * @throws {UsageError} for an unsupported scheme or file type
 */
export async function openSource(spec: string, options: OpenSourceOptions): Promise<BlockSource> {
  const scheme = schemeOf(spec);
  if (options.createSnapshot && scheme !== 'rbd') throw new UsageError(`--snapshot auto needs an rbd: source, not "${spec}"`);
  if (scheme === undefined) return openFileSource(spec);
  if (scheme === 'file') return openFileSource(spec.slice('file:'.length));
  if (scheme === 'rbd') return openRbdSource(parseRbdSpec(spec, options.ceph), { createSnapshot: options.createSnapshot, tmpDir: options.tmpDir });
  throw new UsageError(`Unsupported source "${spec}": use a path, file:PATH or rbd:POOL/IMAGE@SNAPSHOT`);
}

/**
 * Opens a restore target: a file or block device path (`file:PATH`), or `rbd:POOL/IMAGE`.
 * @throws {ConflictError} when it exists without `force`, or is smaller than the version
 */
export async function openTarget(spec: string, options: TargetOptions & { readonly ceph: CephOptions }): Promise<RestoreTarget> {
  const scheme = schemeOf(spec);
  if (scheme === 'rbd') return openRbdTarget(parseRbdSpec(spec, options.ceph), options);
  if (scheme === 'file') return openFileTarget(spec.slice('file:'.length), options);
  if (scheme === undefined) return openFileTarget(spec, options);
  throw new UsageError(`Unsupported target "${spec}": use a path, file:PATH or rbd:POOL/IMAGE`);
}
