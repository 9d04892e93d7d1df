import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { backup } from '../../src/engine/operations/backup.js';
import { initStoreFor, spawnCli } from '../helpers/cli.js';
import { ceph, rbd, rbdSha, writeRbd } from '../helpers/ceph.js';
import { makeTempStore } from '../helpers/store.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const SIZE = 128 * MiB;
let dir: string;
let env: NodeJS.ProcessEnv;
let name: string;

beforeEach(async () => {
  dir = makeTempDir('backy2-rbd-');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, `ceph:\n  conf: ${ceph().conf}\nbackup:\n  hintSample: 3\nmount:\n  spillDir: ${dir}\n`);
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
  name = `img${randomBytes(4).toString('hex')}`;
  rbd(['create', '--size', `${SIZE}B`, `rbd/${name}`]);
});

interface BackupJson {
  uid: string;
  baseUid: string | null;
  bytesRead: number;
  bytesWritten: number;
  snapshot?: string;
}

/** Our helper processes still reading this image (export-diff streams, qemu-nbd servers), after a short grace. */
async function helpersLeft(image: string): Promise<string[]> {
  const list = () => {
    try {
      return execFileSync('pgrep', ['-af', `export-diff.*rbd/${image}@|qemu-nbd.*file.image=${image},`], { encoding: 'utf8' }).trim().split('\n');
    } catch (err) {
      if ((err as { status?: number }).status === 1) return []; // pgrep: no match
      throw err;
    }
  };
  for (let waited = 0; waited < 2000 && list().length > 0; waited += 100) await new Promise((r) => setTimeout(r, 100));
  return list();
}

async function backupJson(args: string[]): Promise<BackupJson> {
  const r = await spawnCli(['backup', ...args, '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as BackupJson;
}

describe('RBD sources and targets (real cluster)', () => {
  it('full and incremental backups read only allocated, then changed objects; restores equal rbd export', async () => {
    writeRbd(`rbd/${name}`, SIZE, [
      { offset: 0, data: randomBytes(3 * MiB) },
      { offset: 40 * MiB + 512, data: randomBytes(5 * MiB) },
      { offset: 100 * MiB, data: randomBytes(64 * 1024) },
    ]);
    rbd(['snap', 'create', `rbd/${name}@s1`]);
    const full = await backupJson([`rbd:rbd/${name}@s1`, name]);
    // allocated objects only: [0,4), [40,44), [44,48), [100,104) MiB
    expect(full.bytesRead).toBe(16 * MiB);

    writeRbd(`rbd/${name}`, SIZE, [{ offset: 41 * MiB, data: randomBytes(4096) }, { offset: 90 * MiB, data: randomBytes(100 * 1024) }]);
    rbd(['snap', 'create', `rbd/${name}@s2`]);
    const inc = await backupJson([`rbd:rbd/${name}@s2`, name]);
    // changed objects [40,44) and [88,92) MiB, plus 3 sampled unchanged blocks
    expect(inc.bytesRead).toBe(2 * 4 * MiB + 3 * 4 * MiB);
    expect(inc.bytesWritten).toBe(2 * 4 * MiB);
    // The stream and the sample reader start before the reads (while rbd diff runs): both end with the backup.
    expect(await helpersLeft(name)).toEqual([]);

    for (const [version, snap] of [[full.uid, 's1'], [inc.uid, 's2']] as const) {
      const file = path.join(dir, `${snap}.raw`);
      expect((await spawnCli(['restore', version, file], env)).code).toBe(0);
      const expected = rbdSha(`rbd/${name}@${snap}`);
      expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(expected);
      const target = `${name}-restored-${snap}`;
      const r = await spawnCli(['restore', version, `rbd:rbd/${target}`], env);
      expect(r.code, r.stderr).toBe(0);
      expect(rbdSha(`rbd/${target}`)).toBe(expected);
    }
  });

  it('an incremental that fails after its reads started leaves no rbd export-diff or qemu-nbd behind', async () => {
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 0, data: randomBytes(64 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@s1`]);
    await backupJson([`rbd:rbd/${name}@s1`, name, '-s', 's1']);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 41 * MiB, data: randomBytes(4096) }]);
    rbd(['snap', 'create', `rbd/${name}@s2`]);
    // Hints that miss the change; every unhinted block is sampled, so the backup finds them wrong.
    const hints = path.join(dir, 'wrong-hints.json');
    writeFileSync(hints, JSON.stringify([{ offset: 100 * MiB, length: 4096, exists: 'true' }]));
    const config = path.join(dir, 'sample-all.yaml');
    writeFileSync(config, `ceph:\n  conf: ${ceph().conf}\nbackup:\n  hintSample: 1000\n`);
    const r = await spawnCli(['backup', `rbd:rbd/${name}@s2`, name, '-r', hints, '--hints-from', 's1'], { ...env, BACKY2_CONFIG: config });
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/are wrong: block 10 /);
    expect(await helpersLeft(name)).toEqual([]);
  });

  it('a catalog error after the commit still ends the helper processes (the source is closed first)', async () => {
    const { store } = await makeTempStore({ ceph: { conf: ceph().conf }, blockSize: 4 * MiB, hintSample: 3, spillDir: dir });
    try {
      writeRbd(`rbd/${name}`, SIZE, [{ offset: 0, data: randomBytes(64 * MiB) }]);
      rbd(['snap', 'create', `rbd/${name}@s1`]);
      await backup(store, { source: `rbd:rbd/${name}@s1`, image: name });
      writeRbd(`rbd/${name}`, SIZE, [{ offset: 41 * MiB, data: randomBytes(4096) }]);
      rbd(['snap', 'create', `rbd/${name}@s2`]);
      // The one listing a backup makes after its commit (of the image's snapshots to remove) fails.
      const catalog = new Proxy(store.catalog, {
        get(target, prop) {
          const value: unknown = Reflect.get(target, prop, target);
          if (prop === 'listVersions') {
            return (options?: object) => (options && Object.keys(options).join() === 'image' ? Promise.reject(new Error('catalog gone')) : target.listVersions(options));
          }
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      await expect(backup({ ...store, catalog }, { source: `rbd:rbd/${name}@s2`, image: name })).rejects.toThrow('catalog gone');
      expect(await helpersLeft(name)).toEqual([]);
    } finally {
      await store.close();
      spawnSync('pkill', ['-f', `qemu-nbd.*file.image=${name},`]);
    }
  });

  it('--snapshot auto diffs against the previous backy2 snapshot and removes older ones', async () => {
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 8 * MiB, data: randomBytes(8 * MiB) }]);
    const first = await backupJson([`rbd:rbd/${name}`, name, '--snapshot', 'auto']);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 60 * MiB, data: randomBytes(1 * MiB) }]);
    // a backy2 snapshot that no version of this image recorded (another image's backup) stays
    rbd(['snap', 'create', `rbd/${name}@backy2-vzzzzzzzzzzz`]);
    const second = await backupJson([`rbd:rbd/${name}`, name, '--snapshot', 'auto']);
    expect(second.bytesRead).toBe(4 * MiB + 3 * 4 * MiB);
    const snaps = (JSON.parse(rbd(['snap', 'ls', '--format', 'json', `rbd/${name}`])) as { name: string }[]).map((s) => s.name);
    expect(snaps.sort()).toEqual([`backy2-${second.uid}`, 'backy2-vzzzzzzzzzzz']);
    const versions = JSON.parse((await spawnCli(['ls', '--json'], env)).stdout) as { uid: string; snapshot: string }[];
    expect(versions.map((v) => v.snapshot)).toEqual([`backy2-${first.uid}`, `backy2-${second.uid}`]);
    const file = path.join(dir, 'second.raw');
    expect((await spawnCli(['restore', second.uid, file], env)).code).toBe(0);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(rbdSha(`rbd/${name}@backy2-${second.uid}`));
  });

  it('a base backed up from another RBD image is not diffed against a same-named snapshot', async () => {
    const other = `${name}-other`;
    rbd(['create', '--size', `${SIZE}B`, `rbd/${other}`]);
    writeRbd(`rbd/${other}`, SIZE, [{ offset: 0, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${other}@a1`]);
    await backupJson([`rbd:rbd/${other}@a1`, name]);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 20 * MiB, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@a1`]);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 60 * MiB, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@a2`]);
    const v = await backupJson([`rbd:rbd/${name}@a2`, name]);
    expect(v.bytesRead).toBe(8 * MiB); // every allocated object of this image, not the a1→a2 diff
    const file = path.join(dir, 'a2.raw');
    expect((await spawnCli(['restore', v.uid, file], env)).code).toBe(0);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(rbdSha(`rbd/${name}@a2`));
  });

  it('a snapshot deleted and made again under the base\'s name is not diffed against (ids, not names, prove the base)', async () => {
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 0, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@nightly`]);
    const first = await backupJson([`rbd:rbd/${name}@nightly`, name]);
    // The admin rotates "nightly": removed, the image changes, made again, changes again.
    rbd(['snap', 'rm', `rbd/${name}@nightly`]);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 20 * MiB, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@nightly`]);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 60 * MiB, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@next`]);
    const second = await backupJson([`rbd:rbd/${name}@next`, name]);
    expect(second.baseUid).toBe(first.uid);
    // A diff from the new "nightly" would miss the change at 20 MiB: every allocated object is read.
    expect(second.bytesRead).toBe(12 * MiB);
    const file = path.join(dir, 'next.raw');
    expect((await spawnCli(['restore', second.uid, file], env)).code).toBe(0);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(rbdSha(`rbd/${name}@next`));
    // And the next one diffs again, from "next", whose identity was recorded.
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 100 * MiB, data: randomBytes(4096) }]);
    rbd(['snap', 'create', `rbd/${name}@after`]);
    const third = await backupJson([`rbd:rbd/${name}@after`, name]);
    expect(third.bytesRead).toBe(4 * MiB + 3 * 4 * MiB);
  });

  it('restoring into an existing image needs --force and leaves no stale data', async () => {
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 0, data: randomBytes(2 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@s1`]);
    const v = await backupJson([`rbd:rbd/${name}@s1`, name]);
    const target = `${name}-old`;
    rbd(['create', '--size', `${SIZE}B`, `rbd/${target}`]);
    writeRbd(`rbd/${target}`, SIZE, [{ offset: 50 * MiB, data: Buffer.alloc(4 * MiB, 0xee) }, { offset: 0, data: Buffer.alloc(4 * MiB, 0xee) }]);
    const refused = await spawnCli(['restore', v.uid, `rbd:rbd/${target}`], env);
    expect(refused.code).toBe(5);
    const r = await spawnCli(['restore', v.uid, `rbd:rbd/${target}`, '--force'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(rbdSha(`rbd/${target}`)).toBe(rbdSha(`rbd/${name}@s1`));
    // A larger existing image keeps its size; the version fills its start.
    const bigger = `${name}-big`;
    rbd(['create', '--size', `${2 * SIZE}B`, `rbd/${bigger}`]);
    expect((await spawnCli(['restore', v.uid, `rbd:rbd/${bigger}`, '--force'], env)).code).toBe(0);
    expect((JSON.parse(rbd(['info', '--format', 'json', `rbd/${bigger}`])) as { size: number }).size).toBe(2 * SIZE);
    const head = execFileSync('sh', ['-c', `rbd --conf ${ceph().conf} export --no-progress rbd/${bigger} - | head -c ${SIZE} | sha256sum`], { encoding: 'utf8' });
    expect(head.split(' ')[0]).toBe(rbdSha(`rbd/${name}@s1`));
  });

  it('refuses an RBD source without a snapshot, and reports a missing image clearly', async () => {
    const r = await spawnCli(['backup', `rbd:rbd/${name}`, name], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('snapshot');
    const missing = await spawnCli(['backup', 'rbd:rbd/nosuchimage@s1', 'x'], env);
    expect(missing.code).toBe(4);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an unreachable cluster is one clear line with exit status 12, after the configured timeout', async () => {
    const conf = path.join(dir, 'dead.conf');
    writeFileSync(conf, '[global]\nmon_host = 127.0.0.1:1\nauth_client_required = none\n');
    const config = path.join(dir, 'dead.yaml');
    writeFileSync(config, `ceph:\n  conf: ${conf}\n  timeout: 3s\n`);
    const started = Date.now();
    const r = await spawnCli(['backup', `rbd:rbd/${name}@s1`, 'vm1'], { ...env, BACKY2_CONFIG: config });
    expect(r.code).toBe(12);
    expect(r.stderr).toBe(`backy2: Cannot reach the Ceph cluster for rbd:rbd/${name}@s1 (check mon_host in ceph.conf, the keyring (ceph.keyring in the config) and the network)\n`);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('scrub -s compares a version with its RBD snapshot', async () => {
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 4 * MiB, data: randomBytes(4 * MiB) }]);
    rbd(['snap', 'create', `rbd/${name}@s1`]);
    const v = await backupJson([`rbd:rbd/${name}@s1`, name]);
    expect((await spawnCli(['scrub', v.uid, '-s', `rbd:rbd/${name}@s1`], env)).code).toBe(0);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 20 * MiB, data: randomBytes(4096) }]);
    rbd(['snap', 'create', `rbd/${name}@s2`]);
    const r = await spawnCli(['scrub', v.uid, '-s', `rbd:rbd/${name}@s2`], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('sparse in the backup but not zero in the source');
  });

  it('an encrypted, compressed store: snapshot-diff incrementals, restores to RBD, scrub -s and -p, db export and import', async () => {
    const password = path.join(dir, 'password');
    writeFileSync(password, 'a passphrase\n', { mode: 0o600 });
    const e = { ...env, BACKY2_STORE: path.join(dir, 'encrypted'), BACKY2_PASSWORD_FILE: password, BACKY2_KDF_N: '1024' };
    const init = await spawnCli(['init', '--encryption', 'aes-256-gcm', '--compression', 'zstd'], e);
    expect(init.code, init.stderr).toBe(0);
    const text = Buffer.alloc(4 * MiB, 'compressible text in a virtual disk ');
    writeRbd(`rbd/${name}`, SIZE, [
      { offset: 0, data: text },
      { offset: 40 * MiB, data: randomBytes(4 * MiB) },
    ]);
    rbd(['snap', 'create', `rbd/${name}@s1`]);
    const backup = async (snap: string) => {
      const r = await spawnCli(['backup', `rbd:rbd/${name}@${snap}`, name, '--json'], e);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as BackupJson & { bytesStored: number };
    };
    const full = await backup('s1');
    expect(full.bytesRead).toBe(8 * MiB);
    expect(full.bytesStored).toBeLessThan(5 * MiB);
    writeRbd(`rbd/${name}`, SIZE, [{ offset: 60 * MiB, data: text }]);
    rbd(['snap', 'create', `rbd/${name}@s2`]);
    const inc = await backup('s2');
    expect(inc.baseUid).toBe(full.uid);
    // the changed object, plus 3 sampled unchanged blocks; the new block's content is stored already
    expect(inc.bytesRead).toBe(4 * MiB + 3 * 4 * MiB);
    expect(inc.bytesWritten).toBe(0);

    for (const [version, snap] of [[full.uid, 's1'], [inc.uid, 's2']] as const) {
      const target = `${name}-enc-${snap}`;
      const r = await spawnCli(['restore', version, `rbd:rbd/${target}`], e);
      expect(r.code, r.stderr).toBe(0);
      expect(rbdSha(`rbd/${target}`)).toBe(rbdSha(`rbd/${name}@${snap}`));
    }
    expect((await spawnCli(['scrub', inc.uid, '-s', `rbd:rbd/${name}@s2`], e)).code).toBe(0);
    expect((await spawnCli(['scrub', '--all', '-p', '50'], e)).code).toBe(0);
    expect((await spawnCli(['scrub', full.uid, '-s', `rbd:rbd/${name}@s2`], e)).code).toBe(3);

    const exported = await spawnCli(['db', 'export', inc.uid], e);
    expect(exported.code, exported.stderr).toBe(0);
    const file = path.join(dir, 'inc.json');
    writeFileSync(file, exported.stdout);
    expect((await spawnCli(['rm', '--force', inc.uid], e)).code).toBe(0);
    const imported = await spawnCli(['db', 'import', file], e);
    expect(imported.code, imported.stderr).toBe(0);
    const out = path.join(dir, 'inc.raw');
    expect((await spawnCli(['restore', inc.uid, out], e)).code).toBe(0);
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(rbdSha(`rbd/${name}@s2`));
  });
});
