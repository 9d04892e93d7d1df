import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initStoreFor, spawnCli } from '../helpers/cli.js';
import { deferCleanup } from '../helpers/cleanup.js';
import { makeDiskImage, sha256File } from '../helpers/image.js';
import { eventually, isMountPoint } from '../helpers/mount.js';
import { attachLoop, mount, run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';
import { nbdUri, startNbd } from '../helpers/nbd.js';
import { makeTestPki, type TestPki } from '../helpers/tls-pki.js';

const MiB = 1024 * 1024;
let dir: string;
let env: NodeJS.ProcessEnv;
let image: string;
let filesDir: string;

beforeEach(async () => {
  dir = makeTempDir('backy2-nbd-');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, `backup:\n  blockSize: 1MiB\nmount:\n  spillDir: ${dir}\n`);
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
  // ext4 (24 MiB), zeros (8 MiB), random (4 MiB), zeros (4 MiB)
  ({ image, files: filesDir } = makeDiskImage(dir, { fs: 24, zeros: 8, random: 4, tail: 4 }));
});

async function backupOf(file: string): Promise<string> {
  const r = await spawnCli(['backup', file, 'vm1'], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

const startServer = (extra: string[] = []) => startNbd(env, extra);
const uri = nbdUri;

async function listed(): Promise<{ uid: string; tags: string[]; baseUid: string | null }[]> {
  return JSON.parse((await spawnCli(['ls', '--json'], env)).stdout) as { uid: string; tags: string[]; baseUid: string | null }[];
}

/** Runs a command that must fail and returns its stderr. */
function failing(cmd: string, args: readonly string[]): string {
  try {
    run(cmd, args);
  } catch (err) {
    return String((err as { stderr?: unknown }).stderr);
  }
  throw new Error(`${cmd} ${args.join(' ')} succeeded`);
}

describe('backy2 nbd with real clients', () => {
  it('nbdinfo lists every version and maps the sparse layout', async () => {
    const a = await backupOf(image);
    const b = await backupOf(image);
    const server = await startServer();
    const list = JSON.parse(run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${server.port}`])) as { exports: { 'export-name': string; description: string; 'block_size_minimum': number }[] };
    expect(list.exports.map((e) => e['export-name']).sort()).toEqual([a, b].sort());
    expect(list.exports[0]?.description).toMatch(/^vm1 \d{4}-/);
    expect(list.exports[0]?.block_size_minimum).toBe(512);
    const map = JSON.parse(run('nbdinfo', ['--map', '--json', uri(server.port, a)])) as { offset: number; length: number; type: number }[];
    const isHole = (at: number) => map.some((m) => (m.type & 3) === 3 && m.offset <= at && at < m.offset + m.length);
    // the zero regions of the image are holes, the random region is data
    for (let mib = 24; mib < 32; mib++) expect(isHole(mib * MiB), `${mib} MiB`).toBe(true);
    for (let mib = 36; mib < 40; mib++) expect(isHole(mib * MiB), `${mib} MiB`).toBe(true);
    for (let mib = 32; mib < 36; mib++) expect(isHole(mib * MiB), `${mib} MiB`).toBe(false);
    expect(map.reduce((n, m) => n + m.length, 0)).toBe(statSync(image).size);
    expect(run('nbd-client', ['-l', '127.0.0.1', String(server.port)])).toContain(a);
  });

  it('qemu-img compare, nbdcopy and qemu-img convert read exactly the version', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r']);
    expect(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(server.port, uid), image])).toContain('identical');
    const copied = path.join(dir, 'copy.img');
    run('nbdcopy', [uri(server.port, uid), copied]);
    expect(await sha256File(copied)).toBe(await sha256File(image));
    const converted = path.join(dir, 'converted.raw');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(server.port, uid), converted]);
    expect(await sha256File(converted)).toBe(await sha256File(image));
    expect(statSync(converted).blocks * 512).toBeLessThan(statSync(converted).size - 10 * MiB);
  });

  it('nbdfuse exposes the export as a file whose ext4 mounts with the same files', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r']);
    const fuseDir = path.join(dir, 'nbdfuse');
    mkdirSync(fuseDir);
    const nbdfuse = spawn('nbdfuse', ['--readonly', fuseDir, uri(server.port, uid)], { stdio: 'ignore' });
    deferCleanup(async () => {
      if (isMountPoint(fuseDir)) run('fusermount', ['-uz', fuseDir]);
      nbdfuse.kill();
    });
    await eventually(() => existsSync(path.join(fuseDir, 'nbd')), 10_000, 'nbdfuse');
    const inner = path.join(dir, 'inner');
    mount(attachLoop(path.join(fuseDir, 'nbd'), { readOnly: true }), inner, ['ro']);
    run('diff', ['-r', '--exclude=lost+found', filesDir, inner]);
  });

  it('qemu-io writes become a new version on disconnect; the served version is unchanged', async () => {
    const uid = await backupOf(image);
    const server = await startServer();
    run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1M 64k', '-c', 'write -z 2M 1M', '-c', 'write -P 0xcd 30M 4k', uri(server.port, uid)]);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 15_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    expect(cow.baseUid).toBe(uid);
    const expected = readFileSync(image);
    expected.fill(0xab, MiB, MiB + 64 * 1024);
    expected.fill(0, 2 * MiB, 3 * MiB);
    expected.fill(0xcd, 30 * MiB, 30 * MiB + 4096);
    const out = path.join(dir, 'cow.img');
    expect((await spawnCli(['restore', cow.uid, out], env)).code).toBe(0);
    expect(readFileSync(out).equals(expected)).toBe(true);
    expect(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(server.port, uid), image])).toContain('identical');
    expect(server.log()).toContain('committed copy-on-write version');
  });

  it('a version written by an NBD client is never the base of a hinted backup: the next backup still equals the source', async () => {
    const first = await spawnCli(['backup', image, 'vm1', '-s', 's1', '--json'], env);
    const uid = (JSON.parse(first.stdout) as { uid: string }).uid;
    const server = await startServer();
    run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 2M 1M', uri(server.port, uid)]);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 15_000, 'the copy-on-write version');
    await server.stop();
    // The source changes at 30 MiB only, and the hints say so (as rbd diff --from-snap s1 would).
    const data = readFileSync(image);
    randomBytes(MiB).copy(data, 30 * MiB);
    writeFileSync(image, data);
    const hints = path.join(dir, 'hints.json');
    writeFileSync(hints, JSON.stringify([{ offset: 30 * MiB, length: MiB, exists: 'true' }]));
    const unproven = await spawnCli(['backup', image, 'vm1', '-r', hints], env);
    expect(unproven.code).toBe(2);
    expect(unproven.stderr.trim().split('\n')).toHaveLength(1);
    expect(unproven.stderr).toContain('--hints-from');
    const inc = await spawnCli(['backup', image, 'vm1', '-r', hints, '--hints-from', 's1', '-s', 's2', '--json'], env);
    expect(inc.code, inc.stderr).toBe(0);
    const result = JSON.parse(inc.stdout) as { uid: string; baseUid: string };
    expect(result.baseUid).toBe(uid);
    const out = path.join(dir, 'inc.img');
    expect((await spawnCli(['restore', result.uid, out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(image));
  });

  it('nbdcopy into a writable export makes a version equal to the copied file', async () => {
    const uid = await backupOf(image);
    const changed = readFileSync(image);
    randomBytes(3 * MiB).copy(changed, 20 * MiB);
    changed.fill(0, 32 * MiB, 36 * MiB);
    const source = path.join(dir, 'changed.img');
    writeFileSync(source, changed);
    const server = await startServer();
    run('nbdcopy', [source, uri(server.port, uid)]);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 15_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    const out = path.join(dir, 'out.img');
    expect((await spawnCli(['restore', cow.uid, out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(source));
  });

  it('a read-only server refuses writes; other clients keep working while a hostile one is dropped', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r']);
    expect(() => run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', uri(server.port, uid)])).toThrow();
    const info = JSON.parse(run('nbdinfo', ['--json', uri(server.port, uid)])) as { exports: Record<string, unknown>[] };
    expect(info.exports[0]).toMatchObject({ is_read_only: true, can_flush: false, can_fua: false, can_trim: false, can_zero: false, can_fast_zero: false });
    const { connect } = await import('node:net');
    const hostile = connect(server.port, '127.0.0.1');
    hostile.on('error', () => undefined);
    hostile.resume(); // discard what the server sends, so its close is seen
    await new Promise((r) => hostile.once('connect', r));
    hostile.write(randomBytes(4096));
    expect(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(server.port, uid), image])).toContain('identical');
    await eventually(() => hostile.closed, 5000, 'the hostile client to be dropped');
    expect(server.log()).toContain('closing connection');
    expect((await listed()).length).toBe(1);
  });

  it('refuses unknown export names with a logged line, and an empty name unless a default export was given', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r']);
    const base = `nbd://127.0.0.1:${server.port}`;
    failing('nbdinfo', [`${base}/nope%1B%5B2J`]);
    await eventually(() => /127\.0\.0\.1:\d+: refused unknown export "nope\\u\{1b\}\[2J"\n/.test(server.log()), 5000, 'the log line');
    expect(failing('qemu-img', ['info', `${base}/nope`])).toContain(`no export named "nope"; \`nbdinfo --list ${base}\` lists them`);
    const refused = failing('qemu-img', ['info', base]);
    expect(refused).toContain(`no default export: name one, e.g. ${base}/<uid>; \`nbdinfo --list ${base}\` lists them`);
    await eventually(() => server.log().includes('refused the default export: there is none'), 5000, 'the log line');
    await server.stop();

    const single = await startServer(['-r', uid]);
    const info = JSON.parse(run('qemu-img', ['info', '--output=json', `nbd://127.0.0.1:${single.port}`])) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(statSync(image).size);
  });

  it('refuses to remove a version while a client uses it', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r']);
    const reader = spawn('qemu-io', ['-f', 'raw', '-r', '-c', 'sleep 3000', uri(server.port, uid)], { stdio: 'ignore' });
    const done = new Promise((r) => reader.once('exit', r));
    await eventually(() => server.log().includes('opened export'), 5000, 'the client');
    const rm = await spawnCli(['rm', '--force', uid], env);
    expect(rm.code).toBe(11);
    await done;
    await eventually(async () => (await spawnCli(['rm', '--force', uid], env)).code === 0, 10_000, 'rm after disconnect');
  });
});

describe('backy2 nbd start-up', () => {
  it('names the URIs and the nbdinfo command that lists them; --json makes it one JSON line on stdout', async () => {
    const a = await backupOf(image);
    const b = await backupOf(image);
    const server = await startServer(['--json']);
    const base = `nbd://127.0.0.1:${server.port}`;
    expect(server.log()).toContain(`serving every version (2 now) with copy-on-write on 127.0.0.1:${server.port}, e.g. ${base}/${a} ${base}/${b}; \`nbdinfo --list ${base}\` lists them`);
    expect(server.log()).not.toContain('warning');
    await eventually(() => server.stdout().endsWith('\n'), 5000, 'the JSON line');
    expect(server.stdout().split('\n')).toHaveLength(2);
    const started = JSON.parse(server.stdout()) as { list: string; uris: string[] };
    expect(started).toEqual({
      type: 'listening',
      address: '127.0.0.1',
      port: server.port,
      uri: base,
      exports: 2,
      defaultExport: null,
      uris: [`${base}/${a}`, `${base}/${b}`],
      list: `nbdinfo --list ${base}`,
      readOnly: false,
      loopback: true,
      tls: null,
    });
    const [cmd, ...args] = started.list.split(' ');
    expect(run(cmd!, args)).toContain(a);
    expect(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', started.uris[0]!, image])).toContain('identical');
    await server.stop();

    const single = await startServer(['-r', a]);
    const singleBase = `nbd://127.0.0.1:${single.port}`;
    expect(single.log()).toContain(`serving version ${a} read-only on 127.0.0.1:${single.port} as ${singleBase}/${a} (also the default export: ${singleBase}); \`nbdinfo --list ${singleBase}\` shows it`);
  });

  it('warns that there is no TLS when it listens on an address other machines can reach', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r', '-a', '0.0.0.0']);
    const warning = /warning: 0\.0\.0\.0 is not a loopback address and there is no TLS: anyone who can reach port \d+ can read every version;/;
    await eventually(() => warning.test(server.log()), 5000, 'the warning');
    expect(run('nbdinfo', ['--list', `nbd://127.0.0.1:${server.port}`])).toContain(uid);
  });

  it('a port in use or an address not of this machine is one line on stderr and exit status 2', async () => {
    await backupOf(image);
    const { createServer } = await import('node:net');
    const other = createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    deferCleanup(() => new Promise<void>((r) => other.close(() => r())));
    const port = (other.address() as { port: number }).port;
    const inUse = await spawnCli(['nbd', '-p', String(port)], env);
    expect(inUse.code).toBe(2);
    expect(inUse.stderr).toBe(`backy2: Cannot listen on 127.0.0.1:${port}: the port is in use, perhaps by another backy2 nbd or qemu-nbd (choose another port with -p)\n`);
    // 192.0.2.0/24 is reserved for documentation: no machine has it
    const foreign = await spawnCli(['nbd', '-a', '192.0.2.1', '-p', '0'], env);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toMatch(/^backy2: Cannot listen on 192\.0\.2\.1:0: no network interface of this machine has the address "192\.0\.2\.1" \(.*-a.*\)\n$/);
  });
});

describe('backy2 nbd with TLS and real clients', () => {
  let pki: TestPki;
  beforeEach(() => {
    pki = makeTestPki(dir);
  });

  const pskArgs = () => ['--tls-psk', pki.pskFile];
  const x509Args = (verify: boolean) => ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, ...(verify ? ['--tls-verify-clients', pki.ca] : [])];
  /** A libnbd URI with PSK credentials (libnbd 1.14 takes the PSK identity from the user part). */
  const pskUri = (port: number, uid = '') => `nbds://alice@127.0.0.1:${port}/${uid}?tls-psk-file=${encodeURIComponent(pki.pskFile)}`;
  const certUri = (port: number, uid: string, clientDir: string) => `nbds://127.0.0.1:${port}/${uid}?tls-certificates=${encodeURIComponent(clientDir)}`;
  /** qemu's block options for an export over TLS with the credentials object `tls0`. */
  const qemuJson = (port: number, uid: string) => `json:${JSON.stringify({ file: { driver: 'nbd', host: '127.0.0.1', port: String(port), export: uid, 'tls-creds': 'tls0' } })}`;

  it('PSK: nbdinfo, nbdcopy and qemu-img (tls-creds-psk) read exactly the version; the start-up says TLS and nbds://', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r', '--json', ...pskArgs()]);
    const base = `nbds://127.0.0.1:${server.port}`;
    expect(server.log()).toContain(`serving every version (1 now) read-only on 127.0.0.1:${server.port} with TLS (PSK, 1 identity), e.g. ${base}/${uid}; \`nbdinfo --list ${base}\` lists them`);
    await eventually(() => server.stdout().endsWith('\n'), 5000, 'the JSON line');
    expect(JSON.parse(server.stdout())).toMatchObject({ uri: base, uris: [`${base}/${uid}`], list: `nbdinfo --list ${base}`, tls: { credentials: 'psk', clientsAuthenticated: true } });

    expect(run('nbdinfo', ['--list', pskUri(server.port)])).toContain(uid);
    const info = JSON.parse(run('nbdinfo', ['--json', pskUri(server.port, uid)])) as { protocol: string; TLS: boolean; exports: { 'export-size': number }[] };
    expect(info.TLS).toBe(true);
    expect(info.exports[0]?.['export-size']).toBe(statSync(image).size);
    const copied = path.join(dir, 'copy.img');
    run('nbdcopy', [pskUri(server.port, uid), copied]);
    expect(await sha256File(copied)).toBe(await sha256File(image));
    const psk = `tls-creds-psk,id=tls0,endpoint=client,dir=${pki.pskDir},username=alice`;
    expect(run('qemu-img', ['compare', '--object', psk, '-f', 'raw', '-F', 'raw', qemuJson(server.port, uid), image])).toContain('identical');
    expect(server.log()).toMatch(/TLS established: TLSv1\.3 TLS_AES_128_GCM_SHA256, PSK identity "alice"\n/);
  });

  it('PSK: a client with an unknown identity or another key is refused, and the server logs why', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r', ...pskArgs()]);
    const other = path.join(dir, 'other.psk');
    writeFileSync(other, `mallory:${randomBytes(32).toString('hex')}\nalice:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    failing('nbdinfo', [`nbds://mallory@127.0.0.1:${server.port}/${uid}?tls-psk-file=${encodeURIComponent(other)}`]);
    await eventually(() => server.log().includes('TLS handshake failed: unknown PSK identity "mallory"'), 5000, 'the log line');
    failing('nbdinfo', [`nbds://alice@127.0.0.1:${server.port}/${uid}?tls-psk-file=${encodeURIComponent(other)}`]);
    await eventually(() => (server.log().match(/TLS handshake failed/g) ?? []).length === 2, 5000, 'the second log line');
  });

  it('x509 with client certificates: libnbd and qemu-img (tls-creds-x509) with a certificate of the CA read the version; none, or a rogue one, is refused', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r', ...x509Args(true)]);
    expect(server.log()).toContain(`read-only on 127.0.0.1:${server.port} with TLS (x509, client certificates verified), e.g. nbds://127.0.0.1:${server.port}/${uid};`);
    const copied = path.join(dir, 'copy.img');
    run('nbdcopy', [certUri(server.port, uid, pki.clientDirs.alice), copied]);
    expect(await sha256File(copied)).toBe(await sha256File(image));
    const x509 = `tls-creds-x509,id=tls0,endpoint=client,dir=${pki.clientDirs.alice}`;
    const converted = path.join(dir, 'converted.raw');
    run('qemu-img', ['convert', '--object', x509, '-O', 'raw', qemuJson(server.port, uid), converted]);
    expect(await sha256File(converted)).toBe(await sha256File(image));
    expect(server.log()).toContain('client certificate "alice"');

    failing('nbdinfo', [certUri(server.port, uid, pki.clientDirs.anonymous)]);
    await eventually(() => server.log().includes('TLS handshake failed: the client sent no certificate'), 5000, 'the log line');
    failing('nbdinfo', [certUri(server.port, uid, pki.clientDirs.rogue)]);
    await eventually(() => /TLS handshake failed: client certificate refused: [A-Z_]+\n/.test(server.log()), 5000, 'the log line');
  });

  it('x509 without client verification: any client with the CA gets in; nbdcopy writes over TLS become a version', async () => {
    const uid = await backupOf(image);
    const changed = readFileSync(image);
    randomBytes(2 * MiB).copy(changed, 20 * MiB);
    const source = path.join(dir, 'changed.img');
    writeFileSync(source, changed);
    const server = await startServer(x509Args(false));
    run('nbdcopy', [source, certUri(server.port, uid, pki.clientDirs.anonymous)]);
    await eventually(async () => (await listed()).some((v) => v.tags.includes('cow')), 15_000, 'the copy-on-write version');
    const cow = (await listed()).find((v) => v.tags.includes('cow'))!;
    const out = path.join(dir, 'out.img');
    expect((await spawnCli(['restore', cow.uid, out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(source));
  });

  it('refuses plaintext clients: NBD_REP_ERR_TLS_REQD with a hint, one log line each', async () => {
    const uid = await backupOf(image);
    const server = await startServer(['-r', ...pskArgs()]);
    failing('nbdinfo', [uri(server.port, uid)]);
    const refused = failing('qemu-img', ['info', uri(server.port, uid)]);
    expect(refused).toContain(`this server requires TLS: connect to nbds://127.0.0.1:${server.port} with its credentials (qemu: tls-creds)`);
    await eventually(() => (server.log().match(/refused NBD_OPT_\w+ before STARTTLS: this server requires TLS\n/g) ?? []).length === 2, 5000, 'the log lines');
    expect(server.log()).not.toContain('opened export');
  });

  it('says who can connect on an address other machines can reach', async () => {
    await backupOf(image);
    const authenticated = await startServer(['-r', '-a', '0.0.0.0', ...pskArgs()]);
    await eventually(() => /0\.0\.0\.0 is not a loopback address: only clients with a key of the PSK file can read every version; connections are encrypted\n/.test(authenticated.log()), 5000, 'the note');
    expect(authenticated.log()).not.toContain('warning');
    await authenticated.stop();
    const anyone = await startServer(['-r', '-a', '0.0.0.0', ...x509Args(false)]);
    const warning = /warning: 0\.0\.0\.0 is not a loopback address and clients are not authenticated: anyone who can reach port \d+ can read every version \(encrypted in transit\); add --tls-verify-clients CA-FILE or use --tls-psk\n/;
    await eventually(() => warning.test(anyone.log()), 5000, 'the warning');
  });

  it('refuses unusable TLS options with one line and exit status 2', async () => {
    await backupOf(image);
    const open = path.join(dir, 'open.psk');
    writeFileSync(open, readFileSync(pki.pskFile));
    chmodSync(open, 0o644);
    const cases: [string[], string][] = [
      [['--tls-psk', open], `backy2: Permissions 0644 of TLS PSK file "${open}" are too open: only its owner may read it (chmod 600 ${open})\n`],
      [['--tls-cert', pki.serverCert], 'backy2: --tls-cert needs --tls-key (give both: the certificate and its private key)\n'],
      [[...x509Args(false), ...pskArgs()], 'backy2: Choose --tls-psk or --tls-cert/--tls-key, not both (a server uses one kind of TLS credentials)\n'],
      [['--tls-verify-clients', pki.ca], 'backy2: --tls-verify-clients needs --tls-cert and --tls-key (the server needs its own certificate too)\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = await spawnCli(['nbd', '-p', '0', ...args], env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(stderr);
    }
    const missing = await spawnCli(['nbd', '-p', '0', '--tls-psk', path.join(dir, 'nope.psk')], env);
    expect(missing.code).toBe(4);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});
