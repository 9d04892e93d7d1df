import { periodKey, periodSpan } from '../support/calendar.js';

/** Tags a backup gets when the user names none: the first version of a day, week and month. */
export const AUTO_TAGS = { daily: 'b_daily', weekly: 'b_weekly', monthly: 'b_monthly' } as const;

const PERIODS = [
  ['day', AUTO_TAGS.daily],
  ['week', AUTO_TAGS.weekly],
  ['month', AUTO_TAGS.monthly],
] as const;

/**
 * Automatic tags for a new version, in local time: `b_daily` when no other valid version of the
 * image was made the same day, `b_weekly` the same ISO week, `b_monthly` the same month.
 * @param createdAt the new version's time, ms since the epoch
 * @param others creation times of the image's other valid versions
 */
export function autoTags(createdAt: number, others: readonly number[]): string[] {
  return PERIODS.filter(([unit]) => !others.some((t) => periodKey(t, unit) === periodKey(createdAt, unit))).map(([, tag]) => tag);
}

/**
 * The day, ISO week and month (local time) of a version made at `createdAt`: {@link autoTags}
 * needs to know only whether the image has a valid version in each, so a backup asks for one
 * version per period instead of reading all of the image's versions.
 */
export function autoTagPeriods(createdAt: number): { since: number; until: number }[] {
  return PERIODS.map(([unit]) => periodSpan(createdAt, unit));
}
