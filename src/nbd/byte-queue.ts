/**
 * An incremental reader over incoming socket chunks: chunks are kept as they arrive and only the
 * bytes a message needs are copied out (no Buffer.concat per data event).
 *
 * @example
 * const q = new ByteQueue();
 * q.push(chunk);
 * if (q.length >= 28) handle(q.consume(28));
 */
export class ByteQueue {
  readonly #chunks: Buffer[] = [];
  /** Bytes of the first chunk already consumed. */
  #offset = 0;
  #length = 0;

  /** Bytes available. */
  get length(): number {
    return this.#length;
  }

  /** Appends a chunk (kept by reference). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next `n` bytes without consuming them. */
  peek(n: number): Buffer {
    return this.#take(n, false);
  }

  /** Removes and returns the next `n` bytes (a view when they lie in one chunk). */
  consume(n: number): Buffer {
    return this.#take(n, true);
  }

  /** Drops the next `n` bytes. */
  skip(n: number): void {
    if (n > this.#length) throw new RangeError(`Cannot skip ${n} bytes, ${this.#length} available`);
    let rest = n;
    while (rest > 0) {
      const first = this.#chunks[0] as Buffer;
      const left = first.length - this.#offset;
      if (rest < left) {
        this.#offset += rest;
        break;
      }
      rest -= left;
      this.#chunks.shift();
      this.#offset = 0;
    }
    this.#length -= n;
  }

  #take(n: number, consume: boolean): Buffer {
    if (n > this.#length) throw new RangeError(`Cannot read ${n} bytes, ${this.#length} available`);
    const first = this.#chunks[0];
    let out: Buffer;
    if (first && first.length - this.#offset >= n) {
      out = first.subarray(this.#offset, this.#offset + n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      let offset = this.#offset;
      for (const chunk of this.#chunks) {
        const piece = chunk.subarray(offset, offset + (n - at));
        piece.copy(out, at);
        at += piece.length;
        offset = 0;
        if (at === n) break;
      }
    }
    if (consume) this.skip(n);
    return out;
  }
}
