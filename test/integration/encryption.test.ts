import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { beforeEach, describe, expect, it } from 'vitest';
import { BlockMap, blockCount } from '../../src/engine/objects/block-map.js';
import { OBJECT_HEADER_LENGTH } from '../../src/engine/objects/formats.js';
import { namingDigest } from '../../src/engine/objects/naming-digest.js';
import { StoreKeys } from '../../src/engine/objects/store-keys.js';
import { loadStoreSettings, saveStoreSettings } from '../../src/engine/objects/store-settings.js';
import { loadConfig } from '../../src/engine/support/config.js';
import { openBlockStore, openStore } from '../../src/engine/store.js';
import { BIN, runCli } from '../helpers/cli.js';
import { makeDiskImage, makeImage, sha256File } from '../helpers/image.js';
import { startMount } from '../helpers/mount.js';
import { nbdUri, startNbd } from '../helpers/nbd.js';
import { run } from '../helpers/system.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const PASS = 'correct horse battery staple';
/** A 1 MiB block no other data resembles: its bytes and its SHA-256 must not show up in the store. */
const PATTERN = Buffer.concat(Array.from({ length: MiB / 32 }, (_, i) => Buffer.from(`backy2-secret-pattern-${String(i).padStart(9, '0')}.`)));
// Image layout, in 1 MiB blocks: 0-15 ext4, 16-19 zeros, 20 the pattern, 21-26 random.
const PATTERN_BLOCK = 20;
const RANDOM_BLOCKS = [21, 22, 23, 24, 25, 26];

let dir: string;
let storeDir: string;
let env: NodeJS.ProcessEnv;
let image: string;

/** Makes the test's image: a real file system, zeros, the pattern and random data. */
function makeTestImage(): string {
  const disk = makeDiskImage(dir, { fs: 16, zeros: 4, random: 0 }).image;
  const out = path.join(dir, 'vm1.img');
  makeImage(out, [
    { kind: 'bytes', data: readFileSync(disk) },
    { kind: 'bytes', data: PATTERN },
    { kind: 'random', length: RANDOM_BLOCKS.length * MiB },
  ]);
  rmSync(disk);
  return out;
}

/** `backy2 [globals] init [args]`. */
async function init(args: readonly string[], globals: readonly string[] = []): Promise<void> {
  const r = await runCli([...globals, 'init', ...args], env);
  expect(r.code, r.stderr).toBe(0);
}

beforeEach(() => {
  dir = makeTempDir('backy2-enc-');
  storeDir = path.join(dir, 'store');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, `backup:\n  blockSize: 1MiB\nmount:\n  spillDir: ${dir}\n`);
  const password = path.join(dir, 'password');
  writeFileSync(password, `${PASS}\n`, { mode: 0o600 });
  // BACKY2_KDF_N makes new key files cheap to open in tests (never for real stores).
  env = { BACKY2_STORE: storeDir, BACKY2_CONFIG: config, BACKY2_PASSWORD_FILE: password, BACKY2_KDF_N: '1024' };
  image = makeTestImage();
});

async function backupOf(file: string, name = 'vm1'): Promise<string> {
  const r = await runCli(['backup', file, name], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** Every regular file under a directory. */
function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const blake3 = (data: Buffer) => namingDigest('blake3', undefined, data);

/** The unkeyed digests (SHA-256 and BLAKE3) of every 1 MiB block of a file: what a plaintext store names blocks by. */
function blockHashes(file: string): Buffer[] {
  const data = readFileSync(file);
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += MiB) out.push(sha256(data.subarray(at, at + MiB)), blake3(data.subarray(at, at + MiB)));
  return out;
}

/** The file of the object that holds block `i` of a version (found through the engine, with the key). */
async function blockObject(uid: string, i: number): Promise<string> {
  const config = await loadConfig({ env });
  const store = await openStore(config, { keys: async () => ({ kind: 'passphrase', passphrase: PASS }) });
  try {
    const version = await store.catalog.getVersion(uid);
    if (!version) throw new Error(`no version ${uid}`);
    const map = new BlockMap(store, await store.catalog.versionSegments(uid), blockCount(version.size, version.blockSize));
    const digest = await map.entry(i);
    if (!digest) throw new Error(`block ${i} of ${uid} is sparse`);
    return path.join(storeDir, StoreKeys.block(digest));
  } finally {
    await store.close();
  }
}

/** Flips one bit of a stored object and puts a matching CRC back, as someone who knows the format would. */
function tamperWithCrc(file: string, offset: (length: number) => number): void {
  const bytes = readFileSync(file);
  const at = offset(bytes.length);
  bytes[at]! ^= 0x04;
  if (at >= OBJECT_HEADER_LENGTH) bytes.writeUInt32LE(crc32(bytes.subarray(OBJECT_HEADER_LENGTH)), 56);
  chmodSync(file, 0o600);
  writeFileSync(file, bytes);
}

/** Reads `length` bytes at `offset` of a file: the error code, or undefined when it worked. */
async function readError(file: string, offset: number, length: number): Promise<string | undefined> {
  const handle = await openFile(file, 'r');
  try {
    await handle.read(Buffer.alloc(length), 0, length, offset);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  } finally {
    await handle.close();
  }
}

describe('an encrypted store reveals nothing of the data', () => {
  it('no object holds the pattern or its unkeyed digest, and no object is named by the unkeyed digest of a block; a plaintext store would', async () => {
    const hashes = blockHashes(image);
    const patternHashes = [sha256(PATTERN), blake3(PATTERN)];
    const probe = PATTERN.subarray(4096, 4096 + 64);
    /** Which of the three leaks the store shows. */
    const leaks = () => {
      const files = filesUnder(storeDir);
      const names = new Set(files.map((f) => path.basename(f)));
      return {
        pattern: files.some((f) => readFileSync(f).includes(probe)),
        patternHash: files.some((f) => patternHashes.some((h) => readFileSync(f).includes(h))),
        namedBySha: hashes.some((h) => names.has(h.toString('hex'))),
      };
    };

    await init([], ['--store', path.join(dir, 'plain')]);
    await runCli(['--store', path.join(dir, 'plain'), 'backup', image, 'vm1'], env);
    const saved = storeDir;
    storeDir = path.join(dir, 'plain');
    // The check finds all three in a plaintext store (so it can fail).
    expect(leaks()).toEqual({ pattern: true, patternHash: true, namedBySha: true });
    storeDir = saved;

    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd']);
    await backupOf(image);
    // Every file of the store, the local catalog included.
    expect(leaks()).toEqual({ pattern: false, patternHash: false, namedBySha: false });
    // Encryption alone (no compression) hides as much.
    rmSync(storeDir, { recursive: true });
    await init(['--encryption', 'aes-256-gcm']);
    await backupOf(image);
    expect(leaks()).toEqual({ pattern: false, patternHash: false, namedBySha: false });
  });

  it('the same data backed up twice, and under another image name, is stored once', async () => {
    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd']);
    await backupOf(image);
    const blocks = () => filesUnder(path.join(storeDir, 'blocks')).length;
    const first = blocks();
    // ext4 blocks with data, the pattern, the random blocks
    expect(first).toBeGreaterThanOrEqual(1 + RANDOM_BLOCKS.length);
    await backupOf(image);
    await backupOf(image, 'vm2');
    expect(blocks()).toBe(first);
    const stats = JSON.parse((await runCli(['stats', '--json'], env)).stdout) as { blocks: number };
    expect(stats.blocks).toBe(first);
  });
});

describe('what a backup reports', () => {
  it('the bytes its new blocks take in the store, after compression and encryption, next to the bytes written', async () => {
    const storedPayload = () => filesUnder(path.join(storeDir, 'blocks')).reduce((sum, f) => sum + statSync(f).size - 64, 0);
    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd']);
    const r = await runCli(['backup', image, 'vm1', '--json'], env);
    const stats = JSON.parse(r.stdout) as { bytesWritten: number; bytesStored: number };
    expect(stats.bytesStored).toBe(storedPayload());
    // the file system part compresses; the random part only grows by nonce and tag
    expect(stats.bytesStored).toBeLessThan(stats.bytesWritten);
    const line = await runCli(['backup', image, 'vm1'], env);
    expect(line.stderr).toMatch(/wrote 0 B, /);

    rmSync(storeDir, { recursive: true });
    await init([]);
    const plain = JSON.parse((await runCli(['backup', image, 'vm1', '--json'], env)).stdout) as { bytesWritten: number; bytesStored: number };
    expect(plain.bytesStored).toBe(plain.bytesWritten);
    expect(plain.bytesStored).toBe(storedPayload());
  });
});

describe('everything reads back byte-identical from an encrypted, compressed store', () => {
  it('restore (plain, sparse, without the catalog), FUSE reads and writes, NBD reads, and db rebuild', async () => {
    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd', '--compression-level', '3']);
    const uid = await backupOf(image);
    const want = await sha256File(image);
    // Stored bytes: the random part cannot shrink, the ext4 part and the pattern do.
    const stored = filesUnder(path.join(storeDir, 'blocks')).reduce((n, f) => n + statSync(f).size, 0);
    expect(stored).toBeLessThan(statSync(image).size - 4 * MiB);

    for (const args of [[], ['--sparse']]) {
      const out = path.join(dir, `out${args.join('')}`);
      const r = await runCli(['restore', uid, out, ...args], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await sha256File(out)).toBe(want);
      rmSync(out);
    }

    const mnt = path.join(dir, 'mnt');
    const daemon = await startMount(mnt, env, ['--writable']);
    expect(await sha256File(path.join(mnt, 'vm1', `${uid}.img`))).toBe(want);
    expect(await sha256File(path.join(mnt, 'vm1', 'latest.img'))).toBe(want);
    // A write through the mount becomes a copy-on-write version; the original stays.
    const patch = randomBytes(4096);
    writeFileSync(path.join(dir, 'patch'), patch);
    run('dd', [`if=${path.join(dir, 'patch')}`, `of=${path.join(mnt, 'vm1', `${uid}.img`)}`, 'bs=4096', 'seek=10', 'conv=notrunc', 'status=none']);
    expect(await daemon.stop()).toBe(0);
    const versions = JSON.parse((await runCli(['ls', '--json'], env)).stdout) as { uid: string; kind: string }[];
    const cow = versions.find((v) => v.kind === 'cow');
    expect(cow).toBeDefined();
    const cowOut = path.join(dir, 'cow.img');
    expect((await runCli(['restore', cow!.uid, cowOut], env)).code).toBe(0);
    const expected = readFileSync(image);
    patch.copy(expected, 10 * 4096);
    expect(sha256(readFileSync(cowOut)).equals(sha256(expected))).toBe(true);

    const server = await startNbd(env, ['-r']);
    const copied = path.join(dir, 'nbd.img');
    run('nbdcopy', [nbdUri(server.port, uid), copied]);
    expect(await sha256File(copied)).toBe(want);
    await server.stop();

    // The store alone, with its key, is enough.
    renameSync(path.join(storeDir, 'catalog.sqlite'), path.join(dir, 'catalog.saved'));
    const noCatalog = path.join(dir, 'nocat.img');
    const r = await runCli(['restore', '--no-catalog', uid, noCatalog], env);
    expect(r.code, r.stderr).toBe(0);
    expect(await sha256File(noCatalog)).toBe(want);
    expect((await runCli(['db', 'rebuild'], env)).code).toBe(0);
    const rebuilt = path.join(dir, 'rebuilt.img');
    expect((await runCli(['restore', uid, rebuilt], env)).code).toBe(0);
    expect(await sha256File(rebuilt)).toBe(want);
  });
});

describe('tampered objects are found by every reader and healed by the next backup', () => {
  it('a bit in the ciphertext, the header or the tag, a swapped object and a truncated one', async () => {
    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd']);
    const uid = await backupOf(image);
    const want = await sha256File(image);
    const [ciphertext, header, tag, swapped, truncated] = RANDOM_BLOCKS;
    const files = new Map<number, string>();
    for (const i of RANDOM_BLOCKS) files.set(i, await blockObject(uid, i));
    tamperWithCrc(files.get(ciphertext!)!, () => OBJECT_HEADER_LENGTH + 12 + 1000);
    tamperWithCrc(files.get(header!)!, () => 9);
    tamperWithCrc(files.get(tag!)!, (n) => n - 3);
    // Another valid object of this store in the place of one: the key and header bind it.
    chmodSync(files.get(swapped!)!, 0o600);
    writeFileSync(files.get(swapped!)!, readFileSync(files.get(26)!));
    chmodSync(files.get(truncated!)!, 0o600);
    truncateSync(files.get(truncated!)!, statSync(files.get(truncated!)!).size - 100);
    const bad = [ciphertext!, header!, tag!, swapped!, truncated!];

    // restore: every bad block reported, left zero, exit 3
    const out = path.join(dir, 'out.img');
    const restored = await runCli(['restore', uid, out], env);
    expect(restored.code).toBe(3);
    for (const i of bad) expect(restored.stderr).toContain(`bad block ${i} at offset ${i * MiB}`);
    expect(restored.stderr).toMatch(/failed authentication/);
    expect(restored.stderr).toMatch(/carries another object's header/);

    // FUSE: EIO on exactly those ranges
    const mnt = path.join(dir, 'mnt');
    const daemon = await startMount(mnt, env);
    const file = path.join(mnt, 'vm1', `${uid}.img`);
    for (const i of bad) expect(await readError(file, i * MiB, 4096), `block ${i}`).toBe('EIO');
    expect(await readError(file, 26 * MiB, 4096)).toBeUndefined();
    expect(await readError(file, PATTERN_BLOCK * MiB, MiB)).toBeUndefined();
    expect(await daemon.stop()).toBe(0);

    // NBD: an error reply for those ranges (nbdcopy fails), good ranges read fine
    const server = await startNbd(env, ['-r']);
    for (const i of bad) {
      const e = await nbdRead(server.port, uid, i * MiB, 4096);
      expect(e, `block ${i}`).toMatch(/Input\/output error|EIO/);
    }
    expect(await nbdRead(server.port, uid, 26 * MiB, 4096)).toBeUndefined();
    await server.stop();

    // scrub: marks the blocks and the version invalid
    const scrubbed = await runCli(['scrub', uid, '--json'], env);
    expect(scrubbed.code).toBe(3);
    expect((JSON.parse(scrubbed.stdout) as { badBlocks: number }).badBlocks).toBe(bad.length);
    const status = async () => (JSON.parse((await runCli(['ls', '--json'], env)).stdout) as { uid: string; status: string }[]).find((v) => v.uid === uid)?.status;
    expect(await status()).toBe('invalid');

    // the next backup stores those blocks again; the old version is valid again after a scrub
    const healed = await backupOf(image);
    const out2 = path.join(dir, 'healed.img');
    expect((await runCli(['restore', healed, out2], env)).code).toBe(0);
    expect(await sha256File(out2)).toBe(want);
    expect((await runCli(['scrub', uid], env)).code).toBe(0);
    expect(await status()).toBe('valid');
    rmSync(out);
    expect((await runCli(['restore', uid, out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(want);
  });

  it('scrub --without-key finds bitrot by the stored checksum, changes nothing, and needs no passphrase', async () => {
    await init(['--encryption', 'aes-256-gcm']);
    const uid = await backupOf(image);
    const victim = await blockObject(uid, 23);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 500]! ^= 0x01; // bitrot: no CRC fixed up
    chmodSync(victim, 0o600);
    writeFileSync(victim, bytes);
    const { BACKY2_PASSWORD_FILE: _password, ...withoutPassword } = env;
    const r = await runCli(['scrub', '--all', '--without-key'], withoutPassword);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/do not match their checksum/);
    const ls = JSON.parse((await runCli(['ls', '--json'], withoutPassword)).stdout) as { status: string }[];
    expect(ls.map((v) => v.status)).toEqual(['valid']);
    // Without the option, a scrub needs the key.
    expect((await runCli(['scrub', '--all'], withoutPassword)).code).toBe(6);
  });
});

/** Reads a range of an export with qemu-io: undefined when it worked, else what qemu-io said. */
function nbdRead(port: number, uid: string, offset: number, length: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn('qemu-io', ['-r', '-f', 'raw', '-c', `read ${offset} ${length}`, nbdUri(port, uid)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', () => resolve(/read \d+\/\d+ bytes/.test(out) ? undefined : out));
  });
}

describe('keys', () => {
  it('a wrong or missing passphrase is one line with exit status 6; so is a key file open to others', async () => {
    await init(['--encryption', 'aes-256-gcm', '--export-key', path.join(dir, 'raw.key')]);
    const uid = await backupOf(image);
    const wrong = path.join(dir, 'wrong');
    writeFileSync(wrong, 'not it\n', { mode: 0o600 });
    const { BACKY2_PASSWORD_FILE: _password, ...bare } = env;
    for (const [why, args, e, pattern] of [
      ['wrong passphrase', ['--password-file', wrong], bare, /^backy2: Wrong passphrase for store .*: it opens none of its 1 key file\(s\) \(check/],
      ['no key at all', [], bare, /^backy2: Store .* is encrypted: its passphrase or key file is needed/],
      ['missing passphrase file', ['--password-file', path.join(dir, 'nope')], bare, /^backy2: Cannot read passphrase file ".*nope": no such file/],
    ] as const) {
      const r = await runCli([...args, 'restore', uid, path.join(dir, 'out')], e);
      expect(r.code, why).toBe(6);
      expect(r.stderr, why).toMatch(pattern);
      expect(r.stderr.trim().split('\n'), why).toHaveLength(1);
      expect(existsSync(path.join(dir, 'out')), why).toBe(false);
    }
    // A rebuild with the wrong passphrase leaves the catalog where it is.
    const rebuild = await runCli(['--password-file', wrong, 'db', 'rebuild', '--force'], bare);
    expect(rebuild.code).toBe(6);
    expect(readdirSync(storeDir).filter((f) => f.startsWith('catalog.sqlite.old'))).toEqual([]);
    expect((JSON.parse((await runCli(['ls', '--json'], bare)).stdout) as unknown[]).length).toBe(1);
    // The raw key file opens the store without a passphrase; opened up to the group, it is refused.
    const raw = path.join(dir, 'raw.key');
    expect(statSync(raw).mode & 0o777).toBe(0o600);
    expect((await runCli(['--key-file', raw, 'restore', uid, path.join(dir, 'out')], bare)).code).toBe(0);
    chmodSync(raw, 0o640);
    // Refused even by ls, which needs no key: a key that is given is always checked.
    for (const command of [['backup', image, 'vm1'], ['ls']]) {
      const refused = await runCli(['--key-file', raw, ...command], bare);
      expect(refused.code, command[0]).toBe(6);
      expect(refused.stderr).toMatch(/^backy2: Key file ".*raw.key" is readable by others \(mode 640\): refused \(chmod 600 .*\)\n$/);
    }
    // Without any key, ls works: it reads only the catalog.
    expect((await runCli(['ls'], bare)).code).toBe(0);
    // Another store's raw key file is refused by its store id.
    const other = path.join(dir, 'other');
    await init(['--encryption', 'aes-256-gcm', '--export-key', path.join(dir, 'other.key')], ['--store', other]);
    const foreign = await runCli(['--key-file', path.join(dir, 'other.key'), 'backup', image, 'vm1'], bare);
    expect(foreign.code).toBe(6);
    expect(foreign.stderr).toMatch(/belongs to store [0-9a-f]{8}…, not [0-9a-f]{8}…/);
  });

  it('key add, passwd and remove rewrap the master key and rewrite no data; the last key file stays', async () => {
    await init(['--encryption', 'aes-256-gcm']);
    const uid = await backupOf(image);
    const dataBefore = filesUnder(path.join(storeDir, 'blocks')).map((f) => `${f}:${statSync(f).mtimeMs}`).sort();
    const second = path.join(dir, 'second');
    writeFileSync(second, 'another passphrase\n', { mode: 0o600 });
    const added = await runCli(['key', 'add', '--new-password-file', second, '--json'], env);
    expect(added.code, added.stderr).toBe(0);
    const addedId = (JSON.parse(added.stdout) as { id: string }).id;
    // key list needs no key: it lists what is in the store.
    const { BACKY2_PASSWORD_FILE: _password, ...bare } = env;
    const list = async () => JSON.parse((await runCli(['key', 'list', '--json'], bare)).stdout) as { id: string; current: boolean }[];
    expect(await list()).toHaveLength(2);
    // Both passphrases open it.
    expect((await runCli(['--password-file', second, 'restore', uid, path.join(dir, 'a')], bare)).code).toBe(0);
    // passwd replaces the key file that opened the store.
    const third = path.join(dir, 'third');
    writeFileSync(third, 'a third one\n', { mode: 0o600 });
    const changed = await runCli(['key', 'passwd', '--new-password-file', third], env);
    expect(changed.code, changed.stderr).toBe(0);
    expect((await runCli(['restore', uid, path.join(dir, 'b')], env)).code).toBe(6);
    expect((await runCli(['--password-file', third, 'restore', uid, path.join(dir, 'b')], bare)).code).toBe(0);
    // Removing one of two works; the last one is refused.
    const remaining = await list();
    expect(remaining).toHaveLength(2);
    const removed = await runCli(['key', 'remove', addedId], bare);
    expect(removed.code, removed.stderr).toBe(0);
    const last = (await list())[0]!.id;
    const refused = await runCli(['key', 'remove', last], bare);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/is the store's last: without it the store cannot be opened/);
    expect(await list()).toHaveLength(1);
    // No data object was rewritten.
    expect(filesUnder(path.join(storeDir, 'blocks')).map((f) => `${f}:${statSync(f).mtimeMs}`).sort()).toEqual(dataBefore);
  });

  it('kill -9 during key passwd, at any moment, leaves a passphrase that opens the store', async () => {
    await init(['--encryption', 'aes-256-gcm']);
    const uid = await backupOf(image);
    const { BACKY2_PASSWORD_FILE: current0, ...bare } = env;
    // scrub reads blocks, so it needs the key (ls would not).
    const opens = async (file: string) => (await runCli(['--password-file', file, 'scrub', uid], bare)).code === 0;
    let current = current0!;
    for (const [round, delay] of [50, 150, 300, 450, 600, 800, 1200].entries()) {
      const next = path.join(dir, `passphrase-${round}`);
      writeFileSync(next, `passphrase ${round}\n`, { mode: 0o600 });
      // A costlier KDF for the new key file widens the window between writing it and removing the old one.
      const child = spawn(BIN, ['--password-file', current, 'key', 'passwd', '--new-password-file', next], { env: { PATH: process.env.PATH, ...bare, BACKY2_KDF_N: '32768' }, stdio: 'ignore' });
      const exited = new Promise<void>((r) => child.on('exit', () => r()));
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await exited;
      const [oldOpens, newOpens] = [await opens(current), await opens(next)];
      expect(oldOpens || newOpens, `killed after ${delay} ms`).toBe(true);
      if (newOpens) current = next;
    }
    expect((await runCli(['--password-file', current, 'restore', uid, path.join(dir, 'out')], bare)).code).toBe(0);
    expect(await sha256File(path.join(dir, 'out'))).toBe(await sha256File(image));
  });

  it('settings changed without the key (encryption switched off) are refused', async () => {
    await init(['--encryption', 'aes-256-gcm', '--compression', 'zstd']);
    const uid = await backupOf(image);
    const file = path.join(storeDir, 'settings');
    const original = readFileSync(file);
    const text = original.toString('latin1');
    for (const edit of [(t: string) => t.replace('"encryption":"aes-256-gcm"', '"encryption":"none"      '), (t: string) => t.replace('"compressionLevel":1', '"compressionLevel":9')]) {
      chmodSync(file, 0o600);
      writeFileSync(file, Buffer.from(edit(text), 'latin1'));
      const r = await runCli(['restore', uid, path.join(dir, 'out')], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/settings/i);
      expect(existsSync(path.join(dir, 'out'))).toBe(false);
    }
    writeFileSync(file, original);
    expect((await runCli(['restore', uid, path.join(dir, 'out')], env)).code).toBe(0);
  });
  it('a store switched to plaintext by someone without the key (settings rewritten, key files deleted) is refused', async () => {
    await init(['--encryption', 'aes-256-gcm']);
    const uid = await backupOf(image);
    const blocks = await openBlockStore(await loadConfig({ env }));
    try {
      const { check: _check, ...settings } = (await loadStoreSettings(blocks))!;
      await saveStoreSettings(blocks, { ...settings, digest: 'blake3', encryption: 'none' });
      for await (const info of blocks.list('keys/')) await blocks.delete(info.key);
    } finally {
      await blocks.close();
    }
    const objects = filesUnder(path.join(storeDir, 'blocks')).length;
    for (const command of [['backup', image, 'vm1'], ['restore', uid, path.join(dir, 'out')], ['ls']]) {
      const r = await runCli(command, env);
      expect(r.code, command[0]).toBe(10);
      expect(r.stderr).toMatch(/^backy2: The settings of store .* are not those catalog .* was made with \(digest blake3 instead of keyed-blake3, encryption none instead of aes-256-gcm\): they were changed/);
    }
    expect(filesUnder(path.join(storeDir, 'blocks'))).toHaveLength(objects);
    expect(existsSync(path.join(dir, 'out'))).toBe(false);
  });
});

describe('a plaintext store', () => {
  it('no key asked, BLAKE3 names, the plaintext as payload with its CRC (format 2)', async () => {
    await init([]);
    const { BACKY2_PASSWORD_FILE: _password, ...bare } = env;
    const uid = (await runCli(['backup', image, 'vm1'], bare)).stdout.trim();
    const object = await blockObject(uid, PATTERN_BLOCK);
    expect(path.basename(object)).toBe(blake3(PATTERN).toString('hex'));
    const bytes = readFileSync(object);
    expect(bytes[4]).toBe(2);
    expect(bytes.subarray(64).equals(PATTERN)).toBe(true);
    expect(bytes.readUInt32LE(56)).toBe(crc32(PATTERN));
    expect((await runCli(['restore', uid, path.join(dir, 'out')], bare)).code).toBe(0);
    expect(await sha256File(path.join(dir, 'out'))).toBe(await sha256File(image));
  });
});
