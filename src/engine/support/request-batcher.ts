/**
 * Turns single requests into batches without delaying any: the first request goes out at once,
 * alone; requests made while a batch is out wait for it and then go out together. With N requests
 * in flight (blocks of a backup asking the catalog about themselves) a round trip carries about N
 * of them, and a lone request costs what it did before.
 *
 * @example
 * const touches = new RequestBatcher((digests: Buffer[]) => catalog.touchBlocks(digests), 256);
 * const state = await touches.request(digest);
 */
export class RequestBatcher<In, Out> {
  readonly #send: (inputs: In[]) => Promise<Out[]>;
  readonly #max: number;
  #waiting: { input: In; resolve: (out: Out) => void; reject: (err: unknown) => void }[] = [];
  #busy = false;

  /**
   * @param send answers a batch: one output per input, in order
   * @param max inputs per batch at most
   */
  constructor(send: (inputs: In[]) => Promise<Out[]>, max: number) {
    this.#send = send;
    this.#max = max;
  }

  /** The answer to one input, sent with whatever else is waiting. */
  request(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject });
      if (!this.#busy) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    try {
      while (this.#waiting.length > 0) {
        const batch = this.#waiting.splice(0, this.#max);
        try {
          const outputs = await this.#send(batch.map((w) => w.input));
          batch.forEach((w, i) => w.resolve(outputs[i] as Out));
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.#busy = false;
    }
  }
}
