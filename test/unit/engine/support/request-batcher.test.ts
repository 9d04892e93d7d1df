import { describe, expect, it } from 'vitest';
import { RequestBatcher } from '../../../../src/engine/support/request-batcher.js';

describe('RequestBatcher', () => {
  it('sends the first request alone at once, and those made meanwhile together, at most max per batch', async () => {
    const batches: number[][] = [];
    let release: (() => void) | undefined;
    const batcher = new RequestBatcher(async (inputs: number[]) => {
      batches.push(inputs);
      if (batches.length === 1) await new Promise<void>((r) => (release = r));
      return inputs.map((n) => n * 10);
    }, 3);
    const first = batcher.request(1);
    const rest = [2, 3, 4, 5, 6].map(async (n) => batcher.request(n));
    await new Promise((r) => setTimeout(r, 10));
    expect(batches).toEqual([[1]]);
    release?.();
    expect(await Promise.all([first, ...rest])).toEqual([10, 20, 30, 40, 50, 60]);
    expect(batches).toEqual([[1], [2, 3, 4], [5, 6]]);
    expect(await batcher.request(7)).toBe(70);
    expect(batches.at(-1)).toEqual([7]);
  });

  it('fails every request of a batch that failed, and goes on with the next', async () => {
    let calls = 0;
    const batcher = new RequestBatcher(async (inputs: string[]) => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      if (inputs.includes('bad')) throw new Error('lost the connection');
      return inputs.map((s) => s.toUpperCase());
    }, 10);
    const a = batcher.request('a');
    const b = batcher.request('bad');
    const c = batcher.request('c');
    await expect(a).resolves.toBe('A');
    await expect(b).rejects.toThrow('lost the connection');
    await expect(c).rejects.toThrow('lost the connection');
    await expect(batcher.request('d')).resolves.toBe('D');
    expect(calls).toBe(3);
  });
});
