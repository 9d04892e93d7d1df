import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { BIN, initStoreFor, spawnCli } from '../helpers/cli.js';
import { makeImage, sha256File } from '../helpers/image.js';
import { makeTempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const KILLS = Number(process.env.BACKY2_TEST_KILLS ?? 8);
const IMAGES = ['vm1', 'vm2', 'vm3'];
const RULES = ['--keep-last', '2'];

let dir: string;
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = makeTempDir('backy2-forget-');
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 64KiB\n');
  env = { BACKY2_STORE: path.join(dir, 'store'), BACKY2_CONFIG: config };
  await initStoreFor(env);
});

interface Decision {
  uid: string;
  image: string;
  action: string;
}

async function ok(args: readonly string[], extra: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await spawnCli(args, { ...env, ...extra });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Runs `forget --prune` (with slow store operations) and kills it with SIGKILL after `ms`; true when the kill landed. */
function killedForget(ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(BIN, ['forget', '--prune', ...RULES], {
      env: { ...process.env, ...env, BACKY2_FAULTS: JSON.stringify({ latencyMs: 3 }) },
      stdio: 'ignore',
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve(signal === 'SIGKILL');
    });
  });
}

describe('kill -9 during forget --prune', () => {
  it(`loses nothing that a rule keeps (${KILLS} kills)`, async () => {
    const files = new Map(IMAGES.map((image) => [image, path.join(dir, `${image}.img`)]));
    for (const file of files.values()) makeImage(file, [{ kind: 'random', length: 6 * MiB }, { kind: 'zero', length: 2 * MiB }]);
    const content = new Map<string, string>(); // uid → sha256 of what it backed up
    const backupAll = async () => {
      for (const [image, file] of files) {
        // Change a quarter of the image: every version has blocks of its own for cleanup to free.
        const fd = openSync(file, 'r+');
        writeSync(fd, randomBytes(1.5 * MiB), 0, 1.5 * MiB, Math.floor(Math.random() * 4) * 1.5 * MiB);
        closeSync(fd);
        const uid = (await ok(['backup', file, image])).trim();
        content.set(uid, await sha256File(file));
      }
    };
    await backupAll();
    await backupAll();
    let landed = 0;
    const phases = { beforeRemoving: 0, whileRemoving: 0, afterRemoving: 0 };
    for (let i = 0; i < KILLS; i++) {
      await backupAll();
      const plan = JSON.parse(await ok(['forget', '--dry-run', '--json', ...RULES])) as { versions: Decision[] };
      if (await killedForget(400 + Math.floor(Math.random() * 1200))) landed++;
      // Whatever was killed, every version a rule keeps is still there and valid.
      const listed = JSON.parse(await ok(['ls', '--json'])) as { uid: string; status: string }[];
      const byUid = new Map(listed.map((v) => [v.uid, v.status]));
      for (const uid of plan.versions.filter((d) => d.action === 'keep').map((d) => d.uid)) expect(byUid.get(uid), uid).toBe('valid');
      const removes = plan.versions.filter((d) => d.action === 'remove');
      const gone = removes.filter((d) => !byUid.has(d.uid)).length;
      phases[gone === 0 ? 'beforeRemoving' : gone < removes.length ? 'whileRemoving' : 'afterRemoving']++;
    }
    // A complete run afterwards finishes the job.
    const done = JSON.parse(await ok(['forget', '--prune', '--json', ...RULES])) as { versions: Decision[]; cleanup: { blocksDeleted: number } };
    const left = JSON.parse(await ok(['ls', '--json'])) as { uid: string; status: string }[];
    expect(left.map((v) => v.uid).sort()).toEqual(done.versions.filter((d) => d.action === 'keep').map((d) => d.uid).sort());
    expect(left).toHaveLength(IMAGES.length * 2);
    // Every version still there restores byte-identical: a killed cleanup deleted none of its blocks.
    for (const v of left) {
      const out = path.join(dir, `out-${v.uid}`);
      await ok(['restore', v.uid, out, '--sparse']);
      expect(await sha256File(out), v.uid).toBe(content.get(v.uid));
    }
    const scrub = await spawnCli(['scrub', '--all', '--json'], env);
    expect(scrub.code, scrub.stderr).toBe(0);
    expect(JSON.parse(scrub.stdout)).toMatchObject({ badBlocks: 0, badSegments: 0 });
    console.log(`forget --prune: ${landed} of ${KILLS} kills landed (${JSON.stringify(phases)})`);
  });
});
