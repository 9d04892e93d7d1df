/**
 * Which versions of one image a retention policy keeps: a pure function of the versions, the
 * rules and the time, with a reason for every decision. No I/O; forget.ts applies the result.
 *
 * The rules are restic's (`forget --keep-*`), in local time with ISO weeks like Proxmox Backup:
 *
 * - Backups are sorted newest first. `--keep-last N` keeps the newest N; `--keep-hourly`,
 *   `-daily`, `-weekly`, `-monthly` and `-yearly N` keep the newest backup of each of the newest
 *   N periods that have backups (empty periods are not counted). While a rule has counts left,
 *   it also keeps the oldest backup (restic: "the oldest snapshot is kept additionally"), so a
 *   young history is kept whole rather than thinned.
 * - `--keep-within SPAN` keeps every version newer than the newest backup minus SPAN: counted
 *   from the newest backup, not from now, so a machine whose backups stopped keeps its history.
 * - `--keep-tag` keeps every version that has all tags of one of its lists.
 * - A version is kept when any rule keeps it.
 *
 * backy2 adds, in this order of precedence:
 *
 * 1. Versions created after `now` (with `--at` in the past) are kept and take no part.
 * 2. Incomplete versions (left by a killed backup) are removed.
 * 3. A version with an expiry date lives by it: kept until then, removed after; no rule counts it.
 * 4. Copy-on-write versions are not counted in the periods (they are experiments on top of a
 *    backup, not backups): they are kept by `--keep-within` and `--keep-tag` as anything else,
 *    and otherwise as long as their base version is kept.
 * 5. Protected versions are never removed, and neither is the image's newest valid backup.
 * 6. A version that would be removed but is in use (locked) is skipped this time.
 */
import type { VersionKind, VersionStatus } from '../catalog/catalog.js';
import { formatLocalIso, formatSpan, periodKey, subtractSpan, type PeriodUnit } from '../support/calendar.js';
import type { RetentionRules } from '../support/retention-rules.js';

/** What retention needs of a version (a VersionRecord has it all). */
export interface RetentionVersion {
  readonly uid: string;
  /** ms since the epoch. */
  readonly createdAt: number;
  readonly kind: VersionKind;
  readonly status: VersionStatus;
  readonly protected: boolean;
  readonly tags: readonly string[];
  /** ms since the epoch, or null for none. */
  readonly expiresAt: number | null;
  readonly baseUid: string | null;
}

/** What happens to a version: kept, removed, or skipped (it would be removed but is in use). */
export type RetentionAction = 'keep' | 'remove' | 'skip';

/** The stable names of what decided (for scripts; `reasons` says the same in words). */
export type RetentionRule =
  | 'future'
  | 'incomplete'
  | 'expires'
  | 'expired'
  | 'last'
  | 'hourly'
  | 'daily'
  | 'weekly'
  | 'monthly'
  | 'yearly'
  | 'within'
  | 'tag'
  | 'base'
  | 'base-removed'
  | 'protected'
  | 'newest-valid'
  | 'locked'
  | 'none';

/** The decision for one version. */
export interface RetentionDecision {
  readonly uid: string;
  readonly action: RetentionAction;
  /** What decided, most important first. */
  readonly rules: readonly RetentionRule[];
  /** The same in words, e.g. `daily 2024-03-31`, `oldest weekly 2024-W13`, `expired 2024-04-01T00:00:00+02:00`. */
  readonly reasons: readonly string[];
}

/** Options of {@link planRetention}. */
export interface PlanOptions {
  /** The time the policy is applied at (ms since the epoch). */
  readonly now: number;
  /** Versions in use, with who uses them (`restore by process 4711`); they are skipped, not removed. */
  readonly locked?: ReadonlyMap<string, string> | undefined;
}

interface Draft {
  action: RetentionAction;
  rules: RetentionRule[];
  reasons: string[];
}

const PERIODS: readonly { readonly key: keyof RetentionRules; readonly rule: RetentionRule; readonly unit: PeriodUnit | null }[] = [
  { key: 'keepLast', rule: 'last', unit: null },
  { key: 'keepHourly', rule: 'hourly', unit: 'hour' },
  { key: 'keepDaily', rule: 'daily', unit: 'day' },
  { key: 'keepWeekly', rule: 'weekly', unit: 'week' },
  { key: 'keepMonthly', rule: 'monthly', unit: 'month' },
  { key: 'keepYearly', rule: 'yearly', unit: 'year' },
];

const newestFirst = (a: RetentionVersion, b: RetentionVersion) => b.createdAt - a.createdAt || (a.uid < b.uid ? 1 : a.uid > b.uid ? -1 : 0);

/**
 * Decides which versions of one image to keep.
 * @param versions every version of the image, in any order
 * @param rules the image's rules
 * @returns one decision per version, in the order of `versions`
 * @example
 * const plan = planRetention(await catalog.listVersions({ image: 'vm1' }), { keepDaily: 7 }, { now: Date.now() });
 */
export function planRetention(versions: readonly RetentionVersion[], rules: RetentionRules, options: PlanOptions): RetentionDecision[] {
  const { now } = options;
  const drafts = new Map<string, Draft>();
  const keep = (d: Draft, rule: RetentionRule, reason: string) => {
    d.action = 'keep';
    d.rules.push(rule);
    d.reasons.push(reason);
  };
  const counted: RetentionVersion[] = [];
  const cows: RetentionVersion[] = [];
  for (const v of versions) {
    const d: Draft = { action: 'remove', rules: [], reasons: [] };
    drafts.set(v.uid, d);
    if (v.createdAt > now) keep(d, 'future', 'created after the time the policy is applied at');
    else if (v.status === 'incomplete') {
      d.rules.push('incomplete');
      d.reasons.push('incomplete: left by an interrupted backup or removal');
    } else if (v.expiresAt !== null) {
      if (v.expiresAt > now) keep(d, 'expires', `expires ${formatLocalIso(v.expiresAt)}`);
      else {
        d.rules.push('expired');
        d.reasons.push(`expired ${formatLocalIso(v.expiresAt)}`);
      }
    } else if (v.kind === 'cow') cows.push(v);
    else counted.push(v);
  }

  // The periods (restic's buckets), newest first.
  counted.sort(newestFirst);
  for (const period of PERIODS) {
    let count = (rules[period.key] as number | undefined) ?? 0;
    if (!(count > 0)) continue;
    let last: string | undefined;
    counted.forEach((v, nr) => {
      if (count <= 0) return;
      const value = period.unit === null ? String(nr) : periodKey(v.createdAt, period.unit);
      const oldest = nr === counted.length - 1;
      if (value === last && !oldest) return;
      const d = drafts.get(v.uid) as Draft;
      const name = period.unit === null ? 'last' : `${period.rule} ${value}`;
      keep(d, period.rule, value === last ? `oldest ${name}` : name);
      last = value;
      count--;
    });
  }

  // --keep-within and --keep-tag, for backups and copy-on-write versions alike.
  // The newest backup (with or without an expiry date), else the newest version at all.
  const complete = versions.filter((v) => v.status !== 'incomplete' && v.createdAt <= now).sort(newestFirst);
  const latest = (complete.find((v) => v.kind === 'backup') ?? complete[0])?.createdAt;
  const within = rules.keepWithin && latest !== undefined ? subtractSpan(latest, rules.keepWithin) : undefined;
  for (const v of [...counted, ...cows]) {
    const d = drafts.get(v.uid) as Draft;
    if (within !== undefined && v.createdAt > within) keep(d, 'within', `within ${formatSpan(rules.keepWithin as NonNullable<RetentionRules['keepWithin']>)} of the newest backup`);
    for (const tags of rules.keepTags ?? []) {
      if (tags.length > 0 && tags.every((t) => v.tags.includes(t))) keep(d, 'tag', `tagged ${tags.join(',')}`);
    }
  }

  // Protection, the newest valid backup and locks override the rules.
  const newestValid = versions.filter((v) => v.kind === 'backup' && v.status === 'valid' && v.createdAt <= now).sort(newestFirst)[0];
  const override = (v: RetentionVersion) => {
    const d = drafts.get(v.uid) as Draft;
    if (v.protected) {
      if (d.action === 'remove') {
        d.rules.splice(0);
        d.reasons.splice(0);
      }
      keep(d, 'protected', 'protected');
    }
    if (v === newestValid) {
      if (d.action === 'remove') {
        d.rules.splice(0);
        d.reasons.splice(0);
      }
      keep(d, 'newest-valid', 'newest valid backup');
    }
    if (d.action === 'remove') {
      if (d.rules.length === 0) {
        d.rules.push('none');
        d.reasons.push('no rule keeps it');
      }
      const user = options.locked?.get(v.uid);
      if (user !== undefined) {
        d.action = 'skip';
        d.rules.unshift('locked');
        d.reasons.unshift(`in use (${user}): not removed this time`);
      }
    }
  };
  const following = new Set(cows.map((v) => v.uid));
  for (const v of versions) if (!following.has(v.uid)) override(v);

  // Copy-on-write versions not kept by a rule follow their base (oldest first: a base is older).
  cows.sort((a, b) => -newestFirst(a, b));
  for (const v of cows) {
    const d = drafts.get(v.uid) as Draft;
    if (d.action === 'remove') {
      const base = v.baseUid === null ? undefined : drafts.get(v.baseUid);
      if (base && base.action !== 'remove') keep(d, 'base', `its base ${v.baseUid ?? ''} is kept`);
      else {
        d.rules.push('base-removed');
        d.reasons.push(base ? `its base ${v.baseUid ?? ''} is removed` : `its base ${v.baseUid ?? '(none)'} is gone`);
      }
    }
    override(v);
  }

  return versions.map((v) => {
    const d = drafts.get(v.uid) as Draft;
    return { uid: v.uid, action: d.action, rules: d.rules, reasons: d.reasons };
  });
}
