import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NbdReader } from '../../../../src/engine/endpoints/nbd-reader.js';
import { makeTempDir } from '../../../helpers/temp.js';

let server: ChildProcess | undefined;
afterEach(() => {
  server?.kill();
  server = undefined;
});

/** qemu-nbd serving `data` read-only on a unix socket of a new temp directory. */
async function serve(data: Buffer): Promise<string> {
  const dir = makeTempDir();
  const file = path.join(dir, 'disk.raw');
  writeFileSync(file, data);
  const socket = path.join(dir, 'nbd.sock');
  server = spawn('qemu-nbd', ['--read-only', '--persistent', '--format=raw', '--socket', socket, file], { stdio: 'ignore' });
  for (let i = 0; i < 500 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 10));
  return socket;
}

describe('NbdReader (against qemu-nbd)', () => {
  it('reads any range of the export, including ones larger than a request and at its very end', async () => {
    const data = randomBytes(9 * 1024 * 1024 + 512 * 3);
    const nbd = await NbdReader.connect(await serve(data), 'test disk');
    expect(nbd.size).toBe(data.length);
    for (const [offset, length] of [[0, 4096], [12345, 1], [1, 9 * 1024 * 1024], [data.length - 777, 777], [4 * 1024 * 1024, 4 * 1024 * 1024]] as const) {
      const into = Buffer.alloc(length);
      await nbd.read(offset, into);
      expect(into.equals(data.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
    }
    // Reads at once are answered in order, each with its own bytes.
    const parts = await Promise.all([0, 1, 2, 3].map(async (k) => {
      const into = Buffer.alloc(65536);
      await nbd.read(k * 1_000_000, into);
      return into.equals(data.subarray(k * 1_000_000, k * 1_000_000 + 65536));
    }));
    expect(parts).toEqual([true, true, true, true]);
    await expect(nbd.read(data.length - 10, Buffer.alloc(11))).rejects.toMatchObject({ code: 'E_IO', message: expect.stringContaining('past its end') });
    await nbd.close();
  });

  it('says which export it could not read when nothing listens, or the server goes away', async () => {
    await expect(NbdReader.connect(path.join(makeTempDir(), 'none.sock'), 'rbd:pool/img@snap')).rejects.toMatchObject({ message: expect.stringContaining('Cannot read rbd:pool/img@snap') });
    const nbd = await NbdReader.connect(await serve(randomBytes(1 << 20)), 'rbd:pool/img@snap');
    server?.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    await expect(nbd.read(0, Buffer.alloc(4096))).rejects.toMatchObject({ code: 'E_IO', message: expect.stringContaining('rbd:pool/img@snap') });
  });
});
