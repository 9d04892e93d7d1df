import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';

const B = 64 * 1024;
let dir: string;
let args: (...rest: string[]) => string[];
let image: string;

beforeEach(async () => {
  dir = makeTempDir();
  const config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 64KiB\n');
  const storeDir = path.join(dir, 'store');
  args = (...rest) => ['--store', storeDir, '--config', config, ...rest];
  await initStoreFor({}, args());
  image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 5 * B }, { kind: 'zero', length: 3 * B }, { kind: 'random', length: 100 }]);
});

async function backupOk(): Promise<string> {
  const r = await runCli(args('backup', image, 'vm1'));
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('backy2 backup / restore / ls', () => {
  it('backup prints the uid on stdout and a summary on stderr', async () => {
    const r = await runCli(args('backup', image, 'vm1'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^v[0-9a-z]{11}\n$/);
    expect(r.stderr).toContain('Backed up vm1');
  });

  it('backup --json prints one object with the documented fields', async () => {
    const r = await runCli(args('backup', image, 'vm1', '--json', '-t', 'a,b', '-s', 'snap1'));
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    for (const key of ['uid', 'image', 'size', 'blockSize', 'status', 'bytesRead', 'bytesWritten', 'bytesDeduplicated', 'bytesSparse', 'durationSeconds']) {
      expect(result).toHaveProperty(key);
    }
    expect(result).toMatchObject({ image: 'vm1', size: 8 * B + 100, blockSize: B, status: 'valid', tags: ['a', 'b'], bytesSparse: 3 * B });
  });

  it('restore writes the same bytes and refuses to overwrite without --force', async () => {
    const uid = await backupOk();
    const out = path.join(dir, 'out.img');
    expect((await runCli(args('restore', uid, out))).code).toBe(0);
    expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
    const again = await runCli(args('restore', uid, out));
    expect(again.code).toBe(5);
    expect(again.stderr).toBe(`backy2: Target "${out}" exists (use --force to overwrite it)\n`);
    expect((await runCli(args('restore', uid, out, '--force', '--sparse'))).code).toBe(0);
    expect(readFileSync(out).equals(readFileSync(image))).toBe(true);
  });

  it('ls shows versions with kind, stored size and base, as a table and as JSON; --last N per image', async () => {
    const uid = await backupOk();
    const second = await backupOk();
    const table = await runCli(args('ls'));
    expect(table.stdout).toMatch(/^DATE +UID +IMAGE +KIND +SIZE +STORED +NEW +STATUS +PROTECTED +BASE +TAGS +SNAPSHOT\n/);
    const row = table.stdout.split('\n').find((l) => l.includes(second)) ?? '';
    expect(row).toMatch(new RegExp(`${second} +vm1 +backup +512\\.1 KiB +320\\.1 KiB +0 B +valid +${uid}`));
    const json = JSON.parse((await runCli(args('ls', 'vm1', '--json'))).stdout) as { uid: string; status: string; kind: string; allocated: number; baseUid: string | null }[];
    expect(json.map((v) => [v.uid, v.status, v.kind, v.allocated, v.baseUid])).toEqual([
      [uid, 'valid', 'backup', 5 * B + 100, null],
      [second, 'valid', 'backup', 5 * B + 100, uid],
    ]);
    const last = JSON.parse((await runCli(args('ls', '--last', '1', '--json'))).stdout) as { uid: string }[];
    expect(last.map((v) => v.uid)).toEqual([second]);
    expect((await runCli(args('ls', '--last', '0'))).code).toBe(2);
  });

  it('takes a version as uid, unique uid prefix, IMAGE or IMAGE@latest, and suggests near misses', async () => {
    const uid = await backupOk();
    for (const selector of [uid, uid.slice(0, 8), 'vm1', 'vm1@latest']) {
      const out = path.join(dir, `out-${selector}`);
      const r = await runCli(args('restore', selector, out));
      expect(r.code, `${selector}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toContain(`Restored ${uid}`);
    }
    const typo = await runCli(args('restore', 'vm2', path.join(dir, 'x')));
    expect(typo.code).toBe(4);
    expect(typo.stderr).toBe('backy2: Version "vm2" not found (did you mean "vm1"?)\n');
    expect((await runCli(args('restore', 'vm1@latets', path.join(dir, 'x')))).stderr).toBe('backy2: Version "vm1@latets" not found (did you mean "vm1@latest"?)\n');
    const uidTypo = `${uid.slice(0, 10)}${uid[10] === 'a' ? 'b' : 'a'}${uid[11]}`;
    expect((await runCli(args('protect', uidTypo))).stderr).toContain(`did you mean "${uid}"?`);
    const prefix = uid.slice(0, 4); // the creation time: shared by versions of the same hour
    expect((await runCli(args('stats', prefix, '--json'))).code).toBe(0);
    await backupOk();
    const ambiguous = await runCli(args('stats', prefix));
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(new RegExp(`^backy2: Version "${prefix}" is ambiguous: it starts 2 uids`));
    const rmImage = await runCli(args('rm', '--force', 'vm1'));
    expect(rmImage.code).toBe(2);
    expect(rmImage.stderr).toContain('"vm1" is an image, not a version (name its versions (backy2 ls vm1), or vm1@latest for its newest backup)');
    const weird = await runCli(args('restore', `a\nb${'x'.repeat(5000)}`, path.join(dir, 'y')));
    expect(weird.code).toBe(4);
    expect(weird.stderr.split('\n')).toHaveLength(2);
    expect(weird.stderr.length).toBeLessThan(300);
  });

  it('protect, tag, stats and rm work together', async () => {
    const uid = await backupOk();
    expect((await runCli(args('protect', uid))).code).toBe(0);
    expect((await runCli(args('rm', '--force', uid))).code).toBe(5);
    expect((await runCli(args('unprotect', uid))).code).toBe(0);
    expect((await runCli(args('tag', uid, 'add', 'keep'))).stdout).toContain('keep');
    const stats = JSON.parse((await runCli(args('stats', uid, '--json'))).stdout) as { bytesReferenced: number };
    expect(stats.bytesReferenced).toBe(5 * B + 100);
    expect((await runCli(args('stats'))).stdout).toContain('versions:        1');
    expect((await runCli(args('rm', uid))).code).toBe(5);
    expect((await runCli(args('rm', '--force', uid))).code).toBe(0);
    expect(JSON.parse((await runCli(args('ls', '--json'))).stdout)).toEqual([]);
  });

  it('backup -e, expire and ls --expired set, clear and find expiry dates', async () => {
    const r = await runCli(args('backup', image, 'vm1', '-e', '2000-01-01', '--json'));
    expect(r.code, r.stderr).toBe(0);
    const { uid, expiresAt } = JSON.parse(r.stdout) as { uid: string; expiresAt: number };
    expect(expiresAt).toBe(new Date(2000, 0, 1).getTime());
    const other = await backupOk();
    expect((await runCli(args('ls', '--expired', '--json'))).stdout).toContain(uid);
    expect((await runCli(args('ls', '--expired', '--json'))).stdout).not.toContain(other);
    expect((await runCli(args('ls'))).stdout).toMatch(/ SNAPSHOT +EXPIRES\n/);
    const set = await runCli(args('expire', other, '30d', '--json'));
    expect(set.code, set.stderr).toBe(0);
    const after = JSON.parse(set.stdout) as { expiresAt: number; expires: string };
    expect(after.expiresAt - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(after.expires).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
    const never = await runCli(args('expire', uid, 'never'));
    expect(never.stderr).toBe(`Version ${uid} (vm1) never expires\n`);
    expect(JSON.parse((await runCli(args('ls', '--expired', '--json'))).stdout)).toEqual([]);
    const bad = await runCli(args('expire', uid, 'soon'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('Invalid expiry date "soon"');
    expect((await runCli(args('backup', image, 'vm1', '-e', '2024-02-30'))).code).toBe(2);
  });

  it('every command has --help with examples and points to the exit status table in backy2 --help', async () => {
    for (const command of ['backup', 'restore', 'ls', 'rm', 'protect', 'unprotect', 'tag', 'stats', 'expire']) {
      const r = await runCli([command, '--help']);
      expect(r.code, command).toBe(0);
      expect(r.stdout, command).toContain('Examples:');
      expect(r.stdout, command).toContain('Exit status:');
    }
    expect((await runCli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('bad input: one line on stderr, documented exit status, store unchanged', () => {
  const cases: [string, (ctx: { uid: string; dir: string; image: string }) => string[], number][] = [
    ['a missing source', ({ dir }) => ['backup', path.join(dir, 'nope.img'), 'vm1'], 4],
    ['an unknown uid', () => ['restore', 'vzzzzzzzzzzz', '/tmp/x'], 4],
    ['an unknown image', () => ['ls', 'nosuchimage'], 4],
    ['an unknown base', ({ image }) => ['backup', image, 'vm1', '-f', 'vzzzzzzzzzzz'], 4],
    ['malformed hints', ({ dir, image, uid }) => {
      writeFileSync(path.join(dir, 'bad.json'), '{"offset": 1');
      return ['backup', image, 'vm1', '-r', path.join(dir, 'bad.json'), '-f', uid];
    }, 2],
    ['hints of the wrong shape', ({ dir, image, uid }) => {
      writeFileSync(path.join(dir, 'bad.json'), '[{"offset": 0, "length": 10}]');
      return ['backup', image, 'vm1', '-r', path.join(dir, 'bad.json'), '-f', uid];
    }, 2],
    ['hints past the end of the source', ({ dir, image, uid }) => {
      writeFileSync(path.join(dir, 'big.json'), JSON.stringify([{ offset: 0, length: 100 * B, exists: 'true' }]));
      return ['backup', image, 'vm1', '-r', path.join(dir, 'big.json'), '-f', uid];
    }, 2],
    ['hints without a proven base', ({ dir, image }) => {
      writeFileSync(path.join(dir, 'h.json'), '[]');
      return ['backup', image, 'vm1', '-r', path.join(dir, 'h.json')];
    }, 2],
    ['hints from a snapshot no backup recorded', ({ dir, image }) => {
      writeFileSync(path.join(dir, 'h.json'), '[]');
      return ['backup', image, 'vm1', '-r', path.join(dir, 'h.json'), '--hints-from', 's0'];
    }, 5],
    ['an existing target', ({ uid, image }) => ['restore', uid, image], 5],
    ['a too-small target (said before --force is asked for)', ({ uid, dir }) => {
      writeFileSync(path.join(dir, 'small.img'), Buffer.alloc(B));
      return ['restore', uid, path.join(dir, 'small.img')];
    }, 5],
    ['a too-small target with --force', ({ uid, dir }) => {
      writeFileSync(path.join(dir, 'small.img'), Buffer.alloc(B));
      return ['restore', uid, path.join(dir, 'small.img'), '--force'];
    }, 5],
    ['a target inside the store', ({ uid, dir }) => ['restore', uid, path.join(dir, 'store', 'catalog.sqlite'), '--force'], 2],
    ['a new target inside the store', ({ uid, dir }) => ['restore', uid, path.join(dir, 'store', 'blocks', 'x.img')], 2],
    ['a device that is not there', ({ uid }) => ['restore', uid, '/dev/backy2-no-such-device'], 4],
    ['a path as uid without the catalog', () => ['restore', '../../etc/passwd', '/tmp/x', '--no-catalog'], 2],
    ['an empty source', ({ dir }) => {
      writeFileSync(path.join(dir, 'empty.img'), '');
      return ['backup', path.join(dir, 'empty.img'), 'vm1'];
    }, 2],
    ['a FIFO as source (it would block)', ({ dir }) => {
      execFileSync('mkfifo', [path.join(dir, 'fifo')]);
      return ['backup', path.join(dir, 'fifo'), 'vm1'];
    }, 2],
    ['an empty tag list', ({ image }) => ['backup', image, 'vm1', '-t', ''], 2],
    ['a newline and 5,000 characters in an image name', ({ image }) => ['backup', image, `vm1\n${'x'.repeat(5000)}`], 2],
    ['a mount point that is not empty', ({ dir }) => ['mount', dir], 2],
    ['a mount point that does not exist', ({ dir }) => ['mount', path.join(dir, 'no-such-dir')], 2],
    ['an unknown option', () => ['ls', '--bogus'], 2],
    ['a missing argument', () => ['restore'], 2],
    ['an unknown command', () => ['frobnicate'], 2],
    ['a bad tag action', ({ uid }) => ['tag', uid, 'replace', 'x'], 2],
    ['a bad image name', ({ image }) => ['backup', image, '../etc'], 2],
  ];

  it.each(cases)('%s', async (_name, build, exitCode) => {
    const uid = await backupOk();
    const before = (await runCli(args('ls', '--json'))).stdout;
    const r = await runCli(args(...build({ uid, dir, image })));
    expect(r.code, r.stderr).toBe(exitCode);
    expect(r.stderr.split('\n').filter(Boolean), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^backy2: [A-Z]/);
    expect(r.stderr.length, r.stderr).toBeLessThan(400);
    expect((await runCli(args('ls', '--json'))).stdout).toBe(before);
  });

  it('a mount point that does not exist or is a file says how to make one', async () => {
    await backupOk();
    const missing = path.join(dir, 'backy');
    expect((await runCli(args('mount', missing))).stderr).toBe(`backy2: Cannot mount at "${missing}": no such directory (create it first: mkdir ${missing})\n`);
    writeFileSync(path.join(dir, 'file'), '');
    expect((await runCli(args('mount', path.join(dir, 'file')))).stderr).toMatch(/not a directory \(mount on an empty directory/);
  });

  it('a corrupt config file names the key', async () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'backup:\n  blockSise: 4M\n');
    const r = await runCli(['--store', path.join(dir, 'store'), '--config', bad, 'ls']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`backy2: Bad config "${bad}": unknown key "backup.blockSise"\n`);
  });

  it('a missing store is reported, not created, by reading commands', async () => {
    const r = await runCli(['--store', path.join(dir, 'nostore'), 'ls']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('No store at');
  });

  it('--json errors are one JSON object on stdout', async () => {
    await backupOk();
    const r = await runCli(args('restore', 'vzzzzzzzzzzz', '/tmp/x', '--json'));
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'error', code: 'E_NOT_FOUND', exitCode: 4 });
  });
});
