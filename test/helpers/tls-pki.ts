import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Test credentials, made with openssl at test time (never kept in the repository). */
export interface TestPki {
  /** The CA certificate (PEM file). */
  readonly ca: string;
  /** The server's certificate (for 127.0.0.1 and localhost) and key (mode 0600). */
  readonly serverCert: string;
  readonly serverKey: string;
  /**
   * Client directories as libnbd (`tls-certificates=`) and qemu (`tls-creds-x509,dir=`) read them:
   * `ca-cert.pem`, and `client-cert.pem` + `client-key.pem` unless anonymous.
   * `rogue` holds a client certificate of another CA with the same name as the real one.
   */
  readonly clientDirs: { readonly alice: string; readonly anonymous: string; readonly rogue: string };
  /** A directory with `keys.psk` (qemu's `tls-creds-psk,dir=` reads that name), identity `alice`. */
  readonly pskDir: string;
  readonly pskFile: string;
  readonly psk: Buffer;
  /** PEM contents, for in-process clients. */
  readonly pem: {
    readonly ca: string;
    readonly aliceCert: string;
    readonly aliceKey: string;
    readonly rogueCert: string;
    readonly rogueKey: string;
  };
}

function openssl(args: readonly string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA. */
function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = path.join(dir, `${name}-ca-cert.pem`);
  const key = path.join(dir, `${name}-ca-key.pem`);
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=backy2 test CA']);
  return { cert, key };
}

/** A certificate signed by `ca`, with the given extensions. */
function issue(dir: string, ca: { cert: string; key: string }, out: { cert: string; key: string }, cn: string, extensions: string): void {
  const csr = path.join(dir, `${cn}.csr`);
  const ext = path.join(dir, `${cn}.ext`);
  writeFileSync(ext, extensions);
  openssl(['req', ...EC, '-keyout', out.key, '-out', csr, '-subj', `/CN=${cn}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', out.cert, '-days', '2', '-extfile', ext]);
  chmodSync(out.key, 0o600);
}

/** Makes a CA, server and client certificates, a rogue client and a PSK file under `dir`. */
export function makeTestPki(dir: string): TestPki {
  const work = path.join(dir, 'pki-work');
  const server = path.join(dir, 'server');
  const alice = path.join(dir, 'client-alice');
  const anonymous = path.join(dir, 'client-anonymous');
  const rogue = path.join(dir, 'client-rogue');
  const pskDir = path.join(dir, 'psk');
  for (const d of [work, server, alice, anonymous, rogue, pskDir]) mkdirSync(d, { recursive: true, mode: 0o700 });

  const ca = makeCa(work, 'real');
  const serverCert = path.join(server, 'server-cert.pem');
  const serverKey = path.join(server, 'server-key.pem');
  issue(work, ca, { cert: serverCert, key: serverKey }, 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const client = (d: string) => ({ cert: path.join(d, 'client-cert.pem'), key: path.join(d, 'client-key.pem') });
  issue(work, ca, client(alice), 'alice', 'extendedKeyUsage=clientAuth\n');
  // Same CA name, other key: a client certificate that only looks right.
  const rogueCa = makeCa(work, 'rogue');
  issue(work, rogueCa, client(rogue), 'mallory', 'extendedKeyUsage=clientAuth\n');
  for (const d of [alice, anonymous, rogue]) writeFileSync(path.join(d, 'ca-cert.pem'), readFileSync(ca.cert));

  const psk = randomBytes(32);
  const pskFile = path.join(pskDir, 'keys.psk');
  writeFileSync(pskFile, `alice:${psk.toString('hex')}\n`, { mode: 0o600 });
  return {
    ca: ca.cert,
    serverCert,
    serverKey,
    clientDirs: { alice, anonymous, rogue },
    pskDir,
    pskFile,
    psk,
    pem: {
      ca: readFileSync(ca.cert, 'utf8'),
      aliceCert: readFileSync(client(alice).cert, 'utf8'),
      aliceKey: readFileSync(client(alice).key, 'utf8'),
      rogueCert: readFileSync(client(rogue).cert, 'utf8'),
      rogueKey: readFileSync(client(rogue).key, 'utf8'),
    },
  };
}
