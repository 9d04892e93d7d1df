/**
 * MBR and GPT partition tables of a version's image, read the way Linux numbers them, so that a
 * mount can show each partition as a file. Only reads; a table that does not check out is no
 * table. Every structure read from the image is untrusted: offsets and counts are checked before
 * use, chains are bounded, and nothing here throws for any byte pattern (only `read` may throw).
 * docs/formats.md mirrors the layouts below.
 */
import { crc32 } from '../sys/native.js';

/**
 * Reads `length` bytes at byte `offset` of the disk image (never called past `size`).
 * @returns the bytes; fewer only at the end of the image
 */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** One partition, in bytes. */
export interface Partition {
  /** 1-4 the MBR slot, 5… logical partitions in chain order; for GPT the entry index + 1. */
  readonly number: number;
  /** Byte offset of the first sector in the image. */
  readonly offset: number;
  /** Bytes (greater than zero; the partition lies wholly inside the image). */
  readonly length: number;
  /** MBR: the type byte as two lowercase hex digits (`83`); GPT: the type GUID, upper case. */
  readonly type: string;
  /** GPT only: the partition name (empty when unnamed). */
  readonly name?: string;
}

/** A partition table found in an image. */
export interface PartitionTable {
  readonly scheme: 'mbr' | 'gpt';
  /** Logical sector size the table is written for (MBR: always 512). */
  readonly sectorSize: number;
  /** Ordered by number; extended (container) partitions are not listed. */
  readonly partitions: readonly Partition[];
}

/** At most this many logical partitions (Linux stops at 256 partitions per disk). */
export const MAX_LOGICAL_PARTITIONS = 128;
/** At most this many bytes of GPT partition entries are read (the usual array is 16 KiB). */
export const MAX_GPT_ENTRY_BYTES = 1 << 20;

const MBR_SECTOR = 512;
/** Sector sizes GPT is looked for with, in this order. */
const GPT_SECTOR_SIZES = [512, 4096] as const;
/** Extended partition types: DOS (0x05), Windows LBA (0x0f), Linux (0x85). */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const PROTECTIVE_TYPE = 0xee;
const EFI_SIGNATURE = 'EFI PART';
const GPT_HEADER_MIN = 92;
const GPT_ENTRY_MIN = 128;
/** EBR sectors followed at most, counting links without a data partition (Linux stops after 100). */
const MAX_EBR_HOPS = MAX_LOGICAL_PARTITIONS + 100;

/**
 * Finds the partition table of a disk image: a GPT (behind a protective MBR, sector size 512 or
 * 4096, the backup header when the primary is damaged) or an MBR with logical partitions.
 * Partitions that do not lie wholly inside the image or are empty are dropped (not clipped).
 * @param read reads from the image; its errors are passed on
 * @param size bytes of the image
 * @returns the table, or undefined when there is none (or none that checks out)
 * @throws whatever `read` throws
 * @example
 * const table = await readPartitionTable(async (offset, length) => image.subarray(offset, offset + length), image.length);
 * for (const p of table?.partitions ?? []) console.log(p.number, p.offset, p.length);
 */
export async function readPartitionTable(read: ReadAt, size: number): Promise<PartitionTable | undefined> {
  if (!Number.isSafeInteger(size) || size < 2 * MBR_SECTOR) return undefined;
  const disk = new Disk(read, size);
  const mbr = await disk.bytes(0, MBR_SECTOR);
  if (!mbr) return undefined;
  const entries = mbrEntries(mbr);
  if (!entries) return undefined;
  // A protective (or hybrid) MBR: the GPT is the table, or there is none (as in Linux).
  if (entries.some((e) => e.type === PROTECTIVE_TYPE)) return readGpt(disk);
  // Linux's check against FAT boot sectors and other things that end in 0x55AA.
  if (entries.some((e) => e.boot !== 0 && e.boot !== 0x80)) return undefined;
  return readMbr(disk, entries);
}

/** Bounded reads of the image. */
class Disk {
  constructor(
    readonly read: ReadAt,
    readonly size: number,
  ) {}

  /** The bytes, or undefined when the range is not wholly inside the image. */
  async bytes(offset: number, length: number): Promise<Uint8Array | undefined> {
    if (!Number.isSafeInteger(offset) || offset < 0 || length <= 0 || offset + length > this.size) return undefined;
    const data = await this.read(offset, length);
    return data.length >= length ? data.subarray(0, length) : undefined;
  }

  /** Whether [offset, offset + length) is a non-empty range inside the image. */
  holds(offset: number, length: number): boolean {
    return Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length > 0 && offset + length <= this.size;
  }
}

/*
 * MBR and EBR sector (512 bytes, little-endian)
 *
 * | offset | size   | field                                  |
 * | ------ | ------ | -------------------------------------- |
 * | 0      | 446    | boot code, disk signature (ignored)    |
 * | 446    | 4 × 16 | partition entries, slots 1-4           |
 * | 510    | 2      | signature 0x55 0xAA                    |
 *
 * Partition entry (16 bytes)
 *
 * | offset | size | field                                           |
 * | ------ | ---- | ----------------------------------------------- |
 * | 0      | 1    | boot indicator: 0x00 or 0x80                    |
 * | 1      | 3    | CHS of the first sector (ignored)               |
 * | 4      | 1    | type (0x05, 0x0f, 0x85 extended; 0xee GPT)      |
 * | 5      | 3    | CHS of the last sector (ignored)                |
 * | 8      | 4    | first sector (u32; in an EBR relative, below)   |
 * | 12     | 4    | sectors (u32; 0 = unused slot)                  |
 *
 * In an EBR, a data entry's first sector counts from that EBR, a link to the next EBR from the
 * start of the extended partition of the MBR.
 */

interface MbrEntry {
  readonly boot: number;
  readonly type: number;
  readonly start: number;
  readonly sectors: number;
}

function mbrEntries(sector: Uint8Array): MbrEntry[] | undefined {
  if (sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const view = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const at = 446 + slot * 16;
    entries.push({ boot: view.getUint8(at), type: view.getUint8(at + 4), start: view.getUint32(at + 8, true), sectors: view.getUint32(at + 12, true) });
  }
  return entries;
}

const hexType = (type: number) => type.toString(16).padStart(2, '0');

async function readMbr(disk: Disk, entries: readonly MbrEntry[]): Promise<PartitionTable> {
  const found: Partition[] = [];
  const logicals = { next: 5 };
  for (const [i, e] of entries.entries()) {
    if (e.sectors === 0) continue;
    if (EXTENDED_TYPES.has(e.type)) {
      // Linux shows the container as a 1 KiB device; it holds no file system, so it gets no file.
      await readLogicals(disk, e.start, e.sectors, logicals, found);
      continue;
    }
    found.push({ number: i + 1, offset: e.start * MBR_SECTOR, length: e.sectors * MBR_SECTOR, type: hexType(e.type) });
  }
  return { scheme: 'mbr', sectorSize: MBR_SECTOR, partitions: inside(disk, found) };
}

/** Follows the EBR chain of one extended partition as Linux's msdos.c does (numbers count on in `logicals`). */
async function readLogicals(disk: Disk, first: number, firstSectors: number, logicals: { next: number }, found: Partition[]): Promise<void> {
  const seen = new Set<number>();
  let here = first;
  let hereSectors = firstSectors;
  for (let hop = 0; hop < MAX_EBR_HOPS && logicals.next < 5 + MAX_LOGICAL_PARTITIONS; hop++) {
    // A chain that comes back to an EBR would list its partitions again, forever.
    if (seen.has(here)) return;
    seen.add(here);
    const ebr = await disk.bytes(here * MBR_SECTOR, MBR_SECTOR);
    const entries = ebr && mbrEntries(ebr);
    if (!entries) return;
    for (const [i, e] of entries.entries()) {
      if (e.sectors === 0 || EXTENDED_TYPES.has(e.type)) continue;
      const start = here + e.start;
      // Slots 3 and 4 of an EBR often hold garbage: Linux takes them only inside the extended partition.
      if (i >= 2 && (e.start + e.sectors > hereSectors || start < first || start + e.sectors > first + firstSectors)) continue;
      found.push({ number: logicals.next++, offset: start * MBR_SECTOR, length: e.sectors * MBR_SECTOR, type: hexType(e.type) });
      if (logicals.next >= 5 + MAX_LOGICAL_PARTITIONS) return;
    }
    const link = entries.find((e) => e.sectors !== 0 && EXTENDED_TYPES.has(e.type));
    if (!link) return;
    here = first + link.start;
    hereSectors = link.sectors;
  }
}

/*
 * GPT header (little-endian; the primary at LBA 1, the backup at the last LBA of the image)
 *
 * | offset | size | field                                                        |
 * | ------ | ---- | ------------------------------------------------------------ |
 * | 0      | 8    | signature "EFI PART"                                         |
 * | 8      | 4    | revision (ignored)                                           |
 * | 12     | 4    | header size (92 up to the sector size)                       |
 * | 16     | 4    | CRC32 of the header's first `header size` bytes, this field 0 |
 * | 20     | 4    | reserved                                                     |
 * | 24     | 8    | LBA of this header (must be where it was read)               |
 * | 32     | 8    | LBA of the other header (ignored)                            |
 * | 40     | 8    | first usable LBA                                             |
 * | 48     | 8    | last usable LBA (first ≤ last ≤ last LBA of the image)       |
 * | 56     | 16   | disk GUID (ignored)                                          |
 * | 72     | 8    | LBA of the partition entry array                             |
 * | 80     | 4    | number of entries                                            |
 * | 84     | 4    | entry size (128 × 2^n)                                       |
 * | 88     | 4    | CRC32 of the entry array (number × size bytes)               |
 *
 * Partition entry (the first 128 bytes of each)
 *
 * | offset | size | field                                             |
 * | ------ | ---- | ------------------------------------------------- |
 * | 0      | 16   | type GUID (all zero: unused entry)                |
 * | 16     | 16   | partition GUID (ignored)                          |
 * | 32     | 8    | first LBA                                         |
 * | 40     | 8    | last LBA (inclusive)                              |
 * | 48     | 8    | attributes (ignored)                              |
 * | 56     | 72   | name, UTF-16LE, NUL-padded                        |
 *
 * A GUID's first three fields are little-endian, the last two big-endian.
 */

async function readGpt(disk: Disk): Promise<PartitionTable | undefined> {
  for (const sectorSize of GPT_SECTOR_SIZES) {
    const lastLba = Math.floor(disk.size / sectorSize) - 1;
    if (lastLba < 2) continue;
    // The primary first; a damaged one leaves the backup at the last LBA (as fdisk and gdisk do).
    for (const lba of [1, lastLba]) {
      const table = await gptAt(disk, sectorSize, lba, lastLba);
      if (table) return table;
    }
  }
  return undefined;
}

async function gptAt(disk: Disk, sectorSize: number, lba: number, lastLba: number): Promise<PartitionTable | undefined> {
  const header = await disk.bytes(lba * sectorSize, sectorSize);
  if (!header || latin1(header.subarray(0, 8)) !== EFI_SIGNATURE) return undefined;
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const headerSize = view.getUint32(12, true);
  if (headerSize < GPT_HEADER_MIN || headerSize > sectorSize) return undefined;
  const checked = Uint8Array.from(header.subarray(0, headerSize));
  checked.fill(0, 16, 20);
  if (crc32(checked) !== view.getUint32(16, true)) return undefined;
  const u64 = (at: number) => Number(view.getBigUint64(at, true));
  const firstUsable = u64(40);
  const lastUsable = u64(48);
  if (u64(24) !== lba || firstUsable > lastUsable || lastUsable > lastLba) return undefined;
  const count = view.getUint32(80, true);
  const entrySize = view.getUint32(84, true);
  const arrayLba = u64(72);
  // 128 × 2^n, and a bounded array inside the image.
  if (entrySize < GPT_ENTRY_MIN || (entrySize & (entrySize - 1)) !== 0 || count * entrySize > MAX_GPT_ENTRY_BYTES) return undefined;
  const array = count === 0 ? new Uint8Array(0) : await disk.bytes(arrayLba * sectorSize, count * entrySize);
  if (!array || crc32(array) !== view.getUint32(88, true)) return undefined;
  const entries = new DataView(array.buffer, array.byteOffset, array.byteLength);
  const found: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * entrySize;
    const type = array.subarray(at, at + 16);
    if (type.every((b) => b === 0)) continue;
    const first = Number(entries.getBigUint64(at + 32, true));
    const last = Number(entries.getBigUint64(at + 40, true));
    if (last < first || last > lastLba) continue;
    found.push({ number: i + 1, offset: first * sectorSize, length: (last - first + 1) * sectorSize, type: guid(type), name: utf16Name(array.subarray(at + 56, at + 128)) });
  }
  return { scheme: 'gpt', sectorSize, partitions: inside(disk, found) };
}

/** Drops partitions that are empty or not wholly inside the image (rather than clipping them). */
function inside(disk: Disk, partitions: readonly Partition[]): Partition[] {
  return partitions.filter((p) => disk.holds(p.offset, p.length)).sort((a, b) => a.number - b.number);
}

function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
}

/** GUID text from its on-disk form (mixed endianness). */
function guid(b: Uint8Array): string {
  const le = (from: number, to: number) => hex(b.subarray(from, to).slice().reverse());
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`;
}

function utf16Name(bytes: Uint8Array): string {
  let units = '';
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const unit = bytes[i]! | (bytes[i + 1]! << 8);
    if (unit === 0) break;
    units += String.fromCharCode(unit);
  }
  return units;
}
