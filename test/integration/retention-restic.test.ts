import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planRetention } from '../../src/engine/operations/retention.js';
import { CASE_TZ, RETENTION_CASES, caseVersions, dateOf, letter, ruleArgs } from '../helpers/retention-cases.js';

// The retention cases that restic can express, run through restic itself: `restic forget` must
// keep exactly what planRetention() keeps. Cases with times that are ambiguous in local time
// (the autumn DST hour, written with offsets) cannot be given to `restic backup --time`.
const hasRestic = spawnSync('sh', ['-c', 'command -v restic']).status === 0;
const resticVersion = hasRestic ? (/restic (\d+)\.(\d+)/.exec(execFileSync('restic', ['version'], { encoding: 'utf8' })) ?? []) : [];
// "The oldest snapshot is kept additionally" is documented (and done) from restic 0.17 on.
const resticKeepsOldest = Number(resticVersion[1]) > 0 || Number(resticVersion[2]) >= 17;
const savedTz = process.env.TZ;

beforeAll(() => {
  process.env.TZ = CASE_TZ;
});
afterAll(() => {
  process.env.TZ = savedTz;
  if (savedTz === undefined) delete process.env.TZ;
});

function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const comparable = RETENTION_CASES.map((c, i) => ({ c, i })).filter(({ c }) => !c.backy2Only && !c.versions.some((v) => (typeof v === 'string' ? v : v[0]).includes('+')));

// One repository for every case (restic's key derivation makes each command slow): a case's
// snapshots have their own host, and forget --host picks them.
let env: NodeJS.ProcessEnv = {};
let dir = '';

beforeAll(() => {
  if (!hasRestic) return;
  dir = mkdtempSync(path.join(tmpdir(), 'backy2-restic-'));
  env = { ...process.env, TZ: CASE_TZ, RESTIC_PASSWORD: 'test', RESTIC_REPOSITORY: path.join(dir, 'repo'), RESTIC_CACHE_DIR: path.join(dir, 'cache') };
  execFileSync('restic', ['init', '-q'], { env, stdio: 'pipe' });
  const data = path.join(dir, 'data');
  mkdirSync(data);
  writeFileSync(path.join(data, 'f'), 'x');
  for (const { c, i } of comparable) {
    for (const v of caseVersions(c.versions)) {
      execFileSync('restic', ['backup', '-q', '--host', `case${i}`, '--time', localTime(v.createdAt), ...v.tags.flatMap((t) => ['--tag', t]), data], { env, stdio: 'pipe' });
    }
  }
}, 300_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('retention compared with restic', () => {
  it.for(comparable.map(({ c, i }) => [c.name, c, i] as const))('%s', ([, c, i], ctx) => {
    if (!hasRestic) ctx.skip('restic is not installed (Debian package "restic")');
    if (c.oldestRule && !resticKeepsOldest) ctx.skip(`restic ${resticVersion[1]}.${resticVersion[2]} predates the documented rule that keeps the oldest snapshot`);
    const versions = caseVersions(c.versions);
    const out = execFileSync('restic', ['forget', '--dry-run', '--json', '--host', `case${i}`, ...ruleArgs(c.rules, 'restic')], { env, encoding: 'utf8' });
    const groups = JSON.parse(out) as { keep: { time: string }[] | null }[];
    const letterAt = new Map(versions.map((v, n) => [v.createdAt, letter(n)]));
    const resticKept = (groups[0]?.keep ?? []).map((s) => letterAt.get(Date.parse(s.time))).sort().join(' ');
    const ours = planRetention(versions, c.rules, { now: dateOf(c.at) })
      .filter((d) => d.action === 'keep')
      .map((d) => d.uid)
      .sort()
      .join(' ');
    expect(ours).toBe(c.kept);
    expect(resticKept).toBe(ours);
  });
});
