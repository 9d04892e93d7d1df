/**
 * Buffers for the data of READ replies, reused once the socket has sent them. A fresh buffer per
 * reply (256 KiB to 32 MiB) costs page faults on first touch and garbage collections for the
 * external memory: about a third of the server's main thread at 1.4 GB/s before this.
 */
export class ReplyBuffers {
  readonly #free = new Map<number, Buffer[]>();
  readonly #maxBytes: number;
  #bytes = 0;

  /** @param maxBytes most bytes kept while unused */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** A buffer of exactly `length` bytes, contents undefined. */
  take(length: number): Buffer {
    const buf = this.#free.get(length)?.pop();
    if (!buf) return Buffer.allocUnsafeSlow(length);
    this.#bytes -= length;
    return buf;
  }

  /** Gives back a buffer nothing refers to any more (kept while under the limit). */
  give(buf: Buffer): void {
    if (this.#bytes + buf.length > this.#maxBytes) return;
    const list = this.#free.get(buf.length);
    if (list) list.push(buf);
    else this.#free.set(buf.length, [buf]);
    this.#bytes += buf.length;
  }

  /** Bytes kept for reuse now. */
  get bytes(): number {
    return this.#bytes;
  }
}
