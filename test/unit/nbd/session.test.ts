import { describe, expect, it } from 'vitest';
import { CorruptBlockError, StoreFullError } from '../../../src/engine/errors.js';
import { ByteQueue } from '../../../src/nbd/byte-queue.js';
import { NbdSession } from '../../../src/nbd/session.js';
import { Bytes, FakeSocket, REPLY_MAGIC, goData, memoryBackend, option, request, settle } from './fixtures.js';

const GREETING = new Bytes().u64(0x4e42444d41474943n).u64(0x49484156454f5054n).u16(3).buffer;
const FLAGS = new Bytes().u32(3).buffer; // FIXED_NEWSTYLE | NO_ZEROES

function optionReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return new Bytes().u64(REPLY_MAGIC).u32(opt).u32(type).u32(data.length).raw(data).buffer;
}

/** Runs a session over `input`, delivered in the given pieces, and returns what it wrote. */
async function converse(pieces: Buffer[], backend = memoryBackend(), log: (line: string) => void = () => undefined, uri?: string): Promise<FakeSocket> {
  const socket = new FakeSocket();
  new NbdSession(socket, backend, { log, uri });
  for (const p of pieces) {
    socket.push(p);
    await settle(2);
  }
  await settle();
  return socket;
}

const TX_FLAGS = 1 | 4 | 8 | 32 | 64 | 2048 | 256; // HAS_FLAGS FLUSH FUA TRIM WRITE_ZEROES FAST_ZERO MULTI_CONN

describe('ByteQueue', () => {
  it('consume() and peek() work across chunk boundaries', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([1, 2]));
    q.push(Buffer.from([3]));
    q.push(Buffer.from([4, 5, 6]));
    expect([...q.peek(4)]).toEqual([1, 2, 3, 4]);
    expect([...q.consume(1)]).toEqual([1]);
    expect([...q.consume(4)]).toEqual([2, 3, 4, 5]);
    expect(q.length).toBe(1);
    expect(() => q.consume(2)).toThrow(RangeError);
  });
});

describe('NbdSession handshake and options', () => {
  it('sends the fixed newstyle greeting with NO_ZEROES', async () => {
    const socket = await converse([]);
    expect(socket.output.equals(GREETING)).toBe(true);
  });

  it('answers LIST, INFO and GO exactly as specified, whatever the split of the input', async () => {
    const input = Buffer.concat([FLAGS, option(3), option(8), option(7, goData('disk', [1, 2, 3])), request(0, 0x1122, 0, 512)]);
    const expected = Buffer.concat([
      GREETING,
      optionReply(3, 2, new Bytes().u32(4).str('disk').str('test disk').buffer),
      optionReply(3, 1),
      optionReply(8, 1),
      optionReply(7, 3, new Bytes().u16(0).u64(1 << 20).u16(TX_FLAGS | 128).buffer),
      optionReply(7, 3, new Bytes().u16(1).str('disk').buffer),
      optionReply(7, 3, new Bytes().u16(2).str('test disk').buffer),
      optionReply(7, 3, new Bytes().u16(3).u32(512).u32(4096).u32(32 << 20).buffer),
      optionReply(7, 1),
      // READ as one structured OFFSET_DATA chunk marked DONE
      new Bytes().u32(0x668e33ef).u16(1).u16(1).u64(0x1122).u32(8 + 512).u64(0).buffer,
    ]);
    const backend = memoryBackend();
    const data = backend.data.subarray(0, 512);
    const whole = Buffer.concat([expected, data]);
    for (let split = 1; split < input.length; split++) {
      const socket = await converse([input.subarray(0, split), input.subarray(split)], backend);
      expect(socket.output.equals(whole), `split at ${split}`).toBe(true);
    }
  }, 60_000);

  it('EXPORT_NAME replies with size and flags, with 124 zero bytes unless NO_ZEROES', async () => {
    const withZeroes = await converse([new Bytes().u32(1).buffer, option(1, Buffer.from('disk'))]);
    expect(withZeroes.output.subarray(18).equals(new Bytes().u64(1 << 20).u16(TX_FLAGS).raw(Buffer.alloc(124)).buffer)).toBe(true);
    const without = await converse([FLAGS, option(1, Buffer.from('disk'))]);
    expect(without.output.subarray(18).equals(new Bytes().u64(1 << 20).u16(TX_FLAGS).buffer)).toBe(true);
  });

  it('answers unknown options with ERR_UNSUP and unknown exports with ERR_UNKNOWN, and goes on', async () => {
    const socket = await converse([FLAGS, option(99), option(6, goData('nope')), option(2)]);
    const out = socket.output.subarray(18);
    expect(out.readUInt32BE(12)).toBe(0x80000001);
    const second = out.subarray(20 + out.readUInt32BE(16));
    expect(second.readUInt32BE(8)).toBe(6);
    expect(second.readUInt32BE(12)).toBe(0x80000006);
    const third = second.subarray(20 + second.readUInt32BE(16));
    expect(third.equals(optionReply(2, 1))).toBe(true);
    expect(socket.ended).toBe(true);
  });

  it('refuses an unknown name and a missing default export with ERR_UNKNOWN, a hint and one log line each', async () => {
    const memory = memoryBackend();
    const noDefault = { ...memory, open: (name: string) => (name === '' ? Promise.resolve(undefined) : memory.open(name)) };
    const lines: string[] = [];
    const hostileName = `\x1b[31mred\u202e"${'x'.repeat(100)}`;
    const socket = await converse([FLAGS, option(7, goData('')), option(6, goData(hostileName)), option(7, goData('disk'))], noDefault, (l) => lines.push(l), 'nbd://127.0.0.1:10809');
    const list = '`nbdinfo --list nbd://127.0.0.1:10809` lists them';
    const escaped = `"\\u{1b}[31mred\\u{202e}\\u{22}${'x'.repeat(54)}" (110 characters)`;
    const expected = Buffer.concat([
      GREETING,
      optionReply(7, 0x80000006, Buffer.from(`no default export: name one, e.g. nbd://127.0.0.1:10809/<uid>; ${list}`)),
      optionReply(6, 0x80000006, Buffer.from(`no export named ${escaped}; ${list}`)),
    ]);
    expect(socket.output.subarray(0, expected.length).toString()).toBe(expected.toString());
    expect(lines.slice(0, 2)).toEqual(['refused the default export: there is none', `refused unknown export ${escaped}`]);
    expect(lines[2]).toBe('client opened export "disk"'); // and the client goes on
  });

  it('closes the connection after EXPORT_NAME of an unknown export (it has no error reply), with a log line', async () => {
    const lines: string[] = [];
    const socket = await converse([FLAGS, option(1, Buffer.from('nope'))], memoryBackend(), (l) => lines.push(l));
    expect(socket.output.equals(GREETING)).toBe(true);
    expect(socket.ended).toBe(true);
    expect(lines).toEqual(['refused unknown export "nope"']);
  });

  it('answers LIST_META_CONTEXT and SET_META_CONTEXT with base:allocation', async () => {
    const meta = new Bytes().u32(4).str('disk').u32(1).u32(15).str('base:allocation').buffer;
    const socket = await converse([FLAGS, option(10, meta), option(8), option(9, new Bytes().u32(4).str('disk').u32(0).buffer), option(10, meta)]);
    const out = socket.output.subarray(18);
    expect(out.readUInt32BE(12)).toBe(0x80000003); // SET before STRUCTURED_REPLY: invalid
    const rest = out.subarray(20 + out.readUInt32BE(16) + 20); // skip the invalid reply and the ACK of STRUCTURED_REPLY
    const ctx = (id: number) => new Bytes().u32(id).str('base:allocation').buffer;
    expect(rest.equals(Buffer.concat([optionReply(9, 4, ctx(0)), optionReply(9, 1), optionReply(10, 4, ctx(1)), optionReply(10, 1)]))).toBe(true);
  });
});

describe('NbdSession transmission', () => {
  const go = [FLAGS, option(8), option(10, new Bytes().u32(4).str('disk').u32(1).u32(15).str('base:allocation').buffer), option(7, goData('disk'))];

  async function transmit(requests: Buffer[], backend = memoryBackend(), log?: (line: string) => void): Promise<Buffer> {
    const socket = await converse([...go, ...requests], backend, log);
    const out = socket.output;
    // skip greeting and option replies up to the GO ACK
    let at = 18;
    for (;;) {
      const type = out.readUInt32BE(at + 12);
      const len = out.readUInt32BE(at + 16);
      const opt = out.readUInt32BE(at + 8);
      at += 20 + len;
      if (opt === 7 && type === 1) break;
    }
    return out.subarray(at);
  }

  it('reads holes as OFFSET_HOLE chunks and data as OFFSET_DATA', async () => {
    const out = await transmit([request(0, 7, 65536 - 512, 1024)]);
    const data = new Bytes().u32(0x668e33ef).u16(0).u16(1).u64(7).u32(8 + 512).u64(65536 - 512).buffer;
    expect(out.subarray(0, 28).equals(data)).toBe(true);
    const hole = new Bytes().u32(0x668e33ef).u16(1).u16(2).u64(7).u32(12).u64(65536).u32(512).buffer;
    expect(out.subarray(28 + 512).equals(hole)).toBe(true);
  });

  it('answers BLOCK_STATUS with hole|zero for holes, and REQ_ONE with one extent', async () => {
    const out = await transmit([request(7, 9, 0, 1 << 20), request(7, 10, 0, 1 << 20, 8)]);
    const full = new Bytes().u32(0x668e33ef).u16(1).u16(5).u64(9).u32(4 + 16).u32(1).u32(65536).u32(0).u32((1 << 20) - 65536).u32(3).buffer;
    expect(out.subarray(0, full.length).equals(full)).toBe(true);
    const one = new Bytes().u32(0x668e33ef).u16(1).u16(5).u64(10).u32(4 + 8).u32(1).u32(65536).u32(0).buffer;
    expect(out.subarray(full.length).equals(one)).toBe(true);
  });

  it('writes, reads back, and fails bad requests with NBD errors, not disconnects', async () => {
    const backend = memoryBackend();
    const payload = Buffer.alloc(4096, 0xab);
    const out = await transmit(
      [
        request(1, 1, 8192, 4096, 0, payload),
        request(0, 2, (1 << 20) - 100, 200), // past the end
        request(6, 3, 0, 4096, 16), // FAST_ZERO not fast here
        request(99, 4, 0, 0), // unknown command
        request(0, 5, 0, 16, 1 << 9), // unknown flag
        request(3, 6, 0, 0), // flush
      ],
      backend,
    );
    expect(backend.data.subarray(8192, 8192 + 4096).equals(payload)).toBe(true);
    expect(out.subarray(0, 16).equals(new Bytes().u32(0x67446698).u32(0).u64(1).buffer)).toBe(true);
    const errors: number[] = [];
    let at = 16;
    while (at < out.length) {
      if (out.readUInt32BE(at) === 0x67446698) {
        errors.push(out.readUInt32BE(at + 4));
        at += 16;
      } else {
        errors.push(out.readUInt32BE(at + 20));
        at += 20 + out.readUInt32BE(at + 16);
      }
    }
    expect(errors).toEqual([22, 95, 22, 22, 0]);
  });

  it('refuses WRITE, FLUSH, TRIM and WRITE_ZEROES on a read-only export with EPERM, and still reads', async () => {
    const out = await transmit(
      [request(1, 1, 0, 512, 0, Buffer.alloc(512)), request(3, 2, 0, 0), request(4, 3, 0, 4096), request(6, 4, 0, 4096), request(0, 5, 0, 512, 4)],
      memoryBackend(1 << 20, { readOnly: true }),
    );
    const errors: [number, number][] = [];
    let at = 0;
    for (let i = 0; i < 4; i++) {
      // structured ERROR chunks: cookie at 8, error at 20, message length at 24
      errors.push([Number(out.readBigUInt64BE(at + 8)), out.readUInt32BE(at + 20)]);
      at += 20 + out.readUInt32BE(at + 16);
    }
    expect(errors).toEqual([[1, 1], [2, 1], [3, 1], [4, 1]]);
    expect(out.subarray(at, at + 28).equals(new Bytes().u32(0x668e33ef).u16(1).u16(1).u64(5).u32(8 + 512).u64(0).buffer)).toBe(true);
  });

  it('advertises no FLUSH, FUA, TRIM or WRITE_ZEROES for a read-only export', async () => {
    const socket = await converse([FLAGS, option(1, Buffer.from('disk'))], memoryBackend(1 << 20, { readOnly: true }));
    expect(socket.output.subarray(18).equals(new Bytes().u64(1 << 20).u16(1 | 2 | 256).buffer)).toBe(true);
    const info = await converse([FLAGS, option(8), option(6, goData('disk')), option(2)], memoryBackend(1 << 20, { readOnly: true }));
    // INFO's first reply: NBD_INFO_EXPORT with size and flags (DF with structured replies)
    const first = info.output.subarray(18 + 20);
    expect(first.subarray(20, 32).equals(new Bytes().u16(0).u64(1 << 20).u16(1 | 2 | 128 | 256).buffer)).toBe(true);
  });

  it('answers engine failures with the matching NBD error and its message, and logs them', async () => {
    const full = memoryBackend(1 << 20, { fail: { write: new StoreFullError('Cannot write object "ab": no space left on device') } });
    const out = await transmit([request(1, 1, 0, 512, 0, Buffer.alloc(512))], full);
    // one structured ERROR chunk: flags DONE, type ERROR, error, message length, message
    expect(out.readUInt16BE(6)).toBe(0x8001);
    expect(out.readUInt32BE(20)).toBe(28);
    expect(out.subarray(26, 26 + out.readUInt16BE(24)).toString()).toBe('Cannot write object "ab": no space left on device');
    const corrupt = memoryBackend(1 << 20, { fail: { read: new CorruptBlockError('Block "cd" does not match its digest') } });
    const lines: string[] = [];
    expect((await transmit([request(0, 2, 0, 512)], corrupt, (l) => lines.push(l))).readUInt32BE(20)).toBe(5);
    expect(lines.some((l) => l.includes('does not match its digest'))).toBe(true);
  });
});
