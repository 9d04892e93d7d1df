import { CorruptBlockError, StoreFullError, StoreUnavailableError } from '../errors.js';
import type { BlockStore, BlockStoreProperties, GetOptions, ObjectInfo, PutOptions } from './block-store.js';

/** Which faults to inject, as probabilities per operation (0..1). */
export interface FaultPlan {
  /** A failed request (like a network or disk error), on any operation. */
  readonly errorRate?: number;
  /** "No space left" on put. */
  readonly fullRate?: number;
  /** A short read on get (like a truncated object). */
  readonly shortReadRate?: number;
  /** One flipped bit in what get returns (silent corruption; digests must catch it). */
  readonly bitFlipRate?: number;
  /** Delay added to every operation, in ms. */
  readonly latencyMs?: number;
  /** Seed of the pseudo-random choices, for reproducible runs. @default 1 */
  readonly seed?: number;
}

/** How many faults were injected, by kind. */
export interface FaultCounts {
  errors: number;
  full: number;
  shortReads: number;
  bitFlips: number;
}

/**
 * A block store wrapper that injects faults (errors, ENOSPC, short reads, bit flips, latency),
 * for tests and chaos runs. `openStore` puts it outermost when `BACKY2_FAULTS` holds a JSON
 * FaultPlan.
 *
 * @example
 * const faulty = new FaultInjectingStore(store, { errorRate: 0.05, seed: 7 });
 */
export class FaultInjectingStore implements BlockStore {
  readonly properties: BlockStoreProperties;
  readonly counts: FaultCounts = { errors: 0, full: 0, shortReads: 0, bitFlips: 0 };
  readonly #inner: BlockStore;
  readonly #plan: FaultPlan;
  #state: number;

  constructor(inner: BlockStore, plan: FaultPlan) {
    this.#inner = inner;
    this.#plan = plan;
    // Spread small seeds over the state space, then warm up: xorshift starts poorly from tiny states.
    this.#state = Math.imul((plan.seed ?? 1) >>> 0 || 1, 0x9e3779b9) >>> 0 || 1;
    for (let i = 0; i < 16; i++) this.#random();
    this.properties = { ...inner.properties, location: `${inner.properties.location} (fault injection)` };
  }

  async put(key: string, body: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    await this.#before('put', key);
    if (this.#chance(this.#plan.fullRate)) {
      this.counts.full++;
      throw new StoreFullError(`Cannot write object "${key}" to ${this.properties.location}: no space left on device (injected)`);
    }
    return this.#inner.put(key, body, options);
  }

  async get(key: string, options?: GetOptions): Promise<Uint8Array> {
    await this.#before('get', key);
    if (this.#chance(this.#plan.shortReadRate)) {
      this.counts.shortReads++;
      throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is too short (injected short read)`);
    }
    const data = await this.#inner.get(key, options);
    if (data.length > 0 && this.#chance(this.#plan.bitFlipRate)) {
      this.counts.bitFlips++;
      const at = Math.floor(this.#random() * data.length);
      data[at] = (data[at] ?? 0) ^ (1 << Math.floor(this.#random() * 8));
    }
    return data;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    await this.#before('stat', key);
    return this.#inner.stat(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.#before('list', prefix);
    yield* this.#inner.list(prefix);
  }

  async delete(key: string): Promise<void> {
    await this.#before('delete', key);
    return this.#inner.delete(key);
  }

  probe(): Promise<void> {
    return this.#inner.probe();
  }

  async close(): Promise<void> {
    return this.#inner.close();
  }

  async #before(operation: string, key: string): Promise<void> {
    if (this.#plan.latencyMs) await new Promise((r) => setTimeout(r, this.#plan.latencyMs));
    if (this.#chance(this.#plan.errorRate)) {
      this.counts.errors++;
      throw new StoreUnavailableError(`Cannot ${operation} object "${key}" on ${this.properties.location}: input/output error (injected)`);
    }
  }

  #chance(rate: number | undefined): boolean {
    return rate !== undefined && rate > 0 && this.#random() < rate;
  }

  /** xorshift32: reproducible and good enough for picking faults. */
  #random(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state / 2 ** 32;
  }
}

/**
 * Parses a FaultPlan from JSON (the BACKY2_FAULTS variable).
 * @throws {TypeError} when it is not a JSON object
 */
export function parseFaultPlan(json: string): FaultPlan {
  const plan: unknown = JSON.parse(json);
  if (typeof plan !== 'object' || plan === null || Array.isArray(plan)) throw new TypeError('BACKY2_FAULTS must be a JSON object');
  return plan as FaultPlan;
}
