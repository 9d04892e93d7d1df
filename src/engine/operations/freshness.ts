/**
 * How an image stands against its schedule: whether a backup is due, and whether the newest
 * valid backup is fresh (ok), overdue (late) or older than the SLA (breached). A pure function
 * of the image's versions, its schedule and the time; monitor.ts feeds it.
 *
 * Ages count from the newest *valid* backup: a newer backup that a scrub found bad does not make
 * an image fresh (it is reported as a problem too). Copy-on-write versions and incomplete
 * versions (running or killed backups) do not count.
 *
 * | newest valid backup is … | freshness | level |
 * | --- | --- | --- |
 * | younger than interval + tolerance (or no schedule) | ok | 0 |
 * | older than that, not older than the SLA | late | 1 |
 * | older than the SLA, or there is none | breached | 2 |
 *
 * Invalid versions (scrub findings) are problems of level 1 at least. A backup is due once the
 * newest valid one is older than interval − tolerance (so a nightly run that starts a little
 * earlier than yesterday's still backs up), or when there is none.
 */
import type { VersionKind, VersionStatus } from '../catalog/catalog.js';
import type { ImageSchedule } from '../support/config.js';
import { formatDuration } from '../support/units.js';

/** How fresh the newest valid backup is. */
export type Freshness = 'ok' | 'late' | 'breached';

/** Nagios levels: 0 OK, 1 WARNING, 2 CRITICAL. */
export type HealthLevel = 0 | 1 | 2;

/** What freshness needs of a version. */
export interface FreshnessVersion {
  readonly uid: string;
  readonly createdAt: number;
  readonly kind: VersionKind;
  readonly status: VersionStatus;
}

/** How one image stands. */
export interface ImageHealth {
  readonly image: string;
  /** The schedule that applies (first match), or null. */
  readonly schedule: ImageSchedule | null;
  /** The newest valid backup, with its age in ms, or null. */
  readonly newestValid: { readonly uid: string; readonly createdAt: number; readonly ageMs: number } | null;
  /** The newest backup when it is not the newest valid one (it is invalid), else null. */
  readonly newerInvalid: { readonly uid: string; readonly createdAt: number } | null;
  readonly invalidVersions: number;
  /** Whether a backup is due now (only with a schedule). */
  readonly due: boolean;
  /** When the next backup is (or was) due; null without a schedule. */
  readonly dueAt: number | null;
  readonly freshness: Freshness;
  /** What is wrong, in words; empty when all is well. */
  readonly problems: readonly string[];
  readonly level: HealthLevel;
}

/**
 * Assesses one image.
 * @param versions the image's versions, any order
 * @param schedule its schedule, if any
 * @param now ms since the epoch
 * @example
 * const health = assessImage('vm1', versions, schedule, Date.now());
 */
export function assessImage(image: string, versions: readonly FreshnessVersion[], schedule: ImageSchedule | undefined, now: number): ImageHealth {
  const backups = versions
    .filter((v) => v.kind === 'backup' && v.status !== 'incomplete' && v.createdAt <= now)
    .sort((a, b) => b.createdAt - a.createdAt);
  const valid = backups.find((v) => v.status === 'valid');
  const newest = backups[0];
  const invalidVersions = versions.filter((v) => v.status === 'invalid').length;
  const problems: string[] = [];
  let level: HealthLevel = 0;
  let freshness: Freshness = 'ok';
  const ageMs = valid ? Math.max(0, now - valid.createdAt) : undefined;

  if (ageMs === undefined) {
    if (schedule || backups.length > 0) {
      freshness = 'breached';
      level = 2;
      problems.push(backups.length > 0 ? `no valid backup: all ${backups.length} are invalid (a scrub found bad blocks)` : 'no backup yet');
    }
  } else if (schedule) {
    if (schedule.slaMs !== undefined && ageMs > schedule.slaMs) {
      freshness = 'breached';
      level = 2;
      problems.push(`newest valid backup is ${formatDuration(ageMs)} old, older than the SLA of ${formatDuration(schedule.slaMs)}`);
    } else if (ageMs > schedule.intervalMs + schedule.toleranceMs) {
      freshness = 'late';
      level = 1;
      problems.push(`newest valid backup is ${formatDuration(ageMs)} old, due every ${formatDuration(schedule.intervalMs)}`);
    }
  }
  const newerInvalid = newest && newest !== valid ? newest : undefined;
  if (newerInvalid) {
    problems.push(`newest backup ${newerInvalid.uid} is invalid (a scrub found bad blocks)${valid ? `; the newest valid one is ${valid.uid}` : ''}`);
  } else if (invalidVersions > 0 && valid) {
    problems.push(`${invalidVersions} invalid version(s) (a scrub found bad blocks in them)`);
  }
  if (invalidVersions > 0 && level < 1) level = 1;

  const dueAt = schedule ? (valid ? valid.createdAt + schedule.intervalMs - schedule.toleranceMs : now) : null;
  return {
    image,
    schedule: schedule ?? null,
    newestValid: valid && ageMs !== undefined ? { uid: valid.uid, createdAt: valid.createdAt, ageMs } : null,
    newerInvalid: newerInvalid ? { uid: newerInvalid.uid, createdAt: newerInvalid.createdAt } : null,
    invalidVersions,
    due: dueAt !== null && dueAt <= now,
    dueAt,
    freshness,
    problems,
    level,
  };
}
