/**
 * A read-only NBD client for one export on a unix socket: fixed newstyle handshake, NBD_OPT_GO,
 * simple replies, many requests in flight (replies are matched by handle, in any order). It lets a backup read an RBD snapshot at random through
 * one long-lived `qemu-nbd` (samples and blocks to heal), where a `qemu-img` process per range
 * cost about 60 ms each. The constants are those of the NBD protocol (doc/proto.md of the
 * NetworkBlockDevice/nbd project); the server side of backy2 (src/nbd) has its own.
 */
import net from 'node:net';
import { IoError } from '../errors.js';

const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
const REP_MAGIC = 0x0003e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const INFO_EXPORT = 0;
const CMD_READ = 0;
const CMD_DISC = 2;
/** Bytes per read request (servers accept at least 32 MiB; qemu-nbd does). */
const MAX_REQUEST = 4 * 1024 * 1024;

/** The bytes of a socket, taken in exact amounts as they arrive. */
class Incoming {
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: { need: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#wake();
  }

  fail(error: Error): void {
    this.#error ??= error;
    this.#waiter?.reject(this.#error);
    this.#waiter = undefined;
  }

  /** Exactly `need` bytes, once they have arrived. */
  take(need: number): Promise<Buffer> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = { need, resolve, reject };
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiter;
    if (!w || this.#length < w.need) return;
    const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    this.#chunks = all.length > w.need ? [all.subarray(w.need)] : [];
    this.#length -= w.need;
    this.#waiter = undefined;
    w.resolve(all.subarray(0, w.need));
  }
}

/**
 * Reads byte ranges of an NBD export.
 * @example
 * const nbd = await NbdReader.connect('/run/qemu-nbd.sock', 'Ceph snapshot');
 * await nbd.read(4 << 20, Buffer.alloc(4 << 20));
 * await nbd.close();
 */
export class NbdReader {
  /** Bytes of the export. */
  readonly size: number;
  readonly #socket: net.Socket;
  readonly #what: string;
  readonly #pending = new Map<bigint, { into: Uint8Array; offset: number; resolve: () => void; reject: (err: Error) => void }>();
  readonly #inFlight = new Set<Promise<void>>();
  #handle = 0n;
  #broken: Error | undefined;

  private constructor(socket: net.Socket, incoming: Incoming, size: number, what: string) {
    this.#socket = socket;
    this.size = size;
    this.#what = what;
    void this.#receive(incoming);
  }

  /**
   * Connects and negotiates the default export (name '').
   * @param what names the export in errors
   * @throws {IoError} when the server cannot be reached or refuses
   */
  static async connect(socketPath: string, what: string): Promise<NbdReader> {
    const incoming = new Incoming();
    const socket = net.connect(socketPath);
    socket.on('data', (d: Buffer) => incoming.push(d));
    socket.on('error', (err) => incoming.fail(new IoError(`Cannot read ${what}: ${err.message}`, { cause: err })));
    socket.on('close', () => incoming.fail(new IoError(`Cannot read ${what}: the NBD server closed the connection`)));
    try {
      const hello = await incoming.take(18);
      if (hello.readBigUInt64BE(0) !== NBD_MAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) throw new IoError(`Cannot read ${what}: not a newstyle NBD server`);
      const serverFlags = hello.readUInt16BE(16);
      if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new IoError(`Cannot read ${what}: the NBD server is not fixed newstyle`);
      const client = Buffer.alloc(4);
      client.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
      // NBD_OPT_GO of the default export, no information requests: name length 0, 0 requests.
      const go = Buffer.alloc(16 + 6);
      go.writeBigUInt64BE(IHAVEOPT, 0);
      go.writeUInt32BE(OPT_GO, 8);
      go.writeUInt32BE(6, 12);
      socket.write(Buffer.concat([client, go]));
      let size: number | undefined;
      for (;;) {
        const head = await incoming.take(20);
        if (head.readBigUInt64BE(0) !== REP_MAGIC) throw new IoError(`Cannot read ${what}: bad NBD option reply`);
        const type = head.readUInt32BE(12);
        const data = await incoming.take(head.readUInt32BE(16));
        if (type === REP_ACK) break;
        if (type >= 0x80000000) throw new IoError(`Cannot read ${what}: the NBD server refused the export (${data.toString('utf8') || `error ${type & 0x7fffffff}`})`);
        if (type === REP_INFO && data.length >= 12 && data.readUInt16BE(0) === INFO_EXPORT) size = Number(data.readBigUInt64BE(2));
      }
      if (size === undefined) throw new IoError(`Cannot read ${what}: the NBD server did not say the export's size`);
      return new NbdReader(socket, incoming, size, what);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** Fills `into` from byte `offset` of the export (requests of the callers in flight together). */
  async read(offset: number, into: Uint8Array): Promise<void> {
    if (offset + into.length > this.size) throw new IoError(`Cannot read ${this.#what} at offset ${offset}: past its end (${this.size} bytes)`);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < into.length; at += MAX_REQUEST) parts.push(this.#request(offset + at, into.subarray(at, Math.min(into.length, at + MAX_REQUEST))));
    await Promise.all(parts);
  }

  #request(offset: number, into: Uint8Array): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    const handle = ++this.#handle;
    const request = Buffer.alloc(28);
    request.writeUInt32BE(REQUEST_MAGIC, 0);
    request.writeUInt16BE(CMD_READ, 6);
    request.writeBigUInt64BE(handle, 8);
    request.writeBigUInt64BE(BigInt(offset), 16);
    request.writeUInt32BE(into.length, 24);
    const reply = new Promise<void>((resolve, reject) => {
      this.#pending.set(handle, { into, offset, resolve, reject });
      this.#socket.write(request);
    });
    this.#inFlight.add(reply);
    const settled = () => this.#inFlight.delete(reply);
    reply.then(settled, settled);
    return reply;
  }

  /** Takes the replies as they come and hands each to its request; a broken stream fails them all. */
  async #receive(incoming: Incoming): Promise<void> {
    try {
      for (;;) {
        const reply = await incoming.take(16);
        const request = this.#pending.get(reply.readBigUInt64BE(8));
        if (reply.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC || !request) throw new IoError(`Cannot read ${this.#what}: bad NBD reply`);
        this.#pending.delete(reply.readBigUInt64BE(8));
        const error = reply.readUInt32BE(4);
        if (error !== 0) request.reject(new IoError(`Cannot read ${this.#what} at offset ${request.offset}: the NBD server answered error ${error}`));
        else {
          request.into.set(await incoming.take(request.into.length));
          request.resolve();
        }
      }
    } catch (err) {
      this.#broken = err instanceof Error ? err : new IoError(String(err));
      for (const request of this.#pending.values()) request.reject(this.#broken);
      this.#pending.clear();
    }
  }

  /** Says goodbye (NBD_CMD_DISC) once no read is in flight, and closes the connection. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#inFlight);
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(REQUEST_MAGIC, 0);
    disc.writeUInt16BE(CMD_DISC, 6);
    await new Promise<void>((resolve) => this.#socket.end(disc, resolve));
    this.#socket.destroy();
  }
}
