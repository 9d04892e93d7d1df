import { CorruptBlockError, ObjectMissingError, throwIfAborted } from '../errors.js';
import {
  assertValidKey,
  bodyLength,
  type BlockStore,
  type BlockStoreProperties,
  type GetOptions,
  type ObjectInfo,
  type PutOptions,
} from './block-store.js';

/**
 * A block store in process memory, for unit tests and dry runs. Same contract as the file store.
 *
 * @example
 * const store = new MemoryStore();
 */
export class MemoryStore implements BlockStore {
  readonly properties: BlockStoreProperties = { location: 'memory:', maxConnections: 16, atomicOverwrite: true, readOnly: false };
  readonly #objects = new Map<string, { data: Buffer; mtimeMs: number }>();
  #closed = false;

  async put(key: string, body: readonly Uint8Array[], options: PutOptions = {}): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    throwIfAborted(options.signal);
    const data = Buffer.allocUnsafe(bodyLength(body));
    let at = 0;
    for (const part of body) {
      data.set(part, at);
      at += part.length;
    }
    this.#objects.set(key, { data, mtimeMs: Date.now() });
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array> {
    this.#checkOpen();
    assertValidKey(key);
    const object = this.#objects.get(key);
    if (!object) throw new ObjectMissingError(`Object "${key}" is missing from ${this.properties.location}`);
    const offset = options.offset ?? 0;
    const length = options.length ?? Math.max(0, object.data.length - offset);
    if (offset + length > object.data.length) {
      throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is too short: wanted bytes ${offset}..${offset + length}, it has ${object.data.length}`);
    }
    const slice = object.data.subarray(offset, offset + length);
    if (!options.into) return Buffer.from(slice);
    if (options.into.length < length) {
      // A whole object larger than the room for the largest one of its kind was tampered with.
      if (options.length === undefined) throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is ${length} bytes, more than such an object can be (${options.into.length})`);
      throw new RangeError(`Buffer of ${options.into.length} bytes is too small for ${length} bytes`);
    }
    options.into.set(slice);
    return options.into.subarray(0, length);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.#checkOpen();
    assertValidKey(key);
    const object = this.#objects.get(key);
    return object ? { key, size: object.data.length, mtimeMs: object.mtimeMs } : undefined;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.#checkOpen();
    for (const [key, object] of [...this.#objects]) {
      if (key.startsWith(prefix)) yield { key, size: object.data.length, mtimeMs: object.mtimeMs };
    }
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    this.#objects.delete(key);
  }

  async probe(): Promise<void> {
    this.#checkOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new TypeError(`Block store ${this.properties.location} is closed`);
  }
}
