import { afterEach } from 'vitest';

const stack: (() => void | Promise<void>)[] = [];

/**
 * Registers teardown work for the current test. Everything runs after the test in reverse order
 * of registration (unmount before detaching a loop device before removing its directory), and
 * one failure does not stop the rest.
 */
export function deferCleanup(fn: () => void | Promise<void>): void {
  stack.push(fn);
}

afterEach(async () => {
  const errors: unknown[] = [];
  while (stack.length > 0) {
    try {
      await stack.pop()?.();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'Test cleanup failed');
});
