import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { acquireLocks, imageResource } from '../../../src/engine/catalog/locking.js';
import { SqliteCatalog } from '../../../src/engine/catalog/sqlite-catalog.js';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';
import { importCopies, type ExportedVersion } from '../../helpers/versions.js';

const B = 64 * 1024;
const H = 3_600_000;
let dir: string;
let storeDir: string;
let args: (...rest: string[]) => string[];

const CONFIG = `backup:
  blockSize: 64KiB
schedules:
  - images: "vm-*"
    interval: 1d
    tolerance: 2h
    sla: 36h
    source: "rbd:rbd/{image}@nightly"
  - images: expected1
    interval: 1d
`;

async function ok(...rest: string[]): Promise<string> {
  const r = await runCli(args(...rest));
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

beforeEach(async () => {
  dir = makeTempDir();
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, CONFIG);
  storeDir = path.join(dir, 'store');
  args = (...rest) => ['--store', storeDir, '--config', config, ...rest];
  await initStoreFor({}, args());
});

/** vm-fresh (3h), vm-late (27h), vm-breached (40h), vm-invalid (3h, and an invalid one of 50h), other (no schedule), expected1 (none). */
async function populate(): Promise<void> {
  const image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 2 * B }]);
  const uid = (await ok('backup', image, 'seed')).trim();
  const [seed] = JSON.parse(await ok('db', 'export', uid)) as [ExportedVersion];
  const run = (argv: string[]) => runCli(args(...argv));
  const now = Date.now();
  await importCopies(run, dir, seed, 'vm-fresh', [{ createdAt: now - 3 * H }]);
  await importCopies(run, dir, seed, 'vm-late', [{ createdAt: now - 27 * H }]);
  await importCopies(run, dir, seed, 'vm-breached', [{ createdAt: now - 40 * H }]);
  await importCopies(run, dir, seed, 'vm-invalid', [{ createdAt: now - 50 * H, status: 'invalid' }, { createdAt: now - 3 * H }]);
  await importCopies(run, dir, seed, 'other', [{ createdAt: now - 1000 * H }]);
  await ok('rm', '--force', uid);
}

describe('backy2 due', () => {
  it('lists the images whose backup is due, one per line, and their source in JSON', async () => {
    await populate();
    expect(await ok('due')).toBe('expected1\nvm-breached\nvm-late\n');
    const json = JSON.parse(await ok('due', '--json')) as { image: string; source: string | null; running: boolean; newestValid: { ageSeconds: number } | null }[];
    expect(json.map((d) => [d.image, d.source, d.running])).toEqual([
      ['expected1', null, false],
      ['vm-breached', 'rbd:rbd/vm-breached@nightly', false],
      ['vm-late', 'rbd:rbd/vm-late@nightly', false],
    ]);
    expect(json[2]?.newestValid?.ageSeconds).toBeGreaterThanOrEqual(27 * 3600);
    expect(await ok('due', 'vm-*')).toBe('vm-breached\nvm-late\n');
  });

  it('leaves out images whose backup is running, and says so on stderr', async () => {
    await populate();
    const catalog = SqliteCatalog.open(path.join(storeDir, 'catalog.sqlite'));
    const held = await acquireLocks(catalog, [{ resource: imageResource('vm-late'), mode: 'exclusive', operation: 'backup', writer: true }]);
    try {
      const r = await runCli(args('due'));
      expect(r.stdout).toBe('expected1\nvm-breached\n');
      expect(r.stderr).toBe('vm-late: due, but a backup of it is running now\n');
    } finally {
      await held.release();
      await catalog.close();
    }
  });
});

describe('backy2 check', () => {
  it('reports ok, late and breached per image with the Nagios exit status', async () => {
    await populate();
    const r = await runCli(args('check'));
    expect(r.code).toBe(2);
    const [first, header, ...rows] = r.stdout.trim().split('\n');
    expect(first).toBe(
      'BACKY2 CRITICAL: 6 image(s), 2 breached, 1 late, 3 ok (expected1 breached, vm-breached breached, vm-invalid ok, …) | breached=2 late=1 ok=3 invalid_blocks=0',
    );
    expect(header).toMatch(/^IMAGE +STATUS +NEWEST VALID BACKUP +AGE +PROBLEMS$/);
    expect(rows.map((l) => l.split(/ +/).slice(0, 2).join(' '))).toEqual([
      'expected1 breached',
      'vm-breached breached',
      'vm-invalid ok',
      'vm-late late',
      'other ok',
      'vm-fresh ok',
    ]);
    expect(rows[0]).toMatch(/none +no backup yet$/);
    expect(rows[2]).toContain('1 invalid version(s) (a scrub found bad blocks in them)');
    expect((await runCli(args('check', 'vm-fresh'))).code).toBe(0);
    expect((await runCli(args('check', 'vm-late'))).code).toBe(1);
    expect((await runCli(args('check', 'vm-invalid'))).code).toBe(1);
    expect((await runCli(args('check', 'other', 'vm-f*'))).stdout).toMatch(/^BACKY2 OK: 2 image\(s\), 0 breached, 0 late, 2 ok \| /);
    const json = JSON.parse((await runCli(args('check', '--json'))).stdout) as { status: string; level: number; images: { image: string; freshness: string; level: number; due: boolean }[] };
    expect(json).toMatchObject({ status: 'critical', level: 2 });
    expect(json.images.find((i) => i.image === 'vm-late')).toMatchObject({ freshness: 'late', level: 1, due: true });
  });

  it('is UNKNOWN (exit status 3) when it cannot check, in one line', async () => {
    const r = await runCli(['--store', path.join(dir, 'nothing-here'), 'check']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^backy2: UNKNOWN: No store at ".*nothing-here": no such directory \(create one with `backy2 init`/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const json = await runCli(['--store', path.join(dir, 'nothing-here'), 'check', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ type: 'error', code: 'E_NOT_FOUND', exitCode: 3 });
    expect((await runCli(args('check', 'nosuch'))).code).toBe(3);
  });

  it('reports what a scrub found: the image has no valid backup left, and the store has bad blocks', async () => {
    const image = path.join(dir, 'img');
    makeImage(image, [{ kind: 'random', length: 2 * B }]);
    await ok('backup', image, 'vm-one');
    expect((await runCli(args('check', 'vm-one'))).code).toBe(0);
    const blocks = path.join(storeDir, 'blocks');
    const sub = readdirSync(blocks)[0]!;
    const file = path.join(blocks, sub, readdirSync(path.join(blocks, sub))[0]!);
    const data = readFileSync(file);
    data[100] = (data[100] ?? 0) ^ 0xff;
    writeFileSync(file, data);
    expect((await runCli(args('scrub', '--all'))).code).toBe(3);
    const r = await runCli(args('check', 'vm-one'));
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('no valid backup: all 1 are invalid (a scrub found bad blocks)');
    expect(r.stdout).toContain('store: 1 block(s) found bad by a scrub are not healed yet');
    const json = JSON.parse((await runCli(args('check', '--json'))).stdout) as { invalidBlocks: number; lastScrub: { last: { badBlocks: number } } };
    expect(json.invalidBlocks).toBe(1);
    expect(json.lastScrub.last.badBlocks).toBe(1);
  });

  it('has --help that explains the Nagios exit status', async () => {
    const r = await runCli(['check', '--help']);
    expect(r.stdout).toContain('0 OK, 1 WARNING');
    expect(r.stdout).toContain('3 UNKNOWN');
  });
});
