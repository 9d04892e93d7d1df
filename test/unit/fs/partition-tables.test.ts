import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VersionRecord } from '../../../src/engine/catalog/catalog.js';
import type { VersionReader } from '../../../src/engine/live/version-reader.js';
import { SEGMENT_ENTRIES } from '../../../src/engine/objects/formats.js';
import { PartitionTables } from '../../../src/fs/partition-tables.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';

const MiB = 1024 * 1024;

/** A disk image partitioned by sfdisk, as bytes. */
function disk(script: (file: string) => string, size = 64 * MiB): Buffer {
  const file = path.join(makeTempDir(), 'disk.img');
  makeImage(file, [{ kind: 'zero', length: size }]);
  execFileSync('sfdisk', ['-q', file], { input: script(file) });
  return readFileSync(file);
}

/** Tables over in-memory images, counting the versions whose bytes were read. */
function tablesOver(images: Record<string, Buffer>) {
  const reads: string[] = [];
  const tables = new PartitionTables(
    async (v) => {
      reads.push(v.uid);
      const bytes = images[v.uid] ?? Buffer.alloc(0);
      return { read: async (offset: number, into: Buffer) => bytes.copy(into, 0, offset, offset + into.length) } as unknown as VersionReader;
    },
    () => undefined,
  );
  return { tables, reads };
}

const version = (uid: string, size: number, blockSize: number) => ({ uid, image: 'vm1', size, blockSize }) as VersionRecord;

describe('PartitionTables', () => {
  it('reads the table once for versions with the same first map segment, and once per version without one', async () => {
    const image = disk(() => 'label: gpt\nstart=2048, size=8M\nsize=4M\n');
    const { tables, reads } = tablesOver({ a: image, b: image, c: image, d: image, e: image });
    const first = Buffer.alloc(32, 1);
    const other = Buffer.alloc(32, 2);
    const bs = 4 * MiB;
    const got = await Promise.all(['a', 'b', 'c'].map(async (uid) => tables.partitions(version(uid, image.length, bs), first)));
    expect(got.map((p) => p.map((x) => x.number))).toEqual([[1, 2], [1, 2], [1, 2]]);
    await tables.partitions(version('d', image.length, bs), other);
    await tables.partitions(version('e', image.length, bs));
    expect(reads).toEqual(['a', 'd', 'e']);
    expect(tables.has('b')).toBe(true);
  });

  it('does not share a table read from bytes past the first map segment (logical partitions further on)', async () => {
    // 512-byte blocks: the first segment covers 512 KiB; the EBRs of the logical partitions lie beyond.
    const image = disk((f) => `label: dos\n${f}1 : start=2048, size=4M, type=83\n${f}2 : size=40M, type=5\n${f}5 : size=6M, type=83\n${f}6 : size=6M, type=83\n`);
    const { tables, reads } = tablesOver({ a: image, b: image });
    const first = Buffer.alloc(32, 1);
    expect(SEGMENT_ENTRIES * 512).toBeLessThan(5 * MiB);
    const a = await tables.partitions(version('a', image.length, 512), first);
    const b = await tables.partitions(version('b', image.length, 512), first);
    expect(a.map((p) => p.number)).toEqual([1, 5, 6]);
    expect(b).toEqual(a);
    expect(reads).toEqual(['a', 'b']);
  });
});
