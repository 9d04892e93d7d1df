import { describe, expect, it } from 'vitest';
import { ReplyBuffers } from '../../../src/nbd/reply-buffers.js';

describe('ReplyBuffers', () => {
  it('hands a given-back buffer out again for the same length, and keeps no more than its limit', () => {
    const buffers = new ReplyBuffers(3 * 1024);
    const a = buffers.take(1024);
    const b = buffers.take(1024);
    expect(a.length).toBe(1024);
    expect(a.buffer).not.toBe(b.buffer);
    buffers.give(a);
    expect(buffers.take(2048).length).toBe(2048);
    expect(buffers.take(1024)).toBe(a);
    buffers.give(a);
    buffers.give(b);
    // 2 KiB kept: another 2 KiB would pass the 3 KiB limit and is dropped; 1 KiB more fits, no more.
    buffers.give(buffers.take(2048));
    expect(buffers.bytes).toBe(2 * 1024);
    buffers.give(Buffer.alloc(1024));
    expect(buffers.bytes).toBe(3 * 1024);
    buffers.give(Buffer.alloc(1024));
    expect(buffers.bytes).toBe(3 * 1024);
  });
});
