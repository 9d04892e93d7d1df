import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planRetention, type RetentionVersion } from '../../../../src/engine/operations/retention.js';
import { parseDate, parseSpan } from '../../../../src/engine/support/calendar.js';
import type { RetentionRules } from '../../../../src/engine/support/retention-rules.js';
import { CASE_TZ, RETENTION_CASES } from '../../../helpers/retention-cases.js';

// Europe/Berlin: clocks go forward 2024-03-31 02:00 → 03:00 and back 2024-10-27 03:00 → 02:00.
const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = CASE_TZ;
});
afterAll(() => {
  process.env.TZ = savedTz;
  if (savedTz === undefined) delete process.env.TZ;
});

const t = (text: string) => {
  const ms = parseDate(text);
  if (ms === undefined) throw new Error(`bad date ${text}`);
  return ms;
};

type Spec = string | [string, Partial<Omit<RetentionVersion, 'createdAt'>> & { readonly expires?: string }];

/** Versions named a, b, c, … in the order given (their dates need not be in order). */
function versions(specs: readonly Spec[]): RetentionVersion[] {
  return specs.map((spec, i) => {
    const [date, extra] = typeof spec === 'string' ? [spec, {}] : spec;
    const { expires, ...rest } = extra;
    return {
      uid: String.fromCharCode(97 + i),
      createdAt: t(date),
      kind: 'backup',
      status: 'valid',
      protected: false,
      tags: [],
      expiresAt: expires === undefined ? null : t(expires),
      baseUid: null,
      ...rest,
    };
  });
}

function kept(specs: readonly Spec[], rules: RetentionRules, now = '2030-01-01', locked: Record<string, string> = {}): string {
  const list = versions(specs);
  const plan = planRetention(list, rules, { now: t(now), locked: new Map(Object.entries(locked)) });
  return plan
    .map((d) => (d.action === 'keep' ? d.uid : d.action === 'skip' ? `(${d.uid})` : ''))
    .filter(Boolean)
    .sort()
    .join(' ');
}

function reasonsOf(specs: readonly Spec[], rules: RetentionRules, now = '2030-01-01'): Record<string, string> {
  const plan = planRetention(versions(specs), rules, { now: t(now) });
  return Object.fromEntries(plan.map((d) => [d.uid, `${d.action}: ${d.reasons.join('; ')}`]));
}

describe('planRetention() against restic\'s rules and backy2\'s guards (shared cases)', () => {
  it.each(RETENTION_CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(kept(c.versions as Spec[], c.rules, c.at, Object.fromEntries((c.locked ?? []).map((l) => [l, 'test'])))).toBe(c.kept);
  });
});

describe('planRetention() guards', () => {
  it('never removes protected versions nor the newest valid backup (here older than a newer invalid one)', () => {
    const specs: Spec[] = ['2024-01-01', ['2024-01-02', { protected: true }], '2024-01-03', '2024-01-04', ['2024-01-05', { status: 'invalid' }]];
    expect(kept(specs, { keepLast: 1 })).toBe('b d e');
    const reasons = reasonsOf(specs, { keepLast: 1 });
    expect(reasons).toMatchObject({ a: 'remove: no rule keeps it', b: 'keep: protected', d: 'keep: newest valid backup', e: 'keep: last' });
  });

  it('skips locked versions it would remove, and says who uses them', () => {
    expect(kept(['2024-01-01', '2024-01-02', '2024-01-03'], { keepLast: 1 }, '2030-01-01', { a: 'restore by process 42' })).toBe('(a) c');
    const plan = planRetention(versions(['2024-01-01', '2024-01-02']), { keepLast: 1 }, { now: t('2030-01-01'), locked: new Map([['a', 'mount by process 7'], ['b', 'scrub']]) });
    expect(plan[0]).toMatchObject({ action: 'skip', rules: ['locked', 'none'], reasons: ['in use (mount by process 7): not removed this time', 'no rule keeps it'] });
    expect(plan[1]).toMatchObject({ action: 'keep' });
  });

  it('does not count copy-on-write versions in periods; they follow their base', () => {
    const specs: Spec[] = [
      '2024-01-01', // a
      ['2024-01-01 12:00', { kind: 'cow', baseUid: 'a' }], // b: base removed
      '2024-01-02', // c
      ['2024-01-02 12:00', { kind: 'cow', baseUid: 'c' }], // d: base kept
      ['2024-01-02 13:00', { kind: 'cow', baseUid: 'd' }], // e: cow of a cow that is kept
      '2024-01-03', // f
      ['2024-01-03 12:00', { kind: 'cow', baseUid: 'zzz' }], // g: base gone before
    ];
    expect(kept(specs, { keepLast: 2 })).toBe('c d e f');
    expect(reasonsOf(specs, { keepLast: 2 })).toMatchObject({
      b: 'remove: its base a is removed',
      d: 'keep: its base c is kept',
      e: 'keep: its base d is kept',
      g: 'remove: its base zzz is gone',
    });
  });

  it('keeps copy-on-write versions by --keep-within, --keep-tag and protection, and those of a protected or locked base', () => {
    const specs: Spec[] = [
      ['2024-01-01', { protected: true }], // a
      ['2024-01-01 12:00', { kind: 'cow', baseUid: 'a' }], // b: base protected
      '2024-01-02', // c: locked
      ['2024-01-02 12:00', { kind: 'cow', baseUid: 'c' }], // d: base skipped, so kept
      '2024-01-03', // e
      ['2024-01-03 12:00', { kind: 'cow', baseUid: 'e', tags: ['keep'] }], // f: tag
      ['2024-01-04 12:00', { kind: 'cow', baseUid: 'e' }], // g: within
      ['2024-01-04 13:00', { kind: 'cow', baseUid: 'e', protected: true }], // h
      '2024-01-05', // i
    ];
    const plan = planRetention(versions(specs), { keepLast: 1, keepWithin: parseSpan('1d'), keepTags: [['keep']] }, { now: t('2030-01-01'), locked: new Map([['c', 'restore']]) });
    expect(Object.fromEntries(plan.map((d) => [d.uid, d.action]))).toEqual({
      a: 'keep', b: 'keep', c: 'skip', d: 'keep', e: 'remove', f: 'keep', g: 'keep', h: 'keep', i: 'keep',
    });
  });

  it('lets a version with an expiry date live by it: kept until then, removed after, not counted', () => {
    const specs: Spec[] = [
      ['2024-01-01', { expires: '2025-01-01' }], // a: expires in the future → kept
      ['2024-01-02', { expires: '2024-06-01' }], // b: expired → removed though keepLast 3 would keep it
      '2024-01-03', // c
      ['2024-01-04', { expires: '2024-02-01' }], // d: the newest valid backup → kept although expired
    ];
    expect(kept(specs, { keepLast: 3 }, '2024-07-01')).toBe('a c d');
    expect(reasonsOf(specs, { keepLast: 3 }, '2024-07-01')).toMatchObject({
      a: 'keep: expires 2025-01-01T00:00:00+01:00',
      b: 'remove: expired 2024-06-01T00:00:00+02:00',
      c: 'keep: last',
      d: 'keep: newest valid backup',
    });
    // The day before b expires it is still kept.
    expect(kept(specs, { keepLast: 3 }, '2024-05-31')).toBe('a b c d');
  });

  it('removes incomplete versions of killed backups, and skips those of a running one', () => {
    const specs: Spec[] = [['2024-01-01', { status: 'incomplete' }], ['2024-01-02', { status: 'incomplete' }], '2024-01-03'];
    expect(kept(specs, { keepLast: 5 }, '2030-01-01', { b: 'backup by process 9' })).toBe('(b) c');
  });

  it('with a time in the past (--at), takes no account of later versions and keeps them', () => {
    const specs: Spec[] = ['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04'];
    expect(kept(specs, { keepLast: 1 }, '2024-01-02 12:00')).toBe('b c d');
    expect(reasonsOf(specs, { keepLast: 1 }, '2024-01-02 12:00').c).toBe('keep: created after the time the policy is applied at');
  });

  it('counts --keep-within from the newest backup even when that one has an expiry date', () => {
    expect(kept(['2024-01-01', '2024-01-09', ['2024-01-10', { expires: '2031-01-01' }]], { keepWithin: parseSpan('2d') })).toBe('b c');
  });

  it('counts invalid backups in the periods like valid ones', () => {
    expect(kept(['2024-01-01', ['2024-01-02', { status: 'invalid' }], ['2024-01-02 12:00', { status: 'invalid' }]], { keepDaily: 1 })).toBe('a c');
  });

  it('gives every reason that keeps a version, and keeps every period with unlimited counts', () => {
    const reasons = reasonsOf(['2024-01-01', '2024-01-02', '2024-02-01'], { keepLast: 1, keepDaily: Infinity, keepWeekly: 1 });
    expect(reasons).toEqual({ a: 'keep: daily 2024-01-01', b: 'keep: daily 2024-01-02', c: 'keep: last; daily 2024-02-01; weekly 2024-W05; newest valid backup' });
    expect(reasonsOf(['2024-01-01', '2024-01-01 10:00'], { keepDaily: 3 }).a).toBe('keep: oldest daily 2024-01-01');
  });
});
