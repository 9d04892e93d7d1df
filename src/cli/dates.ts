import { UsageError } from '../engine/errors.js';
import { addSpan, parseDate, parseSpan } from '../engine/support/calendar.js';

/**
 * A point in time as typed: a date (`2025-01-31`, `2025-01-31 18:00`, local time unless it has
 * `Z` or an offset) or a span from `now` (`30d`, `6mo`, `1y`, `12h`).
 * @param option the option or argument, for the message (`--expire`)
 * @throws {UsageError} when it is neither
 */
export function parseWhen(text: string, now: number, option: string): number {
  const date = parseDate(text);
  if (date !== undefined) return date;
  const span = parseSpan(text);
  if (span !== undefined) return addSpan(now, span);
  throw new UsageError(`Invalid ${option} "${text}": use a date (2025-01-31, 2025-01-31 18:00) or a span from now (30d, 6mo, 1y, 12h)`);
}

/**
 * A date as typed, local time unless it has `Z` or an offset.
 * @throws {UsageError} when it is not one
 */
export function parseDateArgument(text: string, option: string): number {
  const date = parseDate(text);
  if (date === undefined) throw new UsageError(`Invalid ${option} "${text}": use a date such as 2025-01-31 or 2025-01-31 18:00 (local time)`);
  return date;
}
