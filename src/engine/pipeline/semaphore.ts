/**
 * A FIFO counting semaphore: at most `limit` tasks run at once, started in call order.
 *
 * @example
 * const reads = new Semaphore(4);
 * await reads.run(() => source.read(offset, buf));
 */
export class Semaphore {
  readonly limit: number;
  #active = 0;
  readonly #queue: Array<() => void> = [];

  constructor(limit: number) {
    if (!(limit >= 1)) throw new RangeError('Semaphore limit must be at least 1');
    this.limit = limit;
  }

  /** Runs `task` when a slot is free and returns its result. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#queue.push(resolve));
    else this.#active++;
    try {
      return await task();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
