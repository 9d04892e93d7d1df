// Retention cases shared by the unit tests of planRetention(), the CLI tests of `forget --at`
// and the comparison with restic itself. Dates are local times in Europe/Berlin, where clocks go
// forward on 2024-03-31 02:00 → 03:00 and back on 2024-10-27 03:00 → 02:00.
import type { RetentionVersion } from '../../src/engine/operations/retention.js';
import { formatSpan, parseDate, parseSpan } from '../../src/engine/support/calendar.js';
import type { RetentionRules } from '../../src/engine/support/retention-rules.js';

/** The time zone every retention case is written in. */
export const CASE_TZ = 'Europe/Berlin';

/** A version: its local date, and what else it has (versions are named a, b, c, … in order). */
export type VersionSpec = string | readonly [string, Partial<Omit<RetentionVersion, 'createdAt' | 'uid'>> & { readonly expires?: string }];

/** A case: versions, rules, when the rules are applied, and the versions kept. */
export interface RetentionCase {
  readonly name: string;
  readonly versions: readonly VersionSpec[];
  readonly rules: RetentionRules;
  /** The time the policy is applied at (`--at`). */
  readonly at: string;
  /** Versions kept, by letter, sorted; `(x)` marks a version skipped because it is in use. */
  readonly kept: string;
  /** Versions held in use while forget runs. */
  readonly locked?: readonly string[];
  /** Relies on the rule restic documents from 0.17: the oldest version is kept while counts are left. */
  readonly oldestRule?: boolean;
  /** Uses what restic has no notion of (protection, locks, cow versions, expiry): not compared with restic. */
  readonly backy2Only?: boolean;
}

const AT = '2030-01-01';

/**
 * The cases. Expectations follow restic's documented rules (checked against restic 0.14 where
 * restic can express the case): the newest version per non-empty local period, ISO weeks,
 * --keep-within back from the newest backup (exclusive, calendar days), any rule keeps.
 */
export const RETENTION_CASES: readonly RetentionCase[] = [
  {
    name: 'daily in local time across the spring DST change (00:10 on April 1 is March 31 in UTC)',
    versions: ['2024-03-30 23:30', '2024-03-31 00:30', '2024-03-31 03:30', '2024-03-31 23:30', '2024-04-01 00:10'],
    rules: { keepDaily: 2 },
    at: AT,
    kept: 'd e',
  },
  {
    name: 'hourly across the autumn DST change: both 02:xx hours of that night are one local hour',
    versions: ['2024-10-27 02:10+02:00', '2024-10-27 02:40+02:00', '2024-10-27 02:10+01:00', '2024-10-27 02:40+01:00', '2024-10-27 03:10+01:00'],
    rules: { keepHourly: 3 },
    at: AT,
    // 03h: e; 02h: d, the newest of that hour; a, the oldest, while a count is left
    kept: 'a d e',
    oldestRule: true,
  },
  {
    name: 'weekly across a year boundary: 2024-12-30 is in ISO week 2025-W01',
    versions: ['2024-12-27', '2024-12-29', '2024-12-30', '2025-01-01', '2025-01-06'],
    rules: { keepWeekly: 3 },
    at: AT,
    kept: 'b d e',
  },
  {
    name: 'weekly: January 3, 2021 still belongs to 2020-W53',
    versions: ['2020-12-28', '2021-01-03', '2021-01-04'],
    rules: { keepWeekly: 2 },
    at: AT,
    kept: 'b c',
  },
  {
    name: 'yearly counts calendar years, not ISO years',
    versions: ['2020-12-28', '2021-01-03', '2021-01-04'],
    rules: { keepYearly: 2 },
    at: AT,
    kept: 'a c',
  },
  {
    name: 'empty periods are not counted: the newest 3 days that have versions, however old',
    versions: ['2024-03-01', '2024-03-02', '2024-03-05', '2024-03-10'],
    rules: { keepDaily: 3 },
    at: AT,
    kept: 'b c d',
  },
  {
    name: 'monthly with the oldest kept while counts are left',
    versions: ['2024-01-05', '2024-01-20', '2024-02-10', '2024-02-25'],
    rules: { keepMonthly: 5 },
    at: AT,
    kept: 'a b d',
    oldestRule: true,
  },
  {
    name: 'monthly, counts used up',
    versions: ['2024-01-05', '2024-01-20', '2024-02-10', '2024-02-25'],
    rules: { keepMonthly: 2 },
    at: AT,
    kept: 'b d',
  },
  {
    name: '--keep-within counts back from the newest version, not from now (backups stopped in January)',
    versions: ['2024-01-06 12:00', '2024-01-07 12:00', '2024-01-08 12:00', '2024-01-09 12:00', '2024-01-10 12:00'],
    rules: { keepWithin: parseSpan('3d') },
    at: '2024-06-01',
    kept: 'c d e',
  },
  {
    name: '--keep-within 1d is one calendar day back, 23 hours across the spring change',
    versions: ['2024-03-30 11:30', '2024-03-30 12:30', '2024-03-31 12:00'],
    rules: { keepWithin: parseSpan('1d') },
    at: AT,
    kept: 'b c',
  },
  {
    name: '--keep-within 24h is exact hours',
    versions: ['2024-03-30 11:30', '2024-03-30 12:30', '2024-03-31 12:00'],
    rules: { keepWithin: parseSpan('24h') },
    at: AT,
    kept: 'a b c',
  },
  {
    name: 'rules combine: a version is kept when any rule keeps it',
    versions: ['2023-06-01', '2024-01-15', '2024-02-01', '2024-02-02', '2024-02-03'],
    rules: { keepLast: 1, keepDaily: 2, keepMonthly: 2, keepYearly: 2 },
    at: AT,
    kept: 'a b d e',
  },
  {
    name: '--keep-tag keeps versions with every tag of one list',
    versions: [['2024-01-01', { tags: ['keep'] }], ['2024-01-02', { tags: ['a'] }], ['2024-01-03', { tags: ['a', 'b'] }], '2024-01-04'],
    rules: { keepLast: 1, keepTags: [['keep'], ['a', 'b']] },
    at: AT,
    kept: 'a c d',
  },
  {
    name: 'as if run at a time in the past: later versions take no part and are kept',
    versions: ['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04'],
    rules: { keepLast: 1 },
    at: '2024-01-02 12:00',
    kept: 'b c d',
    backy2Only: true,
  },
  {
    name: 'protected versions and the newest valid backup (older than a newer invalid one) are never removed',
    versions: ['2024-01-01', ['2024-01-02', { protected: true }], '2024-01-03', '2024-01-04', ['2024-01-05', { status: 'invalid' }]],
    rules: { keepLast: 1 },
    at: AT,
    kept: 'b d e',
    backy2Only: true,
  },
  {
    name: 'versions in use are skipped',
    versions: ['2024-01-01', '2024-01-02', '2024-01-03'],
    rules: { keepLast: 1 },
    at: AT,
    locked: ['a'],
    kept: '(a) c',
    backy2Only: true,
  },
  {
    name: 'copy-on-write versions are not counted and follow their base',
    versions: [
      '2024-01-01',
      ['2024-01-01 12:00', { kind: 'cow', baseUid: 'a' }],
      '2024-01-02',
      ['2024-01-02 12:00', { kind: 'cow', baseUid: 'c' }],
      ['2024-01-02 13:00', { kind: 'cow', baseUid: 'd' }],
      '2024-01-03',
    ],
    rules: { keepLast: 2 },
    at: AT,
    kept: 'c d e f',
    backy2Only: true,
  },
  {
    name: 'a copy-on-write version of a base in use stays with it',
    versions: ['2024-01-01', ['2024-01-01 12:00', { kind: 'cow', baseUid: 'a' }], '2024-01-02'],
    rules: { keepLast: 1 },
    at: AT,
    locked: ['a'],
    kept: '(a) b c',
    backy2Only: true,
  },
  {
    name: 'expiry dates decide alone: kept until then, removed after, not counted',
    versions: [['2024-01-01', { expires: '2025-01-01' }], ['2024-01-02', { expires: '2024-06-01' }], '2024-01-03', ['2024-01-04', { expires: '2024-02-01' }]],
    rules: { keepLast: 3 },
    at: '2024-07-01',
    kept: 'a c d',
    backy2Only: true,
  },
];

/** Version `i` of a case is named by letter: a, b, c, … */
export const letter = (i: number) => String.fromCharCode(97 + i);

/** The local time a spec names, in ms since the epoch. */
export function dateOf(text: string): number {
  const ms = parseDate(text);
  if (ms === undefined) throw new Error(`bad date in a retention case: ${text}`);
  return ms;
}

/** A case's versions as planRetention() takes them, named by letter (also as baseUid). */
export function caseVersions(specs: readonly VersionSpec[]): RetentionVersion[] {
  return specs.map((spec, i) => {
    const [date, extra] = typeof spec === 'string' ? [spec, {}] : spec;
    const { expires, ...rest } = extra;
    return {
      uid: letter(i),
      createdAt: dateOf(date),
      kind: 'backup',
      status: 'valid',
      protected: false,
      tags: [],
      expiresAt: expires === undefined ? null : dateOf(expires),
      baseUid: null,
      ...rest,
    };
  });
}

/** The rules as options of `backy2 forget` (and, with `restic`, of `restic forget`). */
export function ruleArgs(rules: RetentionRules, dialect: 'backy2' | 'restic' = 'backy2'): string[] {
  const args: string[] = [];
  const counts = [
    ['keepLast', '--keep-last'],
    ['keepHourly', '--keep-hourly'],
    ['keepDaily', '--keep-daily'],
    ['keepWeekly', '--keep-weekly'],
    ['keepMonthly', '--keep-monthly'],
    ['keepYearly', '--keep-yearly'],
  ] as const;
  for (const [key, flag] of counts) {
    const n = rules[key];
    if (n) args.push(flag, n === Infinity ? 'unlimited' : String(n));
  }
  if (rules.keepWithin) args.push('--keep-within', dialect === 'restic' ? formatSpan(rules.keepWithin).replace('mo', 'm') : formatSpan(rules.keepWithin));
  for (const tags of rules.keepTags ?? []) args.push('--keep-tag', tags.join(','));
  return args;
}
