import { describe, expect, it } from 'vitest';
import { eitherSignal } from '../../../../src/engine/catalog/locking.js';

describe('eitherSignal()', () => {
  it('follows every signal given, and takes a listener per request in flight without a leak warning', async () => {
    const a = new AbortController();
    const b = new AbortController();
    const either = eitherSignal(a.signal, undefined, b.signal);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      // 16 concurrent block requests, each retried: as a backup to a struggling S3 endpoint does.
      for (let i = 0; i < 40; i++) either.addEventListener('abort', () => undefined);
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning');
    expect(either.aborted).toBe(false);
    b.abort(new Error('lost the lease'));
    expect(either.aborted).toBe(true);
  });
});
