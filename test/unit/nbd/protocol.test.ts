import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/nbd/byte-queue.js';
import { decodeClientFlags, decodeOption, decodeRequest, type Decoded, type Request } from '../../../src/nbd/protocol.js';
import { Bytes, option, request } from './fixtures.js';

function queueOf(...pieces: Buffer[]): ByteQueue {
  const q = new ByteQueue();
  for (const p of pieces) q.push(p);
  return q;
}

function message<T>(d: Decoded<T>): T {
  if (d.kind !== 'message') throw new Error(`expected a message, got ${JSON.stringify(d)}`);
  return d.message;
}

describe('decodeRequest()', () => {
  const payload = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const write = request(1, 0x0102030405, 4096, payload.length, 1, payload);

  it('asks for exactly the missing bytes and consumes nothing until header and payload are in, at every split', () => {
    for (let split = 0; split <= write.length; split++) {
      const q = queueOf(write.subarray(0, split));
      const d = decodeRequest(q, 1 << 20);
      if (split < write.length) {
        expect(d, `split at ${split}`).toEqual({ kind: 'need', bytes: (split < 28 ? 28 : write.length) - split });
        expect(q.length).toBe(split);
        q.push(write.subarray(split));
      }
      const r = split < write.length ? message(decodeRequest(q, 1 << 20)) : message(d);
      expect(r).toMatchObject({ type: 1, flags: 1, offset: 4096, length: 100 });
      expect(r.handle.equals(new Bytes().u64(0x0102030405).buffer)).toBe(true);
      expect(r.data?.equals(payload)).toBe(true);
      expect(q.length).toBe(0);
    }
  });

  it('gives commands other than WRITE no payload, and leaves the next request in the queue', () => {
    const q = queueOf(request(0, 1, 0, 1 << 20), request(3, 2, 0, 0));
    const read: Request = message(decodeRequest(q, 4096));
    expect(read).toMatchObject({ type: 0, length: 1 << 20, data: undefined });
    expect(message(decodeRequest(q, 4096)).type).toBe(3);
  });

  it('clamps offsets past 2^53 out of range instead of losing precision', () => {
    const q = queueOf(new Bytes().u32(0x25609513).u16(0).u16(0).u64(1).u64(0xffffffffffffff00n).u32(512).buffer);
    expect(message(decodeRequest(q, 4096)).offset).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    ['a bad magic', new Bytes().u32(0xdeadbeef).u16(0).u16(0).u64(1).u64(0).u32(0).buffer, 'bad request magic'],
    ['a WRITE longer than the limit, from the header alone', request(1, 1, 0, 8192), 'write of 8192 bytes'],
  ])('rejects %s without consuming it', (_name, bytes, reason) => {
    const q = queueOf(bytes);
    expect(decodeRequest(q, 4096)).toEqual({ kind: 'invalid', reason });
    expect(q.length).toBe(bytes.length);
  });
});

describe('decodeOption()', () => {
  it('needs the header, then the data, and returns option and data', () => {
    const bytes = option(7, Buffer.from('abc'));
    for (let split = 0; split < bytes.length; split++) {
      const q = queueOf(bytes.subarray(0, split));
      expect(decodeOption(q, 100)).toEqual({ kind: 'need', bytes: (split < 16 ? 16 : bytes.length) - split });
      q.push(bytes.subarray(split));
      const o = message(decodeOption(q, 100));
      expect(o.option).toBe(7);
      expect(o.data.toString()).toBe('abc');
    }
  });

  it('rejects a bad magic and data over the limit from the header alone', () => {
    expect(decodeOption(queueOf(new Bytes().u64(0x1234).u32(3).u32(0).buffer), 100)).toEqual({ kind: 'invalid', reason: 'bad option magic' });
    expect(decodeOption(queueOf(option(3).subarray(0, 12), new Bytes().u32(101).buffer), 100)).toEqual({ kind: 'invalid', reason: 'option data of 101 bytes' });
  });
});

describe('decodeClientFlags()', () => {
  it('needs 4 bytes and returns them as a number', () => {
    const q = queueOf(Buffer.from([0, 0]));
    expect(decodeClientFlags(q)).toEqual({ kind: 'need', bytes: 2 });
    q.push(Buffer.from([0, 3]));
    expect(decodeClientFlags(q)).toEqual({ kind: 'message', message: 3 });
  });
});
