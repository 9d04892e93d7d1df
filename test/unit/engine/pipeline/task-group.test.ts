import { describe, expect, it } from 'vitest';
import { TaskGroup } from '../../../../src/engine/pipeline/task-group.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('TaskGroup', () => {
  it('wait() settles every task, then throws the first failure; later failures only count', async () => {
    const group = new TaskGroup();
    const finished: number[] = [];
    group.spawn(async () => {
      await tick(20);
      finished.push(1);
    });
    group.spawn(async () => {
      throw new Error('first');
    });
    group.spawn(async () => {
      await tick(10);
      throw new Error('second');
    });
    expect(group.failed).toBe(false); // failures are seen asynchronously
    await expect(group.wait()).rejects.toThrow('first');
    expect(finished).toEqual([1]); // nothing ran on behind the caller's back
    expect(group.errorCount).toBe(2);
    expect(group.signal.aborted).toBe(true);
  });

  it('obtain() gives up once the group failed, so the producer stops', async () => {
    const group = new TaskGroup();
    let release: (() => void) | undefined;
    const pending = group.obtain((signal) => new Promise<string>((resolve, reject) => {
      release = () => resolve('buffer');
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    }));
    group.fail(new Error('boom'));
    expect(await pending).toBeUndefined();
    release?.();
    await expect(group.wait()).rejects.toThrow('boom');
  });

  it('follows its parent signal, and below() bounds the tasks in flight', async () => {
    const parent = new AbortController();
    const group = new TaskGroup(parent.signal);
    let running = 0;
    let most = 0;
    for (let i = 0; i < 20; i++) {
      await group.below(3);
      group.spawn(async () => {
        most = Math.max(most, ++running);
        await tick();
        running--;
      });
    }
    await group.wait();
    expect(most).toBeLessThanOrEqual(3);
    parent.abort(new Error('Received SIGINT'));
    expect(group.signal.aborted).toBe(true);
  });
});
