import { describe, expect, it } from 'vitest';
import type { NbdExport } from '../../../src/nbd/backend.js';
import { Cmd, TxFlag } from '../../../src/nbd/protocol.js';
import { Transmission } from '../../../src/nbd/transmission.js';

/** An export whose byte at offset i is i mod 251, so every reply's content can be checked. */
function patternExport(size: number): NbdExport {
  return {
    name: 'p',
    description: '',
    size,
    readOnly: true,
    read: async (offset, into) => {
      await new Promise((r) => setImmediate(r));
      for (let i = 0; i < into.length; i++) into[i] = (offset + i) % 251;
    },
    write: () => Promise.reject(new Error('read-only')),
    zero: () => Promise.reject(new Error('read-only')),
    trim: () => Promise.reject(new Error('read-only')),
    flush: () => Promise.resolve(),
    extents: (offset, length) => Promise.resolve([{ length: Math.min(length, size - offset), hole: false }]),
    close: () => Promise.resolve(),
  };
}

const expected = (offset: number, length: number) => Buffer.from(Array.from({ length }, (_, i) => (offset + i) % 251));

describe('Transmission READ replies', () => {
  for (const structured of [false, true]) {
    it(`${structured ? 'structured' : 'simple'}: a reply's buffer is used again only after the socket sent it, and every reply holds its own bytes`, async () => {
      const sent: { data: Buffer; copy: Buffer; done: () => void }[] = [];
      const t = new Transmission(
        { export: patternExport(1 << 20), flags: TxFlag.NBD_FLAG_HAS_FLAGS | TxFlag.NBD_FLAG_READ_ONLY, structured, blockStatus: false },
        {
          write: () => undefined,
          // The socket holds the data until `done`: compare what it holds then with what was read.
          writeData: (_header, data, done) => sent.push({ data, copy: Buffer.from(data), done }),
          log: () => undefined,
          maxRequest: 1 << 20,
        },
      );
      const read = (offset: number) => t.handle({ flags: 0, type: Cmd.NBD_CMD_READ, handle: Buffer.alloc(8), offset, length: 4096 });
      await Promise.all([read(0), read(4096), read(8192)]);
      expect(new Set(sent.map((s) => s.data.buffer)).size).toBe(3);
      // Two more while nothing was sent: new buffers, and what the socket holds is unchanged.
      await Promise.all([read(12288), read(16384)]);
      expect(new Set(sent.map((s) => s.data)).size).toBe(5);
      for (const s of sent) expect(s.data.equals(s.copy)).toBe(true);
      // Once sent, a buffer serves the next reply.
      sent[0]!.done();
      await read(20480);
      expect(sent[5]!.data).toBe(sent[0]!.data);
      sent.forEach((s, i) => expect(s.data.equals(expected(i * 4096, 4096))).toBe(i === 0 ? false : true));
      expect(sent[5]!.data.equals(expected(20480, 4096))).toBe(true);
    });
  }
});
