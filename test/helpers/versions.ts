import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { newVersionUid } from '../../src/engine/support/uid.js';
import type { CliRun } from './cli.js';

/** A version as `backy2 db export` prints it. */
export interface ExportedVersion {
  readonly manifest: Record<string, unknown>;
  readonly segments: Record<string, string>;
}

/** What a copy differs in from the version it copies. */
export interface CopySpec {
  /** @default a new uid of its creation time */
  readonly uid?: string;
  readonly createdAt: number;
  readonly tags?: readonly string[];
  readonly protected?: boolean;
  readonly kind?: 'backup' | 'cow';
  /** The uid of its base (or null). */
  readonly baseUid?: string | null;
  readonly status?: 'valid' | 'invalid';
  readonly expiresAt?: number | null;
}

/**
 * Imports copies of an exported version (same blocks, other dates and properties) into the store
 * `run` works on, with `backy2 db import`: how tests get versions of any age through the CLI.
 * @returns the new uids, in the order of `specs`
 */
export async function importCopies(run: (argv: string[]) => Promise<CliRun>, dir: string, seed: ExportedVersion, image: string, specs: readonly CopySpec[]): Promise<string[]> {
  const uids = specs.map((s) => s.uid ?? newVersionUid(s.createdAt));
  const exported: ExportedVersion[] = specs.map((s, i) => ({
    segments: seed.segments,
    manifest: {
      ...seed.manifest,
      uid: uids[i],
      image,
      createdAt: s.createdAt,
      tags: [...(s.tags ?? [])],
      protected: s.protected ?? false,
      kind: s.kind ?? 'backup',
      baseUid: s.baseUid ?? null,
      status: s.status ?? 'valid',
      expiresAt: s.expiresAt ?? null,
    },
  }));
  const file = path.join(dir, `import-${image}-${Date.now()}-${Math.random()}.json`);
  writeFileSync(file, JSON.stringify(exported));
  const r = await run(['db', 'import', file]);
  if (r.code !== 0) throw new Error(`db import failed (${r.code}): ${r.stderr}`);
  return uids;
}
