import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { killHard, startHelper } from '../../helpers/child.js';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';

const B = 64 * 1024;
let dir: string;
let config: string;
let storeDir: string;
const args = (...rest: string[]) => ['--store', storeDir, '--config', config, ...rest];

beforeEach(async () => {
  dir = makeTempDir();
  config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 64KiB\n');
  storeDir = path.join(dir, 'store');
  await initStoreFor({}, args());
});

async function backupOf(file: string, image: string, extra: string[] = []): Promise<string> {
  const r = await runCli(args('backup', file, image, ...extra));
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

function catalogGone(): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(path.join(storeDir, `catalog.sqlite${suffix}`), { force: true });
}

describe('the catalog is not a single point of failure', () => {
  it('restore --no-catalog and db rebuild bring every version back byte-identical, with tags and protection', async () => {
    const a = path.join(dir, 'a.img');
    const b = path.join(dir, 'b.img');
    makeImage(a, [{ kind: 'random', length: 5 * B }, { kind: 'zero', length: 4 * B }]);
    makeImage(b, [{ kind: 'random', length: 3 * B }]);
    const ua = await backupOf(a, 'vm1', ['-t', 'first']);
    const ub = await backupOf(b, 'vm2');
    expect((await runCli(args('protect', ua))).code).toBe(0);
    expect((await runCli(args('tag', ub, 'add', 'later'))).code).toBe(0);
    catalogGone();

    const out = path.join(dir, 'nocat.img');
    const r = await runCli(args('restore', ua, out, '--no-catalog'));
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(a))).toBe(true);
    expect((await runCli(args('restore', 'vzzzzzzzzzzz', out, '--no-catalog', '--force'))).code).toBe(4);

    const rebuilt = await runCli(args('db', 'rebuild'));
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(rebuilt.stderr).toContain('2 versions');
    const versions = JSON.parse((await runCli(args('ls', '--json'))).stdout) as { uid: string; tags: string[]; protected: boolean; status: string }[];
    expect(versions.map((v) => [v.uid, v.status, v.protected, v.tags])).toEqual([
      [ua, 'valid', true, ['first']],
      [ub, 'valid', false, ['b_daily', 'b_monthly', 'b_weekly', 'later']],
    ]);
    for (const [uid, file] of [[ua, a], [ub, b]] as const) {
      const target = path.join(dir, `${uid}.out`);
      expect((await runCli(args('restore', uid, target))).code).toBe(0);
      expect(readFileSync(target).equals(readFileSync(file))).toBe(true);
    }
    // backups go on, deduplicating against the rebuilt catalog
    const again = JSON.parse((await runCli(args('backup', a, 'vm1', '--json'))).stdout) as { bytesWritten: number };
    expect(again.bytesWritten).toBe(0);
    expect((await runCli(args('db', 'rebuild'))).code).toBe(5);
    // --force never moves a catalog away under a running command
    const holder = await startHelper('hold-lock.ts', [path.join(storeDir, 'catalog.sqlite'), 'image:vm1', 'exclusive'], 'locked');
    const busy = await runCli(args('db', 'rebuild', '--force'));
    expect(busy.code, busy.stderr).toBe(11);
    expect(busy.stderr).toContain('in use by test holder');
    await killHard(holder);
    expect((await runCli(args('db', 'rebuild', '--force'))).code).toBe(0);
  });

  it('a second catalog over one block store is refused, so neither can delete what the other uses', async () => {
    const a = path.join(dir, 'a.img');
    makeImage(a, [{ kind: 'random', length: 4 * B }]);
    const ua = await backupOf(a, 'vm1');
    const json = path.join(dir, 'v.json');
    writeFileSync(json, (await runCli(args('db', 'export', ua))).stdout);
    // Catalog B over A's block store (the sequence that once lost blocks: export, import, rm + cleanup in A).
    const other = path.join(dir, 'other.yaml');
    writeFileSync(other, `store: ${path.join(dir, 'other')}\nblockStore:\n  type: file\n  path: ${storeDir}\nbackup:\n  blockSize: 64KiB\n`);
    const init = await runCli(['--config', other, 'init']);
    expect(init.code, init.stderr).toBe(5);
    expect(init.stderr).toMatch(/^backy2: Block store file:.* holds a store already \(.*db rebuild.*\)\n$/);
    const imported = await runCli(['--config', other, 'db', 'import', json]);
    expect(imported.code).toBe(10);
    expect(imported.stderr).toContain('catalog of store');
    // Rebuilding B makes it the owner; A is refused from then on, and nothing is lost.
    expect((await runCli(['--config', other, 'db', 'rebuild'])).code).toBe(0);
    for (const command of [['ls'], ['rm', '--force', ua], ['cleanup']]) {
      const r = await runCli(args(...command));
      expect(r.code, command.join(' ')).toBe(10);
      expect(r.stderr).toContain('is used by another catalog');
    }
    const target = path.join(dir, 'x.img');
    expect((await runCli(['--config', other, 'restore', ua, target])).code).toBe(0);
    expect(readFileSync(target).equals(readFileSync(a))).toBe(true);
    // Export and import still move a version's metadata within the catalog that owns the blocks.
    expect((await runCli(['--config', other, 'rm', '--force', ua])).code).toBe(0);
    const back = await runCli(['--config', other, 'db', 'import', json]);
    expect(back.code, back.stderr).toBe(0);
    rmSync(target);
    expect((await runCli(['--config', other, 'restore', ua, target])).code).toBe(0);
    expect(readFileSync(target).equals(readFileSync(a))).toBe(true);
    expect((await runCli(['--config', other, 'db', 'import', json])).code).toBe(5);
  });

  it('cleanup refuses to run on a catalog that lacks versions of the block store', async () => {
    const a = path.join(dir, 'a.img');
    makeImage(a, [{ kind: 'random', length: 4 * B }]);
    await backupOf(a, 'vm1');
    // An older copy of the catalog put back: it does not know the newer version.
    const catalog = path.join(storeDir, 'catalog.sqlite');
    copyFileSync(catalog, path.join(dir, 'old-catalog'));
    await backupOf(a, 'vm9');
    catalogGone();
    copyFileSync(path.join(dir, 'old-catalog'), catalog);
    const r = await runCli(args('cleanup'));
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toContain('db rebuild');
  });
});
