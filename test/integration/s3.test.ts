import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/engine/blockstore/s3-store.js';
import { describeBlockStore } from '../contract/block-store.js';
import { BIN, spawnCli } from '../helpers/cli.js';
import { ceph, cephDir } from '../helpers/ceph.js';
import { makeImage } from '../helpers/image.js';
import { eventually } from '../helpers/mount.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const bucketName = () => `backy2-test-${randomBytes(5).toString('hex')}`;

describeBlockStore('s3 (radosgw)', async () => {
  const c = ceph();
  return { store: await S3Store.open({ endpoint: c.s3Endpoint, bucket: bucketName(), prefix: 'p/', accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, createBucket: true }) };
});

let dir: string;
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = makeTempDir('backy2-s3-');
  const c = ceph();
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(
    config,
    `store: ${path.join(dir, 'store')}\nblockStore:\n  type: s3\n  endpoint: ${c.s3Endpoint}\n  bucket: ${bucketName()}\n  prefix: backy2/\n  retries: 2\n  timeout: 5s\nbackup:\n  blockSize: 1MiB\n`,
  );
  // Credentials from the environment, as an admin would set them.
  env = { BACKY2_CONFIG: config, AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey };
  // A child process: the S3 SDK takes its credentials from the process environment.
  const init = await spawnCli(['init'], env);
  expect(init.code, init.stderr).toBe(0);
});

function radosgwPid(): number {
  return Number(readFileSync(path.join(cephDir(), 'run', 'client.rgw.a.pid'), 'utf8').trim());
}

describe('S3 block store (radosgw)', () => {
  it('backs up, deduplicates, restores and cleans up through S3', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 6 * MiB }, { kind: 'zero', length: 4 * MiB }, { kind: 'random', length: 2 * MiB }]);
    const first = await spawnCli(['backup', image, 'vm1', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    const a = JSON.parse(first.stdout) as { uid: string; bytesWritten: number };
    expect(a.bytesWritten).toBe(8 * MiB);
    const second = JSON.parse((await spawnCli(['backup', image, 'vm2', '--json'], env)).stdout) as { uid: string; bytesWritten: number };
    expect(second.bytesWritten).toBe(0);
    const out = path.join(dir, 'out.img');
    expect((await spawnCli(['restore', a.uid, out], env)).code).toBe(0);
    expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
    expect((await spawnCli(['rm', '--force', a.uid, second.uid], env)).code).toBe(0);
    const cleaned = JSON.parse((await spawnCli(['cleanup', '--json'], env)).stdout) as { blocksDeleted: number };
    expect(cleaned.blocksDeleted).toBe(8);
  });

  it('a store on S3 is compressed unless told otherwise (measured faster there); a file store is not', async () => {
    const settingsOf = async (e: NodeJS.ProcessEnv) => {
      const r = await spawnCli(['init', '--json'], e);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { compression: string };
    };
    const c = ceph();
    const config = path.join(dir, 'other.yaml');
    writeFileSync(config, `store: ${path.join(dir, 'other')}\nblockStore:\n  type: s3\n  endpoint: ${c.s3Endpoint}\n  bucket: ${bucketName()}\n`);
    expect((await settingsOf({ ...env, BACKY2_CONFIG: config })).compression).toBe('zstd');
    expect((await settingsOf({ BACKY2_STORE: path.join(dir, 'local') })).compression).toBe('none');
  });

  it('an encrypted, compressed store on S3: dedup, restore, scrub, cleanup and a rebuild work, and the bucket holds no plaintext', async () => {
    const c = ceph();
    const bucket = bucketName();
    const config = path.join(dir, 'encrypted.yaml');
    writeFileSync(config, `store: ${path.join(dir, 'encrypted')}\nblockStore:\n  type: s3\n  endpoint: ${c.s3Endpoint}\n  bucket: ${bucket}\n  prefix: e/\nbackup:\n  blockSize: 1MiB\n`);
    writeFileSync(path.join(dir, 'password'), 'a passphrase\n', { mode: 0o600 });
    const e = { ...env, BACKY2_CONFIG: config, BACKY2_PASSWORD_FILE: path.join(dir, 'password'), BACKY2_KDF_N: '1024' };
    expect((await spawnCli(['init', '--encryption', 'aes-256-gcm', '--compression', 'zstd'], e)).code).toBe(0);
    const marker = Buffer.alloc(MiB, 'backy2 plaintext marker ');
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'bytes', data: marker }, { kind: 'random', length: 3 * MiB }, { kind: 'zero', length: 2 * MiB }]);
    const first = JSON.parse((await spawnCli(['backup', image, 'vm1', '--json'], e)).stdout) as { uid: string; bytesWritten: number };
    expect(first.bytesWritten).toBe(4 * MiB);
    const second = JSON.parse((await spawnCli(['backup', image, 'vm2', '--json'], e)).stdout) as { uid: string; bytesWritten: number };
    expect(second.bytesWritten).toBe(0);

    const bucketStore = await S3Store.open({ endpoint: c.s3Endpoint, bucket, prefix: 'e/', accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey });
    try {
      let objects = 0;
      let blockBytes = 0;
      for await (const info of bucketStore.list('')) {
        const body = Buffer.from(await bucketStore.get(info.key));
        expect(body.includes(marker.subarray(0, 64)), info.key).toBe(false);
        if (info.key.startsWith('blocks/')) blockBytes += body.length;
        objects++;
      }
      expect(objects).toBeGreaterThan(4);
      // The marker block compressed to almost nothing; the random ones stay their size.
      expect(blockBytes).toBeLessThan(3.1 * MiB);
    } finally {
      await bucketStore.close();
    }

    const out = path.join(dir, 'out.img');
    expect((await spawnCli(['restore', first.uid, out], e)).code).toBe(0);
    expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
    expect((await spawnCli(['scrub', '--all'], e)).code).toBe(0);
    const { BACKY2_PASSWORD_FILE: _password, ...withoutKey } = e;
    expect((await spawnCli(['scrub', '--all', '--without-key'], withoutKey)).code).toBe(0);
    // The bucket alone, with the key, is enough: rebuild a lost catalog.
    expect((await spawnCli(['db', 'rebuild', '--force'], e)).code).toBe(0);
    const rebuilt = path.join(dir, 'rebuilt.img');
    expect((await spawnCli(['restore', second.uid, rebuilt], e)).code).toBe(0);
    expect(readFileSync(rebuilt).equals(readFileSync(image))).toBe(true);
    expect((await spawnCli(['rm', '--force', first.uid, second.uid], e)).code).toBe(0);
    const cleaned = JSON.parse((await spawnCli(['cleanup', '--json'], e)).stdout) as { blocksDeleted: number };
    expect(cleaned.blocksDeleted).toBe(4);
  });

  it('radosgw stopped mid-backup: one clear error, no valid broken version, and the rerun succeeds', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 64 * MiB }]);
    const pid = radosgwPid();
    // NODE_DEBUG tells when the backup has its version and writes blocks: radosgw dies then.
    const backup = spawn(BIN, ['backup', image, 'vm1'], { env: { ...process.env, ...env, NODE_DEBUG: 'backy2' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    backup.stderr.on('data', (d: Buffer) => (output += d.toString()));
    await eventually(() => output.includes('backup: locked') || backup.exitCode !== null, 30_000, 'the backup to start');
    await new Promise((r) => setTimeout(r, 200));
    process.kill(pid, 'SIGKILL');
    const code = await new Promise<number | null>((r) => (backup.exitCode !== null ? r(backup.exitCode) : backup.on('exit', r)));
    const stderr = output.split('\n').filter((line) => line !== '' && !/^BACKY2 \d+:/.test(line)).join('\n');
    // restart radosgw for the rerun (and the tests after this one)
    execFileSync('radosgw', ['-n', 'client.rgw.a'], { env: { ...process.env, CEPH_CONF: ceph().conf } });
    await eventually(async () => (await fetch(ceph().s3Endpoint).catch(() => undefined))?.ok === true, 60_000, 'radosgw to come back');
    if (code !== 0) {
      expect(code).toBe(10);
      expect(stderr.trim().split('\n'), stderr).toHaveLength(1);
      expect(stderr).toMatch(/^backy2: Cannot write object .*(cannot reach the S3 endpoint|HTTP 5)/);
    }
    const listed = JSON.parse((await spawnCli(['ls', '--json'], env)).stdout) as { uid: string; status: string }[];
    for (const v of listed.filter((x) => x.status === 'valid')) {
      const out = path.join(dir, `${v.uid}.img`);
      expect((await spawnCli(['restore', v.uid, out], env)).code).toBe(0);
      expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
    }
    const rerun = await spawnCli(['backup', image, 'vm1', '--json'], env);
    expect(rerun.code, rerun.stderr).toBe(0);
    const out = path.join(dir, 'rerun.img');
    expect((await spawnCli(['restore', (JSON.parse(rerun.stdout) as { uid: string }).uid, out], env)).code).toBe(0);
    expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
  });

  it('reports wrong credentials and an unreachable endpoint in one line', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: MiB }]);
    const denied = await spawnCli(['backup', image, 'vm1'], { ...env, AWS_SECRET_ACCESS_KEY: 'wrong' });
    expect(denied.code).toBe(10);
    expect(denied.stderr).toMatch(/access denied/);
    const config = path.join(dir, 'down.yaml');
    writeFileSync(config, `store: ${path.join(dir, 'store2')}\nblockStore:\n  type: s3\n  endpoint: http://127.0.0.1:1\n  bucket: nope\n  retries: 0\n`);
    const down = await spawnCli(['backup', image, 'vm1'], { ...env, BACKY2_CONFIG: config });
    expect(down.code).toBe(10);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain('cannot reach the S3 endpoint');
  });
});
