import { setMaxListeners } from 'node:events';

/**
 * Background tasks that fail together: the first failure aborts `signal`, so the producer stops
 * starting new work, and `wait` rethrows it once every task has settled (nothing keeps running
 * behind the caller's back).
 *
 * @example
 * const group = new TaskGroup(userSignal);
 * for (const item of items) { if (group.failed) break; group.spawn(() => work(item, group.signal)); }
 * await group.wait();
 */
export class TaskGroup {
  readonly #controller = new AbortController();
  readonly #tasks = new Set<Promise<void>>();
  #error: unknown;
  #failed = false;
  #errors = 0;

  constructor(parent?: AbortSignal) {
    // Every task in flight may listen to the signal: many listeners are expected, not a leak.
    setMaxListeners(0, this.#controller.signal);
    if (parent) {
      if (parent.aborted) this.#controller.abort(parent.reason);
      else parent.addEventListener('abort', () => this.#controller.abort(parent.reason), { once: true });
    }
  }

  /** Aborted when a task failed or the parent signal fired. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True once a task failed. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Number of failed tasks. */
  get errorCount(): number {
    return this.#errors;
  }

  /** Starts `task` in the background. */
  spawn(task: () => Promise<void>): void {
    const running: Promise<void> = task()
      .catch((err: unknown) => this.fail(err))
      .finally(() => this.#tasks.delete(running));
    this.#tasks.add(running);
  }

  /** Waits until fewer than `limit` tasks run, to bound work spawned without a buffer pool. */
  async below(limit: number): Promise<void> {
    while (this.#tasks.size >= limit) await Promise.race(this.#tasks);
  }

  /**
   * Awaits a resource for the next task (a pooled buffer) under the group's signal.
   * @returns the resource, or undefined once the group failed: the producer stops then
   */
  async obtain<T>(acquire: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> {
    try {
      return await acquire(this.signal);
    } catch (err) {
      if (!this.#failed) this.fail(err);
      return undefined;
    }
  }

  /** Records a failure and aborts the group. */
  fail(err: unknown): void {
    this.#errors++;
    if (!this.#failed) {
      this.#failed = true;
      this.#error = err;
      this.#controller.abort(err);
    }
  }

  /** Waits for every task; throws the first failure. */
  async wait(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    if (this.#failed) throw this.#error;
  }
}
