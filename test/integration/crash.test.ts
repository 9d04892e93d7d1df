import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, writeSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { BIN, initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeImage, sha256File } from '../helpers/image.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const KILLS = Number(process.env.BACKY2_TEST_KILLS ?? 15);

let dir: string;
let env: NodeJS.ProcessEnv;
let config: string;

beforeEach(async () => {
  dir = makeTempDir('backy2-crash-');
  config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 256KiB\n');
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
});

interface Listed {
  uid: string;
  status: string;
  tags: string[];
}

async function list(): Promise<Listed[]> {
  const r = await spawnCli(['ls', '--json'], env);
  if (r.code === 10) return [];
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Listed[];
}

/** Starts a backup and kills it with SIGKILL after `ms`. */
function killedBackup(image: string, tag: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(BIN, ['backup', image, 'vm1', '-t', tag], { env: { ...process.env, ...env }, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('kill -9 during backups', () => {
  it(`never lists a valid version that does not restore byte-identical (${KILLS} kills)`, async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 24 * MiB }, { kind: 'zero', length: 8 * MiB }, { kind: 'random', length: 16 * MiB }]);
    const expected = new Map<string, string>();
    for (let i = 0; i < KILLS; i++) {
      // change a few blocks, so runs are incremental with real work
      const fd = openSync(image, 'r+');
      for (let j = 0; j < 4; j++) writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, Math.floor(Math.random() * 40) * MiB);
      closeSync(fd);
      expected.set(`iter${i}`, await sha256File(image));
      await killedBackup(image, `iter${i}`, 100 + Math.floor(Math.random() * 900));
    }
    const versions = await list();
    const valid = versions.filter((v) => v.status === 'valid');
    const incomplete = versions.filter((v) => v.status === 'incomplete');
    expect(valid.length + incomplete.length).toBe(versions.length);
    for (const v of valid) {
      const out = path.join(dir, `out-${v.uid}`);
      const r = await spawnCli(['restore', v.uid, out, '--sparse'], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await sha256File(out), `${v.uid} ${v.tags.join(',')}`).toBe(expected.get(v.tags[0] ?? ''));
    }
    // The next backup works, and killed ones can be removed.
    const next = await spawnCli(['backup', image, 'vm1', '-t', 'final'], env);
    expect(next.code, next.stderr).toBe(0);
    if (incomplete.length > 0) {
      const rm = await spawnCli(['rm', ...incomplete.map((v) => v.uid)], env);
      expect(rm.code, rm.stderr).toBe(0);
    }
    expect((await list()).every((v) => v.status === 'valid')).toBe(true);
    const out = path.join(dir, 'final.img');
    expect((await spawnCli(['restore', next.stdout.trim(), out], env)).code).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(image));
  });
});

describe('interrupting a backup', () => {
  it('SIGINT stops it with exit status 130 and commits nothing', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 256 * MiB }]);
    const child = spawn(BIN, ['backup', image, 'vm1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((r) => setTimeout(r, 400));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/^backy2: .*interrupted/i);
    expect(await list()).toEqual([]);
  });
});
