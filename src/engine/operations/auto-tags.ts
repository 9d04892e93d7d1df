/** Tags a backup gets when the user names none: the first version of a day, week and month. */
export const AUTO_TAGS = { daily: 'b_daily', weekly: 'b_weekly', monthly: 'b_monthly' } as const;

function dayKey(d: Date): string {
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** ISO 8601 week (weeks start on Monday) of a local date, as `year-week`. */
function weekKey(d: Date): string {
  const date = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides the year
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${date.getUTCFullYear()}-${week}`;
}

function monthKey(d: Date): string {
  return `${d.getFullYear()}-${d.getMonth()}`;
}

/**
 * Automatic tags for a new version, in local time: `b_daily` when no other valid version of the
 * image was made the same day, `b_weekly` the same ISO week, `b_monthly` the same month.
 * @param createdAt the new version's time, ms since the epoch
 * @param others creation times of the image's other valid versions
 */
export function autoTags(createdAt: number, others: readonly number[]): string[] {
  const now = new Date(createdAt);
  const dates = others.map((t) => new Date(t));
  const tags: string[] = [];
  if (!dates.some((d) => dayKey(d) === dayKey(now))) tags.push(AUTO_TAGS.daily);
  if (!dates.some((d) => weekKey(d) === weekKey(now))) tags.push(AUTO_TAGS.weekly);
  if (!dates.some((d) => monthKey(d) === monthKey(now))) tags.push(AUTO_TAGS.monthly);
  return tags;
}

/**
 * The day, ISO week and month (local time) of a version made at `createdAt`, as spans of time:
 * {@link autoTags} needs to know only whether the image has a valid version in each, so a backup
 * asks for one version per span instead of reading all of the image's versions.
 */
export function autoTagPeriods(createdAt: number): { since: number; until: number }[] {
  const d = new Date(createdAt);
  const [y, m, day] = [d.getFullYear(), d.getMonth(), d.getDate()];
  const monday = day - ((d.getDay() + 6) % 7);
  return [
    { since: new Date(y, m, day).getTime(), until: new Date(y, m, day + 1).getTime() },
    { since: new Date(y, m, monday).getTime(), until: new Date(y, m, monday + 7).getTime() },
    { since: new Date(y, m, 1).getTime(), until: new Date(y, m + 1, 1).getTime() },
  ];
}
