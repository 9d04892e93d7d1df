/**
 * The reliability suite: crashes (kill -9) of every writing operation, everything at once,
 * bitrot, a lost catalog, and injected block-store faults. Afterwards every valid version must
 * restore byte-identical and no referenced block may be missing.
 *
 *   BACKY2_RELIABILITY=long npm test   # more kills, longer concurrency
 *
 * The suite prints its figures (kills survived, faults injected, inputs tried, versions verified)
 * and writes them to .tmp/reliability.json.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { backup } from '../../src/engine/operations/backup.js';
import { FaultInjectingStore } from '../../src/engine/blockstore/fault-injection.js';
import { defaultConfig } from '../../src/engine/support/config.js';
import { restore } from '../../src/engine/operations/restore.js';
import { initStore } from '../../src/engine/operations/init-store.js';
import { openStore, type Store } from '../../src/engine/store.js';
import { BIN, initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/temp.js';

const LONG = process.env.BACKY2_RELIABILITY === 'long';
/** kill -9 that must land while the operation works on the store (not while starting, not after it finished). */
const KILLS = LONG ? 300 : 60;
const CONCURRENCY_SECONDS = LONG ? 120 : 20;
const B = 256 * 1024;
const SIZE = 24 * B;
const figures = {
  kills: 0,
  killsByOperation: {} as Record<string, number>,
  faultsInjected: 0,
  operations: 0,
  versionsRestoredAndCompared: 0,
  bitrotDamaged: 0,
  bitrotFound: 0,
};

let dir: string;
let env: NodeJS.ProcessEnv;
/** sha256 of each image state, by tag. */
let expected: Map<string, string>;
let stateCount = 0;

beforeEach(async () => {
  dir = makeTempDir('backy2-rel-');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, `backup:\n  blockSize: 256KiB\n  hintSample: 4\nmount:\n  spillDir: ${dir}\n`);
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
  expected = new Map();
  mkdirSync(path.join(dir, 'states'));
});

afterAll(() => {
  mkdirSync('.tmp', { recursive: true });
  writeFileSync('.tmp/reliability.json', `${JSON.stringify({ mode: LONG ? 'long' : 'ci', ...figures }, null, 2)}\n`);
  console.log(`RELIABILITY ${JSON.stringify(figures)}`);
});

/** A new image state: the previous one with a few blocks changed (some zeroed), and its tag. */
function newState(image: string): { file: string; tag: string } {
  const files = readdirSync(path.join(dir, 'states')).filter((f) => f.startsWith(`${image}-`));
  const previous = files.sort().pop();
  const data = previous ? readFileSync(path.join(dir, 'states', previous)) : Buffer.concat([randomBytes(SIZE / 2), Buffer.alloc(SIZE / 2)]);
  for (let i = 0; i < 3; i++) {
    const at = randomInt(SIZE / B) * B + randomInt(B - 4096);
    if (i === 2) data.fill(0, at - (at % B), at - (at % B) + B);
    else randomBytes(4096).copy(data, at);
  }
  const tag = `s${String(++stateCount).padStart(5, '0')}`;
  const file = path.join(dir, 'states', `${image}-${tag}`);
  writeFileSync(file, data);
  expected.set(tag, createHash('sha256').update(data).digest('hex'));
  return { file, tag };
}

interface Listed {
  uid: string;
  image: string;
  status: string;
  tags: string[];
  size: number;
}

async function list(): Promise<Listed[]> {
  const r = await spawnCli(['ls', '--json'], env);
  if (r.code === 10) return [];
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Listed[];
}

/**
 * Every valid version restores with all digests verified; byte-identical to its image state where
 * that is known (copy-on-write versions have random writes: their size and digests are checked).
 */
async function verifyAll(): Promise<void> {
  for (const v of (await list()).filter((x) => x.status === 'valid')) {
    const out = path.join(dir, 'verify.img');
    rmSync(out, { force: true });
    const r = await spawnCli(['restore', v.uid, out, '--sparse'], env);
    expect(r.code, `${v.uid}: ${r.stderr}`).toBe(0);
    const tag = v.tags.find((t) => expected.has(t));
    if (tag) {
      expect(createHash('sha256').update(readFileSync(out)).digest('hex'), `${v.uid} ${tag}`).toBe(expected.get(tag));
      figures.versionsRestoredAndCompared++;
    } else expect(statSync(out).size).toBe(v.size);
  }
  const scrub = await spawnCli(['scrub', '--all', '--json'], env);
  if ((await list()).length > 0) expect(scrub.code, `${scrub.stderr}${scrub.stdout}`).toBe(0);
}

/**
 * Runs a command and kills it with SIGKILL at a random moment up to `ms` after it opened the store.
 * @returns true when the kill landed while it worked on the store (it had not exited yet)
 */
function runKilled(args: readonly string[], ms: number, script?: string): Promise<boolean> {
  return new Promise((resolve) => {
    // The CLI says "store … opened" on stderr with NODE_DEBUG=backy2; the helper script says "ready".
    const child = script
      ? spawn(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../helpers', script), ...args], { stdio: ['ignore', 'pipe', 'ignore'] })
      : spawn(BIN, args, { env: { ...process.env, ...env, NODE_DEBUG: 'backy2' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    let timer: NodeJS.Timeout | undefined;
    let killed = false;
    (script ? child.stdout : child.stderr)?.on('data', (d: Buffer) => {
      output += d.toString();
      if (timer || !/store .* opened|^ready$/m.test(output)) return;
      timer = setTimeout(() => {
        killed = child.exitCode === null && child.signalCode === null;
        child.kill('SIGKILL');
      }, randomInt(ms));
    });
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(killed);
    });
  });
}

describe('reliability', () => {
  it(`survives ${KILLS} kill -9 of backup, cleanup, rm, scrub and copy-on-write commits`, async () => {
    for (const image of ['a', 'b']) {
      const { file, tag } = newState(image);
      expect((await spawnCli(['backup', file, image, '-t', tag], env)).code).toBe(0);
    }
    const operations = ['backup', 'cleanup', 'rm', 'scrub', 'cow', 'backup'] as const;
    for (let i = 0; figures.kills < KILLS && i < 4 * KILLS; i++) {
      const op = operations[i % operations.length] ?? 'backup';
      const image = i % 2 === 0 ? 'a' : 'b';
      let args: string[] = [];
      let script: string | undefined;
      if (op === 'backup') {
        const { file, tag } = newState(image);
        args = ['backup', file, image, '-t', tag];
      } else if (op === 'cleanup') args = ['cleanup'];
      else if (op === 'scrub') args = ['scrub', '--all'];
      else if (op === 'rm') {
        const valid = (await list()).filter((v) => v.status === 'valid' && v.image === image);
        if (valid.length < 3) continue;
        args = ['rm', '--force', (valid[0] as Listed).uid];
      } else {
        args = [env.BACKY2_STORE ?? '', image];
        script = 'cow-writer.ts';
      }
      figures.operations++;
      if (await runKilled(args, op === 'rm' ? 40 : 250, script)) {
        figures.kills++;
        figures.killsByOperation[op] = (figures.killsByOperation[op] ?? 0) + 1;
      }
      if (i % 15 === 14) await verifyAll();
    }
    // The next backup works, and what the kills left incomplete can be removed.
    const { file, tag } = newState('a');
    expect((await spawnCli(['backup', file, 'a', '-t', tag], env)).code).toBe(0);
    const incomplete = (await list()).filter((v) => v.status === 'incomplete').map((v) => v.uid);
    if (incomplete.length) expect((await spawnCli(['rm', ...incomplete], env)).code).toBe(0);
    expect((await spawnCli(['cleanup'], env)).code).toBe(0);
    await verifyAll();
    expect(figures.kills).toBeGreaterThanOrEqual(KILLS);
    // Kills land in most kinds of operation (a short one, like rm, may finish before every kill).
    expect(Object.keys(figures.killsByOperation).length, JSON.stringify(figures.killsByOperation)).toBeGreaterThanOrEqual(Math.min(4, new Set(operations).size));
  }, 1_800_000);

  it(`keeps every block while backups, restores, scrubs, rm and cleanup run together (${CONCURRENCY_SECONDS}s)`, async () => {
    for (const image of ['a', 'b']) {
      const { file, tag } = newState(image);
      expect((await spawnCli(['backup', file, image, '-t', tag], env)).code).toBe(0);
    }
    const until = Date.now() + CONCURRENCY_SECONDS * 1000;
    // Locked (11) or gone meanwhile (4) is fine, but each kind of operation must also succeed.
    const succeeded: Record<string, number> = {};
    const accept = (what: string, r: { code: number; stderr: string }, ok: number[]) => {
      expect(ok, r.stderr).toContain(r.code);
      if (r.code === 0) succeeded[what] = (succeeded[what] ?? 0) + 1;
    };
    // A failing loop stops the others, and every loop has ended before the test does.
    let failed = false;
    const loop = async (body: () => Promise<void>) => {
      while (Date.now() < until && !failed) {
        try {
          await body();
        } catch (err) {
          failed = true;
          throw err;
        }
        figures.operations++;
      }
    };
    const backups = (image: string) =>
      loop(async () => {
        const { file, tag } = newState(image);
        accept('backup', await spawnCli(['backup', file, image, '-t', tag], env), [0, 11]);
      });
    const loops = await Promise.allSettled([
      backups('a'),
      backups('b'),
      loop(async () => {
        const valid = (await list()).filter((v) => v.status === 'valid');
        const v = valid[randomInt(Math.max(1, valid.length))];
        if (!v) return;
        const out = path.join(dir, `r-${randomInt(1e9)}.img`);
        const r = await spawnCli(['restore', v.uid, out, '--sparse'], env);
        accept('restore', r, [0, 4, 11]); // removed meanwhile, or being removed
        const tag = v.tags.find((t) => expected.has(t));
        if (r.code === 0 && tag) {
          expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(expected.get(tag));
          figures.versionsRestoredAndCompared++;
        }
        rmSync(out, { force: true });
      }),
      loop(async () => accept('scrub', await spawnCli(['scrub', '--all', '-p', '50'], env), [0, 4, 11])),
      loop(async () => {
        for (const image of ['a', 'b']) {
          const valid = (await list()).filter((v) => v.status === 'valid' && v.image === image);
          if (valid.length > 3) accept('rm', await spawnCli(['rm', '--force', (valid[0] as Listed).uid], env), [0, 4, 11]);
        }
      }),
      loop(async () => accept('cleanup', await spawnCli(['cleanup'], env), [0, 11])),
    ]);
    for (const l of loops) if (l.status === 'rejected') throw l.reason;
    for (const what of ['backup', 'restore', 'scrub', 'rm', 'cleanup']) expect(succeeded[what], what).toBeGreaterThan(0);
    await verifyAll();
  }, 600_000);

  it('finds all bitrot (flipped, truncated, deleted, swapped objects); the next backups heal it', async () => {
    const files: { image: string; file: string }[] = [];
    for (const image of ['a', 'b', 'c']) {
      const { file, tag } = newState(image);
      files.push({ image, file });
      expect((await spawnCli(['backup', file, image, '-t', tag], env)).code).toBe(0);
    }
    const blocksDir = path.join(dir, 'store', 'blocks');
    const objects = readdirSync(blocksDir).flatMap((d) => readdirSync(path.join(blocksDir, d)).map((f) => path.join(blocksDir, d, f)));
    const victims = objects.sort(() => Math.random() - 0.5).slice(0, 16);
    victims.slice(0, 4).forEach((f) => {
      const data = readFileSync(f);
      const at = 100 + randomInt(data.length - 100);
      data[at] = (data[at] ?? 0) ^ 0x10;
      writeFileSync(f, data);
    });
    victims.slice(4, 8).forEach((f) => truncateSync(f, statSync(f).size - 1 - randomInt(1000)));
    victims.slice(8, 12).forEach((f) => rmSync(f));
    for (let i = 12; i < 16; i += 2) {
      const x = readFileSync(victims[i] as string);
      writeFileSync(victims[i] as string, readFileSync(victims[i + 1] as string));
      writeFileSync(victims[i + 1] as string, x);
    }
    figures.bitrotDamaged += victims.length;
    const scrub = await spawnCli(['scrub', '--all', '--json'], env);
    expect(scrub.code).toBe(3);
    const found = JSON.parse(scrub.stdout) as { badBlocks: number; findings: { type: string; digest?: string; uid?: string }[] };
    expect(found.badBlocks).toBe(victims.length);
    expect(new Set(found.findings.filter((f) => f.type === 'bad-block').map((f) => f.digest))).toEqual(new Set(victims.map((f) => path.basename(f))));
    figures.bitrotFound += found.badBlocks;
    const invalidated = new Set(found.findings.filter((f) => f.type === 'version-invalid').map((f) => f.uid));
    expect(invalidated.size).toBeGreaterThan(0);
    for (const v of await list()) expect(v.status, v.uid).toBe(invalidated.has(v.uid) ? 'invalid' : 'valid');
    // heal: the next backup of each image re-stores its bad blocks
    for (const { image, file } of files) expect((await spawnCli(['backup', file, image, '-t', `healed-${image}`], env)).code).toBe(0);
    const clean = await spawnCli(['scrub', '--all', '--json'], env);
    expect(clean.code, clean.stdout).toBe(0);
    expect((await list()).every((v) => v.status === 'valid')).toBe(true);
    await verifyAll();
  }, 300_000);

  it('after the catalog is deleted, db rebuild brings every version back byte-identical', async () => {
    for (let i = 0; i < 6; i++) {
      const { file, tag } = newState(i % 2 === 0 ? 'a' : 'b');
      expect((await spawnCli(['backup', file, i % 2 === 0 ? 'a' : 'b', '-t', tag], env)).code).toBe(0);
    }
    const before = (await list()).map((v) => v.uid);
    for (const suffix of ['', '-wal', '-shm']) rmSync(path.join(dir, 'store', `catalog.sqlite${suffix}`), { force: true });
    const r = await spawnCli(['db', 'rebuild'], env);
    expect(r.code, r.stderr).toBe(0);
    expect((await list()).map((v) => v.uid)).toEqual(before);
    await verifyAll();
  }, 300_000);

  it('with injected store faults, never commits a broken version nor restores wrong data', async () => {
    const image = path.join(dir, 'img');
    writeFileSync(image, Buffer.concat([randomBytes(SIZE / 2), Buffer.alloc(SIZE / 2)]));
    const base = { ...defaultConfig(path.join(dir, 'faulty')), blockSize: B, hintSample: 4 };
    let committed = 0;
    const shaOf = new Map<number, string>();
    await initStore(base);
    for (let seed = 1; seed <= 40; seed++) {
      const faulty: FaultInjectingStore[] = [];
      let store: Store;
      try {
        store = await openStore(base, {
          wrapBlockStore: (s) => {
            const f = new FaultInjectingStore(s, { errorRate: 0.03, fullRate: 0.02, shortReadRate: 0.05, bitFlipRate: 0.05, seed });
            faulty.push(f);
            return f;
          },
        });
      } catch (err) {
        // Reading the store's settings or owner failed: one clear error, nothing opened.
        expect(['E_STORE', 'E_CORRUPT']).toContain((err as { code: string }).code);
        figures.faultsInjected++;
        continue;
      }
      try {
        const data = readFileSync(image);
        randomBytes(4096).copy(data, randomInt(SIZE - 4096));
        writeFileSync(image, data);
        const expectedSha = createHash('sha256').update(data).digest('hex');
        shaOf.set(seed, expectedSha);
        let uid: string | undefined;
        try {
          uid = (await backup(store, { source: image, image: 'vm1', tags: [`seed${seed}`] })).uid;
          committed++;
        } catch (err) {
          expect(['E_STORE', 'E_NO_SPACE', 'E_CORRUPT']).toContain((err as { code: string }).code);
        }
        if (uid) {
          const out = path.join(dir, `out-${seed}`);
          const result = await restore(store, { uid, target: out }).catch((err: { code: string }) => {
            expect(['E_STORE']).toContain(err.code);
            return undefined;
          });
          if (result && result.badBlockCount === 0) {
            expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(expectedSha);
            figures.versionsRestoredAndCompared++;
          }
        }
        figures.operations++;
      } finally {
        const counts = faulty[0]?.counts;
        if (counts) figures.faultsInjected += counts.errors + counts.full + counts.shortReads + counts.bitFlips;
        await store.close();
      }
    }
    // Without faults, every committed version restores byte-identical.
    const clean = await openStore(base);
    try {
      const valid = await clean.catalog.listVersions({ status: 'valid' });
      expect(valid.length).toBe(committed);
      for (const v of valid) {
        const out = path.join(dir, `clean-${v.uid}`);
        expect((await restore(clean, { uid: v.uid, target: out })).badBlockCount).toBe(0);
        const seed = Number(v.tags.find((t) => t.startsWith('seed'))?.slice(4));
        expect(createHash('sha256').update(readFileSync(out)).digest('hex'), v.uid).toBe(shaOf.get(seed));
        figures.versionsRestoredAndCompared++;
      }
    } finally {
      await clean.close();
    }
    expect(committed).toBeGreaterThan(0);
    expect(figures.faultsInjected).toBeGreaterThan(20);
  }, 300_000);
});
