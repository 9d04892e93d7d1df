import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NbdSession } from '../../../src/nbd/session.js';
import { Bytes, FakeSocket, goData, memoryBackend, option, request, settle } from './fixtures.js';

const FLAGS = new Bytes().u32(3).buffer;

async function feed(pieces: Buffer[], limits = {}): Promise<FakeSocket> {
  const socket = new FakeSocket();
  new NbdSession(socket, memoryBackend(), { log: () => undefined, limits });
  for (const p of pieces) {
    if (socket.destroyed) break;
    socket.push(p);
    await settle(1);
  }
  await settle();
  return socket;
}

describe('NbdSession with hostile input closes only that connection', () => {
  it.each([
    ['unknown client flags', [new Bytes().u32(0xff).buffer]],
    ['a bad option magic', [FLAGS, new Bytes().u64(0x1234).u32(3).u32(0).buffer]],
    ['an absurd option length (nothing buffered)', [FLAGS, new Bytes().u64(0x49484156454f5054n).u32(3).u32(0x7fffffff).buffer]],
    ['an option flood', [FLAGS, ...Array.from({ length: 300 }, () => option(3))]],
    ['a bad request magic', [FLAGS, option(7, goData('disk')), new Bytes().u32(0xdeadbeef).u16(0).u16(0).u64(1).u64(0).u32(512).buffer]],
    ['a write of 1 GiB', [FLAGS, option(7, goData('disk')), request(1, 1, 0, 1 << 30)]],
  ])('%s', async (_name, pieces) => {
    const socket = await feed(pieces as Buffer[]);
    expect(socket.destroyedByServer).toBe(true);
  });

  it('a half-open client that never completes the handshake is dropped', async () => {
    const socket = await feed([new Bytes().u32(3).buffer], { handshakeTimeoutMs: 50 });
    await settle(100);
    expect(socket.destroyedByServer).toBe(true);
  });

  it('survives random garbage at every stage (500 inputs)', async () => {
    for (let i = 0; i < 500; i++) {
      const prefix = [[], [FLAGS], [FLAGS, option(8), option(7, goData('disk'))]][i % 3] as Buffer[];
      const socket = await feed([...prefix, randomBytes(1 + (i % 200))]);
      socket.destroy();
    }
  }, 60_000);

  it('stops reading while the client does not read its replies (bounded memory)', async () => {
    const socket = new FakeSocket({ highWaterMark: 1024 });
    const held: (() => void)[] = [];
    socket._write = (chunk: Buffer, _enc, cb) => {
      socket.written.push(Buffer.from(chunk));
      held.push(() => cb()); // never acknowledged: a client that reads nothing
    };
    new NbdSession(socket, memoryBackend(32 << 20), { log: () => undefined, limits: { maxInFlightBytes: 8 << 20, maxInFlight: 64 } });
    socket.push(Buffer.concat([FLAGS, option(7, goData('disk'))]));
    await settle();
    for (let i = 0; i < 64; i++) socket.push(request(0, i, 0, 4 << 20));
    await settle(200);
    const replied = socket.written.reduce((n, b) => n + b.length, 0);
    expect(socket.isPaused()).toBe(true);
    expect(replied).toBeLessThan(3 * (8 << 20));
    for (const release of held) release();
  });
});
