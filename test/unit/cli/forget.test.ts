import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLocks, versionResource } from '../../../src/engine/catalog/locking.js';
import { SqliteCatalog } from '../../../src/engine/catalog/sqlite-catalog.js';
import { newVersionUid } from '../../../src/engine/support/uid.js';
import { importCopies, type CopySpec, type ExportedVersion } from '../../helpers/versions.js';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { CASE_TZ, RETENTION_CASES, dateOf, letter, ruleArgs, type VersionSpec } from '../../helpers/retention-cases.js';

const B = 64 * 1024;
const savedTz = process.env.TZ;
let dir: string;
let storeDir: string;
let configFile: string;
let args: (...rest: string[]) => string[];
/** Per case image, the uid of each version by letter. */
const uids = new Map<string, Map<string, string>>();

async function ok(...rest: string[]): Promise<string> {
  const r = await runCli(args(...rest));
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/** Imports a case's versions under `image`; returns their uids by letter. */
async function importCase(seed: ExportedVersion, image: string, specs: readonly VersionSpec[]): Promise<Map<string, string>> {
  const parts = specs.map((spec) => (typeof spec === 'string' ? ([spec, {}] as const) : spec));
  // Uids are made up front so that copy-on-write versions can name their base.
  const byLetter = new Map(parts.map(([date], i) => [letter(i), newVersionUid(dateOf(date))]));
  const copies: CopySpec[] = parts.map(([date, extra], i) => ({
    uid: byLetter.get(letter(i))!,
    createdAt: dateOf(date),
    tags: extra.tags ?? [],
    protected: extra.protected ?? false,
    kind: extra.kind ?? 'backup',
    baseUid: extra.baseUid ? (byLetter.get(extra.baseUid) ?? extra.baseUid) : null,
    status: extra.status === 'invalid' ? 'invalid' : 'valid',
    expiresAt: extra.expires === undefined ? null : dateOf(extra.expires),
  }));
  await importCopies((argv) => runCli(args(...argv)), dir, seed, image, copies);
  return byLetter;
}

beforeAll(async () => {
  process.env.TZ = CASE_TZ;
  // One store for the whole file (makeTempDir would remove it after the first test).
  dir = mkdtempSync(path.join(tmpdir(), 'backy2-forget-'));
  configFile = path.join(dir, 'backy2.yaml');
  writeFileSync(configFile, 'backup:\n  blockSize: 64KiB\n');
  storeDir = path.join(dir, 'store');
  args = (...rest) => ['--store', storeDir, '--config', configFile, ...rest];
  await initStoreFor({}, args());
  const image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 2 * B }]);
  const uid = (await ok('backup', image, 'seed')).trim();
  const [seed] = JSON.parse(await ok('db', 'export', uid)) as [ExportedVersion];
  for (const [i, c] of RETENTION_CASES.entries()) uids.set(`case${i}`, await importCase(seed, `case${i}`, c.versions));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  process.env.TZ = savedTz;
  if (savedTz === undefined) delete process.env.TZ;
});

interface ForgetJson {
  dryRun: boolean;
  at: string;
  removed: number;
  kept: number;
  skipped: number;
  images: { image: string; policy: string | null; from: string | null }[];
  versions: { uid: string; image: string; action: string; rules: string[]; reasons: string[]; date: string }[];
  cleanup: { blocksDeleted: number } | null;
}

describe('backy2 forget --at: the retention cases, as a user runs them', () => {
  it.each(RETENTION_CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const image = `case${i}`;
    const byLetter = uids.get(image)!;
    const catalog = SqliteCatalog.open(path.join(storeDir, 'catalog.sqlite'));
    const held = await acquireLocks(catalog, (c.locked ?? []).map((l) => ({ resource: versionResource(byLetter.get(l)!), mode: 'shared' as const, operation: 'restore' })));
    try {
      const r = await runCli(args('forget', image, '--at', c.at, '--json', ...ruleArgs(c.rules)));
      expect(r.code, r.stderr).toBe(0);
      const result = JSON.parse(r.stdout) as ForgetJson;
      expect(result.dryRun).toBe(true);
      const letterOf = new Map([...byLetter].map(([l, uid]) => [uid, l]));
      const kept = result.versions
        .map((v) => (v.action === 'keep' ? letterOf.get(v.uid) : v.action === 'skip' ? `(${letterOf.get(v.uid)})` : ''))
        .filter(Boolean)
        .sort()
        .join(' ');
      expect(kept).toBe(c.kept);
      expect(result.versions.every((v) => v.reasons.length > 0)).toBe(true);
    } finally {
      await held.release();
      await catalog.close();
    }
    // A simulation changes nothing.
    expect(JSON.parse(await ok('ls', image, '--json'))).toHaveLength(c.versions.length);
  });

  it('the dry-run table lists every version with its action and reasons', async () => {
    const out = await ok('forget', 'case2', '--keep-weekly', '3', '--dry-run');
    expect(out).toMatch(/^case2: keep 3 weekly \(command line\)\nDATE +UID +KIND +STATUS +ACTION +REASONS\n/);
    expect(out).toMatch(/2024-12-29 00:00:00 +v\w+ +backup +valid +keep +weekly 2024-W52\n/);
    expect(out).toMatch(/2024-12-30 00:00:00 +v\w+ +backup +valid +remove +no rule keeps it\n/);
    expect(out).toMatch(/2025-01-06 00:00:00 +v\w+ +backup +valid +keep +weekly 2025-W02; newest valid backup\n/);
  });
});

describe('backy2 forget', () => {
  it('removes versions, says which and why, and prunes', async () => {
    const r = await runCli(args('forget', 'case7', '--keep-monthly', '2', '--prune'));
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('Removed v'))).toHaveLength(2);
    expect(lines[0]).toMatch(/^Removed v\w+ \(case7, 2024-01-05 00:00:00\): no rule keeps it$/);
    expect(lines).toContain('Removed 2 version(s) of 1 image(s), kept 2');
    expect(lines.at(-1)).toMatch(/^Deleted 0 blocks/); // the blocks are shared with the other cases
    expect(JSON.parse(await ok('ls', 'case7', '--json'))).toHaveLength(2);
  });

  it('applies the config\'s policies when no rule is given, and leaves other images alone', async () => {
    const config = path.join(dir, 'policies.yaml');
    writeFileSync(config, 'backup:\n  blockSize: 64KiB\nretention:\n  policies:\n    - images: "case1[01]"\n      keepLast: 1\n');
    const r = await runCli(['--store', storeDir, '--config', config, 'forget', 'case1*', '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as ForgetJson;
    expect(result.images).toContainEqual({ image: 'case10', policy: 'keep 1 last', from: 'config: case1[01]' });
    expect(result.images).toContainEqual({ image: 'case12', policy: null, from: null });
    expect(new Set(result.versions.map((v) => v.image))).toEqual(new Set(['case10', 'case11']));
    const text = await runCli(['--store', storeDir, '--config', config, 'forget', 'case12', '--dry-run']);
    expect(text.stdout).toBe('case12: no retention policy matches; its versions are kept\n\n');
    expect(text.stderr).toContain('1 image(s) without a policy left alone');
  });

  it.each([
    ['no policy at all', ['forget', 'case0'], 2, 'No retention policy'],
    ['a count that is not one', ['forget', '--keep-daily', 'many'], 2, 'must be a whole number, or "unlimited"'],
    ['minutes in --keep-within', ['forget', '--keep-within', '30m'], 2, 'months are mo'],
    ['a bad tag', ['forget', '--keep-tag', 'a b'], 2, 'Invalid tag'],
    ['an unknown image', ['forget', 'case0x', '--keep-last', '1'], 4, 'Image "case0x" not found (did you mean "case0"'],
    ['a bad --at', ['forget', '--keep-last', '1', '--at', 'yesterday'], 2, 'Invalid --at "yesterday"'],
  ])('refuses %s in one line', async (_what, argv, code, fragment) => {
    const r = await runCli(args(...argv));
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(fragment);
  });

  it('has --help with examples', async () => {
    const r = await runCli(['forget', '--help']);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('--keep-within <span>');
  });
});
