/**
 * The "rbd diff v1" stream format of `rbd export-diff` / `rbd import-diff` (all integers
 * little-endian):
 *
 * | record | layout |
 * | --- | --- |
 * | header | ASCII `rbd diff v1\n` |
 * | `f` | u32 length + name of the from-snapshot |
 * | `t` | u32 length + name of the to-snapshot |
 * | `s` | u64 image size |
 * | `w` | u64 offset, u64 length, then the data |
 * | `z` | u64 offset, u64 length: the range reads as zeros (zeroed or discarded) |
 * | `e` | end |
 */
import { IoError } from '../errors.js';

export const RBD_DIFF_HEADER = Buffer.from('rbd diff v1\n', 'latin1');

/** A data or zero record of a diff stream. */
export type DiffRecord =
  | { readonly type: 'w'; readonly offset: number; readonly length: number }
  | { readonly type: 'z'; readonly offset: number; readonly length: number }
  | { readonly type: 'end' };

/**
 * Reads an "rbd diff v1" stream incrementally. `next()` returns the next data or zero record;
 * the data of a `w` record is then read with `readData` (all of it, before the next `next()`).
 */
export class DiffStreamReader {
  readonly #iterator: AsyncIterator<Buffer>;
  readonly #what: string;
  #chunk: Buffer = Buffer.alloc(0);
  #done = false;
  /** Image size from the `s` record, once seen. */
  size: number | undefined;

  constructor(stream: AsyncIterable<Buffer>, what: string) {
    this.#iterator = stream[Symbol.asyncIterator]();
    this.#what = what;
  }

  /** Reads and checks the header. */
  async start(): Promise<void> {
    const header = await this.#take(RBD_DIFF_HEADER.length);
    if (!header.equals(RBD_DIFF_HEADER)) throw this.#error('it does not start with "rbd diff v1"');
  }

  /** The next `w`, `z` or end record (snapshot and size records are consumed on the way). */
  async next(): Promise<DiffRecord> {
    for (;;) {
      const tag = String.fromCharCode((await this.#take(1))[0] ?? 0);
      switch (tag) {
        case 'f':
        case 't':
          await this.#take((await this.#take(4)).readUInt32LE(0));
          break;
        case 's':
          this.size = Number((await this.#take(8)).readBigUInt64LE(0));
          break;
        case 'w':
        case 'z': {
          const b = await this.#take(16);
          return { type: tag, offset: Number(b.readBigUInt64LE(0)), length: Number(b.readBigUInt64LE(8)) };
        }
        case 'e':
          return { type: 'end' };
        default:
          throw this.#error(`unknown record "${tag}"`);
      }
    }
  }

  /** Copies the next `into.length` bytes of record data into `into` (or drops them when null). */
  async readData(into: Uint8Array | null, length: number): Promise<void> {
    let done = 0;
    while (done < length) {
      if (this.#chunk.length === 0) await this.#fill();
      const n = Math.min(this.#chunk.length, length - done);
      if (into) into.set(this.#chunk.subarray(0, n), done);
      this.#chunk = this.#chunk.subarray(n);
      done += n;
    }
  }

  async #take(n: number): Promise<Buffer> {
    if (this.#chunk.length >= n) {
      const out = this.#chunk.subarray(0, n);
      this.#chunk = this.#chunk.subarray(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    await this.readData(out, n);
    return out;
  }

  async #fill(): Promise<void> {
    if (this.#done) throw this.#error('it ended early');
    const { value, done } = await this.#iterator.next();
    if (done) {
      this.#done = true;
      throw this.#error('it ended early');
    }
    this.#chunk = value;
  }

  #error(why: string): IoError {
    return new IoError(`Cannot read the diff stream of ${this.#what}: ${why}`);
  }
}

/** Encodes the header and size record of a diff stream for `rbd import-diff`. */
export function encodeDiffStart(size: number, toSnapshot?: string): Buffer {
  const parts = [RBD_DIFF_HEADER];
  if (toSnapshot) {
    const name = Buffer.from(toSnapshot, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(name.length);
    parts.push(Buffer.from('t'), len, name);
  }
  const s = Buffer.alloc(9);
  s.write('s', 0, 'latin1');
  s.writeBigUInt64LE(BigInt(size), 1);
  parts.push(s);
  return Buffer.concat(parts);
}

/** Encodes the head of a `w` (data follows) or a whole `z` record. */
export function encodeDiffRecord(type: 'w' | 'z', offset: number, length: number): Buffer {
  const b = Buffer.alloc(17);
  b.write(type, 0, 'latin1');
  b.writeBigUInt64LE(BigInt(offset), 1);
  b.writeBigUInt64LE(BigInt(length), 9);
  return b;
}

/** The end record. */
export const DIFF_END = Buffer.from('e', 'latin1');
