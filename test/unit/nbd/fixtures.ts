import { Duplex } from 'node:stream';
import { NbdError, type NbdBackend, type NbdExport } from '../../../src/nbd/backend.js';

/** Big-endian byte builder for hand-made protocol messages, independent of src/nbd/protocol.ts. */
export class Bytes {
  readonly #parts: number[] = [];
  u8(n: number): this {
    this.#parts.push(n & 0xff);
    return this;
  }
  u16(n: number): this {
    return this.u8(n >>> 8).u8(n);
  }
  u32(n: number): this {
    return this.u16(Math.floor(n / 65536)).u16(n % 65536);
  }
  u64(n: number | bigint): this {
    const v = BigInt(n);
    return this.u32(Number(v >> 32n)).u32(Number(v & 0xffffffffn));
  }
  str(s: string): this {
    for (const b of Buffer.from(s, 'utf8')) this.u8(b);
    return this;
  }
  raw(b: Uint8Array): this {
    for (const x of b) this.u8(x);
    return this;
  }
  get buffer(): Buffer {
    return Buffer.from(this.#parts);
  }
}

export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;

/** An option request. */
export function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return new Bytes().u64(IHAVEOPT).u32(opt).u32(data.length).raw(data).buffer;
}

/** NBD_OPT_GO / INFO data. */
export function goData(name: string, infos: number[] = []): Buffer {
  const b = new Bytes().u32(Buffer.byteLength(name)).str(name).u16(infos.length);
  for (const i of infos) b.u16(i);
  return b.buffer;
}

/** A request header (+ payload). */
export function request(type: number, handle: number, offset: number, length: number, flags = 0, payload?: Buffer): Buffer {
  const b = new Bytes().u32(0x25609513).u16(flags).u16(type).u64(handle).u64(offset).u32(length);
  if (payload) b.raw(payload);
  return b.buffer;
}

/** A fake socket: what the test pushes arrives as data; what the session writes is collected. */
export class FakeSocket extends Duplex {
  readonly written: Buffer[] = [];
  destroyedByServer = false;
  ended = false;
  override _read(): void {}
  override _write(chunk: Buffer, _enc: string, cb: (err?: Error | null) => void): void {
    this.written.push(Buffer.from(chunk));
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.destroyedByServer = true;
    cb(err);
  }
  /** Everything written so far, concatenated. */
  get output(): Buffer {
    return Buffer.concat(this.written);
  }
}

/** An in-memory export of `size` bytes: block 0 holds data, the rest is a hole. `fail` makes reads or writes throw. */
export function memoryBackend(size = 1 << 20, options: { readOnly?: boolean; fail?: { read?: unknown; write?: unknown } } = {}): NbdBackend & { data: Buffer } {
  const data = Buffer.alloc(size);
  for (let i = 0; i < 65536; i++) data[i] = (i * 7) & 0xff;
  const exp = (): NbdExport => ({
    name: 'disk',
    description: 'test disk',
    size,
    readOnly: options.readOnly === true,
    read: async (offset, into) => {
      if (options.fail?.read !== undefined) throw options.fail.read;
      data.copy(into, 0, offset, offset + into.length);
    },
    write: async (offset, d) => {
      if (options.fail?.write !== undefined) throw options.fail.write;
      d.copy(data, offset);
    },
    zero: async (offset, length, { fast }) => {
      if (fast) throw new NbdError(95, 'not fast');
      data.fill(0, offset, offset + length);
    },
    trim: async () => undefined,
    flush: async () => undefined,
    extents: async (offset, length) => {
      const out = [];
      if (offset < 65536) out.push({ length: Math.min(65536 - offset, length), hole: false });
      if (offset + length > 65536) out.push({ length: offset + length - Math.max(offset, 65536), hole: true });
      return out;
    },
    close: async () => undefined,
  });
  return { data, list: async () => [{ name: 'disk', description: 'test disk' }], open: async (name) => (name === 'disk' || name === '' ? exp() : undefined) };
}

/** Resolves after pending I/O and timers of the session have run. */
export function settle(ms = 20): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
