import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBackyError } from '../../../src/engine/errors.js';
import { loadNbdTls, parsePskFile } from '../../../src/nbd/tls.js';
import { makeTestPki, type TestPki } from '../../helpers/tls-pki.js';

let dir: string;
let pki: TestPki;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backy2-tls-files-'));
  pki = makeTestPki(dir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The error `promise` rejects with, as code, message and hint. */
async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string; hint: string | undefined }> {
  try {
    await promise;
  } catch (err) {
    if (!isBackyError(err)) throw err;
    return { code: err.code, message: err.message, hint: err.hint };
  }
  throw new Error('it did not fail');
}

describe('loadNbdTls()', () => {
  it('describes what each kind of credentials asks of clients', async () => {
    expect(await loadNbdTls({ kind: 'psk', pskFile: pki.pskFile })).toMatchObject({ credentials: 'psk', clientsAuthenticated: true, description: 'PSK, 1 identity' });
    expect(await loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: pki.serverKey })).toMatchObject({
      credentials: 'x509',
      clientsAuthenticated: false,
      description: 'x509, clients not verified',
    });
    expect(await loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: pki.serverKey, verifyClients: pki.ca })).toMatchObject({
      credentials: 'x509',
      clientsAuthenticated: true,
      description: 'x509, client certificates verified',
    });
  });

  it('refuses key and PSK files that group or others can access, as ssh does', async () => {
    const key = path.join(dir, 'open-key.pem');
    writeFileSync(key, 'x', { mode: 0o644 });
    chmodSync(key, 0o644);
    expect(await failure(loadNbdTls({ kind: 'x509', cert: pki.serverCert, key }))).toEqual({
      code: 'E_USAGE',
      message: `Permissions 0644 of TLS key file "${key}" are too open: only its owner may read it`,
      hint: `chmod 600 ${key}`,
    });
    const psk = path.join(dir, 'group.psk');
    writeFileSync(psk, `alice:${'ab'.repeat(32)}\n`);
    chmodSync(psk, 0o640);
    expect((await failure(loadNbdTls({ kind: 'psk', pskFile: psk }))).message).toBe(`Permissions 0640 of TLS PSK file "${psk}" are too open: only its owner may read it`);
  });

  it('names a missing file (not found) and a certificate that does not match its key (usage)', async () => {
    const missing = path.join(dir, 'nope.pem');
    expect(await failure(loadNbdTls({ kind: 'x509', cert: missing, key: pki.serverKey }))).toMatchObject({
      code: 'E_NOT_FOUND',
      message: `TLS certificate file "${missing}" does not exist`,
    });
    const aliceKey = path.join(pki.clientDirs.alice, 'client-key.pem');
    const mismatch = await failure(loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: aliceKey }));
    expect(mismatch.code).toBe('E_USAGE');
    expect(mismatch.message).toMatch(new RegExp(`^TLS certificate "${pki.serverCert}" and key "${aliceKey}" cannot be used together: .*mismatch`));
    const notCa = path.join(dir, 'not-ca.pem');
    writeFileSync(notCa, 'hello\n');
    expect((await failure(loadNbdTls({ kind: 'x509', cert: pki.serverCert, key: pki.serverKey, verifyClients: notCa }))).message).toMatch(
      new RegExp(`^TLS CA file "${notCa}" holds no usable certificate: `),
    );
  });
});

describe('parsePskFile()', () => {
  const key = 'ab'.repeat(32);

  it('reads identity:hexkey lines (as psktool writes them), ignoring blank lines and CRLF', () => {
    const keys = parsePskFile(`alice:${key}\r\n\nbob:${'0F'.repeat(16)}\n`, 'f');
    expect([...keys.keys()]).toEqual(['alice', 'bob']);
    expect(keys.get('alice')).toEqual(Buffer.from(key, 'hex'));
    expect(keys.get('bob')?.length).toBe(16);
  });

  it.each([
    ['', 'PSK file "f" holds no keys'],
    [`${key}\n`, 'PSK file "f" line 1: no "identity:" before the key'],
    [`alice:${key}\n:${key}\n`, 'PSK file "f" line 2: no "identity:" before the key'],
    ['alice:abc\n', 'PSK file "f" line 1: the key of "alice" is not an even number of hex digits'],
    ['alice:zz\n', 'PSK file "f" line 1: the key of "alice" is not an even number of hex digits'],
    ['alice:\n', 'PSK file "f" line 1: no key after "alice"'],
    [`alice:${'ab'.repeat(8)}\n`, 'PSK file "f" line 1: the key of "alice" is 8 bytes; use at least 16'],
    [`alice:${'ab'.repeat(257)}\n`, 'PSK file "f" line 1: the key of "alice" is 257 bytes; at most 256 work'],
    [`${'a'.repeat(129)}:${key}\n`, 'PSK file "f" line 1: the identity is longer than 128 bytes'],
    [`alice:${key}\nalice:${key}\n`, 'PSK file "f" line 2: "alice" appears twice'],
  ])('refuses %j: %s', (text, message) => {
    expect(() => parsePskFile(text, 'f')).toThrow(message);
  });

  it('never shows a key in its messages', () => {
    const secret = 'c0ffee'.repeat(3); // 9 bytes: too short
    expect(() => parsePskFile(`alice:${secret}\n`, 'f')).toThrow(expect.objectContaining({ message: expect.not.stringContaining(secret) }));
  });
});
