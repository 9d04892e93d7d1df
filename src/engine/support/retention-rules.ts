/**
 * Retention rules as given on the command line or in the config (`retention.policies`), and how
 * they read. What they do is in operations/retention.ts.
 */
import { formatSpan, type CalendarSpan } from './calendar.js';

/**
 * Which versions to keep, restic style: a version is kept when any rule keeps it. Counts are
 * whole numbers; `Infinity` ("unlimited") keeps every period. A missing count or 0 disables its rule.
 */
export interface RetentionRules {
  /** The newest N versions. */
  readonly keepLast?: number | undefined;
  /** The newest version of each of the newest N hours that have versions (local time). */
  readonly keepHourly?: number | undefined;
  /** The newest version of each of the newest N days that have versions (local time). */
  readonly keepDaily?: number | undefined;
  /** The newest version of each of the newest N ISO weeks (Monday to Sunday) that have versions. */
  readonly keepWeekly?: number | undefined;
  /** The newest version of each of the newest N months that have versions. */
  readonly keepMonthly?: number | undefined;
  /** The newest version of each of the newest N years that have versions. */
  readonly keepYearly?: number | undefined;
  /** Every version newer than the newest backup minus this span. */
  readonly keepWithin?: CalendarSpan | undefined;
  /** Every version that has all tags of one of these lists. */
  readonly keepTags?: readonly (readonly string[])[] | undefined;
}

/** A policy of the config: the rules for the images its patterns match. */
export interface ImagePolicy {
  /** Image names or shell patterns (`vm-*`). */
  readonly images: readonly string[];
  readonly rules: RetentionRules;
}

const COUNTS = [
  ['keepLast', 'last'],
  ['keepHourly', 'hourly'],
  ['keepDaily', 'daily'],
  ['keepWeekly', 'weekly'],
  ['keepMonthly', 'monthly'],
  ['keepYearly', 'yearly'],
] as const;

/** True when the rules keep nothing at all (such a policy would remove every version). */
export function keepsNothing(rules: RetentionRules): boolean {
  return COUNTS.every(([key]) => !rules[key]) && !rules.keepWithin && !rules.keepTags?.length;
}

/** The rules in words: `7 daily, 4 weekly, all within 2d of the newest, tagged "keep"`. */
export function describeRules(rules: RetentionRules): string {
  const parts: string[] = [];
  for (const [key, word] of COUNTS) {
    const n = rules[key];
    if (n) parts.push(n === Infinity ? `all ${word}` : `${n} ${word}`);
  }
  if (rules.keepWithin) parts.push(`all within ${formatSpan(rules.keepWithin)} of the newest backup`);
  for (const tags of rules.keepTags ?? []) parts.push(`all tagged ${tags.map((t) => `"${t}"`).join(' and ')}`);
  return parts.length ? `keep ${parts.join(', ')}` : 'keep nothing';
}

/**
 * Parses a count as typed: a whole number, or `unlimited` (every period).
 * @returns the count (Infinity for unlimited), or undefined when it is neither
 */
export function parseKeepCount(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (value.trim().toLowerCase() === 'unlimited') return Infinity;
  if (!/^\s*\d{1,9}\s*$/.test(value)) return undefined;
  return Number(value);
}
