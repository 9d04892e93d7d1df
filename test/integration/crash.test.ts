import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, writeSync, writeFileSync } from 'node:fs';
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
    const { code, stderr } = await interrupted(['backup', image, 'vm1'], 'SIGINT');
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/^backy2: .*interrupted/i);
    expect(await list()).toEqual([]);
  });
});

/**
 * Runs a command and sends `signal` once it has opened the store and worked for a moment (its
 * NODE_DEBUG line says when: a fixed delay lands before start-up on a busy machine).
 * @returns exit status and stderr without the debug lines
 */
async function interrupted(args: readonly string[], signal: NodeJS.Signals, afterMs = 200): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(BIN, args, { env: { ...process.env, ...env, NODE_DEBUG: 'backy2' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const deadline = Date.now() + 30_000;
  while (!/store .* opened/.test(output) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill(signal);
  const code = await exited;
  return { code, stderr: output.split('\n').filter((l) => l !== '' && !/^BACKY2 \d+:/.test(l)).map((l) => `${l}\n`).join('') };
}

describe('interrupting a restore (Ctrl-C, kill, a closing SSH session)', () => {
  it.each(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const)('%s: a new target is removed; an existing one is said to be partially overwritten; exit status 130', async (signal) => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 512 * MiB }]);
    const backup = await spawnCli(['backup', image, 'vm1'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const uid = backup.stdout.trim();
    const fresh = path.join(dir, 'new.img');
    const first = await interrupted(['restore', uid, fresh], signal);
    expect(first.code, first.stderr).toBe(130);
    expect(first.stderr).toBe(`backy2: Restore of ${uid} interrupted: the new target "${fresh}" was removed (run the restore again to complete it)\n`);
    expect(existsSync(fresh)).toBe(false);
    const existing = path.join(dir, 'existing.img');
    writeFileSync(existing, Buffer.alloc(512 * MiB, 1));
    const second = await interrupted(['restore', uid, existing, '--force'], signal);
    expect(second.code, second.stderr).toBe(130);
    expect(second.stderr).toBe(`backy2: Restore of ${uid} interrupted: target "${existing}" is now partially overwritten and unusable (run the restore again to complete it)\n`);
  });
});

describe('output and source surprises', () => {
  it('a reader that goes away (`backy2 ls | head`) ends the output, not the command: exit status 0', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: MiB }]);
    for (let i = 0; i < 3; i++) expect((await spawnCli(['backup', image, `vm${i}`], env)).code).toBe(0);
    for (const args of [['ls', '--json'], ['scrub', '--all', '--json'], ['stats']]) {
      const child = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // as `head` does once it has its lines
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect({ args, code, stderr }).toEqual({ args, code: 0, stderr: '' });
    }
  });

  it('a source that shrinks during the backup is an I/O error (exit status 12) and commits nothing', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 256 * MiB }]);
    const child = spawn(BIN, ['backup', image, 'vm1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((r) => setTimeout(r, 300));
    const fd = openSync(image, 'r+');
    (await import('node:fs')).ftruncateSync(fd, 16 * MiB);
    closeSync(fd);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    if (code === 0) return; // it was faster than the truncate: nothing to see
    expect(code, stderr).toBe(12);
    expect(stderr).toMatch(/^backy2: Source ".*" ended at offset \d+, before its size \d+: it shrank during the backup\n$/);
    expect(await list()).toEqual([]);
  });
});
