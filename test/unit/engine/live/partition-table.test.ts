import { randomBytes, randomInt } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MAX_LOGICAL_PARTITIONS, readPartitionTable, type PartitionTable, type ReadAt } from '../../../../src/engine/live/partition-table.js';
import { makeExt4, run } from '../../../helpers/system.js';
import { makeTempDir } from '../../../helpers/temp.js';

const MiB = 1024 * 1024;

/** Reads of an image file, as the mount reads a version. */
function fileReader(file: string): ReadAt {
  return async (offset, length) => {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, readSync(fd, buf, 0, length, offset));
    } finally {
      closeSync(fd);
    }
  };
}

/** Reads of an in-memory image that fail the test after too many reads (a parser that loops). */
function memoryReader(image: Uint8Array, maxReads = 2000): ReadAt {
  let reads = 0;
  return async (offset, length) => {
    if (++reads > maxReads) throw new Error('too many reads');
    if (offset < 0 || offset + length > image.length) throw new Error(`read outside the image: ${offset}+${length}`);
    return image.subarray(offset, offset + length);
  };
}

async function tableOf(file: string): Promise<PartitionTable | undefined> {
  return readPartitionTable(fileReader(file), statSync(file).size);
}

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  name?: string;
}

/** What sfdisk (an independent parser) sees, in our terms; extended containers are left out. */
function sfdiskView(file: string): { scheme: string; partitions: { number: number; offset: number; length: number; type: string; name?: string }[] } {
  const json = JSON.parse(run('sfdisk', ['--json', file])) as { partitiontable: { label: string; sectorsize: number; partitions: SfdiskPartition[] } };
  const t = json.partitiontable;
  const gpt = t.label === 'gpt';
  const partitions = t.partitions
    .filter((p) => gpt || ![0x05, 0x0f, 0x85].includes(parseInt(p.type, 16)))
    .map((p) => ({
      number: Number(/(\d+)$/.exec(p.node)![1]),
      offset: p.start * t.sectorsize,
      length: p.size * t.sectorsize,
      type: gpt ? p.type : parseInt(p.type, 16).toString(16).padStart(2, '0'),
      ...(gpt ? { name: p.name ?? '' } : {}),
    }))
    .sort((a, b) => a.number - b.number);
  return { scheme: gpt ? 'gpt' : 'mbr', partitions };
}

/** An empty sparse image file of `mib` MiB. */
function blank(dir: string, name: string, mib = 64): string {
  const file = path.join(dir, name);
  writeFileSync(file, '');
  run('truncate', ['-s', `${mib}M`, file]);
  return file;
}

const sfdisk = (file: string, script: string) => run('sfdisk', ['-q', file], { input: script });
const parted = (file: string, ...args: string[]) => run('parted', ['-s', file, ...args]);
const sgdisk = (file: string, ...args: string[]) => run('sgdisk', [...args, file]);

const layouts: [string, (file: string) => void][] = [
  [
    'sfdisk MBR: primaries 1 and 4, extended 2 with logicals 5-7',
    (f) =>
      sfdisk(f, `label: dos\n${f}1 : start=2048, size=8M, type=83\n${f}2 : size=40M, type=5\n${f}4 : size=4M, type=c\n${f}5 : size=6M, type=83\n${f}6 : size=6M, type=82\n${f}7 : size=10M, type=83\n`),
  ],
  ['sfdisk MBR: one primary in slot 3', (f) => sfdisk(f, `label: dos\n${f}3 : start=4096, size=20M, type=7\n`)],
  ['sfdisk GPT with names', (f) => sfdisk(f, 'label: gpt\nsize=8M, type=L, name=root\nsize=4M, type=S, name="swap space"\nsize=1M, type=U\n')],
  ['parted MBR: extended (type 0x0f) with two logicals', (f) => parted(f, 'mklabel', 'msdos', 'mkpart', 'primary', '1MiB', '5MiB', 'mkpart', 'extended', '5MiB', '40MiB', 'mkpart', 'logical', 'ext4', '6MiB', '10MiB', 'mkpart', 'logical', '11MiB', '20MiB', 'mkpart', 'primary', '40MiB', '50MiB')],
  ['parted GPT with UTF-16 names', (f) => parted(f, 'mklabel', 'gpt', 'mkpart', 'données', '1MiB', '5MiB', 'mkpart', 'b', 'ext4', '5MiB', '20MiB')],
  ['sgdisk GPT: 256 entries, numbers 1, 3 and 200', (f) => sgdisk(f, '-S', '256', '-n', '200:2048:+4M', '-c', '200:big number', '-n', '3:0:+8M', '-t', '3:8200', '-n', '1:0:+1M', '-t', '1:ef00')],
];

describe('readPartitionTable()', () => {
  it.each(layouts)('reads the same partitions as sfdisk: %s', async (_name, make) => {
    const dir = makeTempDir();
    const file = blank(dir, 'disk.img');
    make(file);
    const expected = sfdiskView(file);
    expect(expected.partitions.length).toBeGreaterThan(0);
    const table = await tableOf(file);
    expect(table?.scheme).toBe(expected.scheme);
    expect(table?.sectorSize).toBe(512);
    expect(table?.partitions).toEqual(expected.partitions);
  });

  it.each([
    ['the primary header', 512 + 60],
    ['the primary entry array', 1024 + 40],
  ])('falls back to the backup GPT when %s is damaged', async (_what, at) => {
    const dir = makeTempDir();
    const file = blank(dir, 'disk.img');
    sfdisk(file, 'label: gpt\nsize=8M, type=L, name=root\nsize=4M, type=S\n');
    const intact = await tableOf(file);
    expect(intact?.partitions).toHaveLength(2);
    writeByte(file, at, readByte(file, at) ^ 0xff);
    const table = await tableOf(file);
    expect(table).toEqual(intact);
    expect(table?.partitions).toEqual(sfdiskView(file).partitions);
  });

  it('reads a GPT written for 4096-byte sectors, and its backup', async () => {
    const image = gpt4k();
    const table = await readPartitionTable(memoryReader(image), image.length);
    expect(table).toEqual({
      scheme: 'gpt',
      sectorSize: 4096,
      partitions: [
        { number: 1, offset: 256 * 4096, length: 512 * 4096, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', name: 'four k' },
        { number: 3, offset: 1024 * 4096, length: 10 * 4096, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', name: '' },
      ],
    });
    image.fill(0, 4096, 2 * 4096);
    expect(await readPartitionTable(memoryReader(image), image.length)).toEqual(table);
  });

  it('drops GPT entries that end outside the image or before they start', async () => {
    const image = gpt4k([
      [1, 256, 767],
      [2, 300, 299],
      [3, 1000, 2048], // the image has 2048 sectors: LBA 2048 is past its end
    ]);
    const table = await readPartitionTable(memoryReader(image), image.length);
    expect(table?.partitions.map((p) => p.number)).toEqual([1]);
  });

  it('drops MBR partitions that start or end outside the image, keeping slot numbers', async () => {
    const image = new Uint8Array(4 * MiB);
    mbrEntry(image, 0, 0, 0x80, 0x83, 2048, 2048);
    mbrEntry(image, 0, 1, 0, 0x83, 8000, 1000); // ends past 8192 sectors
    mbrEntry(image, 0, 2, 0, 0x83, 9000, 10); // starts past the end
    mbrEntry(image, 0, 3, 0, 0x07, 4096, 4096);
    const table = await readPartitionTable(memoryReader(image), image.length);
    expect(table?.partitions.map((p) => [p.number, p.offset / 512, p.length / 512])).toEqual([
      [1, 2048, 2048],
      [4, 4096, 4096],
    ]);
  });

  it('stops an EBR chain that loops back', async () => {
    const image = new Uint8Array(4 * MiB);
    mbrEntry(image, 0, 0, 0, 0x05, 2048, 4096);
    // EBR at 2048 → EBR at 3072 → back to 2048
    mbrEntry(image, 2048, 0, 0, 0x83, 1, 100);
    mbrEntry(image, 2048, 1, 0, 0x05, 1024, 1024);
    mbrEntry(image, 3072, 0, 0, 0x83, 1, 100);
    mbrEntry(image, 3072, 1, 0, 0x05, 0, 1024);
    const table = await readPartitionTable(memoryReader(image), image.length);
    expect(table?.partitions.map((p) => [p.number, p.offset / 512])).toEqual([
      [5, 2049],
      [6, 3073],
    ]);
  });

  it(`stops a long EBR chain after ${MAX_LOGICAL_PARTITIONS} logical partitions`, async () => {
    const image = new Uint8Array(4 * MiB);
    mbrEntry(image, 0, 0, 0, 0x85, 100, 8000);
    for (let k = 0; k < 300; k++) {
      const ebr = 100 + 2 * k;
      mbrEntry(image, ebr, 0, 0, 0x83, 1, 1);
      mbrEntry(image, ebr, 1, 0, 0x05, ebr + 2 - 100, 2);
    }
    const table = await readPartitionTable(memoryReader(image), image.length);
    expect(table?.partitions.length).toBe(MAX_LOGICAL_PARTITIONS);
    expect(table?.partitions.at(-1)?.number).toBe(4 + MAX_LOGICAL_PARTITIONS);
  });

  it('finds no table on a blank disk, a bare ext4, random bytes, a bad boot indicator or a protective MBR without GPT', async () => {
    const dir = makeTempDir();
    expect(await tableOf(blank(dir, 'blank.img', 4))).toBeUndefined();
    const ext4 = path.join(dir, 'ext4.img');
    makeExt4(ext4, 8);
    expect(await tableOf(ext4)).toBeUndefined();
    const random = randomBytes(MiB);
    random[510] = 0x55;
    random[511] = 0xaa;
    random[446] = 0x12;
    expect(await readPartitionTable(memoryReader(random), random.length)).toBeUndefined();
    const protective = new Uint8Array(MiB);
    mbrEntry(protective, 0, 0, 0, 0xee, 1, 2047);
    expect(await readPartitionTable(memoryReader(protective), protective.length)).toBeUndefined();
    expect(await readPartitionTable(memoryReader(new Uint8Array(100)), 100)).toBeUndefined();
  });

  it('never throws or loops on 500 random and mutated images', async () => {
    const dir = makeTempDir();
    const mbr = blank(dir, 'mbr.img', 4);
    sfdisk(mbr, `label: dos\n${mbr}1 : start=64, size=512K, type=83\n${mbr}2 : size=2M, type=5\n${mbr}5 : size=256K\n${mbr}6 : size=256K\n${mbr}7 : size=256K\n`);
    const gpt = blank(dir, 'gpt.img', 4);
    sfdisk(gpt, 'label: gpt\nsize=512K, name=a\nsize=512K, name=b\n');
    const bases = [readFileSync(mbr), readFileSync(gpt)];
    const found = { mbr: 0, gpt: 0 };
    for (let run = 0; run < 500; run++) {
      const image = hostile(run, bases);
      const table = await readPartitionTable(memoryReader(image), image.length);
      if (!table) continue;
      found[table.scheme] += table.partitions.length > 0 ? 1 : 0;
      const numbers = table.partitions.map((p) => p.number);
      expect(numbers).toEqual([...new Set(numbers)].sort((a, b) => a - b));
      for (const p of table.partitions) {
        expect(p.length).toBeGreaterThan(0);
        expect(p.offset + p.length).toBeLessThanOrEqual(image.length);
      }
    }
    // The mutations must reach the partition entries, not only fail the first checks.
    expect(found.mbr).toBeGreaterThan(50);
    expect(found.gpt).toBeGreaterThan(50);
  });
});

function readByte(file: string, at: number): number {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  closeSync(fd);
  return b[0]!;
}

function writeByte(file: string, at: number, value: number): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from([value]), 0, 1, at);
  closeSync(fd);
}

/** Writes MBR/EBR entry `slot` of the sector at `lba` (and the sector's signature). */
function mbrEntry(image: Uint8Array, lba: number, slot: number, boot: number, type: number, start: number, sectors: number): void {
  const view = new DataView(image.buffer, image.byteOffset);
  const at = lba * 512 + 446 + slot * 16;
  view.setUint8(at, boot);
  view.setUint8(at + 4, type);
  view.setUint32(at + 8, start, true);
  view.setUint32(at + 12, sectors, true);
  image[lba * 512 + 510] = 0x55;
  image[lba * 512 + 511] = 0xaa;
}

const LINUX_FS = Buffer.from('af3dc60f838472478e793d69d8477de4', 'hex');

/**
 * An 8 MiB image with a GPT for 4096-byte sectors (2048 LBAs), built here byte by byte with
 * zlib's CRC-32; entries are [number, first LBA, last LBA].
 */
function gpt4k(entries: readonly [number, number, number][] = [[1, 256, 767], [3, 1024, 1033]]): Uint8Array {
  const ss = 4096;
  const lbas = 2048;
  const image = Buffer.alloc(lbas * ss);
  mbrEntry(image, 0, 0, 0, 0xee, 1, lbas - 1);
  const array = Buffer.alloc(128 * 128);
  for (const [number, first, last] of entries) {
    const e = array.subarray((number - 1) * 128, number * 128);
    LINUX_FS.copy(e, 0);
    randomBytes(16).copy(e, 16);
    e.writeBigUInt64LE(BigInt(first), 32);
    e.writeBigUInt64LE(BigInt(last), 40);
    if (number === 1) Buffer.from('four k', 'utf16le').copy(e, 56);
  }
  const header = (mine: number, other: number, arrayLba: number) => {
    const h = Buffer.alloc(92);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x10000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(BigInt(mine), 24);
    h.writeBigUInt64LE(BigInt(other), 32);
    h.writeBigUInt64LE(6n, 40);
    h.writeBigUInt64LE(BigInt(lbas - 6), 48);
    h.writeBigUInt64LE(BigInt(arrayLba), 72);
    h.writeUInt32LE(128, 80);
    h.writeUInt32LE(128, 84);
    h.writeUInt32LE(zlibCrc32(array), 88);
    h.writeUInt32LE(zlibCrc32(h), 16);
    return h;
  };
  header(1, lbas - 1, 2).copy(image, ss);
  array.copy(image, 2 * ss);
  array.copy(image, (lbas - 5) * ss);
  header(lbas - 1, 1, lbas - 5).copy(image, (lbas - 1) * ss);
  return image;
}

/** Fixes the CRCs of a 512-byte-sector GPT at `lba` after mutations, so the parser goes deep. */
function fixGptCrcs(image: Buffer, lba: number): void {
  const h = image.subarray(lba * 512, lba * 512 + 92);
  if (h.toString('latin1', 0, 8) !== 'EFI PART') return;
  const arrayAt = Number(h.readBigUInt64LE(72)) * 512;
  const bytes = h.readUInt32LE(80) * h.readUInt32LE(84);
  if (arrayAt + bytes <= image.length && bytes <= MiB) h.writeUInt32LE(zlibCrc32(image.subarray(arrayAt, arrayAt + bytes)), 88);
  h.writeUInt32LE(0, 16);
  h.writeUInt32LE(zlibCrc32(h), 16);
}

/** A random image, or a copy of a real one with bytes mutated where the tables are. */
function hostile(run: number, bases: readonly Buffer[]): Buffer {
  const kind = run % 5;
  if (kind === 0) {
    const image = randomBytes(randomInt(0, 64 * 1024));
    if (image.length >= 512 && randomInt(2)) image.writeUInt16BE(0x55aa, 510);
    return image;
  }
  if (kind === 1) {
    // Random MBR and EBR entries pointing anywhere, many of them extended.
    const image = Buffer.alloc(randomInt(1, 9) * 128 * 1024);
    const sectors = image.length / 512;
    for (let k = 0; k < 40; k++) {
      const lba = k === 0 ? 0 : randomInt(sectors);
      const types = [0x05, 0x0f, 0x85, 0x83, 0x00, randomInt(256)];
      const big = () => (randomInt(4) === 0 ? randomInt(2 ** 32 - 1) : randomInt(sectors + 10));
      mbrEntry(image, lba, randomInt(4), 0, types[randomInt(types.length)]!, big(), big());
    }
    return image;
  }
  const image = Buffer.from(bases[kind === 2 ? 0 : 1]!);
  // Table sectors: those that end in 0x55AA (MBR, EBRs) and the GPT header and entries.
  const hot = [0, 1, 2, 3];
  for (let s = 4; s < image.length / 512; s++) if (image[s * 512 + 510] === 0x55 && image[s * 512 + 511] === 0xaa) hot.push(s);
  for (let m = randomInt(1, 8); m > 0; m--) {
    const at = hot[randomInt(hot.length)]! * 512 + (randomInt(3) === 0 ? randomInt(512) : 446 + randomInt(64));
    if (randomInt(2)) image[at] = randomInt(256);
    else image.writeUInt32LE(randomInt(2 ** 32 - 1), Math.min(at, image.length - 4));
  }
  if (kind === 3) image.writeUInt32LE(randomInt(4) === 0 ? 2 ** 32 - 1 : randomInt(300), 512 + [12, 24, 40, 48, 72, 80, 84][randomInt(7)]!);
  if (kind === 4) {
    // Entry LBAs anywhere, some near the end of the image or past 2^53.
    const entry = 1024 + randomInt(4) * 128;
    const lba = () => (randomInt(4) === 0 ? BigInt(randomInt(2 ** 32 - 1)) << BigInt(randomInt(33)) : BigInt(randomInt(image.length / 512 + 8)));
    image.writeBigUInt64LE(lba(), entry + 32);
    image.writeBigUInt64LE(lba(), entry + 40);
    if (randomInt(2)) image[entry] = randomInt(256);
  }
  if (kind >= 3) fixGptCrcs(image, 1);
  return image;
}
