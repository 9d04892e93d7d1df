import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as connectTcp, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkServerIdentity, connect as connectTls, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdSession, type SessionLimits } from '../../../src/nbd/session.js';
import { loadNbdTls, type NbdTls } from '../../../src/nbd/tls.js';
import { makeTestPki, type TestPki } from '../../helpers/tls-pki.js';
import { Bytes, goData, memoryBackend, option, request, settle } from './fixtures.js';

const FLAGS = new Bytes().u32(3).buffer;

let dir: string;
let pki: TestPki;
let psk: NbdTls;
let x509: NbdTls;
let x509Verified: NbdTls;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'backy2-tls-'));
  pki = makeTestPki(dir);
  psk = await loadNbdTls({ kind: 'psk', pskFile: pki.pskFile });
  x509 = await loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: pki.serverKey });
  x509Verified = await loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: pki.serverKey, verifyClients: pki.ca });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface TestServer {
  readonly port: number;
  readonly lines: string[];
  readonly reads: { count: number };
  close(): Promise<void>;
}

/** NBD sessions with TLS on 127.0.0.1 (in-process), over a 32 MiB memory export that counts reads. */
async function serve(tls: NbdTls, limits: SessionLimits = {}): Promise<TestServer> {
  const lines: string[] = [];
  const reads = { count: 0 };
  const memory = memoryBackend(32 << 20);
  const backend = {
    ...memory,
    open: async (name: string) => {
      const exp = await memory.open(name);
      return exp && { ...exp, read: (offset: number, into: Buffer) => (reads.count++, exp.read(offset, into)) };
    },
  };
  const sessions: NbdSession[] = [];
  const server: Server = createServer((socket) => {
    sessions.push(new NbdSession(socket, backend, { log: (l) => lines.push(l), startTls: (s) => tls.accept(s), limits }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    lines,
    reads,
    close: async () => {
      for (const s of sessions) s.shutdown();
      await Promise.all(sessions.map((s) => s.closed));
      await new Promise((r) => server.close(r));
    },
  };
}

/** Reads exactly `n` bytes from a socket (rejects if it closes first). */
function readExactly(socket: Socket, n: number): Promise<Buffer> {
  if (n === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= n) {
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
        if (buf.length > n) socket.unshift(buf.subarray(n));
        resolve(buf.subarray(0, n));
      }
    };
    const onClose = () => reject(new Error(`connection closed after ${buf.length} of ${n} bytes`));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/** Connects and sends client flags and STARTTLS; resolves with the raw socket once the ACK came. */
async function startTls(port: number): Promise<Socket> {
  const raw = connectTcp(port, '127.0.0.1');
  raw.on('error', () => undefined);
  await readExactly(raw, 18);
  raw.write(Buffer.concat([FLAGS, option(5)]));
  const reply = await readExactly(raw, 20);
  expect(reply.readUInt32BE(12)).toBe(1); // ACK
  return raw;
}

/** STARTTLS, then the TLS handshake with `options`. */
async function tlsClient(port: number, options: ConnectionOptions): Promise<TLSSocket> {
  const raw = await startTls(port);
  const tls = connectTls({ socket: raw, checkServerIdentity: () => undefined, ...options });
  tls.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', () => resolve());
    tls.once('error', reject);
    tls.once('close', () => reject(new Error('closed during the handshake')));
  });
  return tls;
}

/** NBD_OPT_LIST over an established connection: the export names. */
async function list(socket: Socket): Promise<string[]> {
  socket.write(option(3));
  const names: string[] = [];
  for (;;) {
    const head = await readExactly(socket, 20);
    const data = await readExactly(socket, head.readUInt32BE(16));
    if (head.readUInt32BE(12) === 1) return names;
    if (head.readUInt32BE(12) !== 2) throw new Error(`reply type 0x${head.readUInt32BE(12).toString(16)}`);
    names.push(data.subarray(4, 4 + data.readUInt32BE(0)).toString());
  }
}

const pskClient = (identity = 'alice') => ({ pskCallback: () => ({ psk: pki.psk, identity }), ca: pki.pem.ca });
/** Resolves when the server closed `socket` (reading on, so that its FIN is seen). */
const closed = (socket: Socket) => new Promise<void>((r) => (socket.closed ? r() : (socket.once('close', () => r()), socket.resume())));

describe('TLS after NBD_OPT_STARTTLS with real handshakes', () => {
  it('PSK: TLS 1.3 with AES-GCM, the identity logged, options over TLS', async () => {
    const server = await serve(psk);
    const tls = await tlsClient(server.port, pskClient());
    expect(tls.getProtocol()).toBe('TLSv1.3');
    expect(tls.getCipher().name).toBe('TLS_AES_128_GCM_SHA256');
    expect(await list(tls)).toEqual(['disk']);
    expect(server.lines).toContain('TLS established: TLSv1.3 TLS_AES_128_GCM_SHA256, PSK identity "alice"');
    tls.destroy();
    await server.close();
  });

  it('PSK: TLS 1.2 clients get ECDHE-PSK', async () => {
    const server = await serve(psk);
    const tls = await tlsClient(server.port, { ...pskClient(), maxVersion: 'TLSv1.2', ciphers: 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256' });
    expect(tls.getCipher().name).toBe('ECDHE-PSK-CHACHA20-POLY1305');
    expect(await list(tls)).toEqual(['disk']);
    tls.destroy();
    await server.close();
  });

  it('PSK: an unknown identity or a wrong key is refused with a log line', async () => {
    const server = await serve(psk);
    await expect(tlsClient(server.port, pskClient('mallory'))).rejects.toThrow();
    await expect(tlsClient(server.port, { pskCallback: () => ({ psk: Buffer.alloc(32, 1), identity: 'alice' }) })).rejects.toThrow();
    await settle(50);
    expect(server.lines[0]).toBe('closing connection: TLS handshake failed: unknown PSK identity "mallory"');
    expect(server.lines[1]).toMatch(/^closing connection: TLS handshake failed: /);
    expect(server.lines).toHaveLength(2);
    await server.close();
  });

  it('x509 without client verification: any client gets an encrypted connection', async () => {
    const server = await serve(x509);
    const tls = await tlsClient(server.port, { ca: pki.pem.ca, servername: 'localhost', checkServerIdentity });
    expect(tls.authorized).toBe(true); // the client verified the server
    expect(await list(tls)).toEqual(['disk']);
    tls.destroy();
    await server.close();
  });

  it('x509 with client verification: a certificate of the CA gets in; none, or one of another CA of the same name, does not', async () => {
    const server = await serve(x509Verified);
    const alice = await tlsClient(server.port, { ca: pki.pem.ca, cert: pki.pem.aliceCert, key: pki.pem.aliceKey });
    expect(await list(alice)).toEqual(['disk']);
    expect(server.lines).toContain('TLS established: TLSv1.3 TLS_AES_128_GCM_SHA256, client certificate "alice"');
    alice.destroy();
    // In TLS 1.3 the client finishes before the server checks its certificate: the refusal shows as a close.
    const refused = async (options: ConnectionOptions) => {
      const tls = await tlsClient(server.port, { ca: pki.pem.ca, ...options }).catch(() => undefined);
      if (tls) await expect(list(tls)).rejects.toThrow();
    };
    await refused({});
    await refused({ cert: pki.pem.rogueCert, key: pki.pem.rogueKey });
    await settle(50);
    expect(server.lines.filter((l) => l.startsWith('closing'))).toEqual([
      'closing connection: TLS handshake failed: the client sent no certificate',
      expect.stringMatching(/^closing connection: TLS handshake failed: client certificate refused: [A-Z_]+$/),
    ]);
    await server.close();
  });

  it('serves requests over TLS: GO and a READ equal the export', async () => {
    const server = await serve(psk);
    const tls = await tlsClient(server.port, pskClient());
    tls.write(Buffer.concat([option(7, goData('disk')), request(0, 9, 4096, 8192)]));
    for (;;) {
      const head = await readExactly(tls, 20);
      await readExactly(tls, head.readUInt32BE(16));
      if (head.readUInt32BE(12) === 1) break;
    }
    const reply = await readExactly(tls, 16 + 8192);
    expect(reply.readUInt32BE(0)).toBe(0x67446698);
    expect(reply.readUInt32BE(4)).toBe(0);
    expect(reply.subarray(16).equals(memoryBackend().data.subarray(4096, 4096 + 8192))).toBe(true);
    tls.destroy();
    await server.close();
  });

  it('stops reading requests over TLS while the client does not read its replies (bounded memory)', async () => {
    const server = await serve(psk, { maxInFlightBytes: 8 << 20, maxInFlight: 64 });
    const tls = await tlsClient(server.port, pskClient());
    tls.write(option(7, goData('disk')));
    for (;;) {
      const head = await readExactly(tls, 20);
      await readExactly(tls, head.readUInt32BE(16));
      if (head.readUInt32BE(12) === 1) break;
    }
    // 64 reads of 4 MiB (256 MiB of replies), none of them read by the client.
    for (let i = 0; i < 64; i++) tls.write(request(0, i, (i % 8) * (4 << 20), 4 << 20));
    await settle(1000);
    expect(server.reads.count).toBeGreaterThan(0);
    expect(server.reads.count).toBeLessThan(8); // of 64: at most 32 of 256 MiB held
    tls.destroy();
    await server.close();
  });
});

describe('Hostile input during the TLS handshake closes only that connection', () => {
  it('garbage instead of a ClientHello is refused at once; another client is unaffected', async () => {
    const server = await serve(psk);
    const hostile = await startTls(server.port);
    hostile.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await closed(hostile);
    const good = await tlsClient(server.port, pskClient());
    expect(await list(good)).toEqual(['disk']);
    good.destroy();
    expect(server.lines[0]).toBe('closing connection: TLS handshake failed: http request'); // OpenSSL's words
    await server.close();
  });

  it('a ClientHello claiming 16 MiB is refused after its first record (16 KiB), not buffered', async () => {
    const server = await serve(psk);
    const hostile = await startTls(server.port);
    // A whole handshake record of 16 KiB whose ClientHello says it is 16 MiB long.
    hostile.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]), Buffer.alloc(0x4000 - 4)]));
    await closed(hostile);
    expect(server.lines).toEqual(['closing connection: TLS handshake failed: excessive message size']);
    await server.close();
  });

  it('a client that never completes the handshake is dropped at the handshake timeout; others go on meanwhile', async () => {
    const server = await serve(psk, { handshakeTimeoutMs: 1500 });
    const stalled = await startTls(server.port);
    // The start of a record header, then nothing.
    stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x02]));
    const started = Date.now();
    const good = await tlsClient(server.port, pskClient());
    expect(await list(good)).toEqual(['disk']);
    good.destroy();
    expect(stalled.closed).toBe(false);
    await closed(stalled);
    expect(Date.now() - started).toBeGreaterThan(1000);
    expect(server.lines).toContain('closing connection: handshake timed out');
    await server.close();
  });

  it('a client that closes during the handshake leaves one log line', async () => {
    const server = await serve(psk);
    const quitter = await startTls(server.port);
    quitter.end(Buffer.from([0x16, 0x03]));
    await closed(quitter);
    await settle(50);
    expect(server.lines).toEqual(['closing connection: TLS handshake failed: the client closed the connection during the TLS handshake']);
    await server.close();
  });
});
