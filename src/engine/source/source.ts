import { UsageError } from '../errors.js';
import { openFileSource } from './file-source.js';

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
   * Fills `into` with the bytes at `offset`.
   * @throws {IoError} when the source cannot be read
   */
  read(offset: number, into: Uint8Array): Promise<void>;
  /**
   * False when the range is known to read as zeros without reading it (a hole of a sparse
   * file), so the backup need not read it. Sources that cannot tell return true.
   */
  mayHaveData(offset: number, length: number): boolean;
  close(): Promise<void>;
}

/**
 * Opens a source given as `PATH`, `file:PATH` (a regular file or block device).
 * @throws {NotFoundError} when the source does not exist
 * @throws {UsageError} for an unsupported scheme or file type
 */
export async function openSource(spec: string): Promise<BlockSource> {
  const scheme = /^([a-z][a-z0-9+.-]*):/.exec(spec)?.[1];
  if (scheme === undefined || spec.startsWith('/') || spec.startsWith('.')) return openFileSource(spec);
  if (scheme === 'file') return openFileSource(spec.slice('file:'.length));
  throw new UsageError(`Unsupported source "${spec}": use a path or file:PATH`);
}
