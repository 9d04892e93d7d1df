import { describe, expect, it } from 'vitest';
import { NbdSession, type StartTls } from '../../../src/nbd/session.js';
import { Bytes, FakeSocket, REPLY_MAGIC, goData, memoryBackend, option, request, settle } from './fixtures.js';

const GREETING = new Bytes().u64(0x4e42444d41474943n).u64(0x49484156454f5054n).u16(3).buffer;
const FLAGS = new Bytes().u32(3).buffer; // FIXED_NEWSTYLE | NO_ZEROES
const URI = 'nbds://127.0.0.1:10809';
const TLS_REQD = 0x80000005;
const INVALID = 0x80000003;
const META = new Bytes().u32(4).str('disk').u32(1).u32(15).str('base:allocation').buffer;

function optionReply(opt: number, type: number, data: Buffer | string = Buffer.alloc(0)): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data) : data;
  return new Bytes().u64(REPLY_MAGIC).u32(opt).u32(type).u32(d.length).raw(d).buffer;
}

/**
 * A handshake that hands out `encrypted` (standing in for the TLS socket), fails or never ends,
 * and records its calls.
 */
function fakeTls(encrypted: FakeSocket | (() => Promise<never>)): { startTls: StartTls; calls: unknown[] } {
  const calls: unknown[] = [];
  return {
    calls,
    startTls: (raw) => {
      calls.push(raw);
      return encrypted instanceof FakeSocket ? Promise.resolve({ socket: encrypted, description: 'TLSv1.3 FAKE' }) : encrypted();
    },
  };
}

async function deliver(socket: FakeSocket, pieces: Buffer[]): Promise<void> {
  for (const p of pieces) {
    socket.push(p);
    await settle(2);
  }
  await settle();
}

describe('NbdSession with TLS required (FORCEDTLS)', () => {
  it('answers every option but STARTTLS and ABORT with ERR_TLS_REQD before STARTTLS, whatever the split of the input', async () => {
    const input = Buffer.concat([
      FLAGS,
      option(3),
      option(6, goData('disk')),
      option(7, goData('disk')),
      option(8),
      option(9, META),
      option(10, META),
      option(99),
      option(5, Buffer.from('x')),
      option(2),
    ]);
    const refusal = `this server requires TLS: connect to ${URI} with its credentials (qemu: tls-creds)`;
    const expected = Buffer.concat([
      GREETING,
      ...[3, 6, 7, 8, 9, 10, 99].map((opt) => optionReply(opt, TLS_REQD, refusal)),
      optionReply(5, INVALID, 'STARTTLS takes no data'),
      optionReply(2, 1),
    ]);
    for (let split = 1; split < input.length; split++) {
      const socket = new FakeSocket();
      const lines: string[] = [];
      const { startTls, calls } = fakeTls(new FakeSocket());
      new NbdSession(socket, memoryBackend(), { log: (l) => lines.push(l), uri: URI, startTls });
      await deliver(socket, [input.subarray(0, split), input.subarray(split)]);
      expect(socket.output.equals(expected), `split at ${split}`).toBe(true);
      expect(socket.ended).toBe(true);
      expect(calls).toHaveLength(0);
      expect(lines).toEqual(['refused NBD_OPT_LIST before STARTTLS: this server requires TLS']);
    }
  }, 60_000);

  it('closes the connection on NBD_OPT_EXPORT_NAME before STARTTLS (it has no error reply), with a log line', async () => {
    const socket = new FakeSocket();
    const lines: string[] = [];
    new NbdSession(socket, memoryBackend(), { log: (l) => lines.push(l), uri: URI, startTls: fakeTls(new FakeSocket()).startTls });
    await deliver(socket, [FLAGS, option(1, Buffer.from('disk'))]);
    expect(socket.output.equals(GREETING)).toBe(true);
    expect(socket.ended).toBe(true);
    expect(lines).toEqual(['refused NBD_OPT_EXPORT_NAME before STARTTLS: this server requires TLS']);
  });

  it('acknowledges STARTTLS, hands the socket to the handshake and negotiates on over TLS from scratch, whatever the splits', async () => {
    const before = Buffer.concat([FLAGS, option(5)]);
    // Over TLS: no client flags again; a second STARTTLS is invalid; then LIST, GO and a READ.
    const after = Buffer.concat([option(5), option(3), option(8), option(10, META), option(7, goData('disk')), request(0, 0x77, 0, 512)]);
    const backend = memoryBackend();
    const expectedAfter = Buffer.concat([
      optionReply(5, INVALID, 'TLS is already active'),
      optionReply(3, 2, new Bytes().u32(4).str('disk').str('test disk').buffer),
      optionReply(3, 1),
      optionReply(8, 1),
      optionReply(10, 4, new Bytes().u32(1).str('base:allocation').buffer),
      optionReply(10, 1),
      optionReply(7, 3, new Bytes().u16(0).u64(1 << 20).u16(1 | 4 | 8 | 32 | 64 | 2048 | 256 | 128).buffer),
      optionReply(7, 3, new Bytes().u16(3).u32(512).u32(4096).u32(32 << 20).buffer),
      optionReply(7, 1),
      new Bytes().u32(0x668e33ef).u16(1).u16(1).u64(0x77).u32(8 + 512).u64(0).buffer,
      backend.data.subarray(0, 512),
    ]);
    const splits = Math.max(before.length, after.length);
    for (let split = 1; split < splits; split++) {
      const raw = new FakeSocket();
      const encrypted = new FakeSocket();
      const lines: string[] = [];
      const { startTls, calls } = fakeTls(encrypted);
      new NbdSession(raw, backend, { log: (l) => lines.push(l), uri: URI, startTls });
      const b = Math.min(split, before.length - 1);
      await deliver(raw, [before.subarray(0, b), before.subarray(b)]);
      expect(raw.output.equals(Buffer.concat([GREETING, optionReply(5, 1)])), `split at ${split}`).toBe(true);
      expect(calls).toEqual([raw]);
      const a = Math.min(split, after.length - 1);
      await deliver(encrypted, [after.subarray(0, a), after.subarray(a)]);
      expect(encrypted.output.equals(expectedAfter), `split at ${split}`).toBe(true);
      expect(raw.output.length).toBe(GREETING.length + 20); // nothing more in plaintext
      expect(lines).toEqual(['TLS established: TLSv1.3 FAKE', 'client opened export "disk"']);
    }
  }, 60_000);

  it('never reads bytes the client sent after STARTTLS without waiting for the ACK: the connection closes, nothing acknowledged', async () => {
    for (const extra of [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]), option(3)]) {
      const socket = new FakeSocket();
      const lines: string[] = [];
      const { startTls, calls } = fakeTls(new FakeSocket());
      new NbdSession(socket, memoryBackend(), { log: (l) => lines.push(l), startTls });
      await deliver(socket, [FLAGS, Buffer.concat([option(5), extra])]);
      expect(socket.destroyedByServer).toBe(true);
      expect(socket.output.equals(GREETING)).toBe(true);
      expect(calls).toHaveLength(0);
      expect(lines).toEqual([`closing connection: ${extra.length} bytes sent after STARTTLS before its reply`]);
    }
  });

  it('closes the connection with one log line when the handshake fails', async () => {
    const socket = new FakeSocket();
    const lines: string[] = [];
    const session = new NbdSession(socket, memoryBackend(), { log: (l) => lines.push(l), startTls: fakeTls(() => Promise.reject(new Error('wrong version number'))).startTls });
    await deliver(socket, [FLAGS, option(5)]);
    await session.closed;
    expect(socket.destroyedByServer).toBe(true);
    expect(lines).toEqual(['closing connection: TLS handshake failed: wrong version number']);
  });

  it('cuts a handshake that never finishes at the handshake timeout', async () => {
    const socket = new FakeSocket();
    const lines: string[] = [];
    const session = new NbdSession(socket, memoryBackend(), {
      log: (l) => lines.push(l),
      startTls: fakeTls(() => new Promise<never>(() => undefined)).startTls,
      limits: { handshakeTimeoutMs: 100 },
    });
    await deliver(socket, [FLAGS, option(5)]);
    await session.closed;
    expect(socket.destroyedByServer).toBe(true);
    expect(lines).toEqual(['closing connection: handshake timed out']);
  });

  it('a server shutdown during the handshake cuts the connection', async () => {
    const socket = new FakeSocket();
    const session = new NbdSession(socket, memoryBackend(), { log: () => undefined, startTls: fakeTls(() => new Promise<never>(() => undefined)).startTls });
    await deliver(socket, [FLAGS, option(5)]);
    session.shutdown();
    await session.closed;
    expect(socket.destroyedByServer).toBe(true);
  });
});

describe('NbdSession without TLS', () => {
  it('refuses STARTTLS with ERR_POLICY and a hint, and goes on in plaintext', async () => {
    const socket = new FakeSocket();
    new NbdSession(socket, memoryBackend(), { log: () => undefined });
    await deliver(socket, [FLAGS, option(5), option(3)]);
    const expected = Buffer.concat([
      GREETING,
      optionReply(5, 0x80000002, 'TLS is not configured on this server (backy2 nbd --tls-cert/--tls-key or --tls-psk)'),
      optionReply(3, 2, new Bytes().u32(4).str('disk').str('test disk').buffer),
      optionReply(3, 1),
    ]);
    expect(socket.output.equals(expected)).toBe(true);
  });
});
